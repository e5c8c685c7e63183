//! Starting a training job's data-parallel ranks. With `workers: 1` the job
//! runs in this process. With N above 1 this process becomes rank 0: it
//! serves the rendezvous store, starts ranks 1..N, runs its own share, and
//! in the end waits for them. On a machine of its own it starts them as
//! copies of itself on the loopback interface (told their place by
//! environment variables, killed by the kernel if rank 0 dies); inside a
//! Slurm job with enough tasks (the Slurm executor asks for one per worker)
//! it starts them with one `srun` step, possibly on other nodes. A rank that fails fails the job with that
//! rank's own reason; the others stop at their next collective (a closed
//! socket, or the timeout of [`crate::dist::timeout_ms`]) instead of hanging.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::dist::Store;
use crate::trainer::{self, TrainJob};

/// Environment of a started rank: its index, the number of ranks, and rank
/// 0's store as `host:port`.
pub const RANK: &str = "TAILOR_RANK";
/// See [`RANK`].
pub const WORLD: &str = "TAILOR_WORLD";
/// See [`RANK`].
pub const MASTER: &str = "TAILOR_MASTER";
/// Ranks started by `srun` are this plus their `SLURM_PROCID`.
pub const RANK_BASE: &str = "TAILOR_RANK_BASE";

/// Every rank of a local launch talks over the loopback interface.
const LOCAL: &str = "127.0.0.1";

/// Run a training job in this process, or as `job.workers` ranks.
pub fn run(job: &TrainJob, job_file: &Path) -> Result<(), String> {
    let world = job.workers.max(1);
    if world == 1 {
        return trainer::train(job).map(|_| ());
    }
    if std::env::var_os(RANK).is_some() || std::env::var_os(RANK_BASE).is_some() {
        return run_started_rank(job, world);
    }
    let slurm = slurm_tasks().is_some_and(|n| n >= world);
    let host = own_host();
    let store = Store::serve(&host, world)?;
    let port = store.port();
    let exe = std::env::current_exe().map_err(|e| format!("locating tailor-train: {e}"))?;
    let mut ranks = Vec::new();
    if slurm {
        // One step of world-1 tasks; if one fails, Slurm kills the others.
        let mut cmd = Command::new("srun");
        cmd.arg(format!("--ntasks={}", world - 1)).args(["--kill-on-bad-exit=1", "--overlap"]).arg(&exe).arg("run").arg(job_file).env(RANK_BASE, "1");
        ranks.push(Started::spawn(cmd, if world == 2 { "rank 1".into() } else { format!("ranks 1–{}", world - 1) }, world, &host, port, true)?);
        trainer::emit(&tailor_protocol::event::Event::Note {
            message: format!(
                "{world} data-parallel ranks: rank 0 here ({host}), the others in an srun step of Slurm job {}",
                std::env::var("SLURM_JOB_ID").unwrap_or_default()
            ),
        });
    } else {
        for rank in 1..world {
            let mut cmd = Command::new(&exe);
            cmd.arg("run").arg(job_file).env(RANK, rank.to_string());
            ranks.push(Started::spawn(cmd, format!("rank {rank}"), world, &host, port, false)?);
        }
    }
    let own = store.join(&host, 0).and_then(|group| trainer::train_in(job, Some(&group)).map(|_| ()));
    // Ranks still running after rank 0 failed are stuck in a collective or
    // about to notice; give them a moment to say why, then stop them.
    let grace = if own.is_ok() { None } else { Some(Duration::from_secs(10)) };
    let mut failed = None;
    for r in ranks {
        let label = r.label.clone();
        let (status, errors) = r.finish(grace);
        if failed.is_none()
            && let Some(why) = failure(status, &errors)
        {
            failed = Some((label, why));
        }
    }
    match (own, failed) {
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(e),
        (own, Some((label, why))) => {
            let also = own.err().map(|e| format!(" (rank 0: {e})")).unwrap_or_default();
            Err(format!("training {label} of {world} {why}{also}; rerun the stage to resume from its last checkpoint (`checkpoint_every`)"))
        }
    }
}

