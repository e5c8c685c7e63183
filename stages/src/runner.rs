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

use serde_json::Value;
use tailor_engine::{IoContext, StageContext, StageError};

/// `tailor-train` beside the running binary (or `TAILOR_TRAIN_BIN`).
pub fn trainer_binary() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os("TAILOR_TRAIN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ctx(|| "locating the tailor binary".into())?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live in target/*/deps; the trainer one level up.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("tailor-train");
    if bin.exists() { Ok(bin) } else { Err(StageError::msg(format!("{} not found; build it with `cargo build` (it links libtorch)", bin.display()))) }
}

/// Run `tailor-train SUBCOMMAND JOB` with `job` written next to the stage's
/// outputs; returns the `done` event's metrics.
pub fn run(ctx: &StageContext<'_>, subcommand: &str, job: &Value, job_file: &Path) -> Result<Value, StageError> {
    std::fs::write(job_file, serde_json::to_vec_pretty(job).unwrap_or_default()).ctx(|| format!("writing {}", job_file.display()))?;
    let bin = trainer_binary()?;
    let mut child = Command::new(&bin)
        .arg(subcommand)
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
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut done = Value::Null;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.ctx(|| "reading trainer output".into())?;
            let Ok(ev) = serde_json::from_str::<Value>(&line) else { continue };
            event(ctx, &ev, &mut done);
        }
    }
    let err = errs.join().unwrap_or_default();
    let status = child.wait().ctx(|| "waiting for the trainer".into())?;
    if !status.success() {
        let msg = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("the trainer failed without a message").trim_start_matches("error: ");
        return Err(StageError::msg(msg.to_string()));
    }
    Ok(done)
}

fn event(ctx: &StageContext<'_>, ev: &Value, done: &mut Value) {
    let bar = ctx.progress();
    match ev["event"].as_str() {
        Some("start") => {
            bar.set_length(ev["steps"].as_u64().unwrap_or(0));
            tracing::info!(stage = ctx.name, "{}", ev);
        }
        Some("step") => {
            bar.set_position(ev["step"].as_u64().unwrap_or(0));
            if let Some(loss) = ev["loss"].as_f64() {
                bar.set_message(format!("loss {loss:.4} · {:.0} tok/s", ev["tokens_per_s"].as_f64().unwrap_or(0.0)));
            } else if let Some(v) = ev["variant"].as_str() {
                bar.set_message(v.to_string());
            }
            tracing::debug!(stage = ctx.name, "{}", ev);
        }
        Some("resume") => tracing::warn!(stage = ctx.name, step = ev["step"].as_u64().unwrap_or(0), "resuming from a checkpoint"),
        Some("checkpoint") | Some("note") => tracing::info!(stage = ctx.name, "{}", ev),
        Some("done") => {
            *done = ev["metrics"].clone();
            tracing::info!(stage = ctx.name, "{}", ev);
        }
        _ => {}
    }
}
