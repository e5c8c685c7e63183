//! Binding a stage to what it reads: the digests its upstream stages
//! produced and its external files, the fingerprint they make, and what
//! the store holds for it. `plan`, `cached_lock` and `run` all walk the DAG
//! through a [`Resolver`]; they differ only in what they do with the answer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::digest::StatCache;
use crate::exec::{EngineError, io_err};
use crate::fingerprint::{DirtyReason, ENGINE_CACHE_VERSION, Fingerprint, StageRecord, diff};
use crate::lockfile::Lock;
use crate::pipeline::{Pipeline, StageNode};
use crate::store::Damage;
use crate::workspace::Workspace;

/// A stage bound to the results known so far.
pub(crate) struct Bound {
    /// Its fingerprint (unknown inputs are empty digests).
    pub fp: Fingerprint,
    /// The fingerprint's digest: the key of its result in the store.
    pub digest: String,
    /// Input roles whose producing stage has no known result yet.
    pub unknown: Vec<String>,
    /// The stages those roles wait for.
    pub waiting: BTreeSet<String>,
}

/// Digests of external files, and the outputs of the stages whose results
/// are known, for binding stages one after another in DAG order.
pub(crate) struct Resolver<'a> {
    ws: &'a Workspace,
    files: BTreeMap<String, BTreeMap<String, String>>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    cache: StatCache,
}

impl<'a> Resolver<'a> {
    /// Hash the external files of `names` (through the stat cache).
    pub fn new(p: &Pipeline, ws: &'a Workspace, names: &[String]) -> Result<Self, EngineError> {
        let mut cache = ws.stat_cache();
        let files = file_digests(p, ws, names, &mut cache)?;
        Ok(Resolver { ws, files, outputs: BTreeMap::new(), cache })
    }

    /// Bind a stage's inputs to the known upstream results and fingerprint it.
    pub fn bind(&self, s: &StageNode) -> Bound {
        let mut inputs = BTreeMap::new();
        let mut unknown = Vec::new();
        let mut waiting = BTreeSet::new();
        for b in &s.inputs {
            match self.outputs.get(&b.stage).and_then(|o| o.get(&b.output)) {
                Some(d) => {
                    inputs.insert(b.role.clone(), d.clone());
                }
                None => {
                    inputs.insert(b.role.clone(), String::new());
                    unknown.push(b.role.clone());
                    waiting.insert(b.stage.clone());
                }
            }
        }
        let fp = fingerprint(s, inputs, self.files.get(&s.name).cloned().unwrap_or_default());
        let digest = fp.digest();
        Bound { fp, digest, unknown, waiting }
    }

    /// What the store holds for a bound stage (nothing while inputs are
    /// unknown). With `repair`, damaged objects are removed.
    pub fn lookup(&mut self, b: &Bound, repair: bool) -> Lookup {
        if !b.unknown.is_empty() {
            return Lookup::Miss;
        }
        lookup(self.ws, &b.digest, &mut self.cache, repair)
    }

    /// A stage's result is known: its dependents bind to these outputs.
    pub fn known(&mut self, name: &str, outputs: BTreeMap<String, String>) {
        self.outputs.insert(name.to_string(), outputs);
    }

    /// Keep what was hashed for the next command.
    pub fn save(&mut self) {
        if let Err(e) = self.cache.save() {
            tracing::warn!("could not save the stat cache: {e}");
        }
    }
}

/// Digests of every external file of the given stages, in one parallel batch.
fn file_digests(p: &Pipeline, ws: &Workspace, names: &[String], cache: &mut StatCache) -> Result<BTreeMap<String, BTreeMap<String, String>>, EngineError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for n in names {
        if let Some(s) = p.stage(n) {
            paths.extend(s.prepared.spec().files.iter().map(|f| ws.root.join(&f.path)));
        }
    }
    // Sort by bytes: PathBuf's component-wise ordering is slow on 10k paths.
    paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    paths.dedup();
    let digests = cache.digest_many(&paths).map_err(io_err("hashing input files"))?;
    let by_path: std::collections::HashMap<std::ffi::OsString, String> = paths.into_iter().map(PathBuf::into_os_string).zip(digests).collect();
    let mut out = BTreeMap::new();
    for n in names {
        let Some(s) = p.stage(n) else { continue };
        let files = s
            .prepared
            .spec()
            .files
            .iter()
            .map(|f| (f.path.display().to_string(), by_path.get(ws.root.join(&f.path).as_os_str()).cloned().unwrap_or_default()))
            .collect();
        out.insert(n.clone(), files);
    }
    Ok(out)
}

fn fingerprint(s: &StageNode, inputs: BTreeMap<String, String>, files: BTreeMap<String, String>) -> Fingerprint {
    Fingerprint {
        engine: ENGINE_CACHE_VERSION,
        kind: s.kind.clone(),
        version: s.version,
        implementation: s.implementation.clone(),
        config: s.config.clone(),
        inputs,
        files,
        env: s.prepared.spec().env.clone(),
    }
}

pub(crate) fn read_record(ws: &Workspace, fp: &str) -> Option<StageRecord> {
    let bytes = std::fs::read(ws.store.record_path(fp)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What the store holds for a fingerprint.
pub(crate) enum Lookup {
    /// A record whose outputs are all present and intact.
    Hit(Box<StageRecord>),
    /// No record, or outputs gone (garbage-collected, deleted).
    Miss,
    /// A record whose outputs are damaged: recompute.
    Damaged(String),
}

/// A usable cached record: present, and every output in the store with
/// the content its digest names (checked through the stat cache: files
/// written since they were hashed are hashed again). With `repair`, the
/// damaged objects are removed so that the rerun restores them.
fn lookup(ws: &Workspace, fp: &str, cache: &mut StatCache, repair: bool) -> Lookup {
    let Some(rec) = read_record(ws, fp) else { return Lookup::Miss };
    for d in rec.outputs.values() {
        match ws.store.check_artifact(d, Some(cache)) {
            Ok(_) => {}
            Err(Damage::Missing(_)) => return Lookup::Miss,
            Err(Damage::Corrupt { message, objects }) => {
                if repair {
                    ws.store.quarantine(&objects);
                }
                return Lookup::Damaged(message);
            }
        }
    }
    Lookup::Hit(Box::new(rec))
}

impl Lookup {
    /// The usable record, or why there is none: `Some(message)` when the
    /// cached result was damaged.
    pub fn split(self) -> (Option<StageRecord>, Option<String>) {
        match self {
            Lookup::Hit(r) => (Some(*r), None),
            Lookup::Miss => (None, None),
            Lookup::Damaged(m) => (None, Some(m)),
        }
    }
}

/// Reasons relative to the lock file's record of the same stage.
pub(crate) fn reasons_vs_lock(ws: &Workspace, lock: &Lock, name: &str, new: &Fingerprint, unknown: &[String]) -> Vec<DirtyReason> {
    let old = lock.stages.get(name).and_then(|l| read_record(ws, &l.fingerprint));
    match old {
        None => vec![DirtyReason::NeverRun],
        Some(old) => {
            let r = diff(&old.inputs, new, unknown);
            if r.is_empty() && unknown.is_empty() { vec![DirtyReason::OutputsMissing] } else { r }
        }
    }
}
