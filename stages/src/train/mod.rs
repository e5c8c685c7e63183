//! `train`: fine-tune a Llama-family model on tokenized data — fully, with
//! LoRA, or with QLoRA. The stage checks everything it can before any weight
//! is loaded (the model, the architecture, that LoRA targets exist in the
//! checkpoint, that the data was tokenized with the model's tokenizer) and
//! then runs the `tailor-train` binary, which links libtorch, with a job
//! file; its JSON-lines progress drives the progress bar.
//!
//! The `model` artifact holds `adapter/` (PEFT layout) or `model/` (Hugging
//! Face layout), optionally `merged/`, the optimizer state for a later
//! `retrain` (adapters only), `log.jsonl` (per step: loss, lr, grad-norm,
//! validation loss), `metrics.json`, `base.json` (which base it was trained
//! on) and `lineage.json` (the chain of stages and data behind it).

pub mod base;
pub mod memory;
pub mod settings;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tailor_engine::{ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use settings::{Hyper, MethodSettings};
use tailor_protocol::job::TrainJob;

/// Configuration of a `train` stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TrainConfig {
    /// Tokenized training data: a `format` stage (`formatted` or `formatted.train`).
    pub data: String,
    /// Tokenized validation data (`formatted.validation`), for the validation loss.
    pub validation: Option<String>,
    /// The base model: a Hugging Face directory (config.json,
    /// model.safetensors, tokenizer.json) or a llama.cpp `.gguf` file.
    pub base: PathBuf,
    /// Full fine-tuning, LoRA or QLoRA.
    #[serde(flatten)]
    pub method: MethodSettings,
    /// Optimisation and runtime settings.
    #[serde(flatten)]
    pub hyper: Hyper,
}

/// The outputs of `train` and `retrain`.
pub const MODEL_OUTPUTS: &[OutputDecl] =
    &[OutputDecl { name: "model", kind: "model", about: "adapter (PEFT) or model (HF), log.jsonl, metrics.json, lineage.json" }];

/// The `train` stage kind.
pub struct Train;

/// Runtime environment that changes results (enters the fingerprint).
pub fn env(h: &Hyper) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("libtorch".into(), "2.13.0".into());
    env.insert("device".into(), format!("{:?}", h.device).to_lowercase());
    env.insert("dtype".into(), format!("{:?}", h.dtype).to_lowercase());
    env.extend(crate::numerics::env(crate::numerics::threads(h.threads)));
    env.extend(trainer_knobs());
    env
}

/// The trainer's environment knobs that change its arithmetic — the
/// attention path (training and scoring), how gradients are bucketed for
/// summing across more than two ranks — as fingerprint entries, when set.
pub fn trainer_knobs() -> BTreeMap<String, String> {
    [("TAILOR_PACKED_ATTENTION", "packed_attention"), ("TAILOR_DIST_BUCKET_BYTES", "dist_bucket_bytes")]
        .into_iter()
        .filter_map(|(var, key)| std::env::var(var).ok().map(|v| (key.to_string(), v)))
        .collect()
}

/// What a model stage asks of a cluster by default: one GPU unless it is
/// told to use the CPU (`device: auto` may find one on the node), and as
/// many CPUs as libtorch will use threads (the local executor also runs
/// such stages side by side only while their CPUs fit the machine). With
/// data-parallel `workers`, one task per worker, each with its share of
/// the threads and its own GPU.
pub fn resources(device: tailor_protocol::settings::Device, threads: usize, workers: usize) -> tailor_engine::resources::Resources {
    let workers = workers.max(1);
    let gpus = (device != tailor_protocol::settings::Device::Cpu).then_some(u32::try_from(workers).unwrap_or(u32::MAX));
    let cpus = Some(u32::try_from((threads / workers).max(1)).unwrap_or(u32::MAX));
    let tasks = (workers > 1).then(|| u32::try_from(workers).unwrap_or(u32::MAX));
    tailor_engine::resources::Resources { gpus, cpus, tasks, ..Default::default() }
}

/// Inputs common to `train` and `retrain`.
pub fn data_inputs(data: &str, validation: Option<&String>) -> Vec<InputDecl> {
    let mut inputs = vec![InputDecl { role: "data".into(), reference: data.to_string(), pointer: "/data".into(), accepts: vec!["tokenized"] }];
    if let Some(v) = validation {
        inputs.push(InputDecl { role: "validation".into(), reference: v.clone(), pointer: "/validation".into(), accepts: vec!["tokenized"] });
    }
    inputs
}

