//! The training loop: full fine-tuning, LoRA or QLoRA over a Llama model,
//! with the loss on completion tokens only, normalised by the number of
//! target tokens in the whole gradient-accumulation window; AdamW (fused,
//! decoupled decay on matrices only); warm-up then constant/linear/cosine
//! learning rate; gradient clipping; periodic validation loss; a stop with a
//! clear error on NaN/inf; atomic checkpoints that resume bit-exactly.
//! Progress goes to stdout as JSON lines.
//!
//! Random streams are separate and derived, never carried: adapter
//! initialisation from (seed, "init"), dropout from (seed, step), data order
//! from (seed, epoch). That is what makes a resumed run equal an
//! uninterrupted one without saving generator state.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, LoopState};
use crate::data::{Dataset, masked_loss};
use crate::load::LoadOptions;
use crate::model::{Attend, Llama};
use crate::optim::{AdamW, AdamWConfig};
use crate::peft::{self, LoraSpec};

/// Training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// All weights.
    Full,
    /// Low-rank adapters, base frozen.
    Lora,
    /// Low-rank adapters over an NF4-quantized base.
    Qlora,
}

/// Learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Flat.
    Constant,
    /// Linear decay to zero.
    Linear,
    /// Cosine decay to zero.
    Cosine,
}

/// Floating-point kind of the (frozen) weights and of the computation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// float32 on CPU, bfloat16 on CUDA.
    #[default]
    Auto,
    /// float32.
    Float32,
    /// bfloat16.
    Bfloat16,
    /// float16.
    Float16,
}

/// Where to train.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSpec {
    /// CUDA when available, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device (an error when there is none).
    Cuda,
}

impl DeviceSpec {
    /// The device this resolves to here.
    pub fn resolve(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto => Ok(Device::cuda_if_available()),
            DeviceSpec::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceSpec::Cuda => Err("`device: cuda` was asked for, but libtorch sees no CUDA device here (use `device: auto` or `cpu`)".into()),
        }
    }
}

impl Dtype {
    /// The kind this resolves to on `device`.
    pub fn resolve(self, device: Device) -> Kind {
        match self {
            Dtype::Auto if device.is_cuda() => Kind::BFloat16,
            Dtype::Auto | Dtype::Float32 => Kind::Float,
            Dtype::Bfloat16 => Kind::BFloat16,
            Dtype::Float16 => Kind::Half,
        }
    }
}

/// Where a run starts from instead of fresh adapters (a `retrain`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Init {
    /// A PEFT adapter directory whose A/B values initialise the adapters.
    pub adapter: Option<PathBuf>,
    /// A saved optimizer state (`optimizer.safetensors`) to continue from.
    pub optimizer: Option<PathBuf>,
}

/// Samples to repeat (a `retrain` focusing on an evaluation's failures).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Oversample {
    /// Sample ids.
    pub ids: BTreeSet<String>,
    /// Times each appears per epoch.
    pub factor: usize,
}

/// Everything a training run needs (written by the `train` stage).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Base model directory (Hugging Face layout).
    pub base: PathBuf,
    /// Tokenized training split.
    pub train: PathBuf,
    /// Tokenized validation split, if any.
    pub validation: Option<PathBuf>,
    /// Output directory.
    pub out: PathBuf,
    /// Method.
    pub method: Method,
    /// LoRA settings (methods lora and qlora).
    pub lora: Option<LoraSpec>,
    /// QLoRA: double-quantize the NF4 block scales.
    #[serde(default = "yes")]
    pub double_quant: bool,
    /// Weights and compute kind.
    #[serde(default)]
    pub dtype: Dtype,
    /// Device.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Stop after this many optimizer steps.
    pub max_steps: Option<usize>,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Schedule.
    pub schedule: Schedule,
    /// AdamW weight decay (matrices only).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this.
    pub max_grad_norm: f64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Validation loss every N steps (and at the end).
    pub eval_every: Option<usize>,
    /// Also write a merged model (LoRA folded into the base).
    pub merge: bool,
    /// Intra-op threads.
    pub threads: Option<usize>,
    /// Checkpoint every N steps into `checkpoint_dir`.
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
    /// Where checkpoints live (kept across attempts of the same job).
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Start from an earlier result.
    #[serde(default)]
    pub init: Option<Init>,
    /// Repeat some samples.
    #[serde(default)]
    pub oversample: Option<Oversample>,
    /// Write the optimizer state beside the result (for a later retrain).
    #[serde(default)]
    pub save_optimizer: bool,
    /// Batch rows of similar length together (less padding).
    #[serde(default)]
    pub group_by_length: bool,
}

fn yes() -> bool {
    true
}

