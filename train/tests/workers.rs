//! Data-parallel workers: two ranks (processes of the `tailor-train`
//! binary, summing gradients over c10d's Gloo process group) compute what
//! one process computes with the same global batch; a killed rank fails the
//! job with its reason instead of hanging it, and a rerun resumes from the
//! last checkpoint to the same result as an uninterrupted run.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fixture, write_split};
use tailor_train::data::Dataset;
use tailor_train::peft::LoraSpec;
use tailor_train::trainer::{Method, Schedule, TrainJob};
use tch::Tensor;

/// 13 samples of 6–19 tokens with the second half trained: uneven lengths
/// make the per-window target counts matter, and 13 rows leave the last
/// window of each epoch with one row, so one rank has nothing to compute.
fn split(dir: &Path, salt: u32) {
    let rows: Vec<(Vec<u32>, Vec<u8>)> = (0..13u32)
        .map(|s| {
            let n = 6 + (s * 5 + salt) % 14;
            ((0..n).map(|k| (s * 11 + k * 7 + salt) % 128).collect(), (0..n).map(|k| u8::from(k >= n / 2)).collect())
        })
        .collect();
    write_split(dir, &rows);
}

fn job(tmp: &Path, name: &str, method: Method, workers: usize, grad_accum: usize) -> TrainJob {
    split(&tmp.join("train"), 0);
    split(&tmp.join("validation"), 3);
    let out = tmp.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let lora = Some(LoraSpec { r: 4, alpha: 8.0, dropout: 0.1, targets: vec!["all-linear".into()], rslora: false });
    TrainJob {
        validation: Some(tmp.join("validation")),
        lr: if method == Method::Full { 3e-3 } else { 1e-2 },
        epochs: 2,
        batch_size: 2,
        grad_accum,
        workers,
        warmup_steps: 1,
        schedule: Schedule::Cosine,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        seed: 3,
        eval_every: Some(3),
        threads: Some(2),
        ..TrainJob::with_defaults(fixture("llama_gqa_tied"), tmp.join("train"), out, method, lora)
    }
}

/// Run `tailor-train run` on a job; fails the test if it takes over five
/// minutes (a hang).
fn run(job: &TrainJob, env: &[(&str, &str)]) -> Output {
    let file = job.out.with_extension("job.json");
    std::fs::write(&file, serde_json::to_vec_pretty(job).unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tailor-train"));
    cmd.arg("run").arg(&file).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(300) {
            child.kill().unwrap();
            panic!("tailor-train hung for five minutes on {}", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tailor-train failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The log's (loss, grad_norm, val_loss, tokens) per step.
fn log(out: &Path) -> Vec<(f64, f64, Option<f64>, u64)> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["loss"].as_f64().unwrap(), v["grad_norm"].as_f64().unwrap(), v["val_loss"].as_f64(), v["tokens"].as_u64().unwrap())
        })
        .collect()
}

