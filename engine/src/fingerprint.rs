//! Stage fingerprints: what a stage's result depends on, and why it reruns.
//!
//! | field            | what feeds it                                        |
//! |------------------|------------------------------------------------------|
//! | `engine`         | the engine's cache format version                    |
//! | `kind`, `version`| stage kind and its manual implementation version     |
//! | `implementation` | digest of the stage kind's code (build time)          |
//! | `config`         | the resolved config (params and overrides applied)   |
//! | `inputs`         | digest of every upstream artifact, by input role     |
//! | `files`          | digest of every external file or directory it reads  |
//! | `env`            | environment that changes results (declared by stage) |
//!
//! The fingerprint is the BLAKE3 of the canonical JSON of this struct (keys
//! sorted, no whitespace). The full struct is kept in the stage record beside
//! the outputs so that the next plan can say *why* a stage is dirty: each
//! difference becomes one [`DirtyReason`] that prints as one line, in the
//! manner of cargo's dirty reasons.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::hash_bytes;

/// Bumped when the store or fingerprint layout changes.
pub const ENGINE_CACHE_VERSION: u32 = 2;

/// Everything a stage's output depends on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fingerprint {
    /// Engine cache format version.
    pub engine: u32,
    /// Stage kind.
    pub kind: String,
    /// Stage implementation version.
    pub version: u32,
    /// Stage implementation identity (manual version + code digest).
    #[serde(default)]
    pub implementation: String,
    /// Resolved configuration.
    pub config: Value,
    /// Input role → artifact digest.
    pub inputs: BTreeMap<String, String>,
    /// External path (relative to the project) → digest.
    pub files: BTreeMap<String, String>,
    /// Relevant environment.
    pub env: BTreeMap<String, String>,
}

impl Fingerprint {
    /// The fingerprint's digest.
    pub fn digest(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        hash_bytes(canonical(&v).as_bytes())
    }
}

/// Canonical JSON: object keys sorted, no whitespace.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let body: Vec<String> = keys.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k]))).collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The record stored for a stage result, found by fingerprint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    /// Digest of `inputs`.
    pub fingerprint: String,
    /// What the result depends on.
    pub inputs: Fingerprint,
    /// Output name → artifact digest.
    pub outputs: BTreeMap<String, String>,
    /// Headline metrics.
    #[serde(default)]
    pub metrics: BTreeMap<String, Value>,
    /// Seconds the stage took.
    #[serde(default)]
    pub seconds: f64,
    /// Unix time the record was written.
    #[serde(default)]
    pub created: u64,
    /// The stage's check on its results, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::stage::Check>,
}

/// Why a stage must run.
#[derive(Debug, Clone, PartialEq)]
pub enum DirtyReason {
    /// Never run with any recorded result.
    NeverRun,
    /// `--force`.
    Forced,
    /// A config value changed.
    Config {
        /// Dotted key path.
        path: String,
        /// Old value (`None`: added).
        old: Option<Value>,
        /// New value (`None`: removed).
        new: Option<Value>,
    },
    /// An upstream artifact changed.
    Input {
        /// Input role.
        role: String,
    },
    /// An external file changed, appeared or disappeared.
    File {
        /// The path.
        path: String,
        /// What happened.
        change: &'static str,
    },
    /// The stage implementation changed.
    Version {
        /// Old version.
        old: u32,
        /// New version.
        new: u32,
    },
    /// The stage kind's code changed (same manual version).
    Implementation {
        /// Old identity.
        old: String,
        /// New identity.
        new: String,
    },
    /// The engine's cache format changed.
    Engine,
    /// An environment entry changed.
    Env {
        /// Key.
        key: String,
        /// Old value.
        old: Option<String>,
        /// New value.
        new: Option<String>,
    },
    /// The kind of the stage changed.
    Kind {
        /// Old kind.
        old: String,
    },
    /// An upstream stage will run first; the result decides.
    Upstream {
        /// The upstream stage.
        stage: String,
    },
    /// The record exists but its artifacts are gone from the store.
    OutputsMissing,
    /// The record exists but its artifacts are damaged.
    OutputsDamaged(String),
}

