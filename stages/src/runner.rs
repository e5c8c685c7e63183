//! Running the `tailor-train` binary, the half of Tailor that links
//! libtorch: a stage writes a job file, the binary prints JSON lines
//! (`start`, `step`, `checkpoint`, `resume`, `note`, `done`), and this module
//! turns them into the stage's progress bar and log, and the binary's last
//! error line into the stage's error. Keeping libtorch out of the `tailor`
//! process keeps no-op runs fast and turns a libtorch crash into one failed
//! stage.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tailor_engine::{IoContext, StageContext, StageError};
use tailor_protocol::TRAINER;
use tailor_protocol::event::{Done, Event};
use tailor_protocol::job::Job;

/// `tailor-train` beside the running binary (or `TAILOR_TRAIN_BIN`).
pub fn trainer_binary() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os("TAILOR_TRAIN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ctx(|| "locating the tailor binary".into())?;
    let mut dir = exe.parent().map(Path::to_path_buf).ok_or_else(|| StageError::msg(format!("{} has no parent directory", exe.display())))?;
    // Test binaries live in target/*/deps; the trainer one level up.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("tailor-train");
    if bin.exists() { Ok(bin) } else { Err(StageError::msg(format!("{} not found; build it with `cargo build` (it links libtorch)", bin.display()))) }
}

/// Run `tailor-train SUBCOMMAND JOB` with `job` written to `job_file`
/// (next to the stage's outputs); returns the `done` event.
pub fn run<J: Job>(ctx: &StageContext<'_>, job: &J, job_file: &Path) -> Result<Done, StageError> {
    let text = serde_json::to_vec_pretty(job).map_err(|e| StageError::msg(format!("serialising the trainer job: {e}")))?;
    std::fs::write(job_file, text).ctx(|| format!("writing {}", job_file.display()))?;
    let bin = trainer_binary()?;
    let mut child = Command::new(&bin)
        .arg(J::SUBCOMMAND)
        .arg(job_file)
        .envs(crate::numerics::pinned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| format!("starting {}", bin.display()))?;
    // Drain stderr on its own thread so a chatty libtorch cannot block the child.
    let stderr = child.stderr.take();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            // A read error leaves what was read; the exit status still decides.
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut done = None;
    let mut mismatch = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.ctx(|| "reading trainer output".into())?;
            match serde_json::from_str::<Event>(&line) {
                Ok(Event::Start(s)) if s.trainer != TRAINER => {
                    // A trainer from another build: its results would be cached
                    // under this build's identity. Stop it now.
                    let _ = child.kill();
                    mismatch = Some(s.trainer);
                    break;
                }
                Ok(ev) => event(ctx, ev, &mut done),
                Err(_) => tracing::debug!(stage = ctx.name, "trainer: {line}"),
            }
        }
    }
    let err = errs.join().unwrap_or_else(|_| "the thread reading the trainer's errors panicked".into());
    let status = child.wait().ctx(|| "waiting for the trainer".into())?;
    if let Some(other) = mismatch {
        return Err(StageError::msg(format!(
            "{} is from a different build (trainer {other}, this tailor expects {TRAINER}); rebuild both with `cargo build --workspace --release`",
            bin.display()
        )));
    }
    if !status.success() {
        let msg = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("the trainer failed without a message").trim_start_matches("error: ");
        return Err(StageError::msg(msg.to_string()));
    }
    done.ok_or_else(|| StageError::msg(format!("{} exited without reporting `done`", bin.display())))
}

fn event(ctx: &StageContext<'_>, ev: Event, done: &mut Option<Done>) {
    let bar = ctx.progress();
    match ev {
        Event::Start(s) => {
            bar.set_length(s.steps);
            tracing::info!(stage = ctx.name, steps = s.steps, rows = s.rows, device = s.device, dtype = s.dtype, "trainer started");
        }
        Event::Step(s) => {
            bar.set_position(s.step);
            bar.set_message(format!("loss {:.4} · {:.0} tok/s", s.loss, s.tokens_per_s.unwrap_or(0.0)));
            tracing::debug!(stage = ctx.name, step = s.step, loss = s.loss, lr = s.lr, grad_norm = s.grad_norm, val_loss = s.val_loss, "step");
        }
        Event::Progress { step, variant, .. } => {
            bar.set_position(step);
            bar.set_message(variant);
        }
        Event::Resume { step, from } => tracing::warn!(stage = ctx.name, step, from = %from.display(), "resuming from a checkpoint"),
        Event::Checkpoint { step, dir } => tracing::info!(stage = ctx.name, step, dir = %dir.display(), "checkpoint"),
        Event::Note { message } => tracing::info!(stage = ctx.name, "{message}"),
        Event::Done(d) => {
            tracing::info!(stage = ctx.name, seconds = d.seconds, peak_rss_mib = d.peak_rss_mib, "trainer done");
            *done = Some(d);
        }
    }
}
