//! `train`: fine-tune a Llama-family model on tokenized data, fully or with
//! LoRA. The stage checks everything it can before any weight is loaded
//! (the model directory, the architecture, that LoRA targets exist in the
//! checkpoint, that the data was tokenized with the model's tokenizer) and
//! then runs the `tailor-train` binary, which links libtorch, with a job
//! file; its JSON-lines progress drives the progress bar. Output: the
//! adapter in PEFT layout (or the full model in HF layout), `log.jsonl`
//! (per step: loss, lr, grad-norm, tokens/s) and `metrics.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tailor_engine::{ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

/// Configuration of a `train` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Tokenized training data: a `format` stage (`formatted` or `formatted.train`).
    pub data: String,
    /// Tokenized validation data (`formatted.validation`), for the validation loss.
    pub validation: Option<String>,
    /// The base model: a Hugging Face directory (config.json, model.safetensors, tokenizer.json).
    pub base: PathBuf,
    /// `full` (all weights) or `lora` (adapters; base frozen).
    #[serde(default)]
    pub method: MethodCfg,
    /// LoRA settings (with `method: lora`).
    #[serde(default)]
    pub lora: LoraCfg,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Passes over the data.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub epochs: usize,
    /// Stop after this many optimizer steps (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Samples (or packs) per micro-batch.
    #[serde(default = "four")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub grad_accum: usize,
    /// Linear warm-up steps.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Learning-rate schedule after warm-up.
    #[serde(default)]
    pub schedule: ScheduleCfg,
    /// AdamW weight decay (matrices only).
    #[serde(default)]
    pub weight_decay: f64,
    /// Gradient clipping (global norm).
    #[serde(default = "one_f")]
    pub max_grad_norm: f64,
    /// Seed for initialisation, dropout and data order.
    #[serde(default)]
    pub seed: u64,
    /// Validation loss every N steps.
    pub eval_every: Option<usize>,
    /// Also write the merged model (base + adapter) in HF layout.
    #[serde(default)]
    pub merge: bool,
    /// CPU threads for libtorch (default: all).
    pub threads: Option<usize>,
}

fn default_lr() -> f64 {
    2e-4
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn four() -> usize {
    4
}

/// Training method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MethodCfg {
    /// All weights train.
    Full,
    /// Low-rank adapters.
    #[default]
    Lora,
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleCfg {
    /// Flat after warm-up.
    Constant,
    /// Linear decay to zero.
    Linear,
    /// Cosine decay to zero.
    #[default]
    Cosine,
}

/// LoRA settings, as PEFT names them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraCfg {
    /// Rank.
    #[serde(default = "eight")]
    #[schemars(range(min = 1))]
    pub r: i64,
    /// Alpha; the adapter's output is scaled by alpha / r.
    #[serde(default = "sixteen")]
    pub alpha: f64,
    /// Dropout on the adapter input.
    #[serde(default)]
    pub dropout: f64,
    /// Module names (`q_proj`, `v_proj`, …) or `all-linear`.
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// rsLoRA: scale by alpha / sqrt(r).
    #[serde(default)]
    pub rslora: bool,
}

fn eight() -> i64 {
    8
}
fn sixteen() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl Default for LoraCfg {
    fn default() -> Self {
        LoraCfg { r: 8, alpha: 16.0, dropout: 0.0, targets: default_targets(), rslora: false }
    }
}

/// The `train` stage kind.
pub struct Train;

/// Module leaf names present in a checkpoint, from the safetensors headers.
fn modules(base: &Path) -> Result<BTreeSet<String>, String> {
    let mut files = vec![base.join("model.safetensors")];
    if !files[0].exists() {
        let idx = base.join("model.safetensors.index.json");
        let v: Value = serde_json::from_slice(&std::fs::read(&idx).map_err(|_| format!("{} has no model.safetensors (or sharded index)", base.display()))?).map_err(|e| e.to_string())?;
        files = v["weight_map"].as_object().map(|m| m.values().filter_map(|f| f.as_str()).map(|f| base.join(f)).collect::<BTreeSet<_>>().into_iter().collect()).unwrap_or_default();
    }
    let mut out = BTreeSet::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format!("{}: {e}", f.display()))?;
        for name in meta.tensors().keys() {
            let parts: Vec<&str> = name.split('.').collect();
            if parts.len() >= 2 && parts[parts.len() - 1] == "weight" {
                out.insert(parts[parts.len() - 2].to_string());
            }
        }
    }
    Ok(out)
}

impl Stage for Train {
    type Config = TrainConfig;
    const KIND: &'static str = "train";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Fine-tune a Llama-family model (full or LoRA) on tokenized data with libtorch.";
    const OUTPUTS: &'static [OutputDecl] = &[OutputDecl { name: "model", kind: "model", about: "adapter (PEFT) or model (HF), log.jsonl, metrics.json" }];

