//! `where:` — limit a clean step to some records.
//!
//! A step written with a sibling `where:` key runs on the records the
//! selector picks; the others pass through unchanged, in place:
//!
//! ```yaml
//! - check: {json: true}
//!   where: {meta: {task: json}}
//! - style: {politeness: mixed}
//!   where: {lang: [ja]}
//! ```
//!
//! Conditions are ANDed; `not: true` inverts the whole selector. Steps that
//! look at the dataset as a whole (dedup, majority register) see only the
//! selected records.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{Field, Step};
use tailor_text::record::Record;

/// Which records a step applies to; every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Where {
    /// Metadata values: `{task: json}` picks records whose `meta.task` is
    /// `json`; a list picks any of its values (`{task: [json, yaml]}`).
    /// Dotted keys reach into nested metadata (`{labels.split: test}`).
    /// Scalars compare as text, so `{id: 3}` matches a CSV's `"3"`.
    #[serde(default)]
    pub meta: BTreeMap<String, Value>,
    /// A regular expression the `field` text must match.
    pub regex: Option<String>,
    /// Which text `regex` looks at.
    #[serde(default)]
    pub field: Field,
    /// Detected language of the `field` text (`ja`, `en`, `zh`, `ko`,
    /// `latin`, …), as in the filter step's `lang` rule.
    pub lang: Option<Vec<String>>,
    /// Pick the records the conditions do not match.
    #[serde(default)]
    pub not: bool,
}

/// A compiled selector.
pub struct Selector {
    meta: Vec<(String, Vec<String>)>,
    regex: Option<regex::Regex>,
    field: Field,
    lang: Option<Vec<String>>,
    not: bool,
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn meta_path<'a>(meta: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(v) = meta.get(key) {
        return Some(v);
    }
    let mut parts = key.split('.');
    let first = meta.get(parts.next()?)?;
    parts.try_fold(first, |cur, seg| cur.get(seg))
}

impl Where {
    /// The selector in words, for stats and `tailor show`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.meta.iter().map(|(k, v)| format!("meta.{k} = {v}")).collect();
        if let Some(r) = &self.regex {
            let field = format!("{:?}", self.field).to_lowercase();
            parts.push(format!("{field} text matches /{r}/"));
        }
        if let Some(l) = &self.lang {
            parts.push(format!("language in [{}]", l.join(", ")));
        }
        let all = parts.join(" and ");
        if self.not { format!("not ({all})") } else { all }
    }

    /// Compile; an error says what is wrong in words.
    pub fn compile(&self) -> Result<Selector, String> {
        let mut meta = Vec::new();
        for (k, v) in &self.meta {
            let allowed: Option<Vec<String>> = match v {
                Value::Array(items) => items.iter().map(scalar_text).collect(),
                other => scalar_text(other).map(|s| vec![s]),
            };
            let allowed = allowed.ok_or_else(|| format!("`meta.{k}` must be a value or a list of values, not an object"))?;
            meta.push((k.clone(), allowed));
        }
        let regex = match &self.regex {
            Some(r) => Some(
                regex::Regex::new(r)
                    .map_err(|e| format!("invalid regular expression: {}", e.to_string().lines().last().unwrap_or("").trim_start_matches("error: ")))?,
            ),
            None => None,
        };
        Ok(Selector { meta, regex, field: self.field, lang: self.lang.clone(), not: self.not })
    }
}

impl Selector {
    /// Whether the step applies to `r`.
    pub fn picks(&self, r: &Record) -> bool {
        let meta_ok = self.meta.iter().all(|(k, allowed)| meta_path(&r.meta, k).and_then(scalar_text).is_some_and(|v| allowed.contains(&v)));
        let text = || super::step::text_of(r, self.field);
        let regex_ok = || self.regex.as_ref().is_none_or(|re| re.is_match(&text()));
        let lang_ok = || self.lang.as_ref().is_none_or(|langs| langs.iter().any(|l| l == tailor_text::detect(&text()).unwrap_or("none")));
        (meta_ok && regex_ok() && lang_ok()) != self.not
    }
}

/// Run `step` on the records `sel` picks; the rest keep their places.
pub fn on_subset<E>(records: &mut Vec<Record>, sel: &Selector, step: impl FnOnce(&mut Vec<Record>) -> Result<(), E>) -> Result<usize, E> {
    let all = std::mem::take(records);
    let mut picked = Vec::new();
    let mut order: Vec<(usize, Option<Record>)> = Vec::with_capacity(all.len());
    // Ids are unique after `collect`; should two picked records share one,
    // survivors take that id's slots in order, so none is ever lost.
    let mut slot_of: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, r) in all.into_iter().enumerate() {
        if sel.picks(&r) {
            slot_of.entry(r.id.clone()).or_default().push_back(i);
            order.push((i, None));
            picked.push(r);
        } else {
            order.push((i, Some(r)));
        }
    }
    let n = picked.len();
    step(&mut picked)?;
    // Steps keep ids and relative order; put survivors back in their slots.
    for r in picked {
        match slot_of.get_mut(&r.id).and_then(VecDeque::pop_front) {
            Some(i) => order[i].1 = Some(r),
            None => order.push((usize::MAX, Some(r))),
        }
    }
    *records = order.into_iter().filter_map(|(_, r)| r).collect();
    Ok(n)
}

