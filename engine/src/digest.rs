//! BLAKE3 digests of files and directory trees, with a stat cache.
//!
//! Hashing a gigabyte of inputs on every `tailor plan` would make no-op runs
//! slow, so — like git's index and DVC's state database — a [`StatCache`]
//! remembers each file's digest together with its device, inode, size and
//! modification/change times. A file whose stat is unchanged is not read
//! again. Entries for files modified in the last two seconds are not kept
//! (the "racy" case: a write within the file system's timestamp granularity
//! could go unnoticed). Misses are hashed in parallel with rayon; large files
//! are read in 64 MiB windows, each hashed with BLAKE3's own multi-threading
//! (not memory-mapped whole: a mapped multi-gigabyte file would count in the
//! process's resident memory while it is hashed).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Files above this size are hashed on several threads, a window at a time.
const PARALLEL_THRESHOLD: u64 = 16 << 20;

/// Bytes read and hashed at once for a large file.
const WINDOW: usize = 64 << 20;

/// Hex BLAKE3 of a byte string.
pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Hex BLAKE3 of a file's contents.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    let len = fs::metadata(path)?.len();
    let mut f = fs::File::open(path)?;
    if len >= PARALLEL_THRESHOLD {
        let mut buf = vec![0u8; WINDOW];
        loop {
            // Fill the window (a read may return less), then hash it at once.
            let mut filled = 0;
            while filled < WINDOW {
                match f.read(&mut buf[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            h.update_rayon(&buf[..filled]);
        }
    } else {
        let mut buf = vec![0u8; (len as usize).clamp(4096, 1 << 20)];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Every regular file under `dir`, as paths relative to it, sorted.
pub fn list_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let child = rel.join(entry.file_name());
            if ty.is_dir() {
                stack.push(child);
            } else if ty.is_file() || (ty.is_symlink() && entry.path().is_file()) {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    digest: String,
}

/// Device, inode, size, mtime and ctime (ns) of a file.
pub type StatKey = (u64, u64, u64, i64, i64);

/// Absolute path → stat of every file under some paths.
pub type Snapshot = std::collections::BTreeMap<String, StatKey>;

/// The stat of a file, or of every file under a directory (a missing path
/// gives nothing). Two snapshots are equal only if no file was written,
/// replaced, added or removed in between.
pub fn stat_snapshot(path: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let Ok(md) = fs::metadata(path) else { return out };
    if md.is_dir() {
        // A directory that cannot be listed snapshots as empty; hashing it
        // fails loudly on its own, so nothing is cached from it.
        for rel in list_files(path).unwrap_or_default() {
            let f = path.join(rel);
            if let Ok(md) = fs::metadata(&f) {
                out.insert(key(&f), stat_key(&md));
            }
        }
    } else {
        out.insert(key(path), stat_key(&md));
    }
    out
}

fn stat_key(md: &fs::Metadata) -> StatKey {
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    (md.dev(), md.ino(), md.len(), ns(md.mtime(), md.mtime_nsec()), ns(md.ctime(), md.ctime_nsec()))
}

/// Remembers file digests by stat, persisted as JSON. Keys are path
/// strings (hashing a `PathBuf` walks its components, which dominated
/// no-op runs over 10,000 files).
#[derive(Debug, Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: HashMap<String, Entry>,
    changed: bool,
}

fn key(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl StatCache {
    /// Load the cache at `path` (a missing or unreadable cache is empty).
    pub fn load(path: &Path) -> Self {
        // A cache: when it cannot be read, every file is simply hashed again.
        let entries = fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        StatCache { path: Some(path.to_path_buf()), entries, changed: false }
    }

    /// Digest of a file or directory tree (directories hash their listing of
    /// relative paths and file digests).
    pub fn digest(&mut self, path: &Path) -> io::Result<String> {
        Ok(self.digest_many(&[path.to_path_buf()])?.remove(0))
    }

    /// Digests of many paths, hashing cache misses in parallel.
    pub fn digest_many(&mut self, paths: &[PathBuf]) -> io::Result<Vec<String>> {
        // Expand directories to their files first, so all hashing is one
        // parallel batch.
        let mut files: Vec<PathBuf> = Vec::new();
        let mut dirs: Vec<Option<Vec<PathBuf>>> = Vec::with_capacity(paths.len());
        for p in paths {
            let md = fs::metadata(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            if md.is_dir() {
                let rels = list_files(p)?;
                files.extend(rels.iter().map(|r| p.join(r)));
                dirs.push(Some(rels));
            } else {
                files.push(p.clone());
                dirs.push(None);
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let looked: Vec<io::Result<(PathBuf, Option<Entry>, String)>> = files
            .par_iter()
            .map(|f| {
                let md = fs::metadata(f).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
                let (dev, ino, size, mtime_ns, ctime_ns) = stat_key(&md);
                if let Some(e) = self.entries.get(&key(f))
                    && (e.dev, e.ino, e.size, e.mtime_ns, e.ctime_ns) == (dev, ino, size, mtime_ns, ctime_ns)
                {
                    return Ok((f.clone(), None, e.digest.clone()));
                }
                let digest = hash_file(f).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
                let racy = now - mtime_ns.max(ctime_ns) < 2_000_000_000;
                let entry = (!racy).then(|| Entry { dev, ino, size, mtime_ns, ctime_ns, digest: digest.clone() });
                Ok((f.clone(), entry, digest))
            })
            .collect();
        let mut by_file: HashMap<String, String> = HashMap::with_capacity(looked.len());
        for r in looked {
            let (f, entry, digest) = r?;
            let k = key(&f);
            if let Some(e) = entry {
                self.entries.insert(k.clone(), e);
                self.changed = true;
            }
            by_file.insert(k, digest);
        }
        Ok(paths
            .iter()
            .zip(dirs)
            .map(|(p, rels)| match rels {
                None => by_file.get(&key(p)).cloned().unwrap_or_default(),
                Some(rels) => {
                    let mut listing = String::new();
                    for r in rels {
                        let d = by_file.get(&key(&p.join(&r))).cloned().unwrap_or_default();
                        listing.push_str(&format!("{}\t{d}\n", r.display()));
                    }
                    hash_bytes(listing.as_bytes())
                }
            })
            .collect())
    }

    /// Write the cache back if it changed (atomically).
    pub fn save(&mut self) -> io::Result<()> {
        let (Some(path), true) = (&self.path, self.changed) else { return Ok(()) };
        // Forget files that no longer exist so the cache does not grow forever.
        self.entries.retain(|p, _| Path::new(p).exists());
        let bytes = serde_json::to_vec(&self.entries).map_err(io::Error::other)?;
        crate::store::write_atomic(path, &bytes)?;
        self.changed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_hits_and_detects_change() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        fs::write(&f, "hello").unwrap();
        let mut c = StatCache::load(&dir.path().join("cache.json"));
        let d1 = c.digest(&f).unwrap();
        assert_eq!(d1, hash_bytes(b"hello"));
        fs::write(&f, "hellO").unwrap();
        assert_eq!(c.digest(&f).unwrap(), hash_bytes(b"hellO"));
        let sub = dir.path().join("d");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("x"), "1").unwrap();
        let dd = c.digest(&sub).unwrap();
        fs::write(sub.join("y"), "2").unwrap();
        assert_ne!(c.digest(&sub).unwrap(), dd);
    }
}
