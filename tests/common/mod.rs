//! The one harness every integration test of the `tailor` binary goes
//! through: run the binaries, copy example pipelines into scratch
//! directories, read artifacts through `tailor show --path`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `tailor` binary with a clean environment.
pub fn tailor() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tailor"));
    c.env_remove("RUST_LOG").env_remove("TAILOR_STORE");
    c
}

/// The `tailor-train` binary (package `tailor-train`, built beside `tailor`
/// by `cargo test --workspace`).
pub fn trainer() -> Command {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tailor")).with_file_name("tailor-train");
    assert!(bin.exists(), "{} is missing: build the workspace (`cargo test --workspace` builds it)", bin.display());
    Command::new(bin)
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `tailor ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    tailor().current_dir(dir).args(args).output().expect("run tailor")
}

/// Run and require success; returns stderr.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run_in(dir, args);
    assert!(out.status.success(), "tailor {args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stderr)
}

/// Bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Copy a directory tree, leaving out results of earlier runs.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == ".tailor" || name == "tailor.lock" || name == "report.html" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() { copy_tree(&src, &dst) } else { std::fs::copy(&src, &dst).map(|_| ()).unwrap() }
    }
}

/// An example pipeline copied into a scratch directory.
pub fn example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("pipelines").join(name), dir.path());
    dir
}

/// The directory of a stage's output, from the lock file.
pub fn artifact(dir: &Path, target: &str) -> PathBuf {
    let out = run_in(dir, &["show", target, "--path"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    PathBuf::from(text(&out.stdout).trim())
}

/// The lock file as JSON.
pub fn lock(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("tailor.lock")).unwrap();
    let lock: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    lock
}

/// JSON lines of a file.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh),
/// with the flags this closed network needs. Returns the rendered DOM and
/// the browser's console log.
pub fn chromium_dom(file: &Path) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("chromium must be installed (scripts/setup.sh installs Debian's chromium)");
    assert!(out.status.success(), "chromium failed: {}", text(&out.stderr));
    (text(&out.stdout), text(&out.stderr))
}
