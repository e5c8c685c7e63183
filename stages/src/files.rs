//! Small JSON files a stage writes beside its outputs (`stats.json`,
//! `manifest.json`, `train.json`, …) and reads back from its inputs, with
//! errors that name the file.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tailor_engine::{IoContext, StageError};

/// Write pretty JSON.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<(), StageError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| StageError::msg(format!("serialising {}: {e}", path.display())))?;
    let mut f = std::fs::File::create(path).ctx(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes()).ctx(|| format!("writing {}", path.display()))
}

/// Read `name` in `dir` (one of an artifact's bookkeeping files).
pub fn read_record<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<T, StageError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StageError::msg(format!("{}: {e} (the artifact is damaged or from an older Tailor; rerun its stage)", path.display())))
}
