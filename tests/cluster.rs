//! Beyond one process: the Slurm executor against a real single-node Slurm
//! (`scripts/slurm.sh up`, which `scripts/test.sh` runs as root), and the
//! store's run lock where `flock` is not available.
//!
//! Without a Slurm that answers (no `SLURM_CONF`, `sinfo` failing) the
//! Slurm tests say so and pass as skipped — unless `TAILOR_REQUIRE_SLURM=1`
//! (set by `scripts/test.sh` once it started Slurm), where they fail.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{example, lock, ok, run_in, tailor, text};

fn slurm() -> bool {
    let answers = std::env::var_os("SLURM_CONF").is_some()
        && Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if answers {
        return true;
    }
    assert!(
        std::env::var("TAILOR_REQUIRE_SLURM").map_or(true, |v| v != "1"),
        "TAILOR_REQUIRE_SLURM=1 but no Slurm answers (SLURM_CONF={:?}); `bash scripts/slurm.sh up` starts one",
        std::env::var("SLURM_CONF")
    );
    eprintln!("SKIPPED: no Slurm answers here (start one as root with `bash scripts/slurm.sh up` and export SLURM_CONF)");
    false
}

/// `tailor run --executor slurm` with a short poll interval.
fn on_slurm(dir: &Path, extra: &[&str]) -> std::process::Output {
    tailor().current_dir(dir).env("TAILOR_SLURM_POLL_MS", "200").args(["run", "--executor", "slurm"]).args(extra).output().expect("run tailor")
}

/// Two independent branches; `bad` has only malformed records, so its
/// collect stage fails at run time (not at validation).
fn branches(dir: &Path, extra: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let good: String = (0..40).map(|i| format!("{{\"prompt\": \"question {i}\", \"completion\": \"answer {i}\"}}\n")).collect();
    std::fs::write(dir.join("data/good.jsonl"), good).unwrap();
    std::fs::write(dir.join("data/bad.jsonl"), "{not json\n{\"prompt\": \n").unwrap();
    let yaml = format!(
        "version: 1\nname: branches\nstages:\n  good: {{kind: collect, sources: [{{path: data/good.jsonl}}]}}\n  good_clean:\n    kind: clean\n    input: good\n    steps: [{{dedup: {{exact: true, field: prompt}}}}]\n{extra}  bad: {{kind: collect, sources: [{{path: data/bad.jsonl}}]}}\n  bad_clean:\n    kind: clean\n    input: bad\n    steps: [{{dedup: {{exact: true, field: prompt}}}}]\n"
    );
    std::fs::write(dir.join("tailor.yaml"), yaml).unwrap();
}

fn our_jobs_open(dir: &Path) -> Vec<String> {
    let jobs = dir.join(".tailor/jobs");
    let out = Command::new("squeue").args(["-h", "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i %o"]).output().unwrap();
    text(&out.stdout).lines().filter(|l| l.contains(&*jobs.to_string_lossy())).map(str::to_string).collect()
}

