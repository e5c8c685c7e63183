//! The common JSONL line — a flat object with `prompt`/`completion`,
//! `instruction`/`input`/`output` or `text` as strings, and other fields —
//! turned into its body and metadata in one pass, without building a
//! `serde_json::Value` of the whole line and cloning its strings out of it.
//! Anything else (chat messages, a `meta` object, non-string body fields,
//! repeated keys, a source `map:`, invalid JSON) returns `None`, and the
//! caller takes the general path (`to_body` + `meta_of`), which this must
//! equal whenever it answers (test below).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use tailor_text::record::Body;

/// The body fields this path reads, in `Flat`'s slot order.
const FIELDS: [&str; 6] = ["prompt", "completion", "instruction", "input", "output", "text"];

#[derive(Default)]
struct Flat {
    body: [Option<String>; 6],
    rest: Map<String, Value>,
}

struct FlatVisitor;

impl<'de> Visitor<'de> for FlatVisitor {
    type Value = Option<Flat>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut flat = Flat::default();
        let mut give_up = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if give_up {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            match FIELDS.iter().position(|f| *f == key) {
                Some(i) => match map.next_value::<Value>()? {
                    Value::String(s) if flat.body[i].is_none() => flat.body[i] = Some(s),
                    _ => give_up = true,
                },
                None if matches!(&*key, "messages" | "conversations" | "meta") || flat.rest.contains_key(&*key) => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    give_up = true;
                }
                None => {
                    let v = map.next_value::<Value>()?;
                    flat.rest.insert(key.into_owned(), v);
                }
            }
        }
        Ok((!give_up).then_some(flat))
    }
}

impl<'de> DeserializeSeed<'de> for FlatVisitor {
    type Value = Option<Flat>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// The body and metadata of `line`, or `None` for the general path.
pub fn flat_record(line: &str) -> Option<(Body, Map<String, Value>)> {
    let mut de = serde_json::Deserializer::from_str(line);
    let Flat { body, mut rest } = FlatVisitor.deserialize(&mut de).ok()??;
    de.end().ok()?;
    let [prompt, completion, instruction, input, output, text] = body;
    // The general path's order: instruction + output, then prompt +
    // completion, then text; the fields the body did not use go to meta.
    let mut unused = |name: &str, v: Option<String>| {
        if let Some(s) = v {
            rest.insert(name.to_string(), Value::String(s));
        }
    };
    let body = match (instruction, output, prompt, completion, text) {
        (Some(instruction), Some(output), prompt, completion, text) => {
            unused("prompt", prompt);
            unused("completion", completion);
            unused("text", text);
            Body::Instruction { instruction, input: input.unwrap_or_default(), output }
        }
        (instruction, output, Some(prompt), Some(completion), text) => {
            unused("instruction", instruction);
            unused("input", input);
            unused("output", output);
            unused("text", text);
            Body::Completion { prompt, completion }
        }
        (instruction, output, prompt, completion, Some(text)) => {
            unused("instruction", instruction);
            unused("input", input);
            unused("output", output);
            unused("prompt", prompt);
            unused("completion", completion);
            Body::Text { text }
        }
        _ => return None,
    };
    Some((body, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn line() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("prompt"),
            Just("completion"),
            Just("instruction"),
            Just("input"),
            Just("output"),
            Just("text"),
            Just("id"),
            Just("task"),
            Just("meta"),
            Just("messages"),
        ];
        let value = prop_oneof![
            4 => "[a-zé\"\\\\\n ]{0,8}".prop_map(Value::String),
            1 => Just(Value::Null),
            1 => any::<i32>().prop_map(Value::from),
            1 => Just(Value::Bool(true)),
            1 => Just(serde_json::json!({"lang": "ja"})),
            1 => Just(serde_json::json!([{"role": "user", "content": "hi"}])),
        ];
        proptest::collection::vec((key, value), 0..6).prop_map(|kv| {
            // Written by hand so that repeated keys stay repeated.
            let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("{{{}}}", fields.join(", "))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the fast path answers, it answers what the general
        /// path does, and it answers for every plain string record.
        #[test]
        fn equals_the_general_path(line in line()) {
            let general = serde_json::from_str::<Value>(&line).ok().and_then(|v| {
                let b = super::super::to_body(&v, &BTreeMap::new()).ok()?;
                let m = super::super::meta_of(&v, &BTreeMap::new(), &b);
                Some((b, m))
            });
            if let Some(fast) = flat_record(&line) {
                prop_assert_eq!(Some(fast), general, "{}", line);
            }
        }
    }

    #[test]
    fn answers_for_the_common_shapes() {
        for line in [
            r#"{"id": "a-1", "prompt": "p", "completion": "c\n\"q\""}"#,
            r#"{"instruction": "i", "output": "o", "task": 3}"#,
            r#"{"text": "t", "prompt": "half"}"#,
        ] {
            assert!(flat_record(line).is_some(), "{line}");
        }
        for line in [r#"{"prompt": "p", "completion": 1}"#, r#"{"prompt": "p", "prompt": "q", "completion": "c"}"#, r#"{"prompt": "p"}"#, "[1]", "{"] {
            assert!(flat_record(line).is_none(), "{line}");
        }
    }
}
