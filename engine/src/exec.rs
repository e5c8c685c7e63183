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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::{Snapshot, stat_snapshot};
use crate::fingerprint::{DirtyReason, Fingerprint, StageRecord};
use crate::lockfile::{Lock, LockedStage};
use crate::pipeline::{Pipeline, StageNode};
use crate::remote::Fetched;
use crate::report::Reporter;
use crate::resolve::{Bound, Resolver, reasons_vs_lock};
use crate::runs::RunRecord;
use crate::schedule::RunState;
use crate::stage::{ArtifactView, StageContext};
use crate::store::{Damage, write_atomic};
use crate::workspace::Workspace;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// A remote cache to consult before computing a stage.
    pub remote: Option<std::sync::Arc<dyn crate::remote::Remote>>,
    /// Stages to bring up to date (with their upstream); empty = all.
    pub targets: Vec<String>,
    /// Rerun the targets even when cached.
    pub force: bool,
    /// Stages run at the same time.
    pub jobs: usize,
    /// Run as one job of a cluster run (see [`crate::slurm`]): compute only
    /// the targets; every upstream stage must already have its result in the
    /// store. The run lock, the lock file and the run record belong to the
    /// driver, so a job touches none of them.
    pub job: bool,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

impl Outcome {
    /// The status as records and `tailor runs` name it.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Cached { .. } => "cached",
            Outcome::Ran { .. } => "ran",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped { .. } => "skipped",
            Outcome::NotNeeded { .. } => "not-needed",
        }
    }
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