/// Wait until the Slurm job of `stage` runs (from `tailor status`).
fn wait_running(dir: &Path, stage: &str) {
    let start = Instant::now();
    loop {
        let out = run_in(dir, &["status"]);
        let s = text(&out.stdout);
        if s.lines().any(|l| l.contains(stage) && l.contains("RUNNING")) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "`{stage}` never ran on Slurm:\n{s}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_loop_on_slurm_ends_with_the_same_lock_as_a_local_run() {
    if !slurm() {
        return;
    }
    let local = example("loop");
    let cluster = example("loop");
    ok(local.path(), &["run"]);
    let out = on_slurm(cluster.path(), &[]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("submit  tuned (train): job "), "each stage is a Slurm job:\n{log}");
    assert!(log.contains("1 gpu"), "training asks for a GPU by default:\n{log}");
    let a = std::fs::read_to_string(local.path().join("tailor.lock")).unwrap();
    let b = std::fs::read_to_string(cluster.path().join("tailor.lock")).unwrap();
    assert_eq!(a, b, "the Slurm run's lock differs from the local run's");
    ok(cluster.path(), &["verify"]);
    // Everything is cached now: nothing is submitted.
    let again = on_slurm(cluster.path(), &[]);
    let log = text(&again.stderr);
    assert!(again.status.success() && !log.contains("submit"), "{log}");
    assert!(log.contains("Nothing to do"), "{log}");
    // Each job's log is kept in the store.
    let logs = walk(&cluster.path().join(".tailor/jobs"), "log");
    assert!(logs.len() >= 15, "{logs:?}");
    assert!(std::fs::read_to_string(logs.iter().find(|p| p.ends_with("tuned.log")).unwrap()).unwrap().contains("tuned"));
}

#[test]
fn two_workers_on_slurm_are_one_job_of_two_tasks_with_a_local_runs_result() {
    if !slurm() {
        return;
    }
    let local = example("loop");
    let cluster = example("loop");
    for d in [&local, &cluster] {
        let yaml = std::fs::read_to_string(d.path().join("tailor.yaml")).unwrap();
        assert_eq!(yaml.matches("    seed: 0\n").count(), 1, "the loop's train stage changed");
        std::fs::write(d.path().join("tailor.yaml"), yaml.replace("    seed: 0\n", "    seed: 0\n    workers: 2\n")).unwrap();
    }
    ok(local.path(), &["run", "tuned"]);
    let out = tailor().current_dir(cluster.path()).env("TAILOR_SLURM_POLL_MS", "200").args(["-v", "run", "--executor", "slurm", "tuned"]).output().unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("[2 tasks, 1 cpu, 2 gpu]"), "one job, a task and a GPU per worker:\n{log}");
    let a = std::fs::read_to_string(local.path().join("tailor.lock")).unwrap();
    let b = std::fs::read_to_string(cluster.path().join("tailor.lock")).unwrap();
    assert_eq!(a, b, "two workers on Slurm trained another model than two workers here");
    let logs = walk(&cluster.path().join(".tailor/jobs"), "log");
    let job = std::fs::read_to_string(logs.iter().find(|p| p.ends_with("tuned.log")).unwrap()).unwrap();
    assert!(job.contains("the others in an srun step of Slurm job"), "rank 1 was not started by srun:\n{job}");
}

