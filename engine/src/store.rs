//! The content-addressed artifact store under `.tailor/`.
//!
//! ```text
//! .tailor/
//!   objects/ab/cdef…        file contents, named by BLAKE3 digest, read-only
//!   manifests/ab/cdef….json artifact manifests (kind + files), named by the
//!                           digest of the manifest bytes = the artifact digest
//!   index/ab/cdef….json     stage records, named by stage fingerprint
//!   views/<digest>/…        artifacts laid out as directories (hard links)
//!   tmp/                    scratch space of the run in progress
//!   state/<fingerprint>/    what a killed stage resumes from (checkpoints);
//!                           removed when that stage succeeds
//!   runs/                   one record per `tailor run`
//!   jobs/<run>/             cluster runs: each job's script, log, outcome
//!   statcache.json, run.lock
//! ```
//!
//! Every file enters the store by write-to-temp, fsync, rename, and each
//! layer is written only after the layer it points to (objects, then
//! manifest, then stage record, then lock file). A process killed at any
//! moment therefore leaves at worst unreferenced temporaries, which the next
//! run deletes; it never leaves a name that points at partial content.
//! Because names are digests, two writers of the same content race
//! harmlessly.
//!
//! On a filesystem shared by cluster nodes (`--store`, `TAILOR_STORE`) this
//! relies on two things only: `rename` within a directory is atomic (NFS
//! renames on the server), and a file's content is visible to another node
//! once the writer closed it after `fsync` (NFS close-to-open consistency).
//! Jobs of one run write disjoint scratch folders and content-named files,
//! so they need no lock among themselves; the run lock (see
//! [`crate::workspace`]) serialises drivers and falls back to a `mkdir` lock
//! where `flock` is not supported.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::{StatCache, hash_bytes, hash_file, list_files};

/// The store's folder and file names, in one place.
pub mod dirs {
    /// Content-addressed file objects.
    pub const OBJECTS: &str = "objects";
    /// Artifact manifests (file list → object digests).
    pub const MANIFESTS: &str = "manifests";
    /// Stage records by fingerprint.
    pub const INDEX: &str = "index";
    /// Read-only directory views of artifacts (hard links).
    pub const VIEWS: &str = "views";
    /// Scratch space of running stages.
    pub const TMP: &str = "tmp";
    /// One record per `tailor run`.
    pub const RUNS: &str = "runs";
    /// What an interrupted stage keeps to resume from, by fingerprint.
    pub const STATE: &str = "state";
    /// Cluster runs: per run, each job's script, log and outcome; and
    /// `active.json` while a run is in progress.
    pub const JOBS: &str = "jobs";
    /// The stat cache (`StatCache`).
    pub const STAT_CACHE: &str = "statcache.json";
}

/// One file of an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    /// Path inside the artifact, `/`-separated.
    pub path: String,
    /// Content digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// What an artifact is: its kind and files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Artifact kind (`records`, `model`, …).
    pub kind: String,
    /// Files, sorted by path.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Write `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp-{}-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("f"), std::process::id(), unique()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Durability of the rename, where the filesystem supports syncing a
    // directory; the rename itself has already happened either way.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Remove a file or directory the store no longer wants. A failure is
/// logged, not fatal: what is left is found again by `verify` or `gc`.
fn remove(path: impl AsRef<Path>) {
    let path = path.as_ref();
    let result = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    if let Err(e) = result
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}

/// A process-unique counter mixed with time, for temporary names.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{t:x}{:x}", N.fetch_add(1, Ordering::Relaxed))
}

/// Problems found by [`Store::verify`].
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Objects checked.
    pub objects: usize,
    /// Manifests checked.
    pub manifests: usize,
    /// Views checked.
    pub views: usize,
    /// One line per problem.
    pub problems: Vec<String>,
}

/// Why an artifact cannot be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Damage {
    /// Part of it is not in the store (garbage-collected or deleted).
    #[error("{0}")]
    Missing(String),
    /// Some of its content is not what its digest says.
    #[error("{message}")]
    Corrupt {
        /// What is wrong, in words.
        message: String,
        /// The objects whose content is wrong (to [`Store::quarantine`]).
        objects: Vec<String>,
    },
}

fn short(d: &str) -> String {
    d[..d.len().min(12)].to_string()
}