/// Why a stage that was started produced no result (the run goes on; its
/// dependents are skipped).
#[derive(Debug, thiserror::Error)]
pub enum StageFailure {
    /// The stage reported an error.
    #[error("{0}")]
    Stage(String),
    /// The stage panicked: a bug in the stage kind.
    #[error("internal error (panic): {0}; please report it")]
    Panic(String),
    /// An input file changed between its digest and the end of the stage.
    #[error(
        "{} changed while the stage ran (after its digest was taken), so the stage may have read other bytes than its fingerprint says; nothing was stored — run again",
        files.join(", ")
    )]
    InputChanged {
        /// The files, relative to the project root where possible.
        files: Vec<String>,
    },
    /// An upstream artifact is damaged or gone from the store.
    #[error("input `{role}` ({producer}) {problem}; run again and `{producer}` is recomputed")]
    Input {
        /// The input's role.
        role: String,
        /// `stage.output` that made it.
        producer: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Storing the stage's outputs or record failed.
    #[error("{0}")]
    Store(String),
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

pub(crate) fn io_err(what: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
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

/// What `tailor run` would do, and why, without running anything.
pub fn plan(p: &Pipeline, ws: &Workspace, opts: &RunOptions) -> Result<Vec<PlanEntry>, EngineError> {
    let selected = selection(p, &opts.targets)?;
    let lock = ws.lock_or_recover();
    let mut r = Resolver::new(p, ws, &selected)?;
    let chosen: HashSet<&str> = selected.iter().map(String::as_str).collect();
    let forced = forced(opts, &selected);
    let mut entries: Vec<PlanEntry> = p
        .stages
        .iter()
        .filter(|s| !chosen.contains(s.name.as_str()))
        .map(|s| PlanEntry { name: s.name.clone(), kind: s.kind.clone(), status: PlanStatus::NotSelected, fingerprint: None, reasons: vec![], notes: vec![] })
        .collect();
    for name in &selected {
        let Some(s) = p.stage(name) else { continue };
        let b = r.bind(s);
        // Upstream artifacts that already exist, for the stage's notes.
        let dirs: BTreeMap<String, PathBuf> =
            b.fp.inputs.iter().filter(|(_, d)| !d.is_empty()).filter_map(|(role, d)| ws.store.view(d).ok().map(|p| (role.clone(), p))).collect();
        let notes = s.prepared.notes(&ws.root, &dirs);
        let (found, damaged) = r.lookup(&b, false).split();
        let entry = match found {
            Some(rec) if !forced.contains(name) => {
                let mut reasons = vec![];
                if let Some(c) = rec.check.as_ref().filter(|c| !c.passed) {
                    reasons.push(format!("its check failed: {}", c.summary));
                }
                r.known(name, rec.outputs);
                PlanEntry { name: name.clone(), kind: s.kind.clone(), status: PlanStatus::UpToDate, fingerprint: Some(b.digest), reasons, notes }
            }
            _ => {
                let mut reasons = why(ws, &lock, name, &b, forced.contains(name), damaged);
                reasons.extend(b.waiting.iter().map(|w| DirtyReason::Upstream { stage: w.clone() }));
                let status = if b.unknown.is_empty() || reasons.iter().any(|r| !matches!(r, DirtyReason::Upstream { .. })) {
                    PlanStatus::WillRun
                } else {
                    PlanStatus::MayRun
                };
                PlanEntry {
                    name: name.clone(),
                    kind: s.kind.clone(),
                    status,
                    fingerprint: b.unknown.is_empty().then_some(b.digest),
                    reasons: reasons.iter().map(ToString::to_string).collect(),
                    notes,
                }
            }
        };
        entries.push(entry);
    }
    r.save();
    Ok(entries)
}

/// The targets `--force` reruns (none without it).
fn forced(opts: &RunOptions, selected: &[String]) -> BTreeSet<String> {
    if !opts.force {
        return BTreeSet::new();
    }
    selected.iter().filter(|s| opts.targets.is_empty() || opts.targets.contains(s)).cloned().collect()
}

/// Why a stage with no usable cached result runs.
fn why(ws: &Workspace, lock: &Lock, name: &str, b: &Bound, forced: bool, damaged: Option<String>) -> Vec<DirtyReason> {
    match damaged {
        _ if forced => vec![DirtyReason::Forced],
        Some(m) => vec![DirtyReason::OutputsDamaged(m)],
        None => reasons_vs_lock(ws, lock, name, &b.fp, &b.unknown),
    }
}

/// The results the store already holds for this pipeline as configured
/// (params and overrides applied), as a lock: every stage whose
/// fingerprint has a stored result, following upstream results. Stages not
/// computed for this configuration are absent. Nothing runs.
pub fn cached_lock(p: &Pipeline, ws: &Workspace) -> Result<Lock, EngineError> {
    let order = p.dag.order();
    let mut r = Resolver::new(p, ws, &order)?;
    let mut lock = Lock { version: 1, pipeline: p.header.name.clone(), params: p.header.params.clone(), stages: BTreeMap::new() };
    for name in &order {
        let Some(s) = p.stage(name) else { continue };
        let b = r.bind(s);
        if let (Some(rec), _) = r.lookup(&b, false).split() {
            r.known(name, rec.outputs.clone());
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

/// Run the pipeline.
#[tracing::instrument(skip_all, fields(pipeline = %p.header.name))]
pub fn run(p: &Pipeline, ws: &Workspace, opts: &RunOptions, rep: &Reporter) -> Result<RunSummary, EngineError> {
    let _guard = if opts.job { None } else { Some(begin(ws)?) };
    let selected = selection(p, &opts.targets)?;
    let mut lock = ws.lock_or_recover();
    // Stat every input before hashing it: a file written after this moment
    // is caught when its stage ends (see `execute`).
    let snapshots: BTreeMap<String, Snapshot> = selected
        .iter()
        .filter_map(|n| p.stage(n).map(|s| (n.clone(), s.prepared.spec().files.iter().flat_map(|f| stat_snapshot(&ws.root.join(&f.path))).collect())))
        .collect();
    let mut r = Resolver::new(p, ws, &selected)?;
    let forced = forced(opts, &selected);
    let jobs = opts.jobs.max(1);
    // Stages that declare several CPUs (`resources.cpus`: a trainer's
    // threads) run side by side only while their CPUs fit this machine's;
    // two libtorch processes spinning on the same cores slow each other
    // down many times over.
    let cpus_here = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cpus_of = |s: &crate::pipeline::StageNode| ((s.resources.cpus.unwrap_or(1) * s.resources.tasks.unwrap_or(1).max(1)) as usize).clamp(1, cpus_here);
    let mut cpus_used = 0usize;
    let mut remote = opts.remote.clone();

    let chosen: HashSet<&str> = selected.iter().map(String::as_str).collect();
    let position: HashMap<&str, usize> = selected.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    for name in &selected {
        let parents: BTreeSet<String> = p.dag.parents(name).into_iter().filter(|x| chosen.contains(x.as_str())).collect();
        pending.insert(name.clone(), parents.len());
    }
    let ready: Vec<String> = selected.iter().filter(|n| pending[*n] == 0).cloned().collect();
    let mut st = RunState { p, chosen, position, pending, ready, outcomes: BTreeMap::new(), order: Vec::new(), lineage: BTreeMap::new() };
    let mut ran_now: BTreeSet<String> = BTreeSet::new();
    let mut running = 0usize;
    let mut job_reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (tx, rx) = mpsc::channel::<(String, Result<StageRecord, StageFailure>)>();

    std::thread::scope(|scope| {
        loop {
            // Start what can start: cache hits are resolved inline, runs go to threads.
            while !st.ready.is_empty() {
                let name = st.ready.remove(0);
                let Some(s) = p.stage(&name) else { continue };
                // Every upstream stage has settled, so every input is known.
                let b = r.bind(s);
                st.lineage.insert(name.clone(), lineage_of(s, &b.fp, &b.digest));
                let (found, damaged) = if forced.contains(&name) { (None, None) } else { r.lookup(&b, true).split() };
                let mut fetched = "";
                let (found, damaged) = match (found, remote.clone()) {
                    (None, Some(rm)) if !forced.contains(&name) => match rm.fetch(&ws.store, &b.digest) {
                        Ok(Fetched::Hit { .. }) => {
                            fetched = " (fetched from the remote)";
                            r.lookup(&b, true).split()
                        }
                        Ok(Fetched::Miss) => (None, damaged),
                        Ok(Fetched::Damaged(m)) => {
                            rep.line(&format!("  warning {name}: the remote's copy is damaged and was not used ({m}); computing it here"));
                            (None, damaged)
                        }
                        Err(e) => {
                            rep.line(&format!("  warning the remote {} cannot be used: {e}; going on without it", rm.name()));
                            remote = None;
                            (None, damaged)
                        }
                    },
                    (found, _) => (found, damaged),
                };
                if let Some(rec) = found {
                    let cutoff = s.inputs.iter().any(|b| ran_now.contains(&b.stage));
                    let note = if cutoff { ": upstream reran with identical output" } else { fetched };
                    rep.line(&format!("  cached  {name} ({}){note}", s.kind));
                    r.known(&name, rec.outputs.clone());
                    lock.stages.insert(name.clone(), locked(s, &rec));
                    st.order.push(name.clone());
                    if st.settle(&name, &rec, rep) {
                        st.outcomes.insert(name.clone(), Outcome::Cached { fingerprint: b.digest, cutoff });
                        st.release(&name);
                    }
                    continue;
                }
                if opts.job && !opts.targets.contains(&name) {
                    let error = "its result is not in the store: under a cluster executor its own job computes it, and that job had not succeeded when this one started".to_string();
                    rep.line(&format!("  FAILED  {name} ({}): {error}", s.kind));
                    st.outcomes.insert(name.clone(), Outcome::Failed { error });
                    st.order.push(name.clone());
                    st.close_descendants(&name, rep, |_| Outcome::Skipped { because: name.clone() });
                    continue;
                }
                if running >= jobs || (running > 0 && cpus_used + cpus_of(s) > cpus_here) {
                    st.ready.insert(0, name);
                    break;
                }
                let reasons: Vec<String> = why(ws, &lock, &name, &b, forced.contains(&name), damaged).iter().map(ToString::to_string).collect();
                rep.line(&format!("  run     {name} ({}): {}", s.kind, reasons.join("; ")));
                job_reasons.insert(name.clone(), reasons.clone());
                let digests: Vec<String> = s.inputs.iter().map(|i| b.fp.inputs.get(&i.role).cloned().unwrap_or_default()).collect();
                let job = Job {
                    name: name.clone(),
                    fp: b.fp,
                    digest: b.digest,
                    lineage: lineage_tree(&name, &st.lineage),
                    files: snapshots.get(&name).cloned().unwrap_or_default(),
                };
                let tx = tx.clone();
                let bound: Vec<(String, String, String)> =
                    s.inputs.iter().map(|b| (b.role.clone(), b.kind.clone(), format!("{}.{}", b.stage, b.output))).collect();
                running += 1;
                cpus_used += cpus_of(s);
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
            cpus_used -= cpus_of(s);
            match result {
                Ok(rec) => {
                    let reasons = job_reasons.remove(&name).unwrap_or_default();
                    let shown: Vec<String> =
                        rec.metrics.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
                    rep.line(&format!("  ok      {name} in {:.1}s  {}", rec.seconds, shown.join(" ")));
                    r.known(&name, rec.outputs.clone());
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
                Err(failure) => {
                    let error = failure.to_string();
                    rep.line(&format!("  FAILED  {name} ({}): {error}", s.kind));
                    st.outcomes.insert(name.clone(), Outcome::Failed { error });
                    let failed = name.clone();
                    st.close_descendants(&name, rep, |_| Outcome::Skipped { because: failed.clone() });
                }
            }
        }
    });
    let RunState { order, mut outcomes, .. } = st;
    r.save();
    let mut seen = BTreeSet::new();
    let order: Vec<String> = order.into_iter().filter(|n| seen.insert(n.clone())).collect();
    let summary = RunSummary { pipeline: p.header.name.clone(), stages: order.into_iter().filter_map(|n| outcomes.remove(&n).map(|o| (n, o))).collect() };
    if opts.job {
        return Ok(summary);
    }
    finish(p, ws, lock, &summary)?;
    Ok(summary)
}

/// Start a run that changes the workspace: take the run lock and remove
/// what an interrupted run left in the scratch space.
pub(crate) fn begin(ws: &Workspace) -> Result<crate::workspace::RunLock, EngineError> {
    let guard = ws.lock_runs().map_err(io_err("taking the run lock"))?;
    let stale = ws.store.clean_scratch().map_err(io_err("cleaning .tailor/tmp"))?;
    if stale > 0 {
        tracing::info!(stale, "removed leftovers of an interrupted run");
    }
    Ok(guard)
}

/// End a run: write the lock file (this configuration's results over the
/// old ones, stages no longer in the pipeline dropped) and the run record.
pub(crate) fn finish(p: &Pipeline, ws: &Workspace, mut lock: Lock, summary: &RunSummary) -> Result<(), EngineError> {
    lock.version = 1;
    lock.pipeline = p.header.name.clone();
    lock.params = p.header.params.clone();
    let known: BTreeSet<&String> = p.stages.iter().map(|s| &s.name).collect();
    lock.stages.retain(|k, _| known.contains(k));
    lock.write(&ws.lock_path).map_err(EngineError::Io)?;
    if let Err(e) = ws.record_run(&RunRecord::new(p, summary, &lock, now())) {
        tracing::warn!("could not write the run record: {e}");
    }
    Ok(())
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

/// The input artifacts of a stage about to run, each checked byte for byte
/// against its digest: a stage never consumes damaged content.
fn input_views(ws: &Workspace, bound: &[(String, String, String)], digests: &[String]) -> Result<BTreeMap<String, ArtifactView>, StageFailure> {
    bound
        .iter()
        .zip(digests)
        .map(|((role, kind, producer), d)| {
            let dir = ws.store.checked_view(d, None).map_err(|e| {
                let problem = match e {
                    Damage::Corrupt { message, objects } => {
                        ws.store.quarantine(&objects);
                        format!("is damaged in the store: {message}")
                    }
                    Damage::Missing(m) => format!("is not in the store: {m}"),
                };
                StageFailure::Input { role: role.clone(), producer: producer.clone(), problem }
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
fn execute(ws: &Workspace, s: &StageNode, job: &Job, inputs: &BTreeMap<String, ArtifactView>, rep: &Reporter) -> Result<StageRecord, StageFailure> {
    let span = tracing::info_span!("stage", name = %s.name, kind = %s.kind);
    let _e = span.enter();
    let start = Instant::now();
    let scratch = ws.store.scratch(&s.name).map_err(|e| StageFailure::Store(format!("creating scratch directory: {e}")))?;
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
        // Best effort: leftovers in tmp/ are removed at the start of the next run.
        let _ = std::fs::remove_dir_all(&scratch);
        let files: Vec<String> = changed
            .iter()
            .map(|c| std::path::Path::new(c.as_str()).strip_prefix(&ws.root).map_or_else(|_| c.to_string(), |r| r.display().to_string()))
            .collect();
        return Err(StageFailure::InputChanged { files });
    }
    let outcome = match result {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(StageFailure::Stage(e.to_string())),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            return Err(StageFailure::Panic(msg));
        }
    };
    for w in &outcome.warnings {
        rep.line(&format!("  warning {}: {w}", s.name));
    }
    let mut outputs = BTreeMap::new();
    for o in s.outputs {
        let dir = scratch.join("out").join(o.name);
        std::fs::create_dir_all(&dir).map_err(|e| StageFailure::Store(format!("{}: {e}", dir.display())))?;
        let d = ws.store.ingest_dir(&dir, o.kind).map_err(|e| StageFailure::Store(format!("storing output `{}`: {e}", o.name)))?;
        outputs.insert(o.name.to_string(), d);
    }
    // Best effort: leftovers in tmp/ are removed at the start of the next run.
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
    let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| StageFailure::Store(format!("serialising the stage record: {e}")))?;
    write_atomic(&ws.store.record_path(&job.digest), &bytes).map_err(|e| StageFailure::Store(format!("writing stage record: {e}")))?;
    // The result is stored: what an interrupted attempt kept to resume from is not needed any more.
    // Best effort: an unused state directory only costs disk; `gc` removes it.
    let _ = std::fs::remove_dir_all(&state);
    Ok(rec)
}
