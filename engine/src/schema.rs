//! JSON Schemas generated from the config types, and validation against them.
//!
//! The Rust config types are the single source of truth: each stage's config
//! derives `JsonSchema`, the pipeline schema is composed from the pipeline
//! header type plus one `if kind == X then <X's schema>` branch per registered
//! stage kind, and the same composed schema is what editors use (through the
//! `# yaml-language-server: $schema=` line) and what [`validate`] checks.
//! Errors from the `jsonschema` crate are turned into [`Diagnostic`]s that
//! point at the key or value in the YAML source, name the dotted path, and
//! suggest near-miss keys.

use std::collections::BTreeMap;

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::config::PipelineHeader;
use crate::diag::{Diagnostic, did_you_mean};
use crate::stage::Registry;
use crate::yaml::{SpanMap, escape};

/// The JSON Schema (draft 2020-12) of a config type, with `Option`'s `null`
/// alternative removed: in pipeline files an optional key is left out, not
/// set to `null`, and plain schemas give clearer errors than `anyOf`.
pub fn schema_for<T: JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>();
    let mut v = schema.to_value();
    drop_null_alternatives(&mut v);
    v
}

fn drop_null_alternatives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let t = types.remove(0);
                    map.insert("type".into(), t);
                }
            }
            for key in ["anyOf", "oneOf"] {
                let single = match map.get_mut(key) {
                    Some(Value::Array(alts)) => {
                        alts.retain(|a| a.get("type") != Some(&json!("null")));
                        (alts.len() == 1).then(|| alts.remove(0))
                    }
                    _ => None,
                };
                if let Some(Value::Object(inner)) = single {
                    map.remove(key);
                    for (k, val) in inner {
                        map.entry(k).or_insert(val);
                    }
                }
            }
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            map.values_mut().for_each(drop_null_alternatives);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_alternatives),
        _ => {}
    }
}

/// The schema of one stage kind as it appears in a pipeline file: its config
/// schema plus the `kind` discriminator.
pub fn stage_schema(registry: &Registry, kind: &str) -> Option<Value> {
    let stage = registry.get(kind)?;
    let mut s = stage.schema();
    if let Value::Object(map) = &mut s {
        map.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        let props = map.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(props) = props {
            let mut with_kind = Map::new();
            with_kind.insert("kind".into(), json!({"const": kind, "description": stage.about()}));
            with_kind.extend(std::mem::take(props));
            let mut res = schema_for::<crate::resources::Resources>();
            if let Value::Object(r) = &mut res {
                r.remove("$schema");
                r.insert("title".into(), json!("Resources"));
                r.insert(
                    "description".into(),
                    json!("What this stage asks of a cluster (the Slurm executor); ignored by the local executor. Never part of the fingerprint."),
                );
            }
            with_kind.insert("resources".into(), res);
            *props = with_kind;
        }
        let req = map.entry("required").or_insert_with(|| json!([]));
        if let Value::Array(req) = req {
            req.insert(0, json!("kind"));
        }
        map.insert("title".into(), json!(format!("{kind} stage")));
    }
    Some(s)
}

/// The whole pipeline schema: header plus every registered stage kind.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut root = schema_for::<PipelineHeader>();
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for kind in registry.names() {
        let Some(mut s) = stage_schema(registry, kind) else { continue };
        // Move the stage's own definitions into the root, prefixed by kind so
        // two stages may both have a type called `Source`.
        if let Some(Value::Object(own)) = s.as_object_mut().and_then(|m| m.remove("$defs")) {
            for (name, mut def) in own {
                prefix_refs(&mut def, kind);
                defs.insert(format!("{kind}.{name}"), def);
            }
        }
        prefix_refs(&mut s, kind);
        if let Value::Object(m) = &mut s {
            m.remove("$schema");
        }
        defs.insert(format!("stage.{kind}"), s);
        branches.push(json!({
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"$ref": format!("#/$defs/stage.{kind}")}
        }));
    }
    let stage = json!({
        "type": "object",
        "description": "One stage. `kind` picks what it does; the other keys configure it.",
        "required": ["kind"],
        "properties": {"kind": {"enum": registry.names(), "description": "The stage kind."}},
        "allOf": branches,
    });
    if let Some(stages) = root.pointer_mut("/properties/stages") {
        stages["additionalProperties"] = stage;
        stages["propertyNames"] = json!({"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"});
    }
    if let Value::Object(m) = &mut root {
        let own = m.entry("$defs").or_insert_with(|| json!({}));
        if let Value::Object(own) = own {
            own.extend(defs);
        }
        m.insert("title".into(), json!("Tailor pipeline"));
    }
    root
}

