//! Prompt templates. A template renders a record into one string and the
//! byte ranges of it that the model is trained on. The ranges come from the
//! template's structure — which part is the completion or an assistant turn —
//! never from searching the text for a response marker, so a completion that
//! happens to contain "### Response:" is still masked correctly.
//!
//! Jinja chat templates (the tokenizer's own `chat_template`, rendered with
//! minijinja) are handled by rendering the conversation one message longer
//! at a time: the text each assistant message adds is its turn, and the
//! trained range runs from the message's content to the end of the turn
//! (so end-of-turn tokens are learned too).

use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use tailor_text::record::{Body, Message};

/// Built-in templates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// The tokenizer's `chat_template` if it has one, else `chatml` for
    /// chat records and `completion` for the rest.
    #[default]
    Auto,
    /// `{prompt}\n{completion}<eos>`; the completion and EOS are trained.
    Completion,
    /// The Stanford Alpaca instruction prompt; the response is trained.
    Alpaca,
    /// `<|im_start|>role\ncontent<|im_end|>\n` per message.
    Chatml,
    /// Llama 3 headers (`<|start_header_id|>role<|end_header_id|>`).
    Llama3,
    /// `role: content` lines.
    Plain,
    /// The tokenizer's own Jinja `chat_template` (error if it has none).
    Tokenizer,
}

/// A rendered sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The full text.
    pub text: String,
    /// Trained byte ranges of `text`.
    pub train: Vec<Range<usize>>,
    /// Whether the EOS token must be appended (and trained).
    pub add_eos: bool,
}

/// A record as chat messages.
pub fn messages(body: &Body, system: Option<&str>) -> Vec<Message> {
    let mut out = Vec::new();
    let has_system = matches!(body, Body::Chat { messages } if messages.iter().any(|m| m.role == "system"));
    if let (Some(s), false) = (system, has_system) {
        out.push(Message { role: "system".into(), content: s.to_string() });
    }
    let m = |role: &str, content: &str| Message { role: role.into(), content: content.into() };
    match body {
        Body::Chat { messages } => out.extend(messages.iter().cloned()),
        Body::Completion { prompt, completion } => out.extend([m("user", prompt), m("assistant", completion)]),
        Body::Instruction { instruction, input, output } => {
            let user = if input.is_empty() { instruction.clone() } else { format!("{instruction}\n\n{input}") };
            out.extend([m("user", &user), m("assistant", output)]);
        }
        Body::Text { text } => out.push(m("assistant", text)),
    }
    out
}

struct Builder {
    text: String,
    train: Vec<Range<usize>>,
}

impl Builder {
    fn new() -> Self {
        Builder { text: String::new(), train: Vec::new() }
    }
    fn fixed(&mut self, s: &str) {
        self.text.push_str(s);
    }
    fn trained(&mut self, s: &str) {
        let start = self.text.len();
        self.text.push_str(s);
        if !s.is_empty() {
            self.train.push(start..self.text.len());
        }
    }
    /// Append a message body: trained for assistant turns, fixed otherwise.
    fn turn(&mut self, role: &str, s: &str) {
        if role == "assistant" { self.trained(s) } else { self.fixed(s) }
    }
    fn done(self, add_eos: bool) -> Rendered {
        Rendered { text: self.text, train: self.train, add_eos }
    }
}

const ALPACA_HEAD: &str = "Below is an instruction that describes a task";

/// Render with a built-in template (`Auto` and `Tokenizer` are resolved by
/// the caller).
pub fn render(t: Template, body: &Body, system: Option<&str>) -> Rendered {
    let mut b = Builder::new();
    match (t, body) {
        (Template::Completion | Template::Auto, Body::Text { text }) => {
            b.trained(text);
            b.done(true)
        }
        (Template::Completion | Template::Auto, Body::Completion { prompt, completion }) => {
            b.fixed(prompt);
            b.fixed("\n");
            b.trained(completion);
            b.done(true)
        }
        (Template::Completion, _) => {
            let msgs = messages(body, system);
            let prompt: Vec<&str> = msgs.iter().filter(|m| m.role != "assistant").map(|m| m.content.as_str()).collect();
            let answer = msgs.iter().rev().find(|m| m.role == "assistant").map_or("", |m| m.content.as_str());
            b.fixed(&prompt.join("\n\n"));
            b.fixed("\n");
            b.trained(answer);
            b.done(true)
        }
        (Template::Auto, Body::Instruction { .. }) => render(Template::Alpaca, body, system),
        (Template::Alpaca, Body::Instruction { instruction, input, output }) if !input.is_empty() => {
            b.fixed(&format!("{ALPACA_HEAD}, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"));
            b.trained(output);
            b.done(true)
        }
        (Template::Alpaca, _) => {
            let msgs = messages(body, None);
            let user: Vec<&str> = msgs.iter().filter(|m| m.role != "assistant").map(|m| m.content.as_str()).collect();
            let answer = msgs.iter().rev().find(|m| m.role == "assistant").map_or("", |m| m.content.as_str());
            b.fixed(&format!(
                "{ALPACA_HEAD}. Write a response that appropriately completes the request.\n\n### Instruction:\n{}\n\n### Response:\n",
                user.join("\n\n")
            ));
            b.trained(answer);
            b.done(true)
        }
        (Template::Plain, _) => {
            for m in messages(body, system) {
                b.fixed(&format!("{}: ", m.role));
                b.turn(&m.role, &format!("{}\n", m.content));
            }
            b.done(true)
        }
        (Template::Llama3, _) => {
            b.fixed("<|begin_of_text|>");
            for m in messages(body, system) {
                b.fixed(&format!("<|start_header_id|>{}<|end_header_id|>\n\n", m.role));
                b.turn(&m.role, &format!("{}<|eot_id|>", m.content));
            }
            b.done(false)
        }
        // ChatML, and `Auto`/`Completion` for chat-shaped records.
        _ => {
            for m in messages(body, system) {
                b.fixed(&format!("<|im_start|>{}\n", m.role));
                b.turn(&m.role, &format!("{}<|im_end|>", m.content));
                b.fixed("\n");
            }
            b.done(false)
        }
    }
}

