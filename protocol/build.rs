//! The trainer's implementation identity, computed at build time: the
//! digest of every file that decides what `tailor-train` does — its sources
//! and native ops, its build script and manifest, this protocol crate,
//! `scripts/setup.sh` (which pins the libtorch it links) and `Cargo.lock`.
//! Both sides see the same constant: the stages put it into the fingerprint
//! of every stage that runs the trainer, and the trainer reports it when it
//! starts, so a stale `tailor-train` binary is caught before it trains.

use std::fs;
use std::path::{Path, PathBuf};

/// What the trainer's behaviour depends on, relative to this crate.
const SOURCES: &[&str] = &["src", "../train/src", "../train/csrc", "../train/build.rs", "../train/Cargo.toml", "../scripts/setup.sh", "../Cargo.lock"];

fn main() {
    let mut all: Vec<PathBuf> = Vec::new();
    for s in SOURCES {
        println!("cargo:rerun-if-changed={s}");
        all.extend(files(Path::new(s)));
    }
    all.sort();
    let mut h = blake3::Hasher::new();
    for f in &all {
        h.update(f.to_string_lossy().as_bytes());
        h.update(&fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display())));
    }
    let dst = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("trainer.rs");
    let text = format!("/// Digest of the trainer's sources (see `build.rs`).\npub const TRAINER: &str = \"{}\";\n", &h.finalize().to_hex()[..16]);
    fs::write(dst, text).expect("writing trainer.rs");
}

fn files(p: &Path) -> Vec<PathBuf> {
    if p.is_file() {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            out.extend(files(&e.path()));
        }
    }
    out
}