/// One step of a clean stage, with its optional `where:` selector.
#[derive(Debug, Clone)]
pub struct StepEntry {
    /// The step.
    pub step: Step,
    /// The records it applies to (all when absent).
    pub selector: Option<Where>,
}

impl<'de> Deserialize<'de> for StepEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(d)?;
        let selector = match map.remove("where") {
            Some(v) => Some(serde_json::from_value(v).map_err(|e| D::Error::custom(format!("in `where`: {e}")))?),
            None => None,
        };
        let step = serde_json::from_value(Value::Object(map)).map_err(D::Error::custom)?;
        Ok(Self { step, selector })
    }
}

impl JsonSchema for StepEntry {
    fn schema_name() -> Cow<'static, str> {
        "StepEntry".into()
    }

    /// The step's own one-key schema, with `where` allowed beside the key.
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = Step::json_schema(generator);
        let selector: Value = generator.subschema_for::<Where>().into();
        if let Some(Value::Array(branches)) = schema.get_mut("oneOf") {
            for b in branches {
                if let Some(props) = b.get_mut("properties").and_then(Value::as_object_mut) {
                    props.insert("where".into(), selector.clone());
                }
            }
        }
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tailor_text::record::{Body, Provenance};

    fn rec(id: &str, text: &str, meta: Value) -> Record {
        Record {
            id: id.into(),
            body: Body::Completion { prompt: "q".into(), completion: text.into() },
            source: Provenance { path: "x".into(), line: 1 },
            meta: meta.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn selects_by_meta_regex_lang_and_inverts() {
        let w: Where = serde_json::from_value(json!({"meta": {"task": ["json", "yaml"], "n": 3}})).unwrap();
        let s = w.compile().unwrap();
        assert!(s.picks(&rec("a", "x", json!({"task": "json", "n": "3"}))));
        assert!(!s.picks(&rec("a", "x", json!({"task": "chat", "n": 3}))));
        assert!(!s.picks(&rec("a", "x", json!({"task": "json"}))));
        let w: Where = serde_json::from_value(json!({"meta": {"a.b": true}})).unwrap();
        assert!(w.compile().unwrap().picks(&rec("a", "x", json!({"a": {"b": true}}))));
        let w: Where = serde_json::from_value(json!({"regex": "^\\{", "not": true})).unwrap();
        let s = w.compile().unwrap();
        assert!(!s.picks(&rec("a", "{\"k\": 1}", json!({}))));
        assert!(s.picks(&rec("a", "plain", json!({}))));
        let w: Where = serde_json::from_value(json!({"lang": ["ja"]})).unwrap();
        let s = w.compile().unwrap();
        assert!(s.picks(&rec("a", "これは日本語の文章です。", json!({}))));
        assert!(!s.picks(&rec("a", "This is an English sentence.", json!({}))));
        assert!(serde_json::from_value::<Where>(json!({"regex": "("})).unwrap().compile().is_err());
        assert!(serde_json::from_value::<Where>(json!({"meta": {"k": {"x": 1}}})).unwrap().compile().is_err());
    }

    #[test]
    fn subset_step_keeps_the_others_in_place() {
        let mut records = vec![
            rec("1", "a", json!({"task": "json"})),
            rec("2", "b", json!({"task": "chat"})),
            rec("3", "c", json!({"task": "json"})),
            rec("4", "d", json!({"task": "chat"})),
        ];
        let s = serde_json::from_value::<Where>(json!({"meta": {"task": "json"}})).unwrap().compile().unwrap();
        let n = on_subset(&mut records, &s, |sub| {
            assert_eq!(sub.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1", "3"]);
            sub.remove(0);
            sub[0].body = Body::Text { text: "changed".into() };
            Ok::<_, String>(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["2", "3", "4"]);
        assert_eq!(records[1].body, Body::Text { text: "changed".into() });
    }

    #[test]
    fn entry_reads_the_sibling_key_and_the_schema_allows_it() {
        let e: StepEntry = serde_json::from_value(json!({"check": {"json": true}, "where": {"meta": {"task": "json"}}})).unwrap();
        assert!(matches!(e.step, Step::Check(_)) && e.selector.is_some());
        let e: StepEntry = serde_json::from_value(json!({"dedup": {}})).unwrap();
        assert!(e.selector.is_none());
        assert!(serde_json::from_value::<StepEntry>(json!({"check": {}, "where": {"nope": 1}})).is_err());
        let schema = serde_json::to_value(schemars::schema_for!(StepEntry)).unwrap();
        let branches = schema["oneOf"].as_array().unwrap();
        assert!(branches.iter().all(|b| b["properties"].get("where").is_some()), "{schema}");
    }
}