fn short(id: &str) -> &str {
    let code = id.rsplit('+').next().unwrap_or(id);
    &code[..code.len().min(8)]
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(unset)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            let s = v.to_string();
            if s.len() > 60 { format!("{}…", &s[..s.char_indices().nth(59).map_or(s.len(), |c| c.0)]) } else { s }
        }
    }
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirtyReason::NeverRun => write!(f, "not cached: no earlier result"),
            DirtyReason::Forced => write!(f, "forced"),
            DirtyReason::Config { path, old: None, new } => write!(f, "{path} set to {}", show(new)),
            DirtyReason::Config { path, old, new: None } => write!(f, "{path} removed (was {})", show(old)),
            DirtyReason::Config { path, old, new } => write!(f, "{path} changed {} → {}", show(old), show(new)),
            DirtyReason::Input { role } => write!(f, "input `{role}` changed"),
            DirtyReason::File { path, change } => write!(f, "{path} {change}"),
            DirtyReason::Version { old, new } => write!(f, "stage implementation changed (v{old} → v{new})"),
            DirtyReason::Implementation { old, new } => write!(f, "stage implementation changed (code {} → {})", short(old), short(new)),
            DirtyReason::Engine => write!(f, "engine cache format changed"),
            DirtyReason::Env { key, old, new } => {
                write!(f, "environment {key} changed {} → {}", old.as_deref().unwrap_or("(unset)"), new.as_deref().unwrap_or("(unset)"))
            }
            DirtyReason::Kind { old } => write!(f, "stage kind changed (was {old})"),
            DirtyReason::Upstream { stage } => write!(f, "upstream `{stage}` will rerun"),
            DirtyReason::OutputsMissing => write!(f, "cached result is no longer in the store"),
            DirtyReason::OutputsDamaged(m) => write!(f, "cached result is damaged ({m}); recomputing it"),
        }
    }
}

/// Every difference between an old and a new fingerprint. Inputs whose
/// digest is not known yet (upstream will rerun) are passed as `None`.
pub fn diff(old: &Fingerprint, new: &Fingerprint, unknown_inputs: &[String]) -> Vec<DirtyReason> {
    let mut out = Vec::new();
    if old.engine != new.engine {
        out.push(DirtyReason::Engine);
    }
    if old.kind != new.kind {
        out.push(DirtyReason::Kind { old: old.kind.clone() });
    } else if old.version != new.version {
        out.push(DirtyReason::Version { old: old.version, new: new.version });
    } else if old.implementation != new.implementation {
        out.push(DirtyReason::Implementation { old: old.implementation.clone(), new: new.implementation.clone() });
    }
    diff_values("", &old.config, &new.config, &mut out);
    for (role, d) in &new.inputs {
        if !unknown_inputs.contains(role) && old.inputs.get(role) != Some(d) {
            out.push(DirtyReason::Input { role: role.clone() });
        }
    }
    for (path, d) in &new.files {
        match old.files.get(path) {
            None => out.push(DirtyReason::File { path: path.clone(), change: "is new" }),
            Some(o) if o != d => out.push(DirtyReason::File { path: path.clone(), change: "changed" }),
            _ => {}
        }
    }
    for path in old.files.keys().filter(|p| !new.files.contains_key(*p)) {
        out.push(DirtyReason::File { path: path.clone(), change: "is no longer read" });
    }
    for key in old.env.keys().chain(new.env.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (o, n) = (old.env.get(key), new.env.get(key));
        if o != n {
            out.push(DirtyReason::Env { key: key.clone(), old: o.cloned(), new: n.cloned() });
        }
    }
    out
}

fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<DirtyReason>) {
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_values(&join(k), x, y, out),
                    (x, y) => out.push(DirtyReason::Config { path: join(k), old: x.cloned(), new: y.cloned() }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&join(&i.to_string()), x, y, out);
            }
        }
        (a, b) if a != b => {
            out.push(DirtyReason::Config { path: if path.is_empty() { "config".into() } else { path.to_string() }, old: Some(a.clone()), new: Some(b.clone()) })
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fp(config: Value) -> Fingerprint {
        Fingerprint {
            engine: 1,
            kind: "train".into(),
            version: 1,
            implementation: "v1+abc".into(),
            config,
            inputs: BTreeMap::new(),
            files: BTreeMap::new(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn digest_ignores_key_order() {
        let a = fp(json!({"a": 1, "b": {"c": 2, "d": 3}}));
        let b = fp(serde_json::from_str(r#"{"b": {"d": 3, "c": 2}, "a": 1}"#).unwrap());
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), fp(json!({"a": 2})).digest());
    }

    #[test]
    fn reasons_read_as_sentences() {
        let old = fp(json!({"lr": 0.0002, "lora": {"r": 8}}));
        let mut new = fp(json!({"lr": 0.0001, "lora": {"r": 8, "alpha": 16}}));
        new.files.insert("data/x.jsonl".into(), "ab".into());
        let lines: Vec<String> = diff(&old, &new, &[]).iter().map(ToString::to_string).collect();
        assert_eq!(lines, vec!["lora.alpha set to 16", "lr changed 0.0002 → 0.0001", "data/x.jsonl is new"]);
    }
}
