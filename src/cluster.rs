//! The command line's side of the Slurm executor: how a job calls `tailor`
//! back, Ctrl-C, `tailor cancel`, and the jobs `tailor status` shows.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tailor_engine::exec::EngineError;
use tailor_engine::slurm::{self, JobOutcome};
use tailor_engine::{Outcome, Pipeline, Reporter, RunOptions, RunSummary, Workspace};

use crate::exit;
use crate::{Cli, OverrideArgs};

/// `tailor run --executor slurm`.
pub fn run(cli: &Cli, p: &Pipeline, ws: &Workspace, opts: &RunOptions, rep: &Reporter, ov: &OverrideArgs) -> Result<RunSummary, EngineError> {
    let exe = std::env::current_exe().map_err(|e| EngineError::Io(format!("locating the tailor binary: {e}")))?;
    let file = std::fs::canonicalize(&p.file).unwrap_or_else(|_| p.file.clone());
    let store = ws.store.root().to_path_buf();
    let verbose = cli.verbose;
    let job = move |stage: &str, outcome: &Path| -> Vec<String> {
        let mut a = vec![exe.display().to_string(), "-f".into(), file.display().to_string(), "--store".into(), store.display().to_string()];
        if verbose > 0 {
            a.push(format!("-{}", "v".repeat(verbose.into())));
        }
        a.extend(["stage-job".into(), stage.to_string(), "--outcome".into(), outcome.display().to_string()]);
        for (k, v) in &ov.params {
            a.extend(["-p".into(), format!("{k}={v}")]);
        }
        for (k, v) in &ov.sets {
            a.extend(["--set".into(), format!("{k}={v}")]);
        }
        a
    };
    // Ctrl-C cancels the submitted jobs; the driver then waits for Slurm to
    // confirm and writes what finished into the lock file.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: leaving now; `tailor cancel` cancels what is left");
            std::process::exit(130);
        }
        eprintln!("interrupted: cancelling the submitted jobs (Ctrl-C again leaves at once)…");
    }) {
        tracing::warn!("Ctrl-C will not cancel the jobs ({e}); use `tailor cancel`");
    }
    slurm::run(p, ws, opts, rep, &job, &stop)
}

/// `tailor stage-job STAGE --outcome FILE`: one stage of a cluster run.
pub fn stage_job(p: &Pipeline, ws: &Workspace, stage: &str, outcome: &Path) -> u8 {
    let rep = Reporter::new(false);
    let opts = RunOptions { targets: vec![stage.to_string()], force: false, jobs: 1, job: true, remote: crate::remote::for_run(p) };
    let o = match tailor_engine::run(p, ws, &opts, &rep) {
        Ok(summary) => summary.stages.into_iter().find(|(n, _)| n == stage).map(|(_, o)| o),
        Err(e) => Some(Outcome::Failed { error: e.to_string() }),
    };
    let o = o.unwrap_or_else(|| Outcome::Failed { error: format!("the job ran nothing for `{stage}`") });
    let ok = matches!(o, Outcome::Cached { .. } | Outcome::Ran { .. } | Outcome::NotNeeded { .. });
    if let Outcome::Failed { error } = &o {
        eprintln!("stage `{stage}` failed:\n  {}", error.replace('\n', "\n  "));
    }
    let bytes = serde_json::to_vec_pretty(&JobOutcome { stage: stage.to_string(), outcome: o }).unwrap_or_default();
    if let Err(e) = tailor_engine::store::write_atomic(outcome, &bytes) {
        eprintln!("error: writing the job's outcome to {}: {e}", outcome.display());
        return exit::IO;
    }
    if ok { exit::OK } else { exit::STAGE_FAILED }
}

/// `tailor cancel`.
pub fn cancel(ws: &Workspace) -> u8 {
    match slurm::cancel(ws) {
        Ok(ids) if ids.is_empty() => {
            eprintln!("no Slurm run in progress on this store ({})", ws.store.root().display());
            exit::OK
        }
        Ok(ids) => {
            eprintln!("cancelled Slurm jobs {}; the running `tailor run` reports them and writes what finished", ids.join(" "));
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::IO
        }
    }
}

/// The jobs of a Slurm run in progress, for `tailor status`.
pub fn print_active(ws: &Workspace) {
    let Some(run) = slurm::active(ws) else { return };
    let ids: Vec<String> = run.jobs.values().cloned().collect();
    let states = slurm::states(&ids).unwrap_or_default();
    println!("\nSlurm run in progress (driver pid {}, logs in {}):", run.driver, run.folder.display());
    for (stage, id) in &run.jobs {
        let st = states.get(id).map_or_else(|| "finished".to_string(), |s| format!("{} {}", s.state, s.reason));
        println!("  job {id:<8} {stage:<14} {st}");
    }
}