impl Job {
    /// A job with the usual defaults (float32 on the CPU, constant learning
    /// rate 2e-4 without warm-up, one epoch, batch 4, no clipping, seed 0,
    /// no checkpoints) for callers that set only what they measure.
    pub fn with_defaults(base: PathBuf, train: PathBuf, out: PathBuf, method: Method, lora: Option<LoraSpec>) -> Job {
        Job {
            base,
            train,
            validation: None,
            out,
            method,
            lora,
            double_quant: true,
            dtype: Dtype::Float32,
            device: DeviceSpec::Cpu,
            lr: 2e-4,
            epochs: 1,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            warmup_steps: 0,
            schedule: Schedule::Constant,
            weight_decay: 0.0,
            max_grad_norm: 0.0,
            seed: 0,
            eval_every: None,
            merge: false,
            threads: None,
            checkpoint_every: None,
            checkpoint_dir: None,
            init: None,
            oversample: None,
            save_optimizer: false,
            group_by_length: false,
        }
    }

    /// Identifies the job's settings (not where its files are: an imported
    /// base lands in a new scratch directory on every attempt, and the
    /// checkpoint directory already belongs to one stage fingerprint), for
    /// matching checkpoints.
    fn key(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        for k in ["base", "train", "validation", "out", "checkpoint_dir", "init", "threads"] {
            v[k] = serde_json::Value::Null;
        }
        format!("{:016x}", fnv(v.to_string().as_bytes()))
    }