fn rel_string(rel: &Path) -> String {
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Handle on a `.tailor/` directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn sharded(base: &Path, digest: &str, ext: &str) -> PathBuf {
    let (a, b) = digest.split_at(digest.len().min(2));
    base.join(a).join(format!("{b}{ext}"))
}

impl Store {
    /// Open (and create) a store.
    pub fn open(root: &Path) -> io::Result<Self> {
        for sub in [dirs::OBJECTS, dirs::MANIFESTS, dirs::INDEX, dirs::VIEWS, dirs::TMP, dirs::RUNS] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of an object.
    pub fn object_path(&self, digest: &str) -> PathBuf {
        sharded(&self.root.join(dirs::OBJECTS), digest, "")
    }

    /// Path of an artifact manifest.
    pub fn manifest_path(&self, digest: &str) -> PathBuf {
        sharded(&self.root.join(dirs::MANIFESTS), digest, ".json")
    }

    /// Path of a stage record.
    pub fn record_path(&self, fingerprint: &str) -> PathBuf {
        sharded(&self.root.join(dirs::INDEX), fingerprint, ".json")
    }

    /// A fresh scratch directory.
    pub fn scratch(&self, label: &str) -> io::Result<PathBuf> {
        let p = self.root.join(dirs::TMP).join(format!("{label}-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// Where a stage with this fingerprint keeps what an interrupted attempt
    /// can resume from (not created here).
    pub fn state_dir(&self, fingerprint: &str) -> PathBuf {
        self.root.join(dirs::STATE).join(fingerprint)
    }

    /// Delete leftovers of interrupted runs. Call only while holding the run
    /// lock. Returns how many entries were removed.
    pub fn clean_scratch(&self) -> io::Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(self.root.join(dirs::TMP))? {
            let p = e?.path();
            if p.is_dir() {
                fs::remove_dir_all(&p)?
            } else {
                fs::remove_file(&p)?
            }
            n += 1;
        }
        Ok(n)
    }

    /// Move every file under `dir` into the store and return the artifact
    /// digest. `dir` is consumed (its files are moved, not copied).
    pub fn ingest_dir(&self, dir: &Path, kind: &str) -> io::Result<String> {
        let rels = list_files(dir)?;
        let files: Vec<io::Result<ManifestFile>> = rels
            .par_iter()
            .map(|rel| {
                let src = dir.join(rel);
                let digest = hash_file(&src)?;
                let size = fs::metadata(&src)?.len();
                self.put_file(&src, &digest)?;
                Ok(ManifestFile { path: rel_string(rel), digest, size })
            })
            .collect();
        let files = files.into_iter().collect::<io::Result<Vec<_>>>()?;
        self.put_manifest(&Manifest { kind: kind.to_string(), files })
    }

    /// Move one file into the objects (a no-op if the object exists). The
    /// caller vouches that `digest` is the file's content digest.
    pub fn put_file(&self, src: &Path, digest: &str) -> io::Result<()> {
        let dst = self.object_path(digest);
        if dst.exists() {
            fs::remove_file(src)?;
            return Ok(());
        }
        fs::create_dir_all(dst.parent().unwrap_or(&self.root))?;
        fs::File::open(src)?.sync_all()?;
        let mut perm = fs::metadata(src)?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(src, perm)?;
        fs::rename(src, &dst)?;
        Ok(())
    }

    /// Store a manifest; its digest is the artifact's digest.
    pub fn put_manifest(&self, m: &Manifest) -> io::Result<String> {
        let bytes = serde_json::to_vec(m).map_err(io::Error::other)?;
        let digest = hash_bytes(&bytes);
        let path = self.manifest_path(&digest);
        if !path.exists() {
            write_atomic(&path, &bytes)?;
        }
        Ok(digest)
    }

    /// Read a manifest.
    pub fn manifest(&self, digest: &str) -> io::Result<Manifest> {
        let bytes = fs::read(self.manifest_path(digest))?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
    }

    /// True when the artifact and all its files are present.
    pub fn has_artifact(&self, digest: &str) -> bool {
        self.manifest(digest).is_ok_and(|m| m.files.iter().all(|f| self.object_path(&f.digest).exists()))
    }

    /// The artifact as a read-only directory (hard links into the objects,
    /// built once, atomically).
    pub fn view(&self, digest: &str) -> io::Result<PathBuf> {
        let dst = self.root.join(dirs::VIEWS).join(digest);
        if dst.exists() {
            return Ok(dst);
        }
        let m = self.manifest(digest)?;
        let tmp = self.scratch("view")?;
        for f in &m.files {
            let to = tmp.join(&f.path);
            if let Some(p) = to.parent() {
                fs::create_dir_all(p)?;
            }
            let obj = self.object_path(&f.digest);
            if fs::hard_link(&obj, &to).is_err() {
                fs::copy(&obj, &to)?;
            }
        }
        match fs::rename(&tmp, &dst) {
            Ok(()) => Ok(dst),
            // Another process built the same view first.
            Err(_) if dst.exists() => {
                remove(&tmp);
                Ok(dst)
            }
            Err(e) => Err(e),
        }
    }

    /// Check an artifact before it is served: its manifest is the one its
    /// digest names, and every object it lists is present with the content
    /// its name says. With a stat cache, files whose stat is unchanged since
    /// they were last hashed are not read again (any write changes mtime and
    /// ctime); without one, every byte is hashed. Corrupt objects are
    /// removed, together with every view that links to them, so that no
    /// copy of bad content stays reachable and the producing stage reruns.
    pub fn check_artifact(&self, digest: &str, cache: Option<&mut StatCache>) -> Result<Manifest, Damage> {
        let path = self.manifest_path(digest);
        let bytes = fs::read(&path).map_err(|e| Damage::Missing(format!("artifact {digest}: manifest unreadable ({e})")))?;
        if hash_bytes(&bytes) != digest {
            return Err(Damage::Corrupt {
                message: format!("artifact {digest}: its manifest does not match its digest"),
                objects: vec![format!("manifest:{digest}")],
            });
        }
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Damage::Corrupt { message: format!("artifact {digest}: manifest unreadable ({e})"), objects: vec![format!("manifest:{digest}")] })?;
        let objects: Vec<PathBuf> = m.files.iter().map(|f| self.object_path(&f.digest)).collect();
        if let Some(f) = m.files.iter().zip(&objects).find(|(_, o)| !o.exists()) {
            return Err(Damage::Missing(format!("artifact {digest}: file {} (object {}) is missing", f.0.path, f.0.digest)));
        }
        let found: Vec<io::Result<String>> = match cache {
            Some(c) => match c.digest_many(&objects) {
                Ok(d) => d.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            },
            None => objects.par_iter().map(|o| hash_file(o)).collect(),
        };
        let mut bad = Vec::new();
        let mut objects = Vec::new();
        for (f, got) in m.files.iter().zip(found) {
            match got {
                Ok(d) if d == f.digest => continue,
                Ok(d) => bad.push(format!("{} (object {} has content {})", f.path, short(&f.digest), short(&d))),
                Err(e) => bad.push(format!("{} (object {} unreadable: {e})", f.path, short(&f.digest))),
            }
            objects.push(f.digest.clone());
        }
        if bad.is_empty() {
            return Ok(m);
        }
        Err(Damage::Corrupt { message: format!("artifact {} is damaged: {}", short(digest), bad.join(", ")), objects })
    }

    /// Remove damaged content found by [`Store::check_artifact`]: the
    /// objects (or manifests, as `manifest:DIGEST`) and every view that
    /// links to them, so that no copy stays reachable and the producing
    /// stage reruns. Call only while holding the run lock.
    pub fn quarantine(&self, objects: &[String]) {
        let mut plain = BTreeSet::new();
        for o in objects {
            match o.strip_prefix("manifest:") {
                Some(m) => {
                    remove(self.manifest_path(m));
                    self.drop_view(m);
                }
                None => {
                    remove(self.object_path(o));
                    plain.insert(o.clone());
                }
            }
        }
        for v in self.views_containing(&plain) {
            self.drop_view(&v);
        }
    }

    /// The artifact as a directory, checked: the view holds exactly the
    /// manifest's files with the manifest's content (a view whose files
    /// were replaced or edited is rebuilt from the objects).
    pub fn checked_view(&self, digest: &str, mut cache: Option<&mut StatCache>) -> Result<PathBuf, Damage> {
        let m = self.check_artifact(digest, cache.as_deref_mut())?;
        let dir = self.view(digest).map_err(|e| Damage::Missing(format!("artifact {digest}: {e}")))?;
        if self.view_matches(&dir, &m, cache) {
            return Ok(dir);
        }
        tracing::warn!("the view of artifact {digest} differs from its manifest; rebuilding it");
        self.drop_view(digest);
        self.view(digest).map_err(|e| Damage::Missing(format!("artifact {digest}: {e}")))
    }

    fn view_matches(&self, dir: &Path, m: &Manifest, cache: Option<&mut StatCache>) -> bool {
        let Ok(rels) = list_files(dir) else { return false };
        let listed: Vec<String> = rels.iter().map(|r| rel_string(r)).collect();
        let want: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        let mut sorted = want.clone();
        sorted.sort_unstable();
        if listed.iter().map(String::as_str).collect::<Vec<_>>() != sorted {
            return false;
        }
        // A view file that is a hard link to its object has the object's
        // content, which both callers verify on their own: only files that
        // are not (a copy across devices, or a file replaced in the view)
        // are hashed here — a consumed model is read once, not twice.
        let same_inode = |a: &Path, b: &Path| match (fs::metadata(a), fs::metadata(b)) {
            (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
            _ => false,
        };
        let (paths, want): (Vec<PathBuf>, Vec<&str>) = m
            .files
            .iter()
            .map(|f| (dir.join(&f.path), f))
            .filter(|(p, f)| !same_inode(p, &self.object_path(&f.digest)))
            .map(|(p, f)| (p, f.digest.as_str()))
            .unzip();
        let got: Vec<String> = match cache {
            // A file that cannot be read counts as damaged (its digest is empty).
            Some(c) => c.digest_many(&paths).unwrap_or_default(),
            None => paths.par_iter().map(|p| hash_file(p).unwrap_or_default()).collect(),
        };
        got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| g == w)
    }

    /// Remove a view (it is rebuilt from the objects on demand).
    pub fn drop_view(&self, digest: &str) {
        let dir = self.root.join(dirs::VIEWS).join(digest);
        if dir.exists() {
            let tmp = self.root.join(dirs::TMP).join(format!("dropped-view-{}", unique()));
            // Rename first so that no reader sees a half-deleted view.
            // (Removing the links needs no write permission on the files,
            // which are the read-only objects themselves.)
            if fs::rename(&dir, &tmp).is_ok() {
                remove(&tmp);
            } else {
                remove(&dir);
            }
        }
    }

    /// Digests of the views whose artifacts contain any of `objects`.
    fn views_containing(&self, objects: &BTreeSet<String>) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.root.join(dirs::VIEWS)) else { return Vec::new() };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|d| self.manifest(d).map_or(true, |m| m.files.iter().any(|f| objects.contains(&f.digest))))
            .collect()
    }

    /// Re-hash every object and manifest; report any mismatch or dangling
    /// reference. `delete_bad` removes corrupt entries so the next run
    /// recomputes them.
    pub fn verify(&self, delete_bad: bool) -> io::Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let objects = walk_sharded(&self.root.join(dirs::OBJECTS))?;
        rep.objects = objects.len();
        let bad: Vec<(String, String)> = objects
            .par_iter()
            .filter_map(|(digest, path)| match hash_file(path) {
                Ok(d) if &d == digest => None,
                Ok(d) => Some((digest.clone(), format!("object {digest} has content {d}"))),
                Err(e) => Some((digest.clone(), format!("object {digest} unreadable: {e}"))),
            })
            .collect();
        if delete_bad {
            for (d, _) in &bad {
                remove(self.object_path(d));
            }
            // Views are hard links: a corrupt object is corrupt in every view.
            let objects: BTreeSet<String> = bad.iter().map(|(d, _)| d.clone()).collect();
            for v in self.views_containing(&objects) {
                self.drop_view(&v);
            }
        }
        rep.problems.extend(bad.into_iter().map(|(_, line)| line));
        for (digest, path) in walk_sharded(&self.root.join(dirs::MANIFESTS))? {
            let digest = digest.trim_end_matches(".json").to_string();
            rep.manifests += 1;
            let bytes = fs::read(&path)?;
            if hash_bytes(&bytes) != digest {
                rep.problems.push(format!("manifest {digest} does not match its content"));
                if delete_bad {
                    remove(&path);
                }
                continue;
            }
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                for f in m.files.iter().filter(|f| !self.object_path(&f.digest).exists()) {
                    rep.problems.push(format!("artifact {digest}: file {} (object {}) is missing", f.path, f.digest));
                }
            }
        }
        // Views are what `tailor show --path` and stages read: each must hold
        // exactly its manifest's files with the manifest's content.
        if let Ok(rd) = fs::read_dir(self.root.join(dirs::VIEWS)) {
            for e in rd.flatten() {
                let digest = e.file_name().to_string_lossy().into_owned();
                rep.views += 1;
                let ok = self.manifest(&digest).is_ok_and(|m| self.view_matches(&e.path(), &m, None));
                if !ok {
                    rep.problems.push(format!("view {digest} differs from its artifact{}", if delete_bad { " (removed; rebuilt on demand)" } else { "" }));
                    if delete_bad {
                        self.drop_view(&digest);
                    }
                }
            }
        }
        Ok(rep)
    }

    /// Delete every object, manifest, view and stage record not reachable
    /// from `keep_records` (fingerprints) and `keep_artifacts` (digests).
    /// Returns (entries removed, bytes freed).
    pub fn gc(&self, keep_records: &BTreeSet<String>, keep_artifacts: &BTreeSet<String>, dry_run: bool) -> io::Result<(usize, u64)> {
        let mut keep_objects = BTreeSet::new();
        for a in keep_artifacts {
            if let Ok(m) = self.manifest(a) {
                keep_objects.extend(m.files.into_iter().map(|f| f.digest));
            }
        }
        let mut removed = 0;
        let mut freed = 0;
        let mut drop = |path: &Path| -> io::Result<()> {
            let size = if path.is_dir() { 0 } else { fs::metadata(path)?.len() };
            removed += 1;
            freed += size;
            if !dry_run {
                if path.is_dir() { fs::remove_dir_all(path)? } else { fs::remove_file(path)? }
            }
            Ok(())
        };
        for (d, p) in walk_sharded(&self.root.join(dirs::OBJECTS))? {
            if !keep_objects.contains(&d) {
                drop(&p)?;
            }
        }
        for (d, p) in walk_sharded(&self.root.join(dirs::MANIFESTS))? {
            if !keep_artifacts.contains(d.trim_end_matches(".json")) {
                drop(&p)?;
            }
        }
        for (d, p) in walk_sharded(&self.root.join(dirs::INDEX))? {
            if !keep_records.contains(d.trim_end_matches(".json")) {
                drop(&p)?;
            }
        }
        for e in fs::read_dir(self.root.join(dirs::VIEWS))? {
            let e = e?;
            if !keep_artifacts.contains(&e.file_name().to_string_lossy().to_string()) {
                drop(&e.path())?;
            }
        }
        // Checkpoints of interrupted stages: only a rerun of the same
        // fingerprint would resume from them, and the lock references none.
        if let Ok(states) = fs::read_dir(self.root.join(dirs::STATE)) {
            for e in states {
                drop(&e?.path())?;
            }
        }
        Ok((removed, freed))
    }
}