/// Tasks of the Slurm job this process runs in, if it runs in one.
fn slurm_tasks() -> Option<usize> {
    std::env::var_os("SLURM_JOB_ID")?;
    std::env::var("SLURM_NTASKS").ok()?.parse().ok()
}

/// The address this rank's peers reach it at: the loopback interface while
/// every rank is on this machine, else this host's name.
fn own_host() -> String {
    let nodes: usize = std::env::var("SLURM_JOB_NUM_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
    if slurm_tasks().is_none() || nodes <= 1 {
        return LOCAL.into();
    }
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer and its length; the result is NUL-terminated on success.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return LOCAL.into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Ranks this process started (one process, or an `srun` step of several).
struct Started {
    label: String,
    child: Child,
    errors: std::thread::JoinHandle<String>,
}

impl Started {
    /// Start `cmd` as the ranks `label`, told the number of ranks and rank 0's store.
    fn spawn(mut cmd: Command, label: String, world: usize, host: &str, port: u16, srun: bool) -> Result<Started, String> {
        cmd.env(WORLD, world.to_string()).env(MASTER, format!("{host}:{port}")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("starting {label}{}: {e}", if srun { " with srun" } else { "" }))?;
        let mut stderr = child.stderr.take();
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = stderr.as_mut() {
                // A read error keeps what was read; the exit status decides.
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        Ok(Started { label, child, errors })
    }

    /// Its exit status and standard error; after `grace`, it is killed.
    fn finish(mut self, grace: Option<Duration>) -> (Option<ExitStatus>, String) {
        let status = match grace {
            None => self.child.wait().ok(),
            Some(limit) => {
                let start = Instant::now();
                loop {
                    match self.child.try_wait() {
                        Ok(Some(s)) => break Some(s),
                        Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
                        _ => {
                            let _ = self.child.kill();
                            let _ = self.child.wait();
                            break None;
                        }
                    }
                }
            }
        };
        (status, self.errors.join().unwrap_or_default())
    }
}

/// Why a rank failed, if it did.
fn failure(status: Option<ExitStatus>, errors: &str) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let last = errors.lines().rfind(|l| !l.trim().is_empty()).map(|l| l.trim().trim_start_matches("error: ").to_string());
    match status {
        None => Some("did not stop after rank 0 failed and was killed".into()),
        Some(s) if s.success() => None,
        Some(s) => Some(match (s.signal(), last) {
            (Some(sig), _) => format!("was killed by signal {sig}"),
            (None, Some(line)) => format!("failed: {line}"),
            (None, None) => format!("exited with status {} without a message", s.code().unwrap_or(-1)),
        }),
    }
}

/// A rank started by the launcher (or by `srun`) joins rank 0's store and
/// trains its share.
fn run_started_rank(job: &TrainJob, world: usize) -> Result<(), String> {
    let number = |name: &str| -> Result<usize, String> {
        let v = std::env::var(name).map_err(|_| format!("{name} is not set"))?;
        v.parse().map_err(|_| format!("{name}={v} is not a number"))
    };
    let rank = if std::env::var_os(RANK).is_some() { number(RANK)? } else { number(RANK_BASE)? + number("SLURM_PROCID")? };
    let told: usize = std::env::var(WORLD).ok().and_then(|w| w.parse().ok()).unwrap_or(world);
    if told != world || rank >= world {
        return Err(format!("rank {rank} of {told} was started for a job with `workers: {world}`"));
    }
    let master = std::env::var(MASTER).map_err(|_| format!("{MASTER} (rank 0's host:port) is not set"))?;
    let (host, port) = master.rsplit_once(':').ok_or_else(|| format!("{MASTER}={master} is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("{MASTER}={master}: the port is not a number"))?;
    let group = Store::connect(host, port, world)?.join(&own_host(), rank)?;
    trainer::train_in(job, Some(&group)).map(|_| ())
}

/// Have the kernel kill the started rank when this process ends, however it
/// ends, so that no rank outlives the job.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
