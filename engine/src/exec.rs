//! Planning and running: which stages are up to date, which must run and
//! why, and running them in dependency order with up to `jobs` at a time.
//!
//! A stage's fingerprint is computed only when its upstream results are
//! known, from the *actual* digests of those results. So if an upstream stage
//! reruns and produces byte-identical output, its dependents find their
//! fingerprint unchanged and are served from the cache (early cut-off). A
//! failed stage stops its dependents; independent branches finish. Stage
//! panics are caught and reported as failures of that stage.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::digest::{Snapshot, StatCache, stat_snapshot};
use crate::fingerprint::{DirtyReason, ENGINE_CACHE_VERSION, Fingerprint, StageRecord, diff};
use crate::lockfile::{Lock, LockedStage};
use crate::pipeline::{Pipeline, StageNode};
use crate::report::Reporter;
use crate::stage::{ArtifactView, StageContext};
use crate::store::{Damage, write_atomic};
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

/// What `run` would do with a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    /// Its result is cached for exactly these inputs.
    UpToDate,
    /// It runs.
    WillRun,
    /// It runs only if an upstream rerun changes its input.
    MayRun,
    /// Not among the selected stages.
    NotSelected,
}

impl PlanStatus {
    /// The status as `plan` and `status` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::UpToDate => "up-to-date",
            PlanStatus::WillRun => "will-run",
            PlanStatus::MayRun => "may-run",
            PlanStatus::NotSelected => "not-selected",
        }
    }
}

