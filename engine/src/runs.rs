//! Run records: one JSON file per `tailor run` in the store's `runs/`
//! folder — what each stage did, the fingerprints and metrics, and the
//! lock the run wrote — so `tailor runs` can list them and `tailor compare
//! run:-1 run:-2` can compare any two.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exec::{Outcome, RunSummary};
use crate::lockfile::Lock;
use crate::pipeline::Pipeline;
use crate::store::{dirs, write_atomic};
use crate::workspace::Workspace;

/// What one `tailor run` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Pipeline name.
    pub pipeline: String,
    /// Parameters as the run used them (overrides applied).
    pub params: BTreeMap<String, Value>,
    /// The pipeline file.
    pub file: String,
    /// Unix seconds when the run ended.
    pub created: u64,
    /// Outcome per selected stage, in execution order.
    pub stages: Vec<(String, Outcome)>,
    /// Fingerprint per stage in the lock.
    pub fingerprints: BTreeMap<String, String>,
    /// Headline metrics per stage in the lock.
    pub metrics: BTreeMap<String, BTreeMap<String, Value>>,
    /// The lock file the run wrote.
    pub lock: Lock,
}

impl RunRecord {
    /// The record of a finished run.
    pub fn new(p: &Pipeline, summary: &RunSummary, lock: &Lock, created: u64) -> RunRecord {
        RunRecord {
            pipeline: p.header.name.clone(),
            params: p.header.params.clone(),
            file: p.file.display().to_string(),
            created,
            stages: summary.stages.clone(),
            fingerprints: lock.stages.iter().map(|(n, s)| (n.clone(), s.fingerprint.clone())).collect(),
            metrics: lock.stages.iter().map(|(n, s)| (n.clone(), s.metrics.clone())).collect(),
            lock: lock.clone(),
        }
    }

    /// How many stages ended in each status (`cached`, `ran`, `failed`, …).
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for (_, o) in &self.stages {
            *out.entry(o.status()).or_insert(0) += 1;
        }
        out
    }
}

/// A run record found in the store.
#[derive(Debug)]
pub struct RecordedRun {
    /// `CREATED-PID`, the file's stem.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// The record, or why it cannot be read (damaged, or from a Tailor
    /// whose records had another shape).
    pub record: Result<RunRecord, String>,
}

impl Workspace {
    /// Every recorded run, oldest first.
    pub fn runs(&self) -> std::io::Result<Vec<RecordedRun>> {
        let dir = self.store.root().join(dirs::RUNS);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        files.retain(|f| f.extension().is_some_and(|x| x == "json"));
        // `CREATED-PID`: numeric order of the creation time, then the pid.
        files.sort_by_key(|f| {
            let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let (t, pid) = stem.split_once('-').unwrap_or((&stem, ""));
            (t.parse::<u64>().unwrap_or(u64::MAX), pid.parse::<u64>().unwrap_or(u64::MAX), stem.clone())
        });
        Ok(files
            .into_iter()
            .map(|path| {
                let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let record = std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
                RecordedRun { id, path, record }
            })
            .collect())
    }

    /// Keep the record of a run (`runs/CREATED-PID.json`).
    pub fn record_run(&self, rec: &RunRecord) -> std::io::Result<PathBuf> {
        let path = self.store.root().join(dirs::RUNS).join(format!("{}-{}.json", rec.created, std::process::id()));
        let bytes = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
        write_atomic(&path, &bytes)?;
        Ok(path)
    }
}
