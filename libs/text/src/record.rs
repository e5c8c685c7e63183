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
    body_json_id(&body_json(body))
}

/// A body's canonical JSON: exactly the bytes of `serde_json::to_vec(body)`
/// (fields in declaration order, compact, serde_json's escapes), written
/// directly with a string escaper that skips eight bytes at a time where
/// nothing needs escaping — collect serializes every record's body, and
/// serde_json's byte-by-byte escaping was a tenth of its time.
pub fn body_json(body: &Body) -> Vec<u8> {
    let texts: usize = match body {
        Body::Chat { messages } => messages.iter().map(|m| m.role.len() + m.content.len() + 24).sum(),
        Body::Instruction { instruction, input, output } => instruction.len() + input.len() + output.len(),
        Body::Completion { prompt, completion } => prompt.len() + completion.len(),
        Body::Text { text } => text.len(),
    };
    let mut out = Vec::with_capacity(texts + texts / 16 + 48);
    match body {
        Body::Chat { messages } => {
            out.extend_from_slice(b"{\"messages\":[");
            for (i, m) in messages.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"role\":");
                json_str(&m.role, &mut out);
                out.extend_from_slice(b",\"content\":");
                json_str(&m.content, &mut out);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        Body::Instruction { instruction, input, output } => {
            out.extend_from_slice(b"{\"instruction\":");
            json_str(instruction, &mut out);
            out.extend_from_slice(b",\"input\":");
            json_str(input, &mut out);
            out.extend_from_slice(b",\"output\":");
            json_str(output, &mut out);
            out.push(b'}');
        }
        Body::Completion { prompt, completion } => {
            out.extend_from_slice(b"{\"prompt\":");
            json_str(prompt, &mut out);
            out.extend_from_slice(b",\"completion\":");
            json_str(completion, &mut out);
            out.push(b'}');
        }
        Body::Text { text } => {
            out.extend_from_slice(b"{\"text\":");
            json_str(text, &mut out);
            out.push(b'}');
        }
    }
    out
}

/// `s` as a JSON string literal, escaped as serde_json does: `\"`, `\\`,
/// `\b \f \n \r \t`, other control characters as `\u00xx`, the rest as is.
pub fn json_str(s: &str, out: &mut Vec<u8>) {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A byte of `w` is zero: the classic has-zero-byte test.
    let zero = |w: u64| w.wrapping_sub(LO) & !w & HI;
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    // Control characters (< 0x20: the top three bits clear), quotes, backslashes.
    let special = |w: u64| zero(w & (0xE0 * LO)) | zero(w ^ (b'"' as u64 * LO)) | zero(w ^ (b'\\' as u64 * LO));
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    while i < b.len() {
        while i + 16 <= b.len() && special(word(i)) | special(word(i + 8)) == 0 {
            i += 16;
        }
        if i + 8 <= b.len() && special(word(i)) == 0 {
            i += 8;
            continue;
        }
        if i == b.len() {
            break;
        }
        let c = b[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&b[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
                i += 1;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(esc);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// [`body_id`] from the body's canonical JSON (`serde_json::to_vec(body)`),
/// for a caller that needs those bytes anyway.
pub fn body_json_id(json: &[u8]) -> String {
    blake3::hash(json).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Mostly what needs escaping or is multi-byte, in runs longer and
        // shorter than the escaper's eight-byte steps.
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(
                prop_oneof![Just('"'), Just('\\'), Just('\n'), Just('\u{1}'), Just('\u{1f}'), Just('\u{7f}'), Just('é'), Just('ま'), Just('a'), Just(' ')],
                0..40
            )
            .prop_map(|v| v.into_iter().collect()),
        ]
    }

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (text(), text()).prop_map(|(prompt, completion)| Body::Completion { prompt, completion }),
            (text(), text(), text()).prop_map(|(instruction, input, output)| Body::Instruction { instruction, input, output }),
            text().prop_map(|text| Body::Text { text }),
            proptest::collection::vec((text(), text()).prop_map(|(role, content)| Message { role, content }), 0..4)
                .prop_map(|messages| Body::Chat { messages }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn body_json_is_serde_json_byte_for_byte(b in body()) {
            prop_assert_eq!(body_json(&b), serde_json::to_vec(&b).unwrap());
        }
    }

    #[test]
    fn every_byte_escapes_as_serde_json_does() {
        for c in 0u8..128 {
            let s = format!("abcdefgh{}ijklmnop{}", c as char, c as char);
            let mut out = Vec::new();
            json_str(&s, &mut out);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "byte {c:#x}");
        }
    }

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
