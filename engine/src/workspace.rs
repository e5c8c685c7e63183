//! A project's on-disk state: the store, the lock file, the stat cache and
//! the run lock that serialises concurrent `tailor run`s.
//!
//! Two runs in one workspace never interleave: the second waits on an
//! exclusive `flock` of `.tailor/run.lock` (released by the kernel if the
//! holder dies, so a killed run never leaves a stale lock). Read-only
//! commands (`plan`, `status`, `show`) take no lock; they only read files
//! that are replaced atomically.
//!
//! On a shared filesystem where `flock` is not supported (some Lustre and
//! older NFS mounts answer ENOLCK or EOPNOTSUPP), or with
//! `TAILOR_LOCK=dir`, the lock is a directory `run.lock.d/` made with
//! `mkdir` — atomic on every POSIX filesystem, NFS included — holding the
//! owner's host and process id. A lock left by a dead process on the same
//! host is taken over; one left on another host must be removed by hand
//! (the message says which host and process held it).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::StatCache;
use crate::lockfile::Lock;
use crate::pipeline::Pipeline;
use crate::store::Store;

/// Paths and handles of a project.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Absolute project root.
    pub root: PathBuf,
    /// The store.
    pub store: Store,
    /// `tailor.lock`.
    pub lock_path: PathBuf,
}

/// Held while a run mutates the workspace.
pub enum RunLock {
    /// An exclusive `flock`, released when the file is closed.
    Flock(fs::File),
    /// A lock directory, removed on drop.
    Dir(PathBuf),
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let RunLock::Dir(d) = self {
            let _ = fs::remove_file(d.join("owner"));
            let _ = fs::remove_dir(&*d);
        }
    }
}

fn host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown-host".into())
}

/// Take the directory lock at `dir`, waiting while another live process holds it.
fn lock_dir(dir: &Path) -> io::Result<RunLock> {
    let me = format!("{} {}", host(), std::process::id());
    let mut said = false;
    loop {
        match fs::create_dir(dir) {
            Ok(()) => {
                crate::store::write_atomic(&dir.join("owner"), me.as_bytes())?;
                return Ok(RunLock::Dir(dir.to_path_buf()));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(dir.join("owner")).unwrap_or_default();
                let mut it = owner.split_whitespace();
                let (h, pid) = (it.next().unwrap_or_default(), it.next().and_then(|p| p.parse::<u32>().ok()));
                let dead = h == host() && pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
                if dead {
                    tracing::info!("taking over the run lock left by process {owner} (no longer running)");
                    let _ = fs::remove_file(dir.join("owner"));
                    let _ = fs::remove_dir(dir);
                    continue;
                }
                if !said {
                    eprintln!(
                        "waiting for another `tailor run` on this store to finish ({}, held by {}; if that process is gone, remove the directory)…",
                        dir.display(),
                        if owner.is_empty() { "a process starting up".to_string() } else { owner.trim().to_string() }
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Workspace {
    /// Open the workspace of a pipeline; `store` overrides `.tailor/`.
    pub fn open(pipeline: &Pipeline, store: Option<&Path>) -> io::Result<Self> {
        let root = fs::canonicalize(&pipeline.root)?;
        let store_dir = store.map(Path::to_path_buf).unwrap_or_else(|| root.join(".tailor"));
        Ok(Workspace { store: Store::open(&store_dir)?, lock_path: root.join("tailor.lock"), root })
    }

    /// The current lock file.
    pub fn lock(&self) -> Result<Lock, String> {
        Lock::read(&self.lock_path)
    }

    /// The lock file, or — when it cannot be read — an empty one and a
    /// warning that says what is wrong and what to do. The lock is a record
    /// of results, not the truth: the store holds them, a run rewrites it.
    pub fn lock_or_recover(&self) -> Lock {
        match self.lock() {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "warning: {e}\n  the lock file only records the last results; continuing without it. `tailor run` rewrites it, `tailor lock` rebuilds it now from the store."
                );
                Lock::default()
            }
        }
    }

    /// Re-hash the store (see [`Store::verify`]) and check the lock file
    /// against it: every locked output and stage record must be present.
    pub fn verify(&self, repair: bool) -> io::Result<crate::store::VerifyReport> {
        let mut rep = self.store.verify(repair)?;
        match self.lock() {
            Ok(lock) => {
                for (name, s) in &lock.stages {
                    for (o, d) in &s.outputs {
                        if !self.store.has_artifact(d) {
                            rep.problems.push(format!("tailor.lock: {name}.{o} = {d} is not in the store (run `tailor run` to rebuild it)"));
                        }
                    }
                    if !self.store.record_path(&s.fingerprint).exists() {
                        rep.problems.push(format!("tailor.lock: stage record {} of `{name}` is not in the store", s.fingerprint));
                    }
                }
            }
            Err(e) => rep.problems.push(format!("{e} — the lock file only records results: `tailor lock` rebuilds it from the store")),
        }
        Ok(rep)
    }

    /// The stat cache.
    pub fn stat_cache(&self) -> StatCache {
        StatCache::load(&self.store.root().join(crate::store::dirs::STAT_CACHE))
    }

    /// Take the exclusive run lock, waiting (and saying so) if another run
    /// holds it.
    pub fn lock_runs(&self) -> io::Result<RunLock> {
        let dir = self.store.root().join("run.lock.d");
        if std::env::var("TAILOR_LOCK").is_ok_and(|v| v == "dir") {
            return lock_dir(&dir);
        }
        let path = self.store.root().join("run.lock");
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!("waiting for another `tailor run` in this workspace to finish ({})…", path.display());
                file.lock()?;
            }
            // ENOLCK, EOPNOTSUPP, ENOSYS: a filesystem without flock.
            Err(fs::TryLockError::Error(e)) if matches!(e.raw_os_error(), Some(37 | 95 | 38)) || e.kind() == io::ErrorKind::Unsupported => {
                tracing::info!("flock is not supported on this store's filesystem ({e}); using a lock directory");
                return lock_dir(&dir);
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(RunLock::Flock(file))
    }
}
