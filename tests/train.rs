//! The `train` stage through the CLI: a tiny model made by `tailor-train
//! tiny`, data formatted with its tokenizer, LoRA training that lowers the
//! loss and writes a PEFT adapter; pre-flight errors before any weight loads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tailor(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tailor")).current_dir(dir).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn project(targets: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("data")).unwrap();
    std::fs::copy(repo().join("pipelines/quickstart/data/chatterbot_ja.jsonl"), p.join("data/ja.jsonl")).unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_tailor-train"))
        .args(["tiny", "--tokenizer"])
        .arg(repo().join("pipelines/quickstart/tokenizer"))
        .arg("--out")
        .arg(p.join("models/tiny"))
        .args(["--hidden", "32", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ffn", "64"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    std::fs::write(
        p.join("tailor.yaml"),
        format!(
            "version: 1\nname: t\nstages:\n  raw: {{kind: collect, sources: [{{path: data/ja.jsonl}}]}}\n  fmt: {{kind: format, input: raw, tokenizer: models/tiny, template: chatml, max_tokens: 64, split: {{validation: 0.1}}}}\n  tuned:\n    kind: train\n    data: fmt.train\n    validation: fmt.validation\n    base: models/tiny\n    method: lora\n    lora: {{r: 4, alpha: 8, targets: {targets}}}\n    lr: 5.0e-3\n    max_steps: 25\n    batch_size: 8\n    eval_every: 25\n    threads: 1\n"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn lora_training_lowers_the_loss_and_writes_a_peft_adapter() {
    let dir = project("[q_proj, v_proj, down_proj]");
    let out = tailor(dir.path(), &["run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lock = std::fs::read_to_string(dir.path().join("tailor.lock")).unwrap();
    assert!(lock.contains("train_loss"), "{lock}");
    let model = text(&tailor(dir.path(), &["show", "tuned", "--path"]).stdout).trim().to_string();
    let model = Path::new(&model);
    assert!(model.join("adapter/adapter_model.safetensors").exists());
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["target_modules"], serde_json::json!(["down_proj", "q_proj", "v_proj"]));
    let losses: Vec<f64> = std::fs::read_to_string(model.join("log.jsonl")).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 25);
    assert!(losses[22..].iter().sum::<f64>() < losses[..3].iter().sum::<f64>(), "loss did not decrease: {losses:?}");
    // Nothing changed: nothing reruns.
    assert!(text(&tailor(dir.path(), &["run"]).stderr).contains("Nothing to do"));
}

#[test]
fn unknown_lora_target_is_caught_before_anything_loads() {
    let dir = project("[q_proj, qkv_proj]");
    let out = tailor(dir.path(), &["validate"]);
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
    let made = Command::new(env!("CARGO_BIN_EXE_tailor")).args(["tokenizer", "train", "--vocab", "300", "--out"]).arg(&other).arg(dir.path().join("data/ja.jsonl")).output().unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = tailor(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("different tokenizer"), "{}", text(&out.stderr));
}