fn prefix_refs(v: &mut Value, kind: &str) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/$defs/{kind}.{name}");
                } else if r == "#" {
                    *r = format!("#/$defs/stage.{kind}");
                }
            }
            map.values_mut().for_each(|c| prefix_refs(c, kind));
        }
        Value::Array(items) => items.iter_mut().for_each(|c| prefix_refs(c, kind)),
        _ => {}
    }
}

/// Validate a document against a schema, returning every error as a
/// diagnostic that points into the source.
pub fn validate(schema: &Value, doc: &Value, spans: &SpanMap) -> Vec<Diagnostic> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => return vec![Diagnostic::error(format!("internal error: the pipeline schema does not compile: {e}"))],
    };
    let mut out = Vec::new();
    for err in validator.iter_errors(doc) {
        convert(&err, schema, doc, spans, &mut out);
    }
    out.sort_by_key(|d| d.span);
    out.dedup();
    out
}

/// Dotted display of a JSON pointer: `/stages/tuned/lora/r` → `stages.tuned.lora.r`.
pub fn dotted(pointer: &str) -> String {
    let segs: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    if segs.is_empty() { "the pipeline".to_string() } else { segs.join(".") }
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 { format!("{}…", s.chars().take(39).collect::<String>()) } else { s }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn expected_type(kind: &TypeKind) -> String {
    let name = |t: String| match t.as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "integer" => "an integer".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        TypeKind::Single(t) => name(t.to_string()),
        TypeKind::Multiple(ts) => ts.into_iter().map(|t| name(t.to_string())).collect::<Vec<_>>().join(" or "),
    }
}

/// Follow a schema path (keyword location) from the root, resolving local
/// `$ref`s, to find the schema node an error came from.
fn schema_node<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    let segs: Vec<String> = path.split('/').skip(1).map(unescape).collect();
    for seg in segs.iter().take(segs.len().saturating_sub(1)) {
        if seg == "$ref" {
            let r = cur.get("$ref")?.as_str()?;
            cur = root.pointer(r.strip_prefix('#')?)?;
            continue;
        }
        cur = match cur {
            Value::Object(m) => m.get(seg.as_str())?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn convert(err: &ValidationError<'_>, schema: &Value, doc: &Value, spans: &SpanMap, out: &mut Vec<Diagnostic>) {
    let ptr = err.instance_path().as_str().to_string();
    let at = dotted(&ptr);
    let instance = doc.pointer(&ptr).unwrap_or(&Value::Null);
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let node = schema_node(schema, err.schema_path().as_str());
            let known: Vec<&str> =
                node.and_then(|n| n.get("properties")).and_then(Value::as_object).map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
            for key in unexpected {
                let key_ptr = format!("{ptr}/{}", escape(key));
                let mut d = Diagnostic::error(format!("unknown key `{key}` in `{at}`")).at(spans.key(&key_ptr)).label("not a known key here");
                d = match did_you_mean(key, known.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None if !known.is_empty() => d.help(format!("known keys: {}", known.join(", "))),
                    None => d,
                };
                out.push(d);
            }
        }
        ValidationErrorKind::Required { property } => {
            let p = property.as_str().unwrap_or_default();
            let mut d = Diagnostic::error(format!("missing required key `{p}` in `{at}`")).at(spans.key(&ptr)).label(format!("`{p}` is required here"));
            if let Some(desc) = schema_node(schema, err.schema_path().as_str())
                .and_then(|n| n.pointer(&format!("/properties/{}/description", escape(p))))
                .and_then(Value::as_str)
            {
                d = d.help(format!("`{p}`: {}", first_line(desc)));
            }
            out.push(d);
        }
        ValidationErrorKind::Type { kind } => {
            out.push(
                Diagnostic::error(format!("`{at}` must be {}, found {} `{}`", expected_type(kind), type_name(instance), short(instance)))
                    .at(spans.node(&ptr, instance))
                    .label(format!("expected {}", expected_type(kind))),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<String> =
                options.as_array().map(|a| a.iter().map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string)).collect()).unwrap_or_default();
            let mut d = Diagnostic::error(format!("`{at}` has an unknown value {}", short(instance)))
                .at(spans.node(&ptr, instance))
                .label(format!("expected one of: {}", opts.join(", ")));
            if let Some(s) = instance.as_str().and_then(|w| did_you_mean(w, opts.iter().map(String::as_str))) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            out.push(d);
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let keyword = if matches!(err.kind(), ValidationErrorKind::AnyOf { .. }) { "anyOf" } else { "oneOf" };
            let alts: Vec<&Value> = schema_node(schema, err.schema_path().as_str())
                .and_then(|n| n.get(keyword))
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|alt| deref(schema, alt)).collect())
                .unwrap_or_default();
            alternatives(&alts, context, instance, &ptr, &at, schema, doc, spans, out);
        }
        ValidationErrorKind::Minimum { limit } | ValidationErrorKind::Maximum { limit } => {
            let (word, sym) = if matches!(err.kind(), ValidationErrorKind::Minimum { .. }) { ("at least", "≥") } else { ("at most", "≤") };
            out.push(
                Diagnostic::error(format!("`{at}` must be {word} {limit}, found {}", short(instance)))
                    .at(spans.node(&ptr, instance))
                    .label(format!("expected a value {sym} {limit}")),
            );
        }
        ValidationErrorKind::PropertyNames { .. } => {
            // Name the offending key and point at it.
            let valid = |k: &str| {
                k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            let bad = instance.as_object().and_then(|m| m.keys().find(|k| !valid(k)).cloned());
            let (what, span) = match &bad {
                Some(k) => (format!("invalid name `{k}` in `{at}`"), spans.key(&format!("{ptr}/{}", crate::yaml::escape(k)))),
                None => (format!("invalid name in `{at}`"), spans.node(&ptr, instance)),
            };
            out.push(Diagnostic::error(what).at(span).help("stage names start with a letter or `_` and use letters, digits, `_` and `-`"));
        }
        _ => {
            out.push(Diagnostic::error(format!("`{at}`: {err}")).at(spans.node(&ptr, instance)).label(format!(
                "`{}` fails `{}`",
                short(instance),
                err.kind().keyword()
            )));
        }
    }
}

