//! The pipeline file's top level, command-line overrides and `${params.x}`.
//!
//! Overrides are applied to the parsed document *before* validation, so an
//! override is checked exactly like a value written in the file, and the
//! resolved values — not the templates — are what gets fingerprinted and
//! recorded. `-p lr=1e-4` changes a declared parameter; `--set
//! stages.tuned.lr=1e-4` changes any key. Values are read as YAML, so `1e-4`
//! is a number and `[a, b]` a list.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diag::{Diagnostic, did_you_mean};
use crate::yaml::{Document, escape};

/// The top level of a pipeline file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineHeader {
    /// Pipeline file format version. Always `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Short name of the pipeline, recorded in the lock file and reports.
    pub name: String,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameters, referenced from stages as `"${params.NAME}"` and
    /// overridable with `tailor run -p NAME=VALUE`.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Files that stages read from outside the project directory (absolute
    /// paths, `..`, symlinks leading out): `warn` (default), `allow` or `deny`.
    #[serde(default)]
    pub outside_paths: crate::paths::OutsidePaths,
    /// Where stages run: `local` (default: processes on this machine) or
    /// `slurm` (one `sbatch` job per stage, chained by dependencies; the
    /// store must be on a filesystem every node sees). `tailor run
    /// --executor` overrides it.
    #[serde(default)]
    pub executor: Executor,
    /// A shared cache: `s3://bucket/prefix` (with `endpoint`/`region` for
    /// S3-compatible servers) or a directory every user sees. `tailor run`
    /// looks a stage up there before computing it; `tailor push`/`pull`
    /// move results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<crate::remote::RemoteConfig>,
    /// The stages, by name. Each has a `kind` (collect, clean, format, train,
    /// evaluate, retrain) and that kind's settings. Stages refer to each
    /// other's outputs by name (`input: raw`, `data: formatted.validation`).
    pub stages: BTreeMap<String, Value>,
}

/// Where stages run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// Processes on this machine, up to `--jobs` at a time.
    #[default]
    Local,
    /// One Slurm job per stage (`sbatch`), chained with `--dependency=afterok`.
    Slurm,
}

/// Command-line changes to a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-p NAME=VALUE`: set a declared parameter.
    pub params: Vec<(String, String)>,
    /// `--set dotted.path=VALUE`: set any key.
    pub sets: Vec<(String, String)>,
}

impl Overrides {
    /// Parse `NAME=VALUE` pairs.
    pub fn parse_pair(s: &str) -> Result<(String, String), String> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("expected NAME=VALUE, got `{s}`")),
        }
    }
}

fn yaml_value(text: &str) -> Value {
    crate::yaml::parse(text).map(|d| d.value).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Apply overrides to a parsed document; problems become diagnostics.
pub fn apply_overrides(doc: &mut Document, ov: &Overrides) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    for (name, raw) in &ov.params {
        let params = doc.value.get_mut("params").and_then(Value::as_object_mut);
        match params {
            Some(p) if p.contains_key(name) => {
                p.insert(name.clone(), yaml_value(raw));
            }
            p => {
                let known: Vec<String> = p.map(|p| p.keys().cloned().collect()).unwrap_or_default();
                let mut d = Diagnostic::error(format!("`-p {name}={raw}`: the pipeline declares no parameter `{name}`"));
                d = match did_you_mean(name, known.iter().map(String::as_str)) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("declared parameters: {}", if known.is_empty() { "none".into() } else { known.join(", ") })),
                };
                errs.push(d.help("use `--set stages.NAME.KEY=VALUE` to change a stage setting directly"));
            }
        }
    }
    for (path, raw) in &ov.sets {
        if let Err(why) = set_path(&mut doc.value, path, yaml_value(raw)) {
            errs.push(Diagnostic::error(format!("`--set {path}={raw}`: {why}")));
        }
    }
    errs
}

fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err("the path has an empty segment".into());
    }
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        cur = match cur {
            Value::Object(m) => {
                if last {
                    m.insert((*seg).to_string(), value);
                    return Ok(());
                }
                m.entry((*seg).to_string()).or_insert_with(|| Value::Object(Default::default()))
            }
            Value::Array(a) => {
                let idx: usize = seg.parse().map_err(|_| format!("`{seg}` is not a list index"))?;
                let len = a.len();
                let slot = a.get_mut(idx).ok_or_else(|| format!("index {idx} is past the end of a list of {len}"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => return Err(format!("`{}` is not a mapping or list", segs[..i].join("."))),
        };
    }
    Ok(())
}

/// Replace `${params.NAME}` in every stage value. A string that is exactly
/// one reference takes the parameter's value and type; references inside
/// longer strings are spliced in as text. Returns diagnostics and the set of
/// parameters that were used.
pub fn resolve_params(doc: &mut Document) -> (Vec<Diagnostic>, BTreeSet<String>) {
    let params = doc.value.get("params").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut used = BTreeSet::new();
    let mut errs = Vec::new();
    if let Some(stages) = doc.value.get_mut("stages") {
        walk(stages, "/stages", &mut |ptr, s| {
            let mut out = String::new();
            let mut rest = s;
            let mut whole = None;
            while let Some(start) = rest.find("${") {
                let Some(len) = rest[start..].find('}') else { break };
                let expr = rest[start + 2..start + len].trim();
                out.push_str(&rest[..start]);
                let name = expr.strip_prefix("params.").unwrap_or("");
                match params.get(name) {
                    Some(v) if !name.is_empty() => {
                        used.insert(name.to_string());
                        if start == 0 && start + len + 1 == rest.len() && out.is_empty() {
                            whole = Some(v.clone());
                        }
                        match v {
                            Value::String(t) => out.push_str(t),
                            other => out.push_str(&other.to_string()),
                        }
                    }
                    _ => {
                        let mut d = Diagnostic::error(format!("`${{{expr}}}` does not resolve")).at(doc.spans.value(ptr)).label("unknown parameter");
                        d = if expr.starts_with("params.") {
                            match did_you_mean(name, params.keys().map(String::as_str)) {
                                Some(s) => d.help(format!("did you mean `${{params.{s}}}`?")),
                                None => d.help(format!("declare `{name}` under `params:`")),
                            }
                        } else {
                            d.help("only `${params.NAME}` references are supported")
                        };
                        errs.push(d);
                    }
                }
                rest = &rest[start + len + 1..];
            }
            if let Some(v) = whole {
                return Some(v);
            }
            out.push_str(rest);
            (out != s).then_some(Value::String(out))
        });
    }
    (errs, used)
}

fn walk(v: &mut Value, ptr: &str, f: &mut dyn FnMut(&str, &str) -> Option<Value>) {
    match v {
        Value::String(s) if s.contains("${") => {
            if let Some(new) = f(ptr, s) {
                *v = new;
            }
        }
        Value::Object(m) => {
            for (k, c) in m.iter_mut() {
                walk(c, &format!("{ptr}/{}", escape(k)), f);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter_mut().enumerate() {
                walk(c, &format!("{ptr}/{i}"), f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(src: &str) -> Document {
        crate::yaml::parse(src).unwrap()
    }

    #[test]
    fn params_keep_type_when_whole() {
        let mut d = doc("params: {lr: 2.0e-4, tag: v1}\nstages:\n  a: {lr: '${params.lr}', name: 'run-${params.tag}'}\n");
        let (errs, used) = resolve_params(&mut d);
        assert!(errs.is_empty());
        assert_eq!(d.value["stages"]["a"], json!({"lr": 0.0002, "name": "run-v1"}));
        assert_eq!(used.len(), 2);
    }

    #[test]
    fn unknown_param_suggests() {
        let mut d = doc("params: {lr: 1}\nstages:\n  a: {lr: '${params.lrr}'}\n");
        let (errs, _) = resolve_params(&mut d);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].span.unwrap().line, 3);
        assert!(errs[0].help[0].contains("params.lr"));
    }

    #[test]
    fn overrides() {
        let mut d = doc("params: {lr: 1}\nstages:\n  a: {x: 1, l: [1, 2]}\n");
        let ov =
            Overrides { params: vec![("lr".into(), "1e-4".into())], sets: vec![("stages.a.x".into(), "[a, b]".into()), ("stages.a.l.1".into(), "5".into())] };
        assert!(apply_overrides(&mut d, &ov).is_empty());
        assert_eq!(d.value["params"]["lr"], json!(0.0001));
        assert_eq!(d.value["stages"]["a"], json!({"x": ["a", "b"], "l": [1, 5]}));
        let bad = Overrides { params: vec![("lrr".into(), "1".into())], sets: vec![("stages.a.x.y".into(), "1".into())] };
        let errs = apply_overrides(&mut d, &bad);
        assert_eq!(errs.len(), 2);
    }
}