/// The `tailor-train run` job for these settings.
pub fn job(m: &MethodSettings, h: &Hyper, base: &Path, ctx: &StageContext<'_>, out: &Path) -> Result<TrainJob, StageError> {
    Ok(TrainJob {
        base: base.to_path_buf(),
        train: ctx.input("data")?.dir.clone(),
        validation: ctx.input("validation").ok().map(|v| v.dir.clone()),
        out: out.to_path_buf(),
        method: m.method,
        lora: m.method.is_adapter().then(|| m.lora.clone()),
        double_quant: m.qlora.double_quant,
        dtype: h.dtype,
        device: h.device,
        lr: h.lr,
        epochs: h.epochs,
        max_steps: h.max_steps,
        batch_size: h.batch_size,
        grad_accum: h.grad_accum,
        warmup_steps: h.warmup_steps,
        schedule: h.schedule,
        weight_decay: h.weight_decay,
        max_grad_norm: h.max_grad_norm,
        seed: h.seed,
        eval_every: h.eval_every,
        merge: h.merge,
        threads: Some(crate::numerics::threads(h.threads)),
        checkpoint_every: h.checkpoint_every,
        checkpoint_dir: Some(ctx.state_dir()?),
        init: None,
        oversample: None,
        save_optimizer: m.method.is_adapter(),
        group_by_length: h.group_by_length,
        gradient_checkpointing: h.gradient_checkpointing,
        workers: h.workers,
    })
}

/// The data must have been tokenized with the model's own tokenizer.
pub fn check_tokenizer(data: &Path, model_dir: &Path, shown: &Path) -> Result<(), StageError> {
    let path = data.join("manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&path).ctx(|| "reading the data manifest".into())?)
        .map_err(|e| StageError::msg(format!("{} is not valid JSON ({e}); rerun the format stage", path.display())))?;
    let Some(have) = manifest["tokenizer"]["digest"].as_str() else {
        return Err(StageError::msg(format!("{} names no tokenizer digest; rerun the format stage", path.display())));
    };
    let want = blake3::hash(&std::fs::read(model_dir.join("tokenizer.json")).ctx(|| "reading the model's tokenizer.json".into())?).to_hex().to_string();
    if have != want {
        return Err(StageError::msg(format!(
            "the data was tokenized with a different tokenizer than {}'s; point the format stage's `tokenizer:` at the model (directory or .gguf)",
            shown.display()
        )));
    }
    Ok(())
}

/// `base.json` in a model artifact: the base as the pipeline named it, its
/// format, and the digest the engine hashed it to (from the lineage).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseRecord {
    /// The path as written in the pipeline.
    pub path: PathBuf,
    /// `hf` or `gguf`.
    pub format: String,
    /// Content digest of the base.
    pub digest: Option<String>,
}

/// `train.json` in a model artifact: how it was trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Method, LoRA and QLoRA settings.
    pub method: MethodSettings,
    /// Optimisation and runtime settings.
    pub settings: Hyper,
}

/// The number of training samples in a tokenized split and the primer's
/// band for it, as a line; `true` when it is below the minimum.
pub fn data_size(tokenized: &Path) -> Option<(String, bool)> {
    let manifest: Value = serde_json::from_slice(&std::fs::read(tokenized.join("manifest.json")).ok()?).ok()?;
    let n = manifest["samples"].as_u64()? as usize;
    let band = tailor_text::profile::SizeBand::of(n);
    let line = format!("training data: {n} samples — {}", band.describe());
    Some((if band.below_minimum() { format!("warning: {line}") } else { line }, band.below_minimum()))
}