    fn spec(config: &TrainConfig, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let base = root.join(&config.base);
        match std::fs::read(base.join("config.json")) {
            Err(_) => issues.push(ConfigIssue::new("/base", format!("`{}` is not a model directory (no config.json)", config.base.display())).help("make a tiny model with `tailor-train tiny --tokenizer DIR --out DIR`, or import one")),
            Ok(bytes) => {
                let cfg: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let arch = cfg["architectures"][0].as_str().unwrap_or("LlamaForCausalLM");
                if !["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"].contains(&arch) {
                    issues.push(ConfigIssue::new("/base", format!("architecture `{arch}` is not supported")).help("supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"));
                }
                if !base.join("tokenizer.json").exists() {
                    issues.push(ConfigIssue::new("/base", "the model directory has no tokenizer.json"));
                }
                match modules(&base) {
                    Ok(have) if config.method == MethodCfg::Lora => {
                        for (i, t) in config.lora.targets.iter().enumerate() {
                            if t != "all-linear" && !have.contains(t) {
                                let linear: Vec<&String> = have.iter().filter(|m| m.ends_with("_proj")).collect();
                                issues.push(ConfigIssue::new(format!("/lora/targets/{i}"), format!("the checkpoint has no module `{t}`")).help(format!("modules in this model: {}", linear.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => issues.push(ConfigIssue::new("/base", e)),
                }
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let mut inputs = vec![InputDecl { role: "data".into(), reference: config.data.clone(), pointer: "/data".into(), accepts: vec!["tokenized"] }];
        if let Some(v) = &config.validation {
            inputs.push(InputDecl { role: "validation".into(), reference: v.clone(), pointer: "/validation".into(), accepts: vec!["tokenized"] });
        }
        let mut env = BTreeMap::new();
        env.insert("libtorch".into(), "2.13.0".into());
        env.insert("device".into(), "cpu".into());
        env.insert("dtype".into(), "float32".into());
        Ok(StageSpec { inputs, files: vec![FileDecl { path: config.base.clone(), pointer: "/base".into() }], env })
    }

    fn run(config: &TrainConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let base = ctx.resolve(&config.base);
        let data = ctx.input("data")?.dir.clone();
        // The data must have been tokenized with this model's tokenizer.
        let manifest: Value = serde_json::from_slice(&std::fs::read(data.join("manifest.json")).ctx(|| "reading the data manifest".into())?).unwrap_or_default();
        let want = blake3::hash(&std::fs::read(base.join("tokenizer.json")).ctx(|| "reading the model's tokenizer.json".into())?).to_hex().to_string();
        if manifest["tokenizer"]["digest"].as_str() != Some(want.as_str()) {
            return Err(StageError::msg(format!(
                "the data was tokenized with a different tokenizer than {}'s; point the format stage's `tokenizer:` at the model directory",
                config.base.display()
            )));
        }
        let out = ctx.output_dir("model")?;
        let job = json!({
            "base": base, "train": data,
            "validation": ctx.input("validation").ok().map(|v| v.dir.clone()),
            "out": out, "method": config.method,
            "lora": (config.method == MethodCfg::Lora).then(|| json!({"r": config.lora.r, "alpha": config.lora.alpha, "dropout": config.lora.dropout, "targets": config.lora.targets, "rslora": config.lora.rslora})),
            "lr": config.lr, "epochs": config.epochs, "max_steps": config.max_steps, "batch_size": config.batch_size,
            "grad_accum": config.grad_accum, "warmup_steps": config.warmup_steps, "schedule": config.schedule,
            "weight_decay": config.weight_decay, "max_grad_norm": config.max_grad_norm, "seed": config.seed,
            "eval_every": config.eval_every, "merge": config.merge, "threads": config.threads,
        });
        let job_file = out.with_file_name("job.json");
        std::fs::write(&job_file, serde_json::to_vec_pretty(&job).unwrap_or_default()).ctx(|| "writing job.json".into())?;
        let bin = trainer_binary()?;
        let mut child = Command::new(&bin).arg("run").arg(&job_file).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ctx(|| format!("starting {}", bin.display()))?;
        let mut metrics = BTreeMap::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = line.ctx(|| "reading trainer output".into())?;
                let Ok(ev) = serde_json::from_str::<Value>(&line) else { continue };
                match ev["event"].as_str() {
                    Some("start") => ctx.progress().set_length(ev["steps"].as_u64().unwrap_or(0)),
                    Some("step") => {
                        ctx.progress().set_position(ev["step"].as_u64().unwrap_or(0));
                        ctx.progress().set_message(format!("loss {:.4} · {:.0} tok/s", ev["loss"].as_f64().unwrap_or(f64::NAN), ev["tokens_per_s"].as_f64().unwrap_or(0.0)));
                    }
                    Some("done") => {
                        // Only reproducible numbers go into the lock file;
                        // throughput is logged.
                        for k in ["train_loss", "val_loss", "steps", "tokens", "trainable_parameters"] {
                            if !ev["metrics"][k].is_null() {
                                metrics.insert(k.to_string(), ev["metrics"][k].clone());
                            }
                        }
                        tracing::info!(tokens_per_s = ev["metrics"]["tokens_per_s"].as_f64().unwrap_or(0.0), "training finished");
                    }
                    _ => {}
                }
            }
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let status = child.wait().ctx(|| "waiting for the trainer".into())?;
        if !status.success() {
            let msg = err.lines().filter(|l| !l.trim().is_empty()).last().unwrap_or("the trainer failed without a message").trim_start_matches("error: ");
            return Err(StageError::msg(msg.to_string()));
        }
        Ok(StageOutcome { metrics, warnings: vec![], check: None })
    }
}

/// `tailor-train` beside the running binary (or `TAILOR_TRAIN_BIN`).
fn trainer_binary() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os("TAILOR_TRAIN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ctx(|| "locating the tailor binary".into())?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live in target/*/deps; the trainer one level up.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("tailor-train");
    if bin.exists() { Ok(bin) } else { Err(StageError::msg(format!("{} not found; build it with `cargo build` (it links libtorch)", bin.display()))) }
}
