//! Integration tests of the `tailor` binary: golden error output for broken
//! pipelines, the quickstart end to end, reruns, SIGKILL recovery, schema
//! drift and the example pipelines.
//!
//! Golden files: `tests/fixtures/broken/NAME.yaml` → `NAME.stderr`.
//! Regenerate them with `UPDATE_GOLDEN=1 cargo test --test cli`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

#[test]
fn broken_pipelines_render_pinned_errors() {
    let dir = repo().join("tests/fixtures/broken");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus must have at least 20 broken pipelines");
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let out = run_in(&dir, &["validate", "-f", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: expected exit 2 (invalid)\n{}", text(&out.stderr));
        let got = text(&out.stderr);
        assert!(got.contains(&format!("{name}:")), "{name}: the error must name the file:line:col\n{got}");
        let golden = f.with_extension("stderr");
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != got {
            failures.push(format!("--- {}\n+++ actual\n{got}", golden.display()));
        }
    }
    assert!(failures.is_empty(), "rendered errors differ from the golden files (UPDATE_GOLDEN=1 to accept):\n{}", failures.join("\n"));
}

#[test]
fn committed_schemas_match_the_config_types() {
    let out = tailor().current_dir(repo()).args(["schema", "--check", "schemas"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn every_example_pipeline_validates_and_plans() {
    let mut n = 0;
    for e in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let p = e.unwrap().path().join("tailor.yaml");
        if !p.exists() {
            continue;
        }
        n += 1;
        // In place (examples may name files outside their folder, such as the
        // GGUF setup fetches into .models/), with the store in a scratch dir.
        let tmp = tempfile::tempdir().unwrap();
        let (file, store) = (p.display().to_string(), tmp.path().display().to_string());
        let v = run_in(&repo(), &["-f", &file, "--store", &store, "validate"]);
        assert!(v.status.success(), "{}: {}", p.display(), text(&v.stderr));
        let plan = run_in(&repo(), &["-f", &file, "--store", &store, "plan"]);
        assert!(plan.status.success(), "{}: {}", p.display(), text(&plan.stderr));
        assert!(text(&plan.stdout).contains("will-run"), "{}", text(&plan.stdout));
    }
    assert!(n >= 3, "quickstart, loop and smollm2 at least");
}

#[test]
fn quickstart_runs_then_reruns_nothing_then_reruns_only_what_a_param_touches() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("pipelines/quickstart"), tmp.path());
    let first = run_in(tmp.path(), &["run"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let lock1 = std::fs::read_to_string(tmp.path().join("tailor.lock")).unwrap();
    let second = run_in(tmp.path(), &["run"]);
    assert!(second.status.success());
    assert!(text(&second.stderr).contains("Nothing to do"), "{}", text(&second.stderr));
    assert_eq!(std::fs::read_to_string(tmp.path().join("tailor.lock")).unwrap(), lock1, "a no-op run rewrites the same lock");

    let plan = run_in(tmp.path(), &["plan", "-p", "near_threshold=0.9"]);
    let plan = text(&plan.stdout);
    assert!(plan.contains("✓ raw (collect): up-to-date"), "{plan}");
    assert!(plan.contains("steps.2.dedup.near.threshold changed 0.6 → 0.9"), "{plan}");
    let third = run_in(tmp.path(), &["run", "-p", "near_threshold=0.9", "--json"]);
    assert!(third.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    let statuses: Vec<(String, String)> =
        summary["stages"].as_array().unwrap().iter().map(|s| (s[0].as_str().unwrap().to_string(), s[1]["status"].as_str().unwrap().to_string())).collect();
    assert_eq!(statuses[..2], [("raw".to_string(), "cached".to_string()), ("cleaned".to_string(), "ran".to_string())], "{statuses:?}");
    assert_eq!(statuses[2].0, "formatted");

    let verify = run_in(tmp.path(), &["verify"]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    let show = run_in(tmp.path(), &["show", "cleaned"]);
    assert!(text(&show.stdout).contains("kept"), "{}", text(&show.stdout));
}

/// Make a pipeline whose collect stage takes long enough to be killed
/// mid-way: many files of records.
fn big_project(dir: &Path) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for f in 0..30 {
        let mut s = String::new();
        for i in 0..2000 {
            s.push_str(&format!("{{\"prompt\":\"question {f}-{i} {}\",\"completion\":\"answer {i}\"}}\n", "x".repeat(i % 50)));
        }
        std::fs::write(dir.join(format!("data/part{f:02}.jsonl")), s).unwrap();
    }
    std::fs::write(
        dir.join("tailor.yaml"),
        "version: 1\nname: big\nstages:\n  raw: {kind: collect, sources: [{path: 'data/*.jsonl'}]}\n  cleaned:\n    kind: clean\n    input: raw\n    steps: [{normalize: {}}, {dedup: {exact: true}}]\n",
    )
    .unwrap();
}

#[test]
fn sigkill_mid_run_leaves_a_store_that_verifies_and_reruns_to_the_same_result() {
    let reference = tempfile::tempdir().unwrap();
    big_project(reference.path());
    assert!(run_in(reference.path(), &["run"]).status.success());
    let want = std::fs::read_to_string(reference.path().join("tailor.lock")).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    big_project(tmp.path());
    // Kill at points found by watching the run's own progress lines (not by
    // timing, which varies with load): as collect starts, inside collect,
    // right as collect's result is stored, and inside clean.
    let mut killed = 0;
    for (trigger, extra_ms) in [("run     raw", 0u64), ("run     raw", 120), ("ok      raw", 0), ("run     cleaned", 80)] {
        let mut child = tailor().current_dir(tmp.path()).args(["run", "--force"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let seen = lines.any(|l| l.is_ok_and(|l| l.contains(trigger)));
        assert!(seen, "the run never printed `{trigger}`");
        std::thread::sleep(std::time::Duration::from_millis(extra_ms));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        drop(lines);
        let v = run_in(tmp.path(), &["verify"]);
        assert!(v.status.success(), "corrupt store after SIGKILL at `{trigger}` + {extra_ms} ms:\n{}", text(&v.stdout));
    }
    assert!(killed >= 3, "only {killed} of 4 kills landed while the run was still going");
    let rerun = run_in(tmp.path(), &["run"]);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    let v = run_in(tmp.path(), &["verify"]);
    assert!(v.status.success(), "{}", text(&v.stdout));
    assert_eq!(std::fs::read_to_string(tmp.path().join("tailor.lock")).unwrap(), want, "results after kills differ from an uninterrupted run");
    assert!(std::fs::read_dir(tmp.path().join(".tailor/tmp")).unwrap().next().is_none(), "scratch space was not cleaned");
}

#[test]
fn dag_renders_in_three_formats() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("pipelines/quickstart"), tmp.path());
    let t = text(&run_in(tmp.path(), &["dag"]).stdout);
    assert_eq!(t, "raw (collect)\ncleaned (clean) <- raw\nformatted (format) <- cleaned\ntuned (train) <- formatted\nscored (evaluate) <- formatted, tuned\n");
    assert!(text(&run_in(tmp.path(), &["dag", "--format", "mermaid"]).stdout).contains("raw -->|input| cleaned"));
    assert!(text(&run_in(tmp.path(), &["dag", "--format", "dot"]).stdout).contains("\"raw\" -> \"cleaned\""));
}

#[test]
fn failed_stage_exits_1_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::write(tmp.path().join("data/x.jsonl"), "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\": \"broken\n").unwrap();
    std::fs::write(tmp.path().join("tailor.yaml"), "version: 1\nname: t\nstages:\n  raw: {kind: collect, sources: [{path: data/x.jsonl}]}\n").unwrap();
    let out = run_in(tmp.path(), &["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("data/x.jsonl:2:"), "{err}");
    assert!(err.contains("on_error: skip"), "{err}");
}

#[test]
fn one_and_two_threads_give_identical_results() {
    let mut locks = Vec::new();
    for threads in ["1", "2"] {
        let tmp = tempfile::tempdir().unwrap();
        copy_tree(&repo().join("pipelines/quickstart"), tmp.path());
        let out = tailor().current_dir(tmp.path()).env("RAYON_NUM_THREADS", threads).args(["run"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        locks.push(std::fs::read_to_string(tmp.path().join("tailor.lock")).unwrap());
    }
    assert_eq!(locks[0], locks[1]);
}

/// The thread count changes training bits, so it is in the fingerprint: the
/// same pipeline planned on one CPU (taskset) and on all of them gives the
/// `train` stage two fingerprints and says why; the data stages keep theirs.
#[test]
fn the_thread_count_is_part_of_a_training_fingerprint() {
    let work = example("loop");
    let dir = work.path();
    ok(dir, &["run", "formatted"]);
    let plan = |one_cpu: bool| -> serde_json::Value {
        let mut c = if one_cpu {
            let mut c = std::process::Command::new("taskset");
            c.args(["-c", "0", env!("CARGO_BIN_EXE_tailor")]);
            c
        } else {
            tailor()
        };
        let out = c.current_dir(dir).args(["plan", "--json", "tuned"]).env_remove("TAILOR_STORE").output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let fp = |v: &serde_json::Value, stage: &str| v.as_array().unwrap().iter().find(|e| e["name"] == stage).unwrap()["fingerprint"].clone();
    let (all, one) = (plan(false), plan(true));
    assert_eq!(fp(&all, "formatted"), fp(&one, "formatted"));
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        assert!(fp(&all, "tuned").is_string());
        assert_ne!(fp(&all, "tuned"), fp(&one, "tuned"), "one fingerprint for two thread counts");
    }
    let notes = all.as_array().unwrap().iter().find(|e| e["name"] == "tuned").unwrap()["notes"].to_string();
    assert!(notes.contains("thread count"), "{notes}");
}

/// A file outside the project is read with a warning by default.
#[test]
fn files_outside_the_project_warn_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("p");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(tmp.path().join("outside.jsonl"), "{\"prompt\": \"a\", \"completion\": \"b\"}\n").unwrap();
    std::fs::write(project.join("tailor.yaml"), "version: 1\nname: p\nstages:\n  raw: {kind: collect, sources: [{path: ../outside.jsonl}]}\n").unwrap();
    let out = run_in(&project, &["validate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("warning: stage `raw` reads `../outside.jsonl`, outside the project directory"), "{err}");
    assert!(err.contains("outside_paths: allow"), "{err}");
}

/// `tailor estimate --model` counts parameters with the plan's formula
/// (GQA, norms, tied embeddings): for the tiny model, exactly the number
/// of weights in its safetensors file.
#[test]
fn estimate_from_a_model_counts_its_real_parameters() {
    let model = repo().join("pipelines/loop/models/tiny");
    let out = tailor().args(["--json", "estimate", "--method", "full", "--gpu", "a100-80gb", "--model"]).arg(&model).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counted = rows[0]["estimate"]["trainable"].as_f64().unwrap();
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let real: u64 = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product::<u64>())
        .sum();
    assert_eq!(counted as u64, real, "{rows}");
}

#[test]
fn review_merge_reports_agreement_and_puts_disagreements_first() {
    let tmp = tempfile::tempdir().unwrap();
    let line = |case: &str, verdict: &str, reply: &str| {
        format!("{}\n", serde_json::json!({"prompt": format!("q{case}"), "completion": reply, "meta": {"fix_of": case, "verdict": verdict}}))
    };
    let ann: String = [line("1", "accept", "a1"), line("2", "fix", "better"), line("3", "accept", "a3")].concat();
    let bob: String = [line("1", "accept", "a1"), line("2", "accept", "a2"), line("3", "accept", "a3")].concat();
    std::fs::write(tmp.path().join("ann.jsonl"), ann).unwrap();
    std::fs::write(tmp.path().join("bob.jsonl"), bob).unwrap();
    let run = run_in(tmp.path(), &["review", "merge", "ann.jsonl", "bob.jsonl", "--out", "merged"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = text(&run.stdout);
    assert!(out.contains("2 reviewers, 3 cases judged by all: raw agreement 66.7 %"), "{out}");
    assert!(out.contains("[2] verdicts differ"), "{out}");
    let agreed = std::fs::read_to_string(tmp.path().join("merged/agreed.jsonl")).unwrap();
    assert_eq!(agreed.lines().count(), 2);
    let adjudicate = std::fs::read_to_string(tmp.path().join("merged/adjudicate.jsonl")).unwrap();
    assert!(adjudicate.contains("\"fix_of\":\"2\"") && adjudicate.contains("\"ann\"") && adjudicate.contains("\"bob\""), "{adjudicate}");
    // The agreement page: the kappa and the case to adjudicate with both reviewers' verdicts.
    let page = std::fs::read_to_string(tmp.path().join("merged/agreement.html")).unwrap();
    assert!(page.contains("Cohen's kappa") && page.contains("66.7 %"), "{page}");
    assert!(page.contains("<tr class=\"differ\"><td>2</td>") && page.contains("<b>fix</b><br>better") && page.contains("<b>accept</b><br>a2"), "{page}");
    // A file that is not a review names its line.
    std::fs::write(tmp.path().join("bad.jsonl"), "{\"prompt\": \"p\"}\n").unwrap();
    let bad = run_in(tmp.path(), &["review", "merge", "ann.jsonl", "bad.jsonl", "--out", "m2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("bad.jsonl:1: not a review line"), "{}", text(&bad.stderr));
}