/// The first sentence of a description, on one line.
fn first_line(s: &str) -> String {
    let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.find(". ") {
        Some(i) => one[..=i].to_string(),
        None => one,
    }
}

fn deref<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    v.get("$ref").and_then(Value::as_str).and_then(|r| root.pointer(r.strip_prefix('#')?)).unwrap_or(v)
}

/// Explain a value that matches none of several alternatives: a list of
/// constants reads as an enum; one-key objects (externally tagged enums,
/// like clean steps) are chosen by their key; otherwise the closest
/// alternative's errors are shown.
#[allow(clippy::too_many_arguments)]
fn alternatives(
    alts: &[&Value],
    context: &[Vec<ValidationError<'static>>],
    instance: &Value,
    ptr: &str,
    at: &str,
    schema: &Value,
    doc: &Value,
    spans: &SpanMap,
    out: &mut Vec<Diagnostic>,
) {
    let consts: Vec<String> = alts.iter().filter_map(|a| a.get("const")).map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string)).collect();
    if !alts.is_empty() && consts.len() == alts.len() {
        let mut d = Diagnostic::error(format!("`{at}` has an unknown value {}", short(instance)))
            .at(spans.node(ptr, instance))
            .label(format!("expected one of: {}", consts.join(", ")));
        if let Some(s) = instance.as_str().and_then(|w| did_you_mean(w, consts.iter().map(String::as_str))) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        out.push(d);
        return;
    }
    let tags: Vec<Option<&str>> = alts
        .iter()
        .map(|a| match a.get("required").and_then(Value::as_array).map(Vec::as_slice) {
            Some([one]) => one.as_str(),
            _ => None,
        })
        .collect();
    if let (Value::Object(obj), true) = (instance, !alts.is_empty() && tags.iter().all(Option::is_some)) {
        if let Some(i) = tags.iter().position(|t| t.is_some_and(|t| obj.contains_key(t))) {
            for e in context.get(i).into_iter().flatten() {
                convert(e, schema, doc, spans, out);
            }
            return;
        }
        let names: Vec<&str> = tags.iter().flatten().copied().collect();
        for key in obj.keys() {
            let mut d = Diagnostic::error(format!("unknown key `{key}` in `{at}`"))
                .at(spans.key(&format!("{ptr}/{}", escape(key))))
                .label(format!("expected one of: {}", names.join(", ")));
            if let Some(s) = did_you_mean(key, names.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            out.push(d);
        }
        if obj.is_empty() {
            out.push(Diagnostic::error(format!("`{at}` is empty")).at(spans.node(ptr, instance)).label(format!("expected one of: {}", names.join(", "))));
        }
        return;
    }
    if let Some(best) = context.iter().filter(|c| !c.is_empty()).min_by_key(|c| c.len()) {
        for e in best {
            convert(e, schema, doc, spans, out);
        }
    } else {
        out.push(Diagnostic::error(format!("`{at}` does not match any allowed form")).at(spans.node(ptr, instance)));
    }
}

/// Every schema a binary ships: `pipeline.schema.json` and one per stage kind.
pub fn all_schemas(registry: &Registry) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert("pipeline.schema.json".to_string(), pipeline_schema(registry));
    for kind in registry.names() {
        if let Some(s) = stage_schema(registry, kind) {
            out.insert(format!("stages/{kind}.schema.json"), s);
        }
    }
    out
}
