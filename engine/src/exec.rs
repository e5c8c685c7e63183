//! Planning and running: which stages are up to date, which must run and
//! why, and running them in dependency order with up to `jobs` at a time.
//!
//! A stage's fingerprint is computed only when its upstream results are
//! known, from the *actual* digests of those results. So if an upstream stage
//! reruns and produces byte-identical output, its dependents find their
//! fingerprint unchanged and are served from the cache (early cut-off). A
//! failed stage stops its dependents; independent branches finish. Stage
//! panics are caught and reported as failures of that stage.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::digest::StatCache;
use crate::fingerprint::{DirtyReason, ENGINE_CACHE_VERSION, Fingerprint, StageRecord, diff};
use crate::lockfile::{Lock, LockedStage};
use crate::pipeline::{Pipeline, StageNode};
use crate::report::Reporter;
use crate::stage::{ArtifactView, StageContext};
use crate::store::write_atomic;
use crate::workspace::Workspace;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stages to bring up to date (with their upstream); empty = all.
    pub targets: Vec<String>,
    /// Rerun the targets even when cached.
    pub force: bool,
    /// Stages run at the same time.
    pub jobs: usize,
}

/// Planned state of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    /// Stage name.
    pub name: String,
    /// Stage kind.
    pub kind: String,
    /// `up-to-date`, `will-run`, `may-run` (depends on an upstream rerun) or `not-selected`.
    pub status: &'static str,
    /// Fingerprint, when computable.
    pub fingerprint: Option<String>,
    /// Why it runs.
    pub reasons: Vec<String>,
}

/// What happened to one stage in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// Served from the cache.
    Cached {
        /// Fingerprint.
        fingerprint: String,
        /// Upstream reran but produced identical output.
        cutoff: bool,
    },
    /// Ran and succeeded.
    Ran {
        /// Fingerprint.
        fingerprint: String,
        /// Why it ran.
        reasons: Vec<String>,
        /// Wall seconds.
        seconds: f64,
        /// Headline metrics.
        metrics: BTreeMap<String, Value>,
    },
    /// Ran and failed.
    Failed {
        /// The error.
        error: String,
    },
    /// Not run because an upstream stage failed.
    Skipped {
        /// The failed upstream stage.
        because: String,
    },
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Outcome per selected stage, in execution order.
    pub stages: Vec<(String, Outcome)>,
}

impl RunSummary {
    /// True when no stage failed or was skipped.
    pub fn ok(&self) -> bool {
        self.stages.iter().all(|(_, o)| matches!(o, Outcome::Cached { .. } | Outcome::Ran { .. }))
    }

    /// Number of stages that ran.
    pub fn ran(&self) -> usize {
        self.stages.iter().filter(|(_, o)| matches!(o, Outcome::Ran { .. })).count()
    }
}

/// Errors that stop a plan or run as a whole (not a stage failure).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Unknown target stage.
    #[error("no stage named `{0}` in this pipeline")]
    UnknownStage(String),
    /// I/O on the workspace.
    #[error("{0}")]
    Io(String),
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::Io(format!("{what}: {e}"))
}

/// The stages selected by `targets` (and their ancestors), in topological order.
pub fn selection(p: &Pipeline, targets: &[String]) -> Result<Vec<String>, EngineError> {
    let order = p.dag.order();
    if targets.is_empty() {
        return Ok(order);
    }
    let mut keep = BTreeSet::new();
    for t in targets {
        if p.stage(t).is_none() {
            return Err(EngineError::UnknownStage(t.clone()));
        }
        keep.extend(p.dag.ancestors_of(t));
    }
    Ok(order.into_iter().filter(|s| keep.contains(s)).collect())
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
        let files = s.prepared.spec().files.iter().map(|f| (f.path.display().to_string(), by_path.get(ws.root.join(&f.path).as_os_str()).cloned().unwrap_or_default())).collect();
        out.insert(n.clone(), files);
    }
    Ok(out)
}

fn fingerprint(s: &StageNode, inputs: BTreeMap<String, String>, files: BTreeMap<String, String>) -> Fingerprint {
    Fingerprint {
        engine: ENGINE_CACHE_VERSION,
        kind: s.kind.clone(),
        version: s.version,
        config: s.config.clone(),
        inputs,
        files,
        env: s.prepared.spec().env.clone(),
    }
}

