//! `tailor.lock`: the reviewable record of the last successful result of
//! every stage — fingerprint, input and output digests, headline metrics.
//!
//! It is YAML written with `serde-saphyr` from `BTreeMap`s, so keys are
//! sorted and every entry sits on its own line: two runs that produced the
//! same results write byte-identical files, and a diff shows exactly which
//! stage changed. It is rewritten (atomically) after every run; a stage that
//! failed keeps its previous entry.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One stage's locked result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockedStage {
    /// Stage kind.
    pub kind: String,
    /// Fingerprint of everything the result depends on.
    pub fingerprint: String,
    /// Input role → `stage.output@digest`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// External file → digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Output name → artifact digest.
    pub outputs: BTreeMap<String, String>,
    /// Headline metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Value>,
}

/// The whole lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Lock {
    /// Lock format version.
    pub version: u32,
    /// Pipeline name.
    pub pipeline: String,
    /// Resolved parameters of the run that wrote it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// Stages by name.
    #[serde(default)]
    pub stages: BTreeMap<String, LockedStage>,
}

const HEADER: &str = "# tailor.lock: results of the last `tailor run`. Commit it; do not edit it by hand.\n";

impl Lock {
    /// Parse lock-file text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Lock, String> {
        serde_saphyr::from_str(text).map_err(|e| format!("{origin}: cannot read lock file: {e}"))
    }

    /// Read a lock file; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Lock, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_saphyr::from_str(&text).map_err(|e| format!("{}: cannot read lock file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The lock as text.
    pub fn to_yaml(&self) -> Result<String, String> {
        let body = serde_saphyr::to_string(self).map_err(|e| e.to_string())?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Write atomically (and not at all when the file already says the same).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = self.to_yaml()?;
        if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        crate::store::write_atomic(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_is_stable() {
        let mut lock = Lock { version: 1, pipeline: "p".into(), ..Default::default() };
        lock.params.insert("lr".into(), json!(0.0002));
        lock.stages.insert(
            "b".into(),
            LockedStage {
                kind: "collect".into(),
                fingerprint: "ff".into(),
                inputs: BTreeMap::new(),
                files: [("data/x.jsonl".to_string(), "aa".to_string())].into(),
                outputs: [("records".to_string(), "bb".to_string())].into(),
                metrics: [("records".to_string(), json!(3))].into(),
            },
        );
        let text = lock.to_yaml().unwrap();
        let back: Lock = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_yaml().unwrap(), text);
    }
}
