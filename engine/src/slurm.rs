//! The Slurm executor: one `sbatch` job per stage, chained with
//! `--dependency=afterok`, so the DAG is Slurm's to schedule and independent
//! stages run at once on the cluster.
//!
//! Every stage that the store cannot serve is submitted at the start. A job
//! runs `tailor stage-job STAGE` (see [`crate::exec::RunOptions::job`]): it
//! binds the stage to its upstream results *as stored when the job starts*,
//! so early cut-off, loops that end early and failed checks work exactly as
//! in a local run — a job whose upstream reran with identical output is
//! served from the cache and ends at once. A job writes its outcome into the
//! run's folder in the store (`jobs/<run>/<stage>.json`, beside its log) and
//! exits non-zero when its stage failed, which makes Slurm cancel the jobs
//! that depend on it (`--kill-on-invalid-dep=yes`).
//!
//! The driver (`tailor run --executor slurm`) holds the store's run lock,
//! polls `squeue` for the jobs' states, reports them, and in the end writes
//! the lock file and the run record, like a local run. Ctrl-C or `tailor
//! cancel` cancels the submitted jobs with `scancel`. What this relies on
//! in the store is written down in [`crate::store`]: atomic renames and
//! content-addressed names; no lock is needed between jobs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exec::{EngineError, Outcome, PlanStatus, RunOptions, RunSummary, cached_lock, io_err, plan};
use crate::pipeline::Pipeline;
use crate::report::Reporter;
use crate::schedule::{check_failure, descendants};
use crate::store::{dirs, unique, write_atomic};
use crate::workspace::Workspace;

/// What a job leaves for the driver: its stage's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The stage.
    pub stage: String,
    /// What happened to it.
    pub outcome: Outcome,
}

/// The submitted jobs of the run in progress (`jobs/active.json`), for
/// `tailor status` and `tailor cancel`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActiveRun {
    /// The driver's process id.
    pub driver: u32,
    /// The run's folder in the store.
    pub folder: PathBuf,
    /// Stage → Slurm job id.
    pub jobs: BTreeMap<String, String>,
}

/// One job's state as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `TIMEOUT`, `CANCELLED`, …
    pub state: String,
    /// Slurm's reason (`Dependency`, `DependencyNeverSatisfied`, `NonZeroExitCode`, …).
    pub reason: String,
    /// The time limit.
    pub limit: String,
}