fn read_record(ws: &Workspace, fp: &str) -> Option<StageRecord> {
    let bytes = std::fs::read(ws.store.record_path(fp)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A usable cached record: present, and every output still in the store.
fn cached(ws: &Workspace, fp: &str) -> Option<StageRecord> {
    read_record(ws, fp).filter(|r| r.outputs.values().all(|d| ws.store.has_artifact(d)))
}

/// Reasons relative to the lock file's record of the same stage.
fn reasons_vs_lock(ws: &Workspace, lock: &Lock, name: &str, new: &Fingerprint, unknown: &[String]) -> Vec<DirtyReason> {
    let old = lock.stages.get(name).and_then(|l| read_record(ws, &l.fingerprint));
    match old {
        None => vec![DirtyReason::NeverRun],
        Some(old) => {
            let r = diff(&old.inputs, new, unknown);
            if r.is_empty() && unknown.is_empty() { vec![DirtyReason::OutputsMissing] } else { r }
        }
    }
}

/// What `tailor run` would do, and why, without running anything.
pub fn plan(p: &Pipeline, ws: &Workspace, opts: &RunOptions) -> Result<Vec<PlanEntry>, EngineError> {
    let selected = selection(p, &opts.targets)?;
    let lock = ws.lock().map_err(EngineError::Io)?;
    let mut cache = ws.stat_cache();
    let files = file_digests(p, ws, &selected, &mut cache)?;
    let _ = cache.save();
    let forced: BTreeSet<&String> = if opts.force { selected.iter().filter(|s| opts.targets.is_empty() || opts.targets.contains(s)).collect() } else { BTreeSet::new() };
    let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut entries = Vec::new();
    for s in &p.stages {
        if !selected.contains(&s.name) {
            entries.push(PlanEntry { name: s.name.clone(), kind: s.kind.clone(), status: "not-selected", fingerprint: None, reasons: vec![] });
        }
    }
    for name in &selected {
        let Some(s) = p.stage(name) else { continue };
        let mut inputs = BTreeMap::new();
        let mut unknown = Vec::new();
        let mut waiting = BTreeSet::new();
        for b in &s.inputs {
            match outputs.get(&b.stage).and_then(|o| o.get(&b.output)) {
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
        let fp = fingerprint(s, inputs, files.get(name).cloned().unwrap_or_default());
        let digest = fp.digest();
        let hit = if unknown.is_empty() { cached(ws, &digest) } else { None };
        let entry = match hit {
            Some(rec) if !forced.contains(name) => {
                outputs.insert(name.clone(), rec.outputs);
                PlanEntry { name: name.clone(), kind: s.kind.clone(), status: "up-to-date", fingerprint: Some(digest), reasons: vec![] }
            }
            _ => {
                let mut reasons: Vec<DirtyReason> = if forced.contains(name) { vec![DirtyReason::Forced] } else { reasons_vs_lock(ws, &lock, name, &fp, &unknown) };
                reasons.extend(waiting.iter().map(|w| DirtyReason::Upstream { stage: w.clone() }));
                let status = if unknown.is_empty() || reasons.iter().any(|r| !matches!(r, DirtyReason::Upstream { .. })) { "will-run" } else { "may-run" };
                PlanEntry {
                    name: name.clone(),
                    kind: s.kind.clone(),
                    status,
                    fingerprint: unknown.is_empty().then_some(digest),
                    reasons: reasons.iter().map(ToString::to_string).collect(),
                }
            }
        };
        entries.push(entry);
    }
    Ok(entries)
}

struct Job {
    name: String,
    fp: Fingerprint,
    digest: String,
}

/// Run the pipeline.
#[tracing::instrument(skip_all, fields(pipeline = %p.header.name))]
pub fn run(p: &Pipeline, ws: &Workspace, opts: &RunOptions, rep: &Reporter) -> Result<RunSummary, EngineError> {
    let _guard = ws.lock_runs().map_err(io_err("taking the run lock"))?;
    let stale = ws.store.clean_scratch().map_err(io_err("cleaning .tailor/tmp"))?;
    if stale > 0 {
        tracing::info!(stale, "removed leftovers of an interrupted run");
    }
    let selected = selection(p, &opts.targets)?;
    let mut lock = ws.lock().map_err(EngineError::Io)?;
    let mut cache = ws.stat_cache();
    let files = file_digests(p, ws, &selected, &mut cache)?;
    if let Err(e) = cache.save() {
        tracing::warn!("could not save the stat cache: {e}");
    }
    let forced: BTreeSet<String> = if opts.force { selected.iter().filter(|s| opts.targets.is_empty() || opts.targets.contains(s)).cloned().collect() } else { BTreeSet::new() };
    let jobs = opts.jobs.max(1);

    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    for name in &selected {
        let parents: BTreeSet<String> = p.dag.parents(name).into_iter().filter(|x| selected.contains(x)).collect();
        pending.insert(name.clone(), parents.len());
    }
    let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut ran_now: BTreeSet<String> = BTreeSet::new();
    let mut order: Vec<String> = Vec::new();
    let mut ready: Vec<String> = selected.iter().filter(|n| pending[*n] == 0).cloned().collect();
    let mut running = 0usize;
    let mut job_reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (tx, rx) = mpsc::channel::<(String, Result<StageRecord, String>)>();

    std::thread::scope(|scope| {
        loop {
            // Start what can start: cache hits are resolved inline, runs go to threads.
            while !ready.is_empty() {
                let name = ready.remove(0);
                let Some(s) = p.stage(&name) else { continue };
                let inputs: BTreeMap<String, String> = s.inputs.iter().map(|b| (b.role.clone(), outputs.get(&b.stage).and_then(|o| o.get(&b.output)).cloned().unwrap_or_default())).collect();
                let fp = fingerprint(s, inputs, files.get(&name).cloned().unwrap_or_default());
                let digest = fp.digest();
                if !forced.contains(&name) {
                    if let Some(rec) = cached(ws, &digest) {
                        let cutoff = s.inputs.iter().any(|b| ran_now.contains(&b.stage));
                        rep.line(&format!("  cached  {name} ({}){}", s.kind, if cutoff { ": upstream reran with identical output" } else { "" }));
                        outputs.insert(name.clone(), rec.outputs.clone());
                        lock.stages.insert(name.clone(), locked(s, &rec));
                        outcomes.insert(name.clone(), Outcome::Cached { fingerprint: digest, cutoff });
                        order.push(name.clone());
                        release(&name, p, &selected, &mut pending, &mut ready);
                        continue;
                    }
                }
                if running >= jobs {
                    ready.insert(0, name);
                    break;
                }
                let reasons: Vec<String> = if forced.contains(&name) { vec![DirtyReason::Forced.to_string()] } else { reasons_vs_lock(ws, &lock, &name, &fp, &[]).iter().map(ToString::to_string).collect() };
                rep.line(&format!("  run     {name} ({}): {}", s.kind, reasons.join("; ")));
                job_reasons.insert(name.clone(), reasons.clone());
                let job = Job { name: name.clone(), fp, digest };
                let tx = tx.clone();
                let views: Result<BTreeMap<String, ArtifactView>, String> = s
                    .inputs
                    .iter()
                    .map(|b| {
                        let d = outputs.get(&b.stage).and_then(|o| o.get(&b.output)).cloned().unwrap_or_default();
                        let dir = ws.store.view(&d).map_err(|e| format!("materialising {}.{}: {e}", b.stage, b.output))?;
                        Ok((b.role.clone(), ArtifactView { kind: b.kind.clone(), digest: d, dir, producer: format!("{}.{}", b.stage, b.output) }))
                    })
                    .collect();
                running += 1;
                let rep = rep.clone();
                scope.spawn(move || {
                    let result = views.and_then(|v| execute(ws, s, &job, &v, &rep));
                    let _ = tx.send((job.name.clone(), result));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((name, result)) = rx.recv() else { break };
            running -= 1;
            order.push(name.clone());
            let Some(s) = p.stage(&name) else { continue };
            match result {
                Ok(rec) => {
                    let reasons = job_reasons.remove(&name).unwrap_or_default();
                    let shown: Vec<String> = rec.metrics.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
                    rep.line(&format!("  ok      {name} in {:.1}s  {}", rec.seconds, shown.join(" ")));
                    outputs.insert(name.clone(), rec.outputs.clone());
                    lock.stages.insert(name.clone(), locked(s, &rec));
                    ran_now.insert(name.clone());
                    outcomes.insert(name.clone(), Outcome::Ran { fingerprint: rec.fingerprint.clone(), reasons, seconds: rec.seconds, metrics: rec.metrics.clone() });
                    release(&name, p, &selected, &mut pending, &mut ready);
                }
                Err(error) => {
                    rep.line(&format!("  FAILED  {name} ({}): {error}", s.kind));
                    outcomes.insert(name.clone(), Outcome::Failed { error });
                    for d in descendants(p, &name, &selected) {
                        if !outcomes.contains_key(&d) {
                            rep.line(&format!("  skip    {d}: upstream `{name}` failed"));
                            outcomes.insert(d.clone(), Outcome::Skipped { because: name.clone() });
                            order.push(d.clone());
                            pending.insert(d, usize::MAX);
                        }
                    }
                }
            }
        }
    });

    lock.version = 1;
    lock.pipeline = p.header.name.clone();
    lock.params = p.header.params.clone();
    let known: BTreeSet<&String> = p.stages.iter().map(|s| &s.name).collect();
    lock.stages.retain(|k, _| known.contains(k));
    lock.write(&ws.lock_path).map_err(EngineError::Io)?;
    let summary = RunSummary { pipeline: p.header.name.clone(), stages: order.into_iter().filter_map(|n| outcomes.remove(&n).map(|o| (n, o))).collect() };
    let fingerprints: BTreeMap<&String, &String> = lock.stages.iter().map(|(n, s)| (n, &s.fingerprint)).collect();
    let record = serde_json::json!({"pipeline": p.header.name, "params": p.header.params, "file": p.file.display().to_string(), "created": now(), "stages": summary.stages, "fingerprints": fingerprints, "metrics": lock.stages.iter().map(|(n, s)| (n, &s.metrics)).collect::<BTreeMap<_, _>>()});
    let path = ws.store.root().join("runs").join(format!("{}-{}.json", now(), std::process::id()));
    if let Err(e) = write_atomic(&path, serde_json::to_string_pretty(&record).unwrap_or_default().as_bytes()) {
        tracing::warn!("could not write the run record: {e}");
    }
    Ok(summary)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn locked(s: &StageNode, rec: &StageRecord) -> LockedStage {
    let inputs = s
        .inputs
        .iter()
        .map(|b| (b.role.clone(), format!("{}.{}@{}", b.stage, b.output, rec.inputs.inputs.get(&b.role).cloned().unwrap_or_default())))
        .collect();
    LockedStage { kind: s.kind.clone(), fingerprint: rec.fingerprint.clone(), inputs, files: lock_files(&rec.inputs.files), outputs: rec.outputs.clone(), metrics: rec.metrics.clone() }
}

/// Files as the lock file shows them: one line each for a handful, one
/// digest of the whole listing for many (the stage record in the store
/// keeps every file, which is what `plan` uses to say which one changed).
fn lock_files(files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    const MAX_LISTED: usize = 32;
    if files.len() <= MAX_LISTED {
        return files.clone();
    }
    let listing: String = files.iter().map(|(p, d)| format!("{p}\t{d}\n")).collect();
    BTreeMap::from([(format!("({} files)", files.len()), crate::digest::hash_bytes(listing.as_bytes()))])
}

fn release(name: &str, p: &Pipeline, selected: &[String], pending: &mut BTreeMap<String, usize>, ready: &mut Vec<String>) {
    for c in p.dag.children(name) {
        if !selected.contains(&c) {
            continue;
        }
        if let Some(n) = pending.get_mut(&c) {
            if *n != usize::MAX {
                *n -= 1;
                if *n == 0 {
                    ready.push(c);
                    // Keep the queue in topological (file) order.
                    ready.sort_by_key(|r| selected.iter().position(|x| x == r));
                }
            }
        }
    }
}

fn descendants(p: &Pipeline, name: &str, selected: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = p.dag.children(name);
    while let Some(n) = stack.pop() {
        if selected.contains(&n) && !out.contains(&n) {
            stack.extend(p.dag.children(&n));
            out.push(n);
        }
    }
    out
}

/// Run one stage in a scratch directory and move its outputs into the store.
fn execute(ws: &Workspace, s: &StageNode, job: &Job, inputs: &BTreeMap<String, ArtifactView>, rep: &Reporter) -> Result<StageRecord, String> {
    let span = tracing::info_span!("stage", name = %s.name, kind = %s.kind);
    let _e = span.enter();
    let start = Instant::now();
    let scratch = ws.store.scratch(&s.name).map_err(|e| format!("creating scratch directory: {e}"))?;
    let bar = rep.bar(&s.name);
    let mut ctx = StageContext { name: &s.name, root: &ws.root, inputs, out_root: scratch.join("out"), outputs: s.outputs, progress: bar.clone() };
    let result = catch_unwind(AssertUnwindSafe(|| s.prepared.run(&mut ctx)));
    rep.done(&bar);
    let outcome = match result {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(panic) => {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into());
            return Err(format!("internal error (panic): {msg}; please report it"));
        }
    };
    for w in &outcome.warnings {
        rep.line(&format!("  warning {}: {w}", s.name));
    }
    let mut outputs = BTreeMap::new();
    for o in s.outputs {
        let dir = scratch.join("out").join(o.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let d = ws.store.ingest_dir(&dir, o.kind).map_err(|e| format!("storing output `{}`: {e}", o.name))?;
        outputs.insert(o.name.to_string(), d);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let rec = StageRecord { fingerprint: job.digest.clone(), inputs: job.fp.clone(), outputs, metrics: outcome.metrics, seconds: start.elapsed().as_secs_f64(), created: now() };
    let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| e.to_string())?;
    write_atomic(&ws.store.record_path(&job.digest), &bytes).map_err(|e| format!("writing stage record: {e}"))?;
    Ok(rec)
}
