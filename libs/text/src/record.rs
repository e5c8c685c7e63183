//! The canonical training record and its JSONL files.
//!
//! Every data stage reads and writes `records.jsonl`: one JSON object per
//! line with a stable `id`, one of the body shapes the ecosystem uses
//! (`prompt`/`completion`, Alpaca `instruction`/`input`/`output`, chat
//! `messages`, or plain `text`), its provenance (`source` file and `line`)
//! and free `meta`. Rejected records go to `rejects.jsonl` as
//! `{id, step, reason, record}` so that nothing disappears without a trace.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body {
    /// Chat conversation.
    Chat {
        /// Messages in order.
        messages: Vec<Message>,
    },
    /// Alpaca-style instruction.
    Instruction {
        /// The task.
        instruction: String,
        /// Optional context.
        #[serde(default)]
        input: String,
        /// The answer.
        output: String,
    },
    /// Prompt → completion pair.
    Completion {
        /// What the model sees.
        prompt: String,
        /// What it should answer.
        completion: String,
    },
    /// Unstructured text (continued pre-training).
    Text {
        /// The text.
        text: String,
    },
}

impl Body {
    /// The last exchange as (what was asked, what should be answered): the
    /// last assistant reply and the user turn before it; the instruction
    /// (with its input) and output; the prompt and completion; or nothing
    /// and the text. Evaluations compare model outputs with the answer, and
    /// review files show the question.
    pub fn exchange(&self) -> (String, String) {
        match self {
            Body::Chat { messages } => {
                let last = messages.iter().rposition(|m| m.role == "assistant");
                let reply = last.map(|i| messages[i].content.clone()).unwrap_or_default();
                let asked = messages[..last.unwrap_or(messages.len())].iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default();
                (asked, reply)
            }
            Body::Instruction { instruction, input, output } => {
                (if input.is_empty() { instruction.clone() } else { format!("{instruction}\n\n{input}") }, output.clone())
            }
            Body::Completion { prompt, completion } => (prompt.clone(), completion.clone()),
            Body::Text { text } => (String::new(), text.clone()),
        }
    }

    /// Every text field, for cleaning steps that look at all of them.
    pub fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            Body::Chat { messages } => messages.iter_mut().map(|m| &mut m.content).collect(),
            Body::Instruction { instruction, input, output } => vec![instruction, input, output],
            Body::Completion { prompt, completion } => vec![prompt, completion],
            Body::Text { text } => vec![text],
        }
    }

    /// The text the model is trained to produce (completion, output, last
    /// assistant message, or the text itself).
    pub fn target(&self) -> &str {
        match self {
            Body::Chat { messages } => messages.iter().rev().find(|m| m.role == "assistant").map_or("", |m| &m.content),
            Body::Instruction { output, .. } => output,
            Body::Completion { completion, .. } => completion,
            Body::Text { text } => text,
        }
    }

    /// The target text, mutable ([`Body::target`]); `None` for a chat
    /// without an assistant message.
    pub fn target_mut(&mut self) -> Option<&mut String> {
        match self {
            Body::Chat { messages } => messages.iter_mut().rev().find(|m| m.role == "assistant").map(|m| &mut m.content),
            Body::Instruction { output, .. } => Some(output),
            Body::Completion { completion, .. } => Some(completion),
            Body::Text { text } => Some(text),
        }
    }

    /// All text joined, for deduplication and length checks.
    pub fn joined(&self) -> String {
        match self {
            Body::Chat { messages } => messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
            Body::Instruction { instruction, input, output } => format!("{instruction}\n{input}\n{output}"),
            Body::Completion { prompt, completion } => format!("{prompt}\n{completion}"),
            Body::Text { text } => text.clone(),
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Source file, relative to the project.
    pub path: String,
    /// 1-based line (JSONL, CSV row, text line) or array index + 1 (JSON).
    pub line: u64,
}

/// A training record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Stable identifier: a digest of the body, with `-N` for repeats.
    pub id: String,
    /// The content.
    #[serde(flatten)]
    pub body: Body,
    /// Where it came from.
    pub source: Provenance,
    /// Free metadata (constants from the source, labels, corrections).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
}

/// A record that a step removed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// The record's id (or `path:line` when it never became a record).
    pub id: String,
    /// The step that removed it (`collect`, `dedup`, …).
    pub step: String,
    /// Why, in words.
    pub reason: String,
    /// The record or raw input.
    pub record: Value,
}

/// The id of a body: 16 hex digits of BLAKE3 over its canonical JSON.
pub fn body_id(body: &Body) -> String {
    // A body always serializes (strings and lists of strings only).
    body_json_id(&serde_json::to_vec(body).unwrap_or_default())
}

/// [`body_id`] from the body's canonical JSON (`serde_json::to_vec(body)`),
/// for a caller that needs those bytes anyway.
pub fn body_json_id(json: &[u8]) -> String {
    blake3::hash(json).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_through_json() {
        for line in [
            r#"{"id":"a","prompt":"p","completion":"c","source":{"path":"x","line":1}}"#,
            r#"{"id":"a","messages":[{"role":"user","content":"hi"}],"source":{"path":"x","line":1}}"#,
            r#"{"id":"a","instruction":"i","input":"","output":"o","source":{"path":"x","line":1}}"#,
            r#"{"id":"a","text":"t","source":{"path":"x","line":1},"meta":{"lang":"ja"}}"#,
        ] {
            let r: Record = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&r).unwrap(), line);
        }
    }
}