fn walk(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_cached_result_whose_check_fails_fails_on_slurm_as_locally() {
    if !slurm() {
        return;
    }
    let dir = example("loop");
    // Fewer steps: the exam's gate (exact_match >= 0.9) is not met.
    let local = run_in(dir.path(), &["run", "-p", "steps=100"]);
    let log = text(&local.stderr);
    assert_eq!(local.status.code(), Some(1), "{log}");
    assert!(log.contains("check failed"), "{log}");
    let out = on_slurm(dir.path(), &["-p", "steps=100"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the cached failed check fails the Slurm run too:\n{log}");
    assert!(log.contains("check failed") && log.contains("(cached result)") && !log.contains("submit"), "{log}");
}

#[test]
fn a_failing_stage_on_slurm_stops_only_its_dependents() {
    if !slurm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    branches(dir.path(), "");
    let out = on_slurm(dir.path(), &[]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("FAILED  bad (collect, job "), "{log}");
    assert!(log.contains("skip    bad_clean: upstream `bad` failed"), "{log}");
    assert!(log.contains("ok      good_clean"), "the independent branch finishes:\n{log}");
    assert!(log.contains("bad.jsonl"), "the stage's own error comes back from the job:\n{log}");
    let l = lock(dir.path());
    assert!(l["stages"]["good_clean"].is_object() && l["stages"]["bad_clean"].is_null(), "{l}");
    assert!(our_jobs_open(dir.path()).is_empty(), "no job of this run is left in the queue");
}

#[test]
fn cancelling_a_slurm_run_leaves_the_store_clean_and_a_rerun_finishes() {
    if !slurm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    branches(dir.path(), "");
    std::fs::write(dir.path().join("data/bad.jsonl"), "{\"prompt\": \"p\", \"completion\": \"c\"}\n").unwrap();
    for how in ["tailor cancel", "Ctrl-C"] {
        let driver = tailor()
            .current_dir(dir.path())
            .env("TAILOR_SLURM_POLL_MS", "200")
            .env("TAILOR_FAULT_BEFORE_STAGE", "good_clean=sleep 120")
            .args(["run", "--executor", "slurm"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_running(dir.path(), "good_clean");
        if how == "Ctrl-C" {
            let st = Command::new("kill").args(["-INT", &driver.id().to_string()]).status().unwrap();
            assert!(st.success());
        } else {
            let msg = ok(dir.path(), &["cancel"]);
            assert!(msg.contains("cancelled Slurm jobs"), "{msg}");
        }
        let out = driver.wait_with_output().unwrap();
        let log = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{how}:\n{log}");
        assert!(log.contains("FAILED  good_clean") && log.contains("cancel"), "{how}:\n{log}");
        assert!(our_jobs_open(dir.path()).is_empty(), "{how}: a job of the cancelled run is still queued");
        assert!(!dir.path().join(".tailor/jobs/active.json").exists());
        ok(dir.path(), &["verify"]);
        let status = text(&run_in(dir.path(), &["status"]).stdout);
        assert!(status.lines().any(|l| l.starts_with("will-run") && l.contains("good_clean")), "{how}: nothing was stored for it:\n{status}");
    }
    let out = on_slurm(dir.path(), &[]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("submit  good_clean") && !log.contains("submit  good "), "only the cancelled stage reruns:\n{log}");
    assert!(std::fs::read_dir(dir.path().join(".tailor/tmp")).unwrap().next().is_none(), "scratch of the killed job is gone");
}

#[test]
fn a_timed_out_slurm_job_is_reported_as_such() {
    if !slurm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Slurm's time limits are whole minutes: one minute, and the stage sleeps longer.
    branches(dir.path(), "    resources: {time: \"1\"}\n");
    std::fs::write(dir.path().join("data/bad.jsonl"), "{\"prompt\": \"p\", \"completion\": \"c\"}\n").unwrap();
    let out = tailor()
        .current_dir(dir.path())
        .env("TAILOR_SLURM_POLL_MS", "500")
        .env("TAILOR_FAULT_BEFORE_STAGE", "good_clean=sleep 300")
        .args(["run", "--executor", "slurm"])
        .output()
        .unwrap();
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("good_clean") && log.contains("ran out of time (time limit 1:00)"), "{log}");
    assert!(log.contains("ok      bad_clean"), "{log}");
}

#[test]
fn bad_resources_are_caught_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    branches(dir.path(), "    resources: {cpus: 0, mem: 16 GB, time: soon, sbatch: [\"rm -rf /\"]}\n");
    let out = run_in(dir.path(), &["validate"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for key in ["cpus", "mem", "time", "sbatch"] {
        assert!(err.contains(&format!("stages.good_clean.resources.{key}")), "`{key}` not reported:\n{err}");
    }
    assert!(err.contains("tailor.yaml:9:"), "{err}");
}

#[test]
fn resources_do_not_change_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    branches(dir.path(), "");
    std::fs::write(dir.path().join("data/bad.jsonl"), "{\"prompt\": \"p\", \"completion\": \"c\"}\n").unwrap();
    ok(dir.path(), &["run"]);
    let out = run_in(dir.path(), &["run", "--set", "stages.good_clean.resources.cpus=4"]);
    assert!(out.status.success() && text(&out.stderr).contains("Nothing to do"), "{}", text(&out.stderr));
}

#[test]
fn two_runs_on_a_store_without_flock_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    branches(dir.path(), "");
    std::fs::write(dir.path().join("data/bad.jsonl"), "{\"prompt\": \"p\", \"completion\": \"c\"}\n").unwrap();
    let start = |extra: Option<&str>| {
        let mut c = tailor();
        c.current_dir(dir.path()).env("TAILOR_LOCK", "dir").args(["run"]).stderr(Stdio::piped());
        if let Some(hook) = extra {
            c.env("TAILOR_FAULT_BEFORE_STAGE", hook);
        }
        c.spawn().unwrap()
    };
    // The first holds the lock for a while; the second waits for it, then finds everything cached.
    let first = start(Some("good_clean=sleep 3"));
    let lock_dir = dir.path().join(".tailor/run.lock.d");
    let t = Instant::now();
    while !lock_dir.join("owner").exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "the first run never took the lock directory");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = start(None);
    let (a, b) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a.stderr), text(&b.stderr));
    let b_log = text(&b.stderr);
    assert!(b_log.contains("waiting for another `tailor run`"), "{b_log}");
    assert!(b_log.contains("Nothing to do"), "the second run found the first one's results:\n{b_log}");
    assert!(!lock_dir.exists(), "the lock directory is removed when the run ends");
    ok(dir.path(), &["verify"]);

    // A lock directory left by a process that is gone is taken over.
    std::fs::create_dir(&lock_dir).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(lock_dir.join("owner"), format!("{} 999999999", host.trim())).unwrap();
    let out = tailor().current_dir(dir.path()).env("TAILOR_LOCK", "dir").args(["run", "--force"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}