impl std::fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Planned state of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    /// Stage name.
    pub name: String,
    /// Stage kind.
    pub kind: String,
    /// What `run` would do with it.
    pub status: PlanStatus,
    /// Fingerprint, when computable.
    pub fingerprint: Option<String>,
    /// Why it runs.
    pub reasons: Vec<String>,
    /// What the stage says about itself (e.g. the memory a training run needs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    /// Not run because it is not needed: a loop it belongs to (or depends
    /// on) ended early when its check passed.
    NotNeeded {
        /// Why.
        reason: String,
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
        self.stages.iter().all(|(_, o)| matches!(o, Outcome::Cached { .. } | Outcome::Ran { .. } | Outcome::NotNeeded { .. }))
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

fn read_record(ws: &Workspace, fp: &str) -> Option<StageRecord> {
    let bytes = std::fs::read(ws.store.record_path(fp)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What the store holds for a fingerprint.
enum Lookup {
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
    fn split(self) -> (Option<StageRecord>, Option<String>) {
        match self {
            Lookup::Hit(r) => (Some(*r), None),
            Lookup::Miss => (None, None),
            Lookup::Damaged(m) => (None, Some(m)),
        }
    }
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
    let lock = ws.lock_or_recover();
    let mut cache = ws.stat_cache();
    let files = file_digests(p, ws, &selected, &mut cache)?;
    let chosen: HashSet<&str> = selected.iter().map(String::as_str).collect();
    let forced: BTreeSet<&String> =
        if opts.force { selected.iter().filter(|s| opts.targets.is_empty() || opts.targets.contains(s)).collect() } else { BTreeSet::new() };
    let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut entries = Vec::new();
    for s in &p.stages {
        if !chosen.contains(s.name.as_str()) {
            entries.push(PlanEntry {
                name: s.name.clone(),
                kind: s.kind.clone(),
                status: PlanStatus::NotSelected,
                fingerprint: None,
                reasons: vec![],
                notes: vec![],
            });
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
        // Upstream artifacts that already exist, for the stage's notes.
        let dirs: BTreeMap<String, PathBuf> =
            inputs.iter().filter(|(_, d)| !d.is_empty()).filter_map(|(r, d)| ws.store.view(d).ok().map(|p| (r.clone(), p))).collect();
        let notes = s.prepared.notes(&ws.root, &dirs);
        let fp = fingerprint(s, inputs, files.get(name).cloned().unwrap_or_default());
        let digest = fp.digest();
        let (found, damaged) = if unknown.is_empty() { lookup(ws, &digest, &mut cache, false).split() } else { (None, None) };
        let entry = match found {
            Some(rec) if !forced.contains(name) => {
                let mut reasons = vec![];
                if let Some(c) = rec.check.as_ref().filter(|c| !c.passed) {
                    reasons.push(format!("its check failed: {}", c.summary));
                }
                outputs.insert(name.clone(), rec.outputs);
                PlanEntry { name: name.clone(), kind: s.kind.clone(), status: PlanStatus::UpToDate, fingerprint: Some(digest), reasons, notes }
            }
            _ => {
                let mut reasons: Vec<DirtyReason> = match damaged {
                    _ if forced.contains(name) => vec![DirtyReason::Forced],
                    Some(m) => vec![DirtyReason::OutputsDamaged(m)],
                    None => reasons_vs_lock(ws, &lock, name, &fp, &unknown),
                };
                reasons.extend(waiting.iter().map(|w| DirtyReason::Upstream { stage: w.clone() }));
                let status = if unknown.is_empty() || reasons.iter().any(|r| !matches!(r, DirtyReason::Upstream { .. })) {
                    PlanStatus::WillRun
                } else {
                    PlanStatus::MayRun
                };
                PlanEntry {
                    name: name.clone(),
                    kind: s.kind.clone(),
                    status,
                    fingerprint: unknown.is_empty().then_some(digest),
                    reasons: reasons.iter().map(ToString::to_string).collect(),
                    notes,
                }
            }
        };
        entries.push(entry);
    }
    if let Err(e) = cache.save() {
        tracing::debug!("could not save the stat cache: {e}");
    }
    Ok(entries)
}

/// The results the store already holds for this pipeline as configured
/// (params and overrides applied), as a lock: every stage whose
/// fingerprint has a stored result, following upstream results. Stages not
/// computed for this configuration are absent. Nothing runs.
pub fn cached_lock(p: &Pipeline, ws: &Workspace) -> Result<Lock, EngineError> {
    let order = p.dag.order();
    let mut cache = ws.stat_cache();
    let files = file_digests(p, ws, &order, &mut cache)?;
    let mut lock = Lock { version: 1, pipeline: p.header.name.clone(), params: p.header.params.clone(), stages: BTreeMap::new() };
    let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for name in &order {
        let Some(s) = p.stage(name) else { continue };
        let Some(inputs) = s
            .inputs
            .iter()
            .map(|b| outputs.get(&b.stage).and_then(|o| o.get(&b.output)).map(|d| (b.role.clone(), d.clone())))
            .collect::<Option<BTreeMap<_, _>>>()
        else {
            continue;
        };
        let fp = fingerprint(s, inputs, files.get(name).cloned().unwrap_or_default());
        if let (Some(rec), _) = lookup(ws, &fp.digest(), &mut cache, false).split() {
            outputs.insert(name.clone(), rec.outputs.clone());
            lock.stages.insert(name.clone(), locked(s, &rec));
        }
    }
    Ok(lock)
}

struct Job {
    name: String,
    fp: Fingerprint,
    digest: String,
    lineage: Value,
    /// The stage's external files (directories expanded) as they were when
    /// their digests were taken: the stage must have read exactly those bytes.
    files: Snapshot,
}

/// What a finished (or cached) stage means for the rest of the run.
enum Verdict {
    /// Go on.
    Go,
    /// Go on; the stage's check failed, and the next round of its loop follows.
    NextRound(String),
    /// Its check failed: dependents do not run.
    Stop(String),
    /// Its check passed and ends its loop after this round.
    Converged { loop_name: String, round: usize },
}

fn verdict(p: &Pipeline, name: &str, rec: &StageRecord) -> Verdict {
    let Some(check) = &rec.check else { return Verdict::Go };
    match p.until_of(name) {
        Some((lp, round)) if check.passed => Verdict::Converged { loop_name: lp.name.clone(), round },
        Some((lp, round)) if round < lp.rounds.len() => Verdict::NextRound(check.summary.clone()),
        _ if check.passed => Verdict::Go,
        Some((lp, _)) => Verdict::Stop(format!("{} (after all {} rounds of loop `{}`)", check.summary, lp.rounds.len(), lp.name)),
        None => Verdict::Stop(check.summary.clone()),
    }
}

/// The lineage node of a stage: kind, fingerprint, config, files, and for
/// each input the artifact and the name of the stage that made it. Nodes
/// are kept flat; [`lineage_tree`] nests them only for a stage that runs,
/// so a no-op run over a long chain does no quadratic copying.
fn lineage_of(s: &StageNode, fp: &Fingerprint, digest: &str) -> Value {
    let inputs: serde_json::Map<String, Value> =
        s.inputs.iter().map(|b| (b.role.clone(), serde_json::json!({"artifact": fp.inputs.get(&b.role), "output": b.output, "from": b.stage}))).collect();
    serde_json::json!({"kind": s.kind, "fingerprint": digest, "config": s.config, "files": lock_files(&fp.files), "inputs": inputs})
}

/// A stage's lineage with every upstream node nested under `from`.
fn lineage_tree(name: &str, flat: &BTreeMap<String, Value>) -> Value {
    let Some(node) = flat.get(name) else { return Value::Null };
    let mut node = node.clone();
    if let Some(inputs) = node.get_mut("inputs").and_then(Value::as_object_mut) {
        for input in inputs.values_mut() {
            let from = input["from"].as_str().unwrap_or_default().to_string();
            input["from"] = lineage_tree(&from, flat);
        }
    }
    node
}

/// Mutable state of one run.
struct RunState<'a> {
    p: &'a Pipeline,
    chosen: HashSet<&'a str>,
    position: HashMap<&'a str, usize>,
    pending: BTreeMap<String, usize>,
    ready: Vec<String>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    outcomes: BTreeMap<String, Outcome>,
    order: Vec<String>,
    lineage: BTreeMap<String, Value>,
}

impl RunState<'_> {
    /// Mark every selected descendant of `name` (not yet decided) with `o`.
    fn close_descendants(&mut self, name: &str, rep: &Reporter, o: impl Fn(&str) -> Outcome) {
        for d in descendants(self.p, name, &self.chosen) {
            self.close(&d, rep, o(&d));
        }
    }

    fn close(&mut self, d: &str, rep: &Reporter, o: Outcome) {
        if self.outcomes.contains_key(d) {
            return;
        }
        match &o {
            Outcome::Skipped { because } => rep.line(&format!("  skip    {d}: upstream `{because}` failed")),
            Outcome::NotNeeded { reason } => rep.line(&format!("  -       {d}: not needed ({reason})")),
            _ => {}
        }
        self.outcomes.insert(d.to_string(), o);
        self.order.push(d.to_string());
        self.pending.insert(d.to_string(), usize::MAX);
        self.ready.retain(|r| r != d);
    }

    /// Act on a finished or cached stage's verdict; true if its dependents may run.
    fn settle(&mut self, name: &str, rec: &StageRecord, rep: &Reporter) -> bool {
        match verdict(self.p, name, rec) {
            Verdict::Go => true,
            Verdict::NextRound(summary) => {
                rep.line(&format!("          {name}: check not met ({summary}); next round follows"));
                true
            }
            Verdict::Stop(summary) => {
                rep.line(&format!("  FAILED  {name}: check failed: {summary}"));
                self.outcomes.insert(name.to_string(), Outcome::Failed { error: format!("check failed: {summary}") });
                self.close_descendants(name, rep, |_| Outcome::Skipped { because: name.to_string() });
                false
            }
            Verdict::Converged { loop_name, round } => {
                rep.line(&format!("          {name}: check passed; loop `{loop_name}` ends after round {round}"));
                let later: Vec<String> =
                    self.p.loops.iter().filter(|l| l.name == loop_name).flat_map(|l| l.rounds.iter().skip(round).flat_map(|r| r.values().cloned())).collect();
                let reason = format!("loop `{loop_name}` ended after round {round}");
                for s in &later {
                    self.close(s, rep, Outcome::NotNeeded { reason: reason.clone() });
                    self.close_descendants(s, rep, |_| Outcome::NotNeeded { reason: reason.clone() });
                }
                true
            }
        }
    }
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
    let mut lock = ws.lock_or_recover();
    let mut cache = ws.stat_cache();
    // Stat every input before hashing it: a file written after this moment
    // is caught when its stage ends (see `execute`).
    let snapshots: BTreeMap<String, Snapshot> = selected
        .iter()
        .filter_map(|n| p.stage(n).map(|s| (n.clone(), s.prepared.spec().files.iter().flat_map(|f| stat_snapshot(&ws.root.join(&f.path))).collect())))
        .collect();
    let files = file_digests(p, ws, &selected, &mut cache)?;
    let forced: BTreeSet<String> =
        if opts.force { selected.iter().filter(|s| opts.targets.is_empty() || opts.targets.contains(s)).cloned().collect() } else { BTreeSet::new() };
    let jobs = opts.jobs.max(1);

    let chosen: HashSet<&str> = selected.iter().map(String::as_str).collect();
    let position: HashMap<&str, usize> = selected.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    for name in &selected {
        let parents: BTreeSet<String> = p.dag.parents(name).into_iter().filter(|x| chosen.contains(x.as_str())).collect();
        pending.insert(name.clone(), parents.len());
    }
    let ready: Vec<String> = selected.iter().filter(|n| pending[*n] == 0).cloned().collect();
    let mut st =
        RunState { p, chosen, position, pending, ready, outputs: BTreeMap::new(), outcomes: BTreeMap::new(), order: Vec::new(), lineage: BTreeMap::new() };
    let mut ran_now: BTreeSet<String> = BTreeSet::new();
    let mut running = 0usize;
    let mut job_reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (tx, rx) = mpsc::channel::<(String, Result<StageRecord, String>)>();

    std::thread::scope(|scope| {
        loop {
            // Start what can start: cache hits are resolved inline, runs go to threads.
            while !st.ready.is_empty() {
                let name = st.ready.remove(0);
                let Some(s) = p.stage(&name) else { continue };
                let inputs: BTreeMap<String, String> =
                    s.inputs.iter().map(|b| (b.role.clone(), st.outputs.get(&b.stage).and_then(|o| o.get(&b.output)).cloned().unwrap_or_default())).collect();
                let fp = fingerprint(s, inputs, files.get(&name).cloned().unwrap_or_default());
                let digest = fp.digest();
                st.lineage.insert(name.clone(), lineage_of(s, &fp, &digest));
                let (found, damaged) = if forced.contains(&name) { (None, None) } else { lookup(ws, &digest, &mut cache, true).split() };
                if let Some(rec) = found {
                    let cutoff = s.inputs.iter().any(|b| ran_now.contains(&b.stage));
                    rep.line(&format!("  cached  {name} ({}){}", s.kind, if cutoff { ": upstream reran with identical output" } else { "" }));
                    st.outputs.insert(name.clone(), rec.outputs.clone());
                    lock.stages.insert(name.clone(), locked(s, &rec));
                    st.order.push(name.clone());
                    if st.settle(&name, &rec, rep) {
                        st.outcomes.insert(name.clone(), Outcome::Cached { fingerprint: digest, cutoff });
                        st.release(&name);
                    }
                    continue;
                }
                if running >= jobs {
                    st.ready.insert(0, name);
                    break;
                }
                let reasons: Vec<String> = match damaged {
                    _ if forced.contains(&name) => vec![DirtyReason::Forced.to_string()],
                    Some(m) => vec![DirtyReason::OutputsDamaged(m).to_string()],
                    None => reasons_vs_lock(ws, &lock, &name, &fp, &[]).iter().map(ToString::to_string).collect(),
                };
                rep.line(&format!("  run     {name} ({}): {}", s.kind, reasons.join("; ")));
                job_reasons.insert(name.clone(), reasons.clone());
                let job =
                    Job { name: name.clone(), fp, digest, lineage: lineage_tree(&name, &st.lineage), files: snapshots.get(&name).cloned().unwrap_or_default() };
                let tx = tx.clone();
                let bound: Vec<(String, String, String)> =
                    s.inputs.iter().map(|b| (b.role.clone(), b.kind.clone(), format!("{}.{}", b.stage, b.output))).collect();
                let digests: Vec<String> =
                    s.inputs.iter().map(|b| st.outputs.get(&b.stage).and_then(|o| o.get(&b.output)).cloned().unwrap_or_default()).collect();
                running += 1;
                let rep = rep.clone();
                scope.spawn(move || {
                    let result = input_views(ws, &bound, &digests).and_then(|v| execute(ws, s, &job, &v, &rep));
                    // The receiver lives until every job has reported.
                    let _ = tx.send((job.name.clone(), result));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((name, result)) = rx.recv() else { break };
            running -= 1;
            st.order.push(name.clone());
            let Some(s) = p.stage(&name) else { continue };
            match result {
                Ok(rec) => {
                    let reasons = job_reasons.remove(&name).unwrap_or_default();
                    let shown: Vec<String> =
                        rec.metrics.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
                    rep.line(&format!("  ok      {name} in {:.1}s  {}", rec.seconds, shown.join(" ")));
                    st.outputs.insert(name.clone(), rec.outputs.clone());
                    lock.stages.insert(name.clone(), locked(s, &rec));
                    ran_now.insert(name.clone());
                    if st.settle(&name, &rec, rep) {
                        st.outcomes.insert(
                            name.clone(),
                            Outcome::Ran { fingerprint: rec.fingerprint.clone(), reasons, seconds: rec.seconds, metrics: rec.metrics.clone() },
                        );
                        st.release(&name);
                    }
                }
                Err(error) => {
                    rep.line(&format!("  FAILED  {name} ({}): {error}", s.kind));
                    st.outcomes.insert(name.clone(), Outcome::Failed { error });
                    let failed = name.clone();
                    st.close_descendants(&name, rep, |_| Outcome::Skipped { because: failed.clone() });
                }
            }
        }
    });
    let RunState { order, mut outcomes, .. } = st;
    if let Err(e) = cache.save() {
        tracing::warn!("could not save the stat cache: {e}");
    }

    lock.version = 1;
    lock.pipeline = p.header.name.clone();
    lock.params = p.header.params.clone();
    let known: BTreeSet<&String> = p.stages.iter().map(|s| &s.name).collect();
    lock.stages.retain(|k, _| known.contains(k));
    lock.write(&ws.lock_path).map_err(EngineError::Io)?;
    let mut seen = BTreeSet::new();
    let order: Vec<String> = order.into_iter().filter(|n| seen.insert(n.clone())).collect();
    let summary = RunSummary { pipeline: p.header.name.clone(), stages: order.into_iter().filter_map(|n| outcomes.remove(&n).map(|o| (n, o))).collect() };
    let fingerprints: BTreeMap<&String, &String> = lock.stages.iter().map(|(n, s)| (n, &s.fingerprint)).collect();
    let record = serde_json::json!({"pipeline": p.header.name, "params": p.header.params, "file": p.file.display().to_string(), "created": now(), "stages": summary.stages, "fingerprints": fingerprints, "metrics": lock.stages.iter().map(|(n, s)| (n, &s.metrics)).collect::<BTreeMap<_, _>>(), "lock": lock});
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
    LockedStage {
        kind: s.kind.clone(),
        fingerprint: rec.fingerprint.clone(),
        inputs,
        files: lock_files(&rec.inputs.files),
        outputs: rec.outputs.clone(),
        metrics: rec.metrics.clone(),
    }
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

impl RunState<'_> {
    /// A stage is done: its children that wait on nothing else become ready.
    fn release(&mut self, name: &str) {
        for c in self.p.dag.children(name) {
            if !self.chosen.contains(c.as_str()) {
                continue;
            }
            if let Some(n) = self.pending.get_mut(&c)
                && *n != usize::MAX
            {
                *n -= 1;
                if *n == 0 {
                    self.ready.push(c);
                    // Keep the queue in topological (file) order.
                    let position = &self.position;
                    self.ready.sort_by_key(|r| position.get(r.as_str()).copied().unwrap_or(usize::MAX));
                }
            }
        }
    }
}

fn descendants(p: &Pipeline, name: &str, selected: &HashSet<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = p.dag.children(name);
    while let Some(n) = stack.pop() {
        if selected.contains(n.as_str()) && seen.insert(n.clone()) {
            stack.extend(p.dag.children(&n));
            out.push(n);
        }
    }
    out
}

/// The input artifacts of a stage about to run, each checked byte for byte
/// against its digest: a stage never consumes damaged content.
fn input_views(ws: &Workspace, bound: &[(String, String, String)], digests: &[String]) -> Result<BTreeMap<String, ArtifactView>, String> {
    bound
        .iter()
        .zip(digests)
        .map(|((role, kind, producer), d)| {
            let dir = ws.store.checked_view(d, None).map_err(|e| match e {
                Damage::Corrupt { message, objects } => {
                    ws.store.quarantine(&objects);
                    format!("input `{role}` ({producer}) is damaged in the store: {message}; run again and `{producer}` is recomputed")
                }
                Damage::Missing(m) => format!("input `{role}` ({producer}) is not in the store: {m}; run again and it is recomputed"),
            })?;
            Ok((role.clone(), ArtifactView { kind: kind.clone(), digest: d.clone(), dir, producer: producer.clone() }))
        })
        .collect()
}

/// Run the test hook `TAILOR_FAULT_BEFORE_STAGE=STAGE=COMMAND`, if set for
/// this stage: a shell command run after the stage's inputs were hashed and
/// before it starts, so that tests can change the world at that moment.
fn fault_hook(stage: &str, root: &std::path::Path) {
    let Ok(spec) = std::env::var("TAILOR_FAULT_BEFORE_STAGE") else { return };
    let Some((target, cmd)) = spec.split_once('=') else { return };
    if target == stage {
        match std::process::Command::new("sh").arg("-c").arg(cmd).current_dir(root).status() {
            Ok(st) if st.success() => {}
            other => tracing::warn!("TAILOR_FAULT_BEFORE_STAGE hook for `{stage}` failed: {other:?}"),
        }
    }
}

/// Run one stage in a scratch directory and move its outputs into the store.
fn execute(ws: &Workspace, s: &StageNode, job: &Job, inputs: &BTreeMap<String, ArtifactView>, rep: &Reporter) -> Result<StageRecord, String> {
    let span = tracing::info_span!("stage", name = %s.name, kind = %s.kind);
    let _e = span.enter();
    let start = Instant::now();
    let scratch = ws.store.scratch(&s.name).map_err(|e| format!("creating scratch directory: {e}"))?;
    let bar = rep.bar(&s.name);
    let state = ws.store.state_dir(&job.digest);
    let mut ctx = StageContext {
        name: &s.name,
        root: &ws.root,
        inputs,
        out_root: scratch.join("out"),
        outputs: s.outputs,
        progress: bar.clone(),
        state: state.clone(),
        lineage: job.lineage.clone(),
    };
    fault_hook(&s.name, &ws.root);
    let result = catch_unwind(AssertUnwindSafe(|| s.prepared.run(&mut ctx)));
    rep.done(&bar);
    // The result is stored under the digests taken at the start of the run:
    // if a file changed since, the stage may have read other bytes.
    let after: Snapshot = s.prepared.spec().files.iter().flat_map(|f| stat_snapshot(&ws.root.join(&f.path))).collect();
    let mut changed: Vec<&String> = job.files.iter().filter(|(k, v)| after.get(*k) != Some(v)).map(|(k, _)| k).collect();
    changed.extend(after.keys().filter(|k| !job.files.contains_key(*k)));
    if !changed.is_empty() && result.as_ref().is_ok_and(|r| r.is_ok()) {
        let _ = std::fs::remove_dir_all(&scratch);
        let shown: Vec<String> = changed
            .iter()
            .map(|c| std::path::Path::new(c.as_str()).strip_prefix(&ws.root).map_or_else(|_| c.to_string(), |r| r.display().to_string()))
            .collect();
        return Err(format!(
            "{} changed while the stage ran (after its digest was taken), so the stage may have read other bytes than its fingerprint says; nothing was stored — run again",
            shown.join(", ")
        ));
    }
    let outcome = match result {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
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
    let rec = StageRecord {
        fingerprint: job.digest.clone(),
        inputs: job.fp.clone(),
        outputs,
        metrics: outcome.metrics,
        seconds: start.elapsed().as_secs_f64(),
        created: now(),
        check: outcome.check,
    };
    let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| e.to_string())?;
    write_atomic(&ws.store.record_path(&job.digest), &bytes).map_err(|e| format!("writing stage record: {e}"))?;
    // The result is stored: what an interrupted attempt kept to resume from is not needed any more.
    let _ = std::fs::remove_dir_all(&state);
    Ok(rec)
}