/// (digest, path) of every entry in a two-level sharded directory.
fn walk_sharded(base: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(base) else { return Ok(out) };
    for shard in shards {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        let prefix = shard.file_name().to_string_lossy().to_string();
        for e in fs::read_dir(shard.path())? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            out.push((format!("{prefix}{name}"), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_view_verify_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(".tailor")).unwrap();
        let out = store.scratch("t").unwrap();
        fs::create_dir_all(out.join("sub")).unwrap();
        fs::write(out.join("a.txt"), "A").unwrap();
        fs::write(out.join("sub/b.txt"), "B").unwrap();
        let d = store.ingest_dir(&out, "records").unwrap();
        assert!(store.has_artifact(&d));
        let v = store.view(&d).unwrap();
        assert_eq!(fs::read_to_string(v.join("sub/b.txt")).unwrap(), "B");
        // Same content → same digest.
        let out2 = store.scratch("t").unwrap();
        fs::create_dir_all(out2.join("sub")).unwrap();
        fs::write(out2.join("a.txt"), "A").unwrap();
        fs::write(out2.join("sub/b.txt"), "B").unwrap();
        assert_eq!(store.ingest_dir(&out2, "records").unwrap(), d);
        let rep = store.verify(false).unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        // Corrupt an object: verify names it.
        let m = store.manifest(&d).unwrap();
        let obj = store.object_path(&m.files[0].digest);
        let mut perm = fs::metadata(&obj).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&obj, perm).unwrap();
        fs::write(&obj, "corrupt").unwrap();
        // A file replaced inside the view (another inode): the view is named.
        let other = store.scratch("t").unwrap();
        fs::write(other.join("b.txt"), "X").unwrap();
        fs::remove_file(v.join("sub/b.txt")).unwrap();
        fs::rename(other.join("b.txt"), v.join("sub/b.txt")).unwrap();
        let problems = store.verify(false).unwrap().problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("object ") && problems[1].starts_with("view "), "{problems:?}");
        assert!(matches!(store.check_artifact(&d, None), Err(Damage::Corrupt { .. })));
        // Repair leaves no reachable copy of the bad bytes: the object goes,
        // and so does every view that linked to it.
        let problems = store.verify(true).unwrap().problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(!obj.exists() && !v.exists());
        assert!(matches!(store.check_artifact(&d, None), Err(Damage::Missing(_))));
        let (removed, _) = store.gc(&BTreeSet::new(), &BTreeSet::new(), false).unwrap();
        assert!(removed >= 2);
        assert!(!store.has_artifact(&d));
    }
}