fn weights(out: &Path, method: Method) -> Vec<(String, Tensor)> {
    let file = if method == Method::Full { "model/model.safetensors" } else { "adapter/adapter_model.safetensors" };
    let mut v = Tensor::read_safetensors(out.join(file)).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Every rank computes an optimizer step's loss denominator from the
/// window's rows alone; it must be what batches of those rows train.
#[test]
fn row_targets_count_what_a_batch_trains() {
    let tmp = tempfile::tempdir().unwrap();
    // Masks with holes, a trained first token (never a target: nothing
    // predicts it) and an untrained sample, besides the uneven split.
    let rows: Vec<(Vec<u32>, Vec<u8>)> = (0..9u32).map(|s| ((0..5 + s).collect(), (0..5 + s).map(|k| u8::from(s > 0 && (k + s) % 3 != 0)).collect())).collect();
    write_split(&tmp.path().join("holes"), &rows);
    split(&tmp.path().join("uneven"), 0);
    for name in ["holes", "uneven"] {
        let data = Dataset::open(&tmp.path().join(name)).unwrap();
        let all: Vec<usize> = (0..data.len()).collect();
        let mut trained = 0;
        for rows in all.chunks(2) {
            let b = data.batch(rows, tch::Device::Cpu);
            assert_eq!(b.targets, rows.iter().map(|&r| data.row_targets(r)).sum::<i64>(), "{name}: rows {rows:?}");
            trained += b.targets;
        }
        assert!(trained > 0, "{name}: nothing trained");
    }
}

#[test]
fn two_ranks_equal_one_process_with_the_same_global_batch() {
    let tmp = tempfile::tempdir().unwrap();
    for method in [Method::Lora, Method::Full] {
        let one = job(tmp.path(), &format!("one-{method:?}"), method, 1, 2);
        let two = job(tmp.path(), &format!("two-{method:?}"), method, 2, 1);
        ok(&run(&one, &[]));
        // Full fine-tuning's gradients go through many small buckets (the
        // default bucket holds all of this model's), LoRA's through one.
        let buckets: &[(&str, &str)] = if method == Method::Full { &[("TAILOR_DIST_BUCKET_BYTES", "4096")] } else { &[] };
        ok(&run(&two, buckets));
        let (a, b) = (log(&one.out), log(&two.out));
        // 13 rows, 4 a step, 2 epochs.
        assert_eq!(a.len(), 8, "{method:?}: steps of the single process");
        assert_eq!(a.len(), b.len(), "{method:?}: step counts differ");
        let mut worst = 0.0f64;
        for (s, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.3, y.3, "{method:?} step {}: tokens differ", s + 1);
            assert_eq!(x.2.is_some(), y.2.is_some(), "{method:?} step {}: validation ran in one run only", s + 1);
            for (p, q) in [(x.0, y.0), (x.1, y.1), (x.2.unwrap_or(0.0), y.2.unwrap_or(0.0))] {
                worst = worst.max((p - q).abs());
            }
        }
        assert!(worst <= 1e-5, "{method:?}: loss, gradient norm or validation loss differ by {worst:e}");
        let (wa, wb) = (weights(&one.out, method), weights(&two.out, method));
        assert_eq!(wa.len(), wb.len());
        let mut moved = 0.0f64;
        for ((name, x), (_, y)) in wa.iter().zip(&wb) {
            let d = (x - y).abs().max().double_value(&[]);
            assert!(d <= 1e-5, "{method:?}: {name} differs by {d:e} between 1 and 2 ranks");
            moved = moved.max(x.abs().max().double_value(&[]));
        }
        assert!(moved > 0.0, "{method:?}: the weights are all zero");
        // Training really went on: the loss went down.
        assert!(a.last().unwrap().0 < a[0].0, "{method:?}: loss {} → {}", a[0].0, a.last().unwrap().0);
        eprintln!("{method:?}: 2 ranks against 1 process, max difference of loss/grad-norm/val-loss {worst:e}");
    }
}

#[test]
fn a_killed_rank_fails_the_job_and_a_rerun_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = job(tmp.path(), "whole", Method::Lora, 2, 1);
    ok(&run(&whole, &[]));
    let mut j = job(tmp.path(), "killed", Method::Lora, 2, 1);
    j.checkpoint_every = Some(2);
    j.checkpoint_dir = Some(tmp.path().join("ckpt"));
    let out = run(&j, &[("TAILOR_FAULT_KILL_RANK", "1@4"), ("TAILOR_DIST_TIMEOUT_S", "60")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job succeeded with a killed rank");
    assert!(stderr.contains("rank 1 of 2 was killed by signal 9"), "the error does not name the killed rank: {stderr}");
    assert!(stderr.contains("rerun"), "the error does not say what to do: {stderr}");
    assert!(tmp.path().join("ckpt/ckpt-00000002/state.safetensors").exists(), "no checkpoint at step 2");
    assert!(!j.out.join("adapter").exists(), "a failed job wrote results");
    // The rerun resumes at step 2 and ends where the uninterrupted run ended.
    let stdout = ok(&run(&j, &[]));
    assert!(stdout.lines().any(|l| l.contains("\"resume\"") && l.contains("\"step\":2")), "the rerun did not resume at step 2: {stdout}");
    assert_eq!(std::fs::read_to_string(j.out.join("log.jsonl")).unwrap(), std::fs::read_to_string(whole.out.join("log.jsonl")).unwrap());
    for ((name, x), (_, y)) in weights(&j.out, Method::Lora).iter().zip(&weights(&whole.out, Method::Lora)) {
        assert!(x.equal(y), "{name}: the resumed run's weights differ from the uninterrupted run's");
    }
}

#[test]
fn a_single_process_refuses_a_multi_worker_job_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let j = job(tmp.path(), "inproc", Method::Lora, 2, 1);
    let e = tailor_train::trainer::train(&j).unwrap_err();
    assert!(e.contains("workers: 2"), "{e}");
}