impl JobState {
    /// The job will not change any more.
    pub fn ended(&self) -> bool {
        !matches!(self.state.as_str(), "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "RESIZING" | "SIGNALING" | "STAGE_OUT")
    }
}

/// Path of the active-run file.
pub fn active_path(ws: &Workspace) -> PathBuf {
    ws.store.root().join(dirs::JOBS).join("active.json")
}

/// The run in progress on this store, if any.
pub fn active(ws: &Workspace) -> Option<ActiveRun> {
    serde_json::from_slice(&std::fs::read(active_path(ws)).ok()?).ok()
}

/// `tailor cancel`: cancel every job of the run in progress. Returns the ids.
pub fn cancel(ws: &Workspace) -> Result<Vec<String>, EngineError> {
    let Some(run) = active(ws) else { return Ok(vec![]) };
    let ids: Vec<String> = run.jobs.values().cloned().collect();
    scancel(&ids)?;
    Ok(ids)
}

fn scancel(ids: &[String]) -> Result<(), EngineError> {
    if ids.is_empty() {
        return Ok(());
    }
    let out = Command::new("scancel").args(ids).output().map_err(|e| EngineError::Io(format!("running `scancel`: {e}")))?;
    if !out.status.success() {
        tracing::warn!("scancel {}: {}", ids.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// States of the given jobs (those Slurm no longer knows are absent).
pub fn states(ids: &[String]) -> Result<BTreeMap<String, JobState>, EngineError> {
    let mut out = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let run = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T|%r|%l", "-j", &ids.join(",")])
        .output()
        .map_err(|e| EngineError::Io(format!("running `squeue`: {e}")))?;
    let text = String::from_utf8_lossy(&run.stdout);
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if let [id, state, reason, limit] = f[..] {
            // `CANCELLED by 0` → `CANCELLED`
            let state = state.split_whitespace().next().unwrap_or_default().to_string();
            out.insert(id.trim().to_string(), JobState { state, reason: reason.to_string(), limit: limit.to_string() });
        }
    }
    if !run.status.success() && out.is_empty() && ids.len() > 1 {
        // squeue refuses the whole list when one id is unknown: ask one by one.
        for id in ids {
            out.extend(states(std::slice::from_ref(id))?);
        }
    }
    Ok(out)
}

/// How the driver starts a job: the command line of `tailor stage-job` for
/// a stage, writing its outcome to the given file.
pub type JobCommand<'a> = &'a dyn Fn(&str, &Path) -> Vec<String>;

struct Submitted {
    id: String,
    outcome: PathBuf,
    log: PathBuf,
    reasons: Vec<String>,
    running: bool,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Run the pipeline on Slurm.
pub fn run(p: &Pipeline, ws: &Workspace, opts: &RunOptions, rep: &Reporter, job: JobCommand<'_>, stop: &AtomicBool) -> Result<RunSummary, EngineError> {
    let _guard = crate::exec::begin(ws)?;
    preflight()?;
    let entries = plan(p, ws, &RunOptions { jobs: 1, job: false, ..opts.clone() })?;
    let run_id = format!("{}-{}", now(), unique());
    let folder = ws.store.root().join(dirs::JOBS).join(&run_id);
    std::fs::create_dir_all(&folder).map_err(io_err("creating the run's job folder"))?;
    let selected: HashSet<&str> = entries.iter().filter(|e| e.status != PlanStatus::NotSelected).map(|e| e.name.as_str()).collect();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut jobs: BTreeMap<String, Submitted> = BTreeMap::new();

    for e in entries.iter().filter(|e| e.status != PlanStatus::NotSelected) {
        let name = &e.name;
        if outcomes.contains_key(name) {
            continue;
        }
        if e.status == PlanStatus::UpToDate {
            let fingerprint = e.fingerprint.clone().unwrap_or_default();
            // A cached result whose check fails stops its dependents, as in a local run.
            let failed = crate::resolve::read_record(ws, &fingerprint).and_then(|rec| check_failure(p, name, &rec));
            order.push(name.clone());
            if let Some(error) = failed {
                rep.line(&format!("  FAILED  {name}: {error} (cached result)"));
                outcomes.insert(name.clone(), Outcome::Failed { error });
                skip_descendants(p, name, &selected, &mut outcomes, &mut order, &jobs, rep);
            } else {
                rep.line(&format!("  cached  {name} ({})", e.kind));
                outcomes.insert(name.clone(), Outcome::Cached { fingerprint, cutoff: false });
            }
            continue;
        }
        let Some(s) = p.stage(name) else { continue };
        let after: Vec<&str> = p.dag.parents(name).iter().filter_map(|x| jobs.get(x.as_str()).map(|j| j.id.as_str())).collect();
        let outcome = folder.join(format!("{name}.json"));
        let log = folder.join(format!("{name}.log"));
        let script = folder.join(format!("{name}.sh"));
        let argv: Vec<String> = job(name, &outcome).iter().map(|a| quote(a)).collect();
        let body = format!("#!/bin/sh\n# tailor: stage `{name}` ({}) of pipeline `{}`\nexec {}\n", s.kind, p.header.name, argv.join(" "));
        write_atomic(&script, body.as_bytes()).map_err(io_err("writing a job script"))?;
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--job-name=tailor:{}:{name}", p.header.name))
            .arg(format!("--output={}", log.display()))
            .arg(format!("--chdir={}", ws.root.display()))
            .arg("--kill-on-invalid-dep=yes");
        if !after.is_empty() {
            cmd.arg(format!("--dependency=afterok:{}", after.join(":")));
        }
        cmd.args(s.resources.sbatch_args()).arg(&script);
        let out = cmd.output().map_err(|e| EngineError::Io(format!("running `sbatch`: {e}")))?;
        let reply = String::from_utf8_lossy(&out.stdout);
        let id = reply.trim().split(';').next().unwrap_or_default().to_string();
        if !out.status.success() || id.is_empty() {
            let error = format!("sbatch refused the job: {}", String::from_utf8_lossy(&out.stderr).trim());
            rep.line(&format!("  FAILED  {name} ({}): {error}", e.kind));
            outcomes.insert(name.clone(), Outcome::Failed { error });
            order.push(name.clone());
            skip_descendants(p, name, &selected, &mut outcomes, &mut order, &jobs, rep);
            continue;
        }
        let deps = if after.is_empty() { String::new() } else { format!(" after {}", after.join(",")) };
        rep.line(&format!("  submit  {name} ({}): job {id}{deps} [{}]; {}", e.kind, s.resources.summary(), e.reasons.join("; ")));
        jobs.insert(name.clone(), Submitted { id, outcome, log, reasons: e.reasons.clone(), running: false });
    }
    let active = ActiveRun { driver: std::process::id(), folder: folder.clone(), jobs: jobs.iter().map(|(n, j)| (n.clone(), j.id.clone())).collect() };
    write_atomic(&active_path(ws), &serde_json::to_vec_pretty(&active).unwrap_or_default()).map_err(io_err("writing jobs/active.json"))?;

    let poll = std::env::var("TAILOR_SLURM_POLL_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000u64);
    let mut cancelled = false;
    let mut unknown_since: BTreeMap<String, Instant> = BTreeMap::new();
    while jobs.keys().any(|n| !outcomes.contains_key(n)) {
        let open: Vec<String> = jobs.iter().filter(|(n, _)| !outcomes.contains_key(*n)).map(|(_, j)| j.id.clone()).collect();
        if stop.load(Ordering::SeqCst) && !cancelled {
            rep.line(&format!("  cancel  scancel {}", open.join(" ")));
            scancel(&open)?;
            cancelled = true;
        }
        let known = states(&open)?;
        let names: Vec<String> = jobs.keys().filter(|n| !outcomes.contains_key(*n)).cloned().collect();
        for name in names {
            let j = &jobs[&name];
            let st = match known.get(&j.id) {
                Some(st) => st.clone(),
                None => {
                    // Purged from Slurm's memory (or not yet visible): the outcome file decides.
                    let since = *unknown_since.entry(name.clone()).or_insert_with(Instant::now);
                    if let Some(o) = read_outcome(&j.outcome) {
                        JobState { state: if ok(&o) { "COMPLETED" } else { "FAILED" }.into(), reason: String::new(), limit: String::new() }
                    } else if since.elapsed() > Duration::from_secs(30) {
                        JobState { state: "UNKNOWN".into(), reason: "Slurm no longer knows the job".into(), limit: String::new() }
                    } else {
                        continue;
                    }
                }
            };
            if !st.ended() {
                if st.state == "RUNNING" && !j.running {
                    rep.line(&format!("  running {name}: job {} (log {})", j.id, j.log.display()));
                    if let Some(j) = jobs.get_mut(&name) {
                        j.running = true;
                    }
                }
                continue;
            }
            let o = settle(&name, j, &st, cancelled, &outcomes);
            report(rep, p, &name, j, &o);
            let failed = !matches!(o, Outcome::Cached { .. } | Outcome::Ran { .. } | Outcome::NotNeeded { .. });
            outcomes.insert(name.clone(), o);
            order.push(name.clone());
            if failed {
                skip_descendants(p, &name, &selected, &mut outcomes, &mut order, &jobs, rep);
            }
        }
        if jobs.keys().any(|n| !outcomes.contains_key(n)) {
            std::thread::sleep(Duration::from_millis(poll));
        }
    }
    let _ = std::fs::remove_file(active_path(ws));

    // The lock: this configuration's stored results for every stage that is now up to date.
    let fresh = cached_lock(p, ws)?;
    let mut lock = ws.lock_or_recover();
    for (name, o) in &outcomes {
        if matches!(o, Outcome::Cached { .. } | Outcome::Ran { .. })
            && let Some(l) = fresh.stages.get(name)
        {
            lock.stages.insert(name.clone(), l.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let summary = RunSummary {
        pipeline: p.header.name.clone(),
        stages: order.into_iter().filter(|n| seen.insert(n.clone())).filter_map(|n| outcomes.remove(&n).map(|o| (n, o))).collect(),
    };
    crate::exec::finish(p, ws, lock, &summary)?;
    Ok(summary)
}

fn preflight() -> Result<(), EngineError> {
    match Command::new("sbatch").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(EngineError::Io(format!(
            "the Slurm executor needs a working `sbatch`: `sbatch --version` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Err(e) => Err(EngineError::Io(format!("the Slurm executor needs `sbatch` on PATH ({e}); run on a Slurm login node, or use `--executor local`"))),
    }
}

fn ok(o: &Outcome) -> bool {
    matches!(o, Outcome::Cached { .. } | Outcome::Ran { .. } | Outcome::NotNeeded { .. })
}

fn read_outcome(path: &Path) -> Option<Outcome> {
    let j: JobOutcome = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(j.outcome)
}

/// A finished job's stage outcome: the job's own word when it left one,
/// else Slurm's.
fn settle(name: &str, j: &Submitted, st: &JobState, cancelled: bool, outcomes: &BTreeMap<String, Outcome>) -> Outcome {
    let written = read_outcome(&j.outcome);
    let log = j.log.display();
    match (st.state.as_str(), written) {
        ("COMPLETED", Some(Outcome::Ran { fingerprint, seconds, metrics, .. })) => Outcome::Ran { fingerprint, reasons: j.reasons.clone(), seconds, metrics },
        (_, Some(o)) if st.state != "TIMEOUT" && st.state != "CANCELLED" => o,
        ("TIMEOUT", _) => Outcome::Failed {
            error: format!(
                "Slurm job {} ran out of time (time limit {}); raise `resources: {{time: …}}` for `{name}` — a checkpointed training resumes on the next run; log: {log}",
                j.id, st.limit
            ),
        },
        ("CANCELLED", _) if st.reason.contains("Dependency") => {
            let because = outcomes.iter().find(|(_, o)| matches!(o, Outcome::Failed { .. })).map(|(n, _)| n.clone()).unwrap_or_default();
            Outcome::Skipped { because }
        }
        ("CANCELLED", _) if cancelled => Outcome::Failed { error: format!("cancelled (Slurm job {}, by Ctrl-C or `tailor cancel`)", j.id) },
        ("CANCELLED", _) => {
            Outcome::Failed { error: format!("Slurm job {} was cancelled (by `scancel`, `tailor cancel` or the administrator); log: {log}", j.id) }
        }
        (state, _) => Outcome::Failed {
            error: format!(
                "Slurm job {} ended {state}{} without a result; log: {log}",
                j.id,
                if st.reason.is_empty() { String::new() } else { format!(" ({})", st.reason) }
            ),
        },
    }
}

fn report(rep: &Reporter, p: &Pipeline, name: &str, j: &Submitted, o: &Outcome) {
    let kind = p.stage(name).map(|s| s.kind.clone()).unwrap_or_default();
    match o {
        Outcome::Ran { seconds, metrics, .. } => {
            let shown: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
            rep.line(&format!("  ok      {name} in {seconds:.1}s (job {})  {}", j.id, shown.join(" ")));
        }
        Outcome::Cached { cutoff, .. } => {
            rep.line(&format!("  cached  {name} ({kind}, job {}){}", j.id, if *cutoff { ": upstream reran with identical output" } else { "" }))
        }
        Outcome::NotNeeded { reason } => rep.line(&format!("  -       {name}: not needed ({reason})")),
        Outcome::Failed { error } => rep.line(&format!("  FAILED  {name} ({kind}, job {}): {error}", j.id)),
        Outcome::Skipped { because } => rep.line(&format!("  skip    {name}: upstream `{because}` failed (job {} cancelled)", j.id)),
    }
}

/// A stage failed: its dependents do not run. Their jobs are cancelled
/// (Slurm would, too, with `--kill-on-invalid-dep`) and they are skipped.
fn skip_descendants(
    p: &Pipeline,
    name: &str,
    selected: &HashSet<&str>,
    outcomes: &mut BTreeMap<String, Outcome>,
    order: &mut Vec<String>,
    jobs: &BTreeMap<String, Submitted>,
    rep: &Reporter,
) {
    let mut ids = Vec::new();
    for d in descendants(p, name, selected) {
        if outcomes.contains_key(&d) {
            continue;
        }
        if let Some(j) = jobs.get(&d) {
            // A job that already started (it cannot have: it waits on afterok) is left to report itself.
            if j.running {
                continue;
            }
            ids.push(j.id.clone());
        }
        rep.line(&format!("  skip    {d}: upstream `{name}` failed"));
        outcomes.insert(d.clone(), Outcome::Skipped { because: name.to_string() });
        order.push(d);
    }
    if let Err(e) = scancel(&ids) {
        tracing::warn!("{e}");
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
