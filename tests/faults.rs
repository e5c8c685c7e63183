//! Fault injection on `pipelines/loop`: random SIGKILLs of the whole
//! process group (stage boundaries and mid-stage, training included),
//! corrupted, truncated and deleted store objects, deleted views, index
//! records, manifests and lock file, garbage in the lock file and the stat
//! cache. After every fault, `tailor verify` is clean or names the problem
//! (never crashes), and `tailor run` ends with exactly the lock of an
//! uninterrupted run, after which `verify` is clean.
//!
//! `TAILOR_FAULT_SEED` picks another sequence, `TAILOR_FAULT_KILLS` and
//! `TAILOR_FAULT_STORE` set how many faults of each family (50 and 25).

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// The loop pipeline with a short training run and its exam gate open (the
/// faults, not the model, are under test).
const PARAMS: [&str; 4] = ["-p", "steps=40", "--set", "stages.examined.gate.exact_match=>= 0"];

/// `tailor CMD` with the same settings.
fn cmd(name: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![name.into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend(PARAMS.iter().map(|s| s.to_string()));
    v
}

fn run_cmd(dir: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let args = cmd(name, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_in(dir, &args)
}

/// `tailor run` that must succeed; returns its stderr.
fn run_ok(dir: &Path) -> String {
    let out = run_cmd(dir, "run", &[]);
    assert!(out.status.success(), "tailor run failed:\n{}", text(&out.stderr));
    text(&out.stderr)
}

/// `pipelines/loop` in a scratch directory, run to the end, and its lock.
fn finished_loop() -> (tempfile::TempDir, String) {
    let work = example("loop");
    run_ok(work.path());
    let lock = std::fs::read_to_string(work.path().join("tailor.lock")).unwrap();
    (work, lock)
}

/// splitmix64: a fixed sequence for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Every regular file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn writable(p: &Path) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(p, perm).unwrap();
}

/// `tailor verify` must answer: clean (0) or the problems named (3).
fn verify_answers(dir: &Path, after: &str) {
    let out = run_in(dir, &["verify"]);
    let code = out.status.code();
    assert!(
        code == Some(0) || (code == Some(3) && text(&out.stdout).contains("MISMATCH")),
        "verify after {after}: exit {code:?}\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Run to the end; the lock must be the reference and the store must verify.
fn recovers(dir: &Path, want: &str, after: &str) {
    let out = run_cmd(dir, "run", &[]);
    assert!(out.status.success(), "run after {after} failed:\n{}", text(&out.stderr));
    let got = std::fs::read_to_string(dir.join("tailor.lock")).unwrap();
    assert_eq!(got, want, "the lock after {after} differs from an uninterrupted run\n{}", text(&out.stderr));
    let v = run_in(dir, &["verify"]);
    assert!(v.status.success(), "verify after recovering from {after}:\n{}", text(&v.stdout));
}

/// One store fault; returns its description.
fn store_fault(dir: &Path, rng: &mut Rng) -> String {
    let store = dir.join(".tailor");
    let pick = |files: Vec<PathBuf>, rng: &mut Rng| -> Option<PathBuf> { (!files.is_empty()).then(|| files[rng.below(files.len() as u64) as usize].clone()) };
    match rng.below(9) {
        0 | 1 => {
            let Some(obj) = pick(files_under(&store.join("objects")), rng) else { return "nothing (no objects)".into() };
            writable(&obj);
            let mut bytes = std::fs::read(&obj).unwrap();
            if bytes.is_empty() {
                bytes.push(0);
            } else {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 0x20;
            }
            std::fs::write(&obj, bytes).unwrap();
            format!("a flipped byte in {}", obj.display())
        }
        2 => {
            let Some(obj) = pick(files_under(&store.join("objects")), rng) else { return "nothing".into() };
            writable(&obj);
            let len = std::fs::metadata(&obj).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&obj).unwrap().set_len(len / 2).unwrap();
            format!("truncated {}", obj.display())
        }
        3 => {
            let Some(obj) = pick(files_under(&store.join("objects")), rng) else { return "nothing".into() };
            std::fs::remove_file(&obj).unwrap();
            format!("deleted {}", obj.display())
        }
        4 => {
            let views: Vec<PathBuf> = std::fs::read_dir(store.join("views")).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
            let Some(v) = pick(views, rng) else { return "nothing (no views)".into() };
            std::fs::remove_dir_all(&v).unwrap();
            format!("deleted view {}", v.display())
        }
        5 => {
            let sub = if rng.below(2) == 0 { "index" } else { "manifests" };
            let Some(f) = pick(files_under(&store.join(sub)), rng) else { return "nothing".into() };
            std::fs::remove_file(&f).unwrap();
            format!("deleted {}", f.display())
        }
        6 => {
            std::fs::remove_file(dir.join("tailor.lock")).unwrap();
            "deleted tailor.lock".into()
        }
        7 => {
            std::fs::write(dir.join("tailor.lock"), "stages: [\n  {{garbage\n").unwrap();
            "garbage in tailor.lock".into()
        }
        _ => {
            std::fs::write(store.join("statcache.json"), "{\"x\": [1, 2").unwrap();
            "garbage in the stat cache".into()
        }
    }
}

#[test]
fn random_kills_and_store_damage_always_recover_to_the_uninterrupted_result() {
    let seed = env_or("TAILOR_FAULT_SEED", 20261202);
    let kills = env_or("TAILOR_FAULT_KILLS", 50);
    let damages = env_or("TAILOR_FAULT_STORE", 25);
    let mut rng = Rng(seed);

    // The uninterrupted result.
    let (reference, want) = finished_loop();
    let stages: Vec<String> = lock(reference.path())["stages"].as_object().unwrap().keys().cloned().collect();

    let work = example("loop");
    let dir = work.path();
    // Kills are placed by the run's own progress lines (`run X`, `ok X`),
    // not by wall time, which varies with load: after the k-th line, plus
    // up to 300 ms. They count only when they land while the run is going;
    // a run that finished first is one more recovery checked.
    let (mut landed, mut attempts) = (0, 0);
    while landed < kills {
        attempts += 1;
        assert!(attempts <= kills * 3, "only {landed} of {attempts} kills landed while the run was going");
        // Start from nothing, or make one stage (and what follows) run again.
        let (extra, lines): (Vec<String>, u64) = if rng.below(2) == 0 {
            let _ = std::fs::remove_dir_all(dir.join(".tailor"));
            (vec![], 2 * stages.len() as u64)
        } else {
            (vec!["--force".into(), stages[rng.below(stages.len() as u64) as usize].clone()], 3)
        };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (k, delay) = (1 + rng.below(lines), Duration::from_millis(rng.below(300)));
        let mut child = tailor().current_dir(dir).args(cmd("run", &extra)).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        // (The reader stays open until the kill: a closed pipe would make
        // `tailor` fail on its next progress line instead.)
        let mut progress =
            std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok).filter(|l| l.starts_with("  run ") || l.starts_with("  ok "));
        let reached = progress.by_ref().take(k as usize).count() as u64 == k;
        std::thread::sleep(delay);
        if reached && child.try_wait().unwrap().is_none() {
            landed += 1;
        }
        // SIGKILL the whole group: tailor and any tailor-train it started.
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
        let _ = child.wait();
        drop(progress);
        let after = format!("attempt {attempts} (line {k} + {delay:?} of `run {}`, seed {seed})", extra.join(" "));
        verify_answers(dir, &after);
        recovers(dir, &want, &after);
    }

    for i in 0..damages {
        let what = store_fault(dir, &mut rng);
        let after = format!("damage {i}: {what} (seed {seed})");
        verify_answers(dir, &after);
        recovers(dir, &want, &after);
    }
    eprintln!("fault injection: {landed} SIGKILLs mid-run (of {attempts} attempts), {damages} store faults, seed {seed}: every one recovered");
}

/// A byte changed in a cached model is found before anything consumes it:
/// `run` says the result is damaged and recomputes it, `verify --repair`
/// leaves no copy that `show --path` could hand out.
#[test]
fn a_corrupt_cached_model_is_never_served() {
    let (work, want) = finished_loop();
    let dir = work.path();
    let model = PathBuf::from(text(&run_cmd(dir, "show", &["tuned", "--path"]).stdout).trim());
    let weights = files_under(&model).into_iter().find(|p| p.extension().is_some_and(|e| e == "safetensors")).expect("a safetensors file in the model");
    writable(&weights);
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();

    let status = run_cmd(dir, "status", &[]);
    let shown = text(&status.stdout);
    assert!(shown.lines().any(|l| l.contains("tuned") && l.contains("damaged")), "{shown}");
    let out = run_cmd(dir, "show", &["tuned", "--path"]);
    assert!(!out.status.success() && text(&out.stderr).contains("damaged"), "show handed out a damaged model: {}", text(&out.stdout));
    let v = run_in(dir, &["verify", "--repair"]);
    assert_eq!(v.status.code(), Some(3), "{}", text(&v.stdout));
    assert!(!weights.exists() || std::fs::read(&weights).unwrap() != bytes, "the corrupt bytes are still reachable at {}", weights.display());
    let rerun = run_ok(dir);
    assert!(rerun.contains("run     tuned"), "{rerun}");
    assert_eq!(std::fs::read_to_string(dir.join("tailor.lock")).unwrap(), want);
    assert!(run_in(dir, &["verify"]).status.success());
}

/// Lines appended to an input after its digest was taken and before its
/// stage read it: the stage fails, nothing is cached under the old digest,
/// and once the file is back the result is the uninterrupted one.
#[test]
fn an_input_edited_during_the_run_never_enters_the_cache() {
    let (_reference, want) = finished_loop();
    let work = example("loop");
    let dir = work.path();
    let args = cmd("run", &[]);

    let original = std::fs::read_to_string(dir.join("data/probe.jsonl")).unwrap();
    let hook = "probe_raw=printf '{\"prompt\": \"appended\", \"completion\": \"x\"}\\n' >> data/probe.jsonl";
    let out = tailor().current_dir(dir).args(&args).env("TAILOR_FAULT_BEFORE_STAGE", hook).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("data/probe.jsonl changed while the stage ran"), "{err}");
    // Cut back to what was hashed: nothing stale may be served.
    std::fs::write(dir.join("data/probe.jsonl"), &original).unwrap();
    let plan = text(&run_cmd(dir, "plan", &[]).stdout);
    assert!(plan.lines().any(|l| l.contains("probe_raw") && !l.contains("up-to-date")), "{plan}");
    run_ok(dir);
    assert_eq!(std::fs::read_to_string(dir.join("tailor.lock")).unwrap(), want);
}

/// A damaged lock file is a warning, not a dead end: commands go on from the
/// store, `tailor lock` rebuilds it.
#[test]
fn a_damaged_lock_file_is_rebuilt_from_the_store() {
    let (work, want) = finished_loop();
    let dir = work.path();
    std::fs::write(dir.join("tailor.lock"), "version: 1\nstages: {tuned: [\n").unwrap();
    let status = run_cmd(dir, "status", &[]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stderr).contains("tailor lock"), "{}", text(&status.stderr));
    assert!(text(&status.stdout).lines().all(|l| l.starts_with("up-to-date")), "{}", text(&status.stdout));
    let show = run_cmd(dir, "show", &["tuned", "--path"]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let rebuilt = run_cmd(dir, "lock", &[]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("tailor.lock")).unwrap(), want);
}