    fn steps_per_epoch(&self, rows: usize) -> usize {
        rows.div_ceil(self.batch_size.max(1) * self.grad_accum.max(1)).max(1)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// A seed for one random stream.
fn stream(seed: u64, name: &str, index: u64) -> i64 {
    let mut r = crate::data::Rng::new(seed ^ fnv(name.as_bytes()) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (r.next_u64() >> 1) as i64
}

fn lr_at(job: &Job, step: usize, total: usize) -> f64 {
    if step < job.warmup_steps {
        return job.lr * (step + 1) as f64 / job.warmup_steps as f64;
    }
    let span = total.saturating_sub(job.warmup_steps).max(1) as f64;
    let p = ((step - job.warmup_steps) as f64 / span).min(1.0);
    match job.schedule {
        Schedule::Constant => job.lr,
        Schedule::Linear => job.lr * (1.0 - p),
        Schedule::Cosine => job.lr * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
    }
}

/// Print one JSON line on stdout (the train stage reads these). When the
/// stage that started this process is gone (the pipe is closed), there is
/// no one to report to: stop, leaving the last checkpoint to resume from.
pub fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{v}").and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

/// Peak resident memory of this process so far, MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb / 1024.0)
}

/// Summed next-token loss and target count per row of `data` (rows in
/// order), without gradients.
pub fn row_losses(model: &Llama, data: &Dataset, batch_size: usize, device: Device) -> Result<Vec<(f64, i64)>, String> {
    tch::no_grad(|| {
        let mut out = Vec::with_capacity(data.len());
        let order = data.order(0, 0, false);
        for rows in order.chunks(batch_size.max(1)) {
            for &r in rows {
                let b = data.batch(&[r], device);
                if b.targets == 0 {
                    out.push((0.0, 0));
                    continue;
                }
                let attend = if b.simple { Attend::Causal } else { Attend::Segments(&b.segments) };
                let logits = model.forward(&b.ids, Some(&b.positions), attend, false)?;
                out.push((masked_loss(&logits, &b, 1.0).double_value(&[]), b.targets));
            }
        }
        Ok(out)
    })
}

/// Mean validation loss per target token.
pub fn evaluate(model: &Llama, data: &Dataset, batch_size: usize, device: Device) -> Result<f64, String> {
    tch::no_grad(|| {
        let (mut sum, mut n) = (0.0, 0i64);
        let order = data.order(0, 0, false);
        for rows in order.chunks(batch_size.max(1)) {
            let b = data.batch(rows, device);
            if b.targets == 0 {
                continue;
            }
            let attend = if b.simple { Attend::Causal } else { Attend::Segments(&b.segments) };
            let logits = model.forward(&b.ids, Some(&b.positions), attend, false)?;
            sum += masked_loss(&logits, &b, 1.0).double_value(&[]);
            n += b.targets;
        }
        Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
    })
}

/// A model and its trainable parameters.
pub struct Built {
    /// The model.
    pub model: Llama,
    /// Trainable variables by name.
    pub params: Vec<(String, Tensor)>,
}

/// Build the model for a job: every weight a float32 variable (full), or
/// frozen in the job's dtype (NF4 for QLoRA) with adapters attached.
pub fn build(job: &Job, device: Device) -> Result<Built, String> {
    let cfg = crate::load::config(&job.base)?;
    let kind = job.dtype.resolve(device);
    let full = job.method == Method::Full;
    let opts = LoadOptions { kind: if full { Kind::Float } else { kind }, device, nf4: (job.method == Method::Qlora).then_some(job.double_quant) };
    let mut weights = crate::load::weights(&job.base, opts)?;
    let mut params = Vec::new();
    if full {
        let mut names: Vec<String> = weights.dense.keys().cloned().collect();
        names.sort();
        for name in names {
            if let Some(t) = weights.dense.remove(&name) {
                let v = t.set_requires_grad(true);
                params.push((name.clone(), v.shallow_clone()));
                weights.dense.insert(name, v);
            }
        }
    }
    let mut model = Llama::from_weights(cfg, weights, kind, device)?;
    if !full {
        let spec = job.lora.as_ref().ok_or("methods lora and qlora need `lora` settings")?;
        tch::manual_seed(stream(job.seed, "init", 0));
        params = peft::attach(&mut model, spec);
        if params.is_empty() {
            return Err(format!("no module matches the LoRA targets {:?}", spec.targets));
        }
        if let Some(dir) = job.init.as_ref().and_then(|i| i.adapter.as_ref()) {
            let (_, saved) = peft::read(dir)?;
            tch::no_grad(|| {
                for (name, p) in &mut params {
                    let t = saved
                        .get(name)
                        .ok_or_else(|| format!("the adapter in {} has no `{name}`; retrain with the same LoRA targets and rank", dir.display()))?;
                    if t.size() != p.size() {
                        return Err(format!("`{name}` has shape {:?} in {}, {:?} here; retrain with the same rank", t.size(), dir.display(), p.size()));
                    }
                    p.copy_(t);
                }
                Ok::<(), String>(())
            })?;
        }
    }
    Ok(Built { model, params })
}

/// Run a job to completion (resuming from its newest checkpoint, if any);
/// returns the final metrics.
pub fn train(job: &Job) -> Result<serde_json::Value, String> {
    if let Some(n) = job.threads {
        tch::set_num_threads(n as i32);
    }
    let device = job.device.resolve()?;
    let mut train = Dataset::open(&job.train)?;
    if train.is_empty() {
        return Err("the training split is empty".into());
    }
    if let Some(o) = &job.oversample {
        let n = train.oversample(&o.ids, o.factor);
        emit(json!({"event": "note", "message": format!("{n} samples repeated ×{}", o.factor)}));
    }
    let val = match &job.validation {
        Some(p) => Some(Dataset::open(p)?).filter(|d| !d.is_empty()),
        None => None,
    };
    let Built { mut model, params } = build(job, device)?;
    if train.max_id() as usize >= model.cfg.vocab_size {
        return Err(format!(
            "token id {} is outside the model's vocabulary of {}: the data was tokenized with another tokenizer",
            train.max_id(),
            model.cfg.vocab_size
        ));
    }
    let mut opt = AdamW::new(params, AdamWConfig { weight_decay: job.weight_decay, ..AdamWConfig::default() });
    if let Some(p) = job.init.as_ref().and_then(|i| i.optimizer.as_ref()) {
        let saved = Tensor::read_safetensors(p).map_err(|e| format!("{}: {e}", p.display()))?.into_iter().collect();
        opt.load_state(&saved)?;
    }
    let key = job.key();
    let mut st = LoopState::default();
    if let Some(dir) = &job.checkpoint_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some(ck) = checkpoint::latest(dir, &key)? {
            opt.load_state(&ck.tensors)?;
            st = ck.state;
            emit(json!({"event": "resume", "step": st.step, "from": ck.dir}));
        }
    }
    let per_step = job.batch_size.max(1) * job.grad_accum.max(1);
    let steps_per_epoch = job.steps_per_epoch(train.len());
    let total = job.max_steps.unwrap_or(steps_per_epoch * job.epochs.max(1));
    let weight_bytes = model.weight_bytes();
    emit(
        json!({"event": "start", "steps": total, "rows": train.len(), "trainable_parameters": opt.numel(), "weight_bytes": weight_bytes, "device": format!("{device:?}"), "dtype": format!("{:?}", model.compute)}),
    );
    let mut log = std::fs::File::create(job.out.join("log.jsonl")).map_err(|e| e.to_string())?;
    for line in &st.log {
        writeln!(log, "{line}").map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let mut tokens_now = 0i64;
    let mut order_epoch = usize::MAX;
    let mut order = Vec::new();
    while st.step < total {
        let (epoch, w) = (st.step / steps_per_epoch, st.step % steps_per_epoch);
        if epoch != order_epoch {
            order = train.order(job.seed, epoch as u64, true);
            if job.group_by_length {
                order = train.group_by_length(order, per_step * 50);
            }
            order_epoch = epoch;
        }
        let window = &order[(w * per_step).min(order.len())..((w + 1) * per_step).min(order.len())];
        let t0 = Instant::now();
        tch::manual_seed(stream(job.seed, "dropout", st.step as u64));
        let micro: Vec<_> = window.chunks(job.batch_size.max(1)).map(|rows| train.batch(rows, device)).collect();
        let denom: i64 = micro.iter().map(|b| b.targets).sum();
        let (mut loss_sum, mut tokens) = (0.0, 0);
        for b in &micro {
            let attend = if b.simple { Attend::Causal } else { Attend::Segments(&b.segments) };
            let logits = model.forward(&b.ids, Some(&b.positions), attend, true)?;
            let loss = masked_loss(&logits, b, denom as f64);
            loss.f_backward().map_err(|e| e.to_string())?;
            loss_sum += loss.double_value(&[]);
            tokens += b.tokens;
        }
        if !loss_sum.is_finite() {
            return Err(format!("the loss became {loss_sum} at step {}; lower the learning rate (now {}) or check the data", st.step + 1, job.lr));
        }
        let grad_norm = opt.clip_grad_norm(job.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(format!("the gradient norm became {grad_norm} at step {}; lower the learning rate (now {}) or check the data", st.step + 1, job.lr));
        }
        let lr = lr_at(job, st.step, total);
        opt.step(lr)?;
        st.step += 1;
        st.tokens += tokens;
        tokens_now += tokens;
        st.last_loss = Some(loss_sum);
        let tps = tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        // The log is part of the (content-addressed) result, so it holds
        // only what is reproducible; throughput goes to stdout alone.
        let mut rec =
            json!({"event": "step", "step": st.step, "steps": total, "epoch": epoch, "loss": loss_sum, "lr": lr, "grad_norm": grad_norm, "tokens": tokens});
        if let (Some(v), Some(every)) = (&val, job.eval_every)
            && (st.step % every == 0 || st.step == total)
        {
            let l = evaluate(&model, v, job.batch_size, device)?;
            rec["val_loss"] = json!(l);
            st.last_val = Some(l);
        }
        let line = rec.to_string();
        writeln!(log, "{line}").map_err(|e| e.to_string())?;
        st.log.push(line);
        rec["tokens_per_s"] = json!(tps);
        emit(rec);
        if let (Some(dir), Some(every)) = (&job.checkpoint_dir, job.checkpoint_every)
            && every > 0
            && st.step % every == 0
            && st.step < total
        {
            let at = checkpoint::save(dir, &key, &st, &opt.state())?;
            emit(json!({"event": "checkpoint", "step": st.step, "dir": at}));
        }
    }
    if let (Some(v), None) = (&val, st.last_val) {
        st.last_val = Some(evaluate(&model, v, job.batch_size, device)?);
    }
    let secs = start.elapsed().as_secs_f64();
    write_results(job, &mut model, &opt)?;
    let metrics = json!({"steps": st.step, "train_loss": st.last_loss, "val_loss": st.last_val, "tokens": st.tokens, "trainable_parameters": opt.numel(), "weight_bytes": weight_bytes});
    std::fs::write(job.out.join("metrics.json"), serde_json::to_string_pretty(&metrics).unwrap_or_default()).map_err(|e| e.to_string())?;
    let mut done = metrics.clone();
    done["tokens_per_s"] = json!(tokens_now as f64 / secs.max(1e-9));
    done["seconds"] = json!(secs);
    done["peak_rss_mib"] = json!(peak_rss_mib());
    emit(json!({"event": "done", "metrics": done}));
    Ok(metrics)
}

fn write_results(job: &Job, model: &mut Llama, opt: &AdamW) -> Result<(), String> {
    match job.method {
        Method::Lora | Method::Qlora => {
            let spec = job.lora.as_ref().ok_or("missing lora spec")?;
            peft::save(model, spec, &job.base.display().to_string(), &job.out.join("adapter"))?;
            if job.merge {
                save_model(model, &job.base, &job.out.join("merged"))?;
            }
        }
        Method::Full => save_model(model, &job.base, &job.out.join("model"))?,
    }
    if job.save_optimizer {
        let state = opt.state();
        let refs: Vec<(&str, &Tensor)> = state.iter().filter(|(n, _)| !n.starts_with("param.")).map(|(n, t)| (n.as_str(), t)).collect();
        Tensor::write_safetensors(&refs, job.out.join("optimizer.safetensors")).map_err(|e| format!("writing optimizer.safetensors: {e}"))?;
    }
    Ok(())
}

fn save_model(model: &mut Llama, base: &Path, dir: &Path) -> Result<(), String> {
    let cfg = model.cfg.clone();
    let tensors = model.named_weights()?;
    crate::load::save(dir, &cfg, &tensors)?;
    crate::load::copy_tokenizer(base, dir)
}
