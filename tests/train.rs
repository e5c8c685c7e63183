//! The `train` stage through the CLI: a tiny model made by `tailor-train
//! tiny`, data formatted with its tokenizer, LoRA training that lowers the
//! loss and writes a PEFT adapter; pre-flight errors before any weight loads.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn project(targets: &str) -> tempfile::TempDir {
    project_with(targets, "max_steps: 25\n    eval_every: 25")
}

fn project_with(targets: &str, settings: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("data")).unwrap();
    std::fs::copy(repo().join("pipelines/quickstart/data/chatterbot_ja.jsonl"), p.join("data/ja.jsonl")).unwrap();
    let made = trainer()
        .args(["tiny", "--tokenizer"])
        .arg(repo().join("pipelines/quickstart/tokenizer"))
        .arg("--out")
        .arg(p.join("models/tiny"))
        .args(["--hidden", "48", "--layers", "2", "--heads", "2", "--kv-heads", "1", "--ffn", "96"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    std::fs::write(
        p.join("tailor.yaml"),
        format!(
            concat!(
                "version: 1\n",
                "name: t\n",
                "stages:\n",
                "  raw: {{kind: collect, sources: [{{path: data/ja.jsonl}}]}}\n",
                "  fmt: {{kind: format, input: raw, tokenizer: models/tiny, template: chatml, max_tokens: 64, split: {{validation: 0.1}}}}\n",
                "  tuned:\n",
                "    kind: train\n",
                "    data: fmt.train\n",
                "    validation: fmt.validation\n",
                "    base: models/tiny\n",
                "    method: lora\n",
                "    lora: {{r: 4, alpha: 8, targets: {targets}}}\n",
                "    lr: 5.0e-3\n",
                "    {settings}\n",
                "    batch_size: 8\n",
                "    threads: 1\n",
            ),
            targets = targets,
            settings = settings,
        ),
    )
    .unwrap();
    dir
}

#[test]
fn lora_training_lowers_the_loss_and_writes_a_peft_adapter() {
    let dir = project("[q_proj, v_proj, down_proj]");
    let out = run_in(dir.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lock = std::fs::read_to_string(dir.path().join("tailor.lock")).unwrap();
    assert!(lock.contains("train_loss"), "{lock}");
    let model = text(&run_in(dir.path(), &["show", "tuned", "--path"]).stdout).trim().to_string();
    let model = Path::new(&model);
    assert!(model.join("adapter/adapter_model.safetensors").exists());
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["target_modules"], serde_json::json!(["down_proj", "q_proj", "v_proj"]));
    let losses: Vec<f64> = std::fs::read_to_string(model.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 25);
    assert!(losses[22..].iter().sum::<f64>() < losses[..3].iter().sum::<f64>(), "loss did not decrease: {losses:?}");
    // Nothing changed: nothing reruns.
    assert!(text(&run_in(dir.path(), &["run"]).stderr).contains("Nothing to do"));
}

fn losses_of(dir: &Path, stage: &str) -> Vec<f64> {
    let model = text(&run_in(dir, &["show", stage, "--path"]).stdout).trim().to_string();
    std::fs::read_to_string(Path::new(&model).join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn two_workers_train_like_one_process_with_twice_the_accumulation() {
    let two = project_with("[q_proj, v_proj]", "max_steps: 6\n    workers: 2");
    let plan = text(&run_in(two.path(), &["plan"]).stdout);
    assert!(plan.contains("per worker; 2 workers ≈"), "{plan}");
    let out = run_in(two.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let one = project_with("[q_proj, v_proj]", "max_steps: 6\n    grad_accum: 2");
    let out = run_in(one.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (a, b) = (losses_of(two.path(), "tuned"), losses_of(one.path(), "tuned"));
    assert_eq!(a.len(), 6);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5, "2 workers {a:?} against grad_accum 2 {b:?}");
    }
}

#[test]
fn a_trainer_knob_in_the_environment_keys_the_result() {
    let dir = project_with("[q_proj, v_proj]", "max_steps: 2");
    assert!(run_in(dir.path(), &["run"]).status.success());
    // The old attention path computes the same model within float noise,
    // but not bit for bit: its result must not be served for this one.
    let out = tailor().current_dir(dir.path()).env("TAILOR_PACKED_ATTENTION", "mask").args(["run", "tuned", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tuned = summary["stages"].as_array().unwrap().iter().find(|s| s[0] == "tuned").unwrap();
    assert_eq!(tuned[1]["status"], "ran", "the knob did not rerun training: {summary}");
    assert!(text(&run_in(dir.path(), &["run"]).stderr).contains("Nothing to do"), "without the knob the first result is cached");
}

#[test]
fn unknown_lora_target_is_caught_before_anything_loads() {
    let dir = project("[q_proj, qkv_proj]");
    let out = run_in(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("the checkpoint has no module `qkv_proj`"), "{err}");
    assert!(err.contains("modules in this model: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj"), "{err}");
}

#[test]
fn data_from_another_tokenizer_is_refused() {
    let dir = project("[q_proj]");
    let yaml = std::fs::read_to_string(dir.path().join("tailor.yaml")).unwrap().replace("tokenizer: models/tiny", "tokenizer: other");
    std::fs::write(dir.path().join("tailor.yaml"), yaml).unwrap();
    let other = dir.path().join("other");
    let made = tailor().args(["tokenizer", "train", "--vocab", "300", "--out"]).arg(&other).arg(dir.path().join("data/ja.jsonl")).output().unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = run_in(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("different tokenizer"), "{}", text(&out.stderr));
}

/// Newest checkpoint step in the store's state directories.
fn checkpoint_step(dir: &Path) -> usize {
    let state = dir.join(".tailor/state");
    std::fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|fp| std::fs::read_dir(fp.path()).into_iter().flatten().flatten())
        .filter_map(|c| c.file_name().to_str()?.strip_prefix("ckpt-")?.parse::<usize>().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_killed_training_run_resumes_from_its_checkpoint_and_ends_with_the_same_weights() {
    use std::os::unix::process::CommandExt;
    let settings = "max_steps: 800\n    checkpoint_every: 100\n    eval_every: 400";
    let whole = project_with("[q_proj, v_proj]", settings);
    let out = run_in(whole.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = artifact(whole.path(), "tuned");

    let dir = project_with("[q_proj, v_proj]", settings);
    let mut child = tailor().current_dir(dir.path()).arg("run").stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().unwrap();
    let start = std::time::Instant::now();
    while checkpoint_step(dir.path()) < 200 {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint after two minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SIGKILL the engine and the trainer it started (one process group).
    let killed = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status().unwrap();
    assert!(killed.success());
    let _ = child.wait();
    let step = checkpoint_step(dir.path());
    assert!((200..800).contains(&step), "killed at checkpoint {step}");

    let again = run_in(dir.path(), &["run", "-v"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("resuming from a checkpoint"), "the rerun did not resume: {}", text(&again.stderr));
    let got = artifact(dir.path(), "tuned");
    for f in ["adapter/adapter_model.safetensors", "log.jsonl", "optimizer.safetensors"] {
        assert!(std::fs::read(got.join(f)).unwrap() == std::fs::read(want.join(f)).unwrap(), "{f} differs from the uninterrupted run's");
    }
    assert_eq!(std::fs::read_dir(dir.path().join(".tailor/state")).unwrap().count(), 0, "the checkpoints go once the stage succeeded");
}