/// Run a training job and write the artifact's bookkeeping files (`base.json`,
/// `train.json` with the method and settings, `lineage.json`); returns the
/// headline metrics (reproducible numbers only: throughput is logged).
pub fn execute(
    ctx: &StageContext<'_>,
    job: &TrainJob,
    out: &Path,
    base: &BaseRecord,
    m: &MethodSettings,
    h: &Hyper,
) -> Result<BTreeMap<String, Value>, StageError> {
    let done = crate::runner::run(ctx, job, &out.with_file_name("job.json"))?;
    tracing::info!(tokens_per_s = done.tokens_per_s.unwrap_or(0.0), peak_rss_mib = done.peak_rss_mib.unwrap_or(0.0), "training finished");
    let Some(trained) = done.metrics else { return Err(StageError::msg("the trainer finished without metrics")) };
    crate::files::write_json(&out.join("base.json"), base)?;
    crate::files::write_json(&out.join("train.json"), &TrainRecord { method: m.clone(), settings: h.clone() })?;
    crate::files::write_json(&out.join("lineage.json"), ctx.lineage())?;
    let mut metrics = BTreeMap::new();
    if let Some(n) = ctx
        .input("data")
        .ok()
        .and_then(|d| std::fs::read(d.dir.join("manifest.json")).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|m| m["samples"].as_u64())
    {
        metrics.insert("samples".into(), json!(n));
    }
    metrics.insert("steps".into(), json!(trained.steps));
    metrics.insert("tokens".into(), json!(trained.tokens));
    metrics.insert("trainable_parameters".into(), json!(trained.trainable_parameters));
    for (k, v) in [("train_loss", trained.train_loss), ("val_loss", trained.val_loss)] {
        if let Some(v) = v {
            metrics.insert(k.into(), json!(v));
        }
    }
    Ok(metrics)
}

/// The base record a model artifact keeps.
pub fn base_record(base: &Path, ctx: &StageContext<'_>) -> BaseRecord {
    let key = base.display().to_string();
    BaseRecord {
        path: base.to_path_buf(),
        format: if base::is_gguf(base) { "gguf" } else { "hf" }.into(),
        digest: ctx.lineage()["files"].get(&key).and_then(Value::as_str).map(str::to_string),
    }
}

impl Stage for Train {
    type Config = TrainConfig;
    const KIND: &'static str = "train";
    const VERSION: u32 = 2;
    const IMPLEMENTATION: &'static str = crate::identity::TRAIN;
    const ABOUT: &'static str = "Fine-tune a Llama-family model (full, LoRA or QLoRA) on tokenized data with libtorch.";
    const OUTPUTS: &'static [OutputDecl] = MODEL_OUTPUTS;

    fn spec(config: &TrainConfig, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let targets: &[String] = if !config.method.method.is_adapter() { &[] } else { &config.method.lora.targets };
        let issues = base::check(&config.base, root, "/base", targets);
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(StageSpec {
            inputs: data_inputs(&config.data, config.validation.as_ref()),
            files: vec![FileDecl { path: config.base.clone(), pointer: "/base".into() }],
            env: env(&config.hyper),
            resources: resources(config.hyper.device, crate::numerics::threads(config.hyper.threads), config.hyper.workers),
        })
    }

    fn run(config: &TrainConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let out = ctx.output_dir("model")?;
        let base_dir = base::materialize(&config.base, ctx.root, &out.with_file_name("import"))?;
        check_tokenizer(&ctx.input("data")?.dir, &base_dir, &config.base)?;
        memory::preflight(&base_dir, &config.method, &config.hyper, &ctx.input("data")?.dir).map_err(StageError::msg)?;
        let job = job(&config.method, &config.hyper, &base_dir, ctx, &out)?;
        let metrics = execute(ctx, &job, &out, &base_record(&config.base, ctx), &config.method, &config.hyper)?;
        let warnings = data_size(&ctx.input("data")?.dir).filter(|(_, warn)| *warn).map(|(line, _)| line).into_iter().collect();
        Ok(StageOutcome { metrics, warnings, check: None })
    }

    fn notes(config: &TrainConfig, root: &Path, inputs: &BTreeMap<String, PathBuf>) -> Vec<String> {
        let mut notes = memory::plan_note(&root.join(&config.base), &config.method, &config.hyper, inputs.get("data").map(PathBuf::as_path));
        notes.push(match inputs.get("data").and_then(|d| data_size(d)) {
            Some((line, _)) => line,
            None => "training data: its size and band are known once the data stage has run".into(),
        });
        notes.extend(crate::numerics::note(config.hyper.threads));
        notes
    }

    fn report(_output: &OutputDecl, dir: &Path) -> Option<String> {
        Some(tailor_report::model(dir))
    }

    fn show(_output: &OutputDecl, dir: &Path, w: &mut dyn Write, _limit: usize) -> std::io::Result<bool> {
        crate::show::model(dir, w)
    }
}