/// A compiled Jinja chat template.
pub struct Jinja {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
}

impl Jinja {
    /// Compile a template string.
    pub fn new(source: &str, bos: Option<&str>, eos: Option<&str>) -> Result<Self, String> {
        let mut env = minijinja::Environment::new();
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat".to_string(), source.to_string()).map_err(|e| format!("the chat template does not compile: {e}"))?;
        Ok(Jinja { env, bos: bos.unwrap_or("").to_string(), eos: eos.unwrap_or("").to_string() })
    }

    fn text(&self, msgs: &[Message]) -> Result<String, String> {
        let t = self.env.get_template("chat").map_err(|e| e.to_string())?;
        t.render(minijinja::context! { messages => msgs, bos_token => self.bos, eos_token => self.eos, add_generation_prompt => false })
            .map_err(|e| format!("rendering the chat template: {e}"))
    }

    /// Render a record; assistant turns are trained.
    pub fn render(&self, body: &Body, system: Option<&str>) -> Result<Rendered, String> {
        let msgs = messages(body, system);
        let mut prev = String::new();
        let mut train = Vec::new();
        for i in 0..msgs.len() {
            let cur = self.text(&msgs[..=i])?;
            if !cur.starts_with(&prev) {
                return Err("the chat template renders a conversation differently when a message is added; use a built-in template".into());
            }
            if msgs[i].role == "assistant" {
                let added = &cur[prev.len()..];
                let at = added.find(msgs[i].content.as_str()).unwrap_or(0);
                if prev.len() + at < cur.len() {
                    train.push(prev.len() + at..cur.len());
                }
            }
            prev = cur;
        }
        Ok(Rendered { text: prev, train, add_eos: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(r: &Rendered) -> String {
        let mut out = String::new();
        let mut last = 0;
        for span in &r.train {
            out.push_str(&r.text[last..span.start]);
            out.push('«');
            out.push_str(&r.text[span.clone()]);
            out.push('»');
            last = span.end;
        }
        out.push_str(&r.text[last..]);
        out
    }

    #[test]
    fn masks_follow_structure_not_markers() {
        let body = Body::Completion { prompt: "Q?".into(), completion: "### Response: A".into() };
        assert_eq!(marked(&render(Template::Completion, &body, None)), "Q?\n«### Response: A»");
        assert_eq!(
            marked(&render(Template::Chatml, &body, Some("be brief"))),
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n«### Response: A<|im_end|>»\n"
        );
        let inst = Body::Instruction { instruction: "Add".into(), input: "1+1".into(), output: "2".into() };
        let a = marked(&render(Template::Alpaca, &inst, None));
        assert!(a.ends_with("### Input:\n1+1\n\n### Response:\n«2»"), "{a}");
        assert_eq!(
            marked(&render(Template::Llama3, &body, None)),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n«### Response: A<|eot_id|>»"
        );
    }

    #[test]
    fn jinja_template_trains_assistant_turns() {
        let j = Jinja::new(tailor_model::tokenizer::CHATML_TEMPLATE, None, Some("<|im_end|>")).unwrap();
        let body = Body::Chat {
            messages: vec![
                Message { role: "user".into(), content: "hi".into() },
                Message { role: "assistant".into(), content: "hello".into() },
                Message { role: "user".into(), content: "bye".into() },
                Message { role: "assistant".into(), content: "ciao".into() },
            ],
        };
        let r = j.render(&body, None).unwrap();
        assert_eq!(
            marked(&r),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n«hello<|im_end|>\n»<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n«ciao<|im_end|>\n»"
        );
        // Same text as the built-in ChatML renderer.
        assert_eq!(r.text, render(Template::Chatml, &body, None).text);
    }
}
