//! Training checkpoints that resume exactly: the trainable parameters, the
//! optimizer's moments and step counters (`state.safetensors`), and the loop
//! state — step, counters and the log lines written so far (`state.json`).
//! Nothing else is needed, because every random stream is derived from the
//! seed and the step (data order from the seed and the epoch, dropout from
//! the seed and the step), so step N of a resumed run draws exactly what
//! step N of an uninterrupted run draws.
//!
//! A checkpoint is written into `ckpt-NNNNNNNN.tmp/`, fsynced, then renamed
//! to `ckpt-NNNNNNNN/`: a directory with the final name is complete. Older
//! checkpoints are removed once a newer one is in place. A checkpoint also
//! records a key of the job that wrote it and is ignored by any other job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Loop state saved with a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoopState {
    /// Optimizer steps done.
    pub step: usize,
    /// Tokens seen.
    pub tokens: i64,
    /// Loss of the last step.
    pub last_loss: Option<f64>,
    /// Last validation loss.
    pub last_val: Option<f64>,
    /// Lines of `log.jsonl` so far.
    pub log: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    job: String,
    state: LoopState,
}

/// A checkpoint read back.
pub struct Checkpoint {
    /// Loop state.
    pub state: LoopState,
    /// Tensors by name (see [`crate::optim::AdamW::state`]).
    pub tensors: HashMap<String, Tensor>,
    /// Where it was read from.
    pub dir: PathBuf,
}

/// Durability where the filesystem supports it; the bytes are written
/// either way, and a checkpoint that did not reach the disk is ignored on
/// resume (its key or tensors do not read back).
fn fsync(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
}

/// Remove an old or half-written checkpoint. Failing leaves it for the
/// next save to remove; a checkpoint is only ever used when it reads back
/// whole with this job's key.
fn discard(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("warning: could not remove {}: {e}", dir.display());
    }
}

/// Write a checkpoint for `job` (a key identifying the job) into `root`.
pub fn save(root: &Path, job: &str, state: &LoopState, tensors: &[(String, Tensor)]) -> Result<PathBuf, String> {
    let name = format!("ckpt-{:08}", state.step);
    let tmp = root.join(format!("{name}.tmp"));
    let dir = root.join(&name);
    discard(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, tmp.join("state.safetensors")).map_err(|e| format!("writing checkpoint tensors: {e}"))?;
    let meta = serde_json::to_vec(&Saved { job: job.to_string(), state: state.clone() }).map_err(|e| e.to_string())?;
    std::fs::write(tmp.join("state.json"), meta).map_err(|e| format!("writing checkpoint state: {e}"))?;
    fsync(&tmp.join("state.safetensors"));
    fsync(&tmp.join("state.json"));
    discard(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| format!("renaming checkpoint: {e}"))?;
    fsync(root);
    // Older checkpoints (and any half-written one) go once this one is in place.
    for old in list(root) {
        if old != dir {
            discard(&old);
        }
    }
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            discard(&e.path());
        }
    }
    Ok(dir)
}

fn list(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ckpt-") && !n.ends_with(".tmp")))
        .collect();
    v.sort();
    v
}

/// The newest complete checkpoint of `job` in `root`, if any.
pub fn latest(root: &Path, job: &str) -> Result<Option<Checkpoint>, String> {
    for dir in list(root).into_iter().rev() {
        let Ok(bytes) = std::fs::read(dir.join("state.json")) else { continue };
        let Ok(saved) = serde_json::from_slice::<Saved>(&bytes) else { continue };
        if saved.job != job {
            continue;
        }
        let tensors = Tensor::read_safetensors(dir.join("state.safetensors")).map_err(|e| format!("{}: {e}", dir.display()))?.into_iter().collect();
        return Ok(Some(Checkpoint { state: saved.state, tensors, dir }));
    }
    Ok(None)
}
