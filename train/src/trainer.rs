//! The training loop: full fine-tuning or LoRA over a Llama model, with
//! the loss on completion tokens only, normalised by the number of target
//! tokens in the whole gradient-accumulation window; AdamW with decoupled
//! weight decay on matrices only; warm-up then constant/linear/cosine
//! learning rate; gradient clipping; periodic validation loss; a stop with a
//! clear error on NaN/inf. Progress goes to stdout as JSON lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

use crate::data::{Dataset, masked_loss};
use crate::model::Llama;
use crate::peft::{self, LoraSpec};

/// Training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// All weights.
    Full,
    /// Low-rank adapters, base frozen.
    Lora,
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
    /// LoRA settings (method lora).
    pub lora: Option<LoraSpec>,
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
    /// Seed for initialisation, dropout and shuffling.
    pub seed: u64,
    /// Validation loss every N steps (and at the end).
    pub eval_every: Option<usize>,
    /// Also write a merged model (LoRA folded into the base).
    pub merge: bool,
    /// Intra-op threads.
    pub threads: Option<usize>,
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

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Mean validation loss per target token.
pub fn evaluate(model: &Llama, data: &Dataset, batch_size: usize, device: Device) -> f64 {
    tch::no_grad(|| {
        let (mut sum, mut n) = (0.0, 0i64);
        let order = data.order(0, 0, false);
        for rows in order.chunks(batch_size.max(1)) {
            let b = data.batch(rows, device);
            if b.targets == 0 {
                continue;
            }
            let logits = model.forward(&b.ids, Some(&b.positions), Some(&b.segments), false);
            sum += masked_loss(&logits, &b, 1.0).double_value(&[]);
            n += b.targets;
        }
        if n == 0 { f64::NAN } else { sum / n as f64 }
    })
}

/// Build the model for a job: weights as optimizer variables (full) or
/// frozen with adapters attached (LoRA).
pub fn build(job: &Job, vs: &nn::VarStore, device: Device) -> Result<Llama, String> {
    let cfg = crate::load::config(&job.base)?;
    let mut weights = crate::load::weights(&job.base, Kind::Float, device)?;
    if job.method == Method::Full {
        let mut names: Vec<String> = weights.keys().cloned().collect();
        names.sort();
        for name in names {
            let t = weights.remove(&name).ok_or("internal: tensor vanished")?;
            let parts: Vec<&str> = name.split('.').collect();
            // Matrices decay (group 0); norms and biases do not (group 1).
            let mut p = vs.root().set_group(if t.dim() >= 2 { 0 } else { 1 });
            for seg in &parts[..parts.len() - 1] {
                p = &p / *seg;
            }
            let v = p.var_copy(parts[parts.len() - 1], &t);
            weights.insert(name, v);
        }
    }
    let mut model = Llama::from_tensors(cfg, weights, device)?;
    if job.method == Method::Lora {
        let spec = job.lora.as_ref().ok_or("method lora needs `lora` settings")?;
        tch::manual_seed(job.seed as i64);
        let attached = peft::attach(&mut model, spec, vs);
        if attached.is_empty() {
            return Err(format!("no module matches the LoRA targets {:?}", spec.targets));
        }
    }
    Ok(model)
}

/// Run a job to completion; returns the final metrics.
pub fn train(job: &Job) -> Result<serde_json::Value, String> {
    if let Some(n) = job.threads {
        tch::set_num_threads(n as i32);
    }
    let device = Device::Cpu;
    tch::manual_seed(job.seed as i64);
    let train = Dataset::open(&job.train)?;
    if train.is_empty() {
        return Err("the training split is empty".into());
    }
    let val = match &job.validation {
        Some(p) => Some(Dataset::open(p)?).filter(|d| !d.is_empty()),
        None => None,
    };
    let vs = nn::VarStore::new(device);
    let mut model = build(job, &vs, device)?;
    if train.max_id() as usize >= model.cfg.vocab_size {
        return Err(format!("token id {} is outside the model's vocabulary of {}: the data was tokenized with another tokenizer", train.max_id(), model.cfg.vocab_size));
    }
    let mut opt = nn::AdamW { beta1: 0.9, beta2: 0.999, wd: job.weight_decay, eps: 1e-8, amsgrad: false }.build(&vs, job.lr).map_err(|e| e.to_string())?;
    opt.set_weight_decay_group(0, job.weight_decay);
    if job.method == Method::Full {
        // Norm weights and biases (group 1) do not decay.
        opt.set_weight_decay_group(1, 0.0);
    }
    let per_step = job.batch_size.max(1) * job.grad_accum.max(1);
    let steps_per_epoch = train.len().div_ceil(per_step);
    let total = job.max_steps.unwrap_or(steps_per_epoch * job.epochs.max(1));
    let trainable: Vec<Tensor> = vs.trainable_variables();
    let n_trainable: i64 = trainable.iter().map(|t| t.numel() as i64).sum();
    emit(json!({"event": "start", "steps": total, "rows": train.len(), "trainable_parameters": n_trainable}));
    let mut log = std::fs::File::create(job.out.join("log.jsonl")).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (mut step, mut tokens_seen) = (0usize, 0i64);
    let mut last_loss = f64::NAN;
    let mut last_val = None;
    'outer: for epoch in 0.. {
        let order = train.order(job.seed, epoch as u64, true);
        for window in order.chunks(per_step) {
            if step >= total {
                break 'outer;
            }
            let t0 = Instant::now();
            let micro: Vec<_> = window.chunks(job.batch_size.max(1)).map(|rows| train.batch(rows, device)).collect();
            let denom: i64 = micro.iter().map(|b| b.targets).sum();
            let mut loss_sum = 0.0;
            let mut tokens = 0;
            for b in &micro {
                let logits = model.forward(&b.ids, Some(&b.positions), Some(&b.segments), true);
                let loss = masked_loss(&logits, b, denom as f64);
                loss.backward();
                loss_sum += loss.double_value(&[]);
                tokens += b.tokens;
            }
            if !loss_sum.is_finite() {
                return Err(format!("the loss became {loss_sum} at step {}; lower the learning rate (now {}) or check the data", step + 1, job.lr));
            }
            let grad_norm = tch::no_grad(|| {
                let sq: f64 = trainable.iter().filter(|t| t.grad().defined()).map(|t| t.grad().pow_tensor_scalar(2).sum(Kind::Float).double_value(&[])).sum();
                let norm = sq.sqrt();
                if norm > job.max_grad_norm && job.max_grad_norm > 0.0 {
                    let c = job.max_grad_norm / (norm + 1e-6);
                    for t in &trainable {
                        let mut g = t.grad();
                        if g.defined() {
                            let _ = g.f_mul_(&Tensor::from(c));
                        }
                    }
                }
                norm
            });
            let lr = lr_at(job, step, total);
            opt.set_lr(lr);
            opt.step();
            opt.zero_grad();
            step += 1;
            tokens_seen += tokens;
            last_loss = loss_sum;
            let tps = tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            // The log is part of the (content-addressed) result, so it holds
            // only what is reproducible; throughput goes to stdout alone.
            let mut rec = json!({"event": "step", "step": step, "steps": total, "epoch": epoch, "loss": loss_sum, "lr": lr, "grad_norm": grad_norm, "tokens": tokens});
            if let (Some(v), Some(every)) = (&val, job.eval_every) {
                if step % every == 0 || step == total {
                    let l = evaluate(&model, v, job.batch_size, device);
                    rec["val_loss"] = json!(l);
                    last_val = Some(l);
                }
            }
            let _ = writeln!(log, "{rec}");
            rec["tokens_per_s"] = json!(tps);
            emit(rec);
        }
        if step >= total {
            break;
        }
    }
    if let (Some(v), None) = (&val, last_val) {
        last_val = Some(evaluate(&model, v, job.batch_size, device));
    }
    let secs = start.elapsed().as_secs_f64();
    match job.method {
        Method::Lora => {
            let spec = job.lora.as_ref().ok_or("missing lora spec")?;
            peft::save(&mut model, spec, &job.base.display().to_string(), &job.out.join("adapter"))?;
            if job.merge {
                save_model(&mut model, &job.base, &job.out.join("merged"))?;
            }
        }
        Method::Full => save_model(&mut model, &job.base, &job.out.join("model"))?,
    }
    let metrics = json!({"steps": step, "train_loss": last_loss, "val_loss": last_val, "tokens": tokens_seen, "trainable_parameters": n_trainable});
    std::fs::write(job.out.join("metrics.json"), serde_json::to_string_pretty(&metrics).unwrap_or_default()).map_err(|e| e.to_string())?;
    let mut done = metrics.clone();
    done["tokens_per_s"] = json!(tokens_seen as f64 / secs.max(1e-9));
    done["seconds"] = json!(secs);
    emit(json!({"event": "done", "metrics": done}));
    Ok(metrics)
}

fn save_model(model: &mut Llama, base: &Path, dir: &Path) -> Result<(), String> {
    let cfg = model.cfg.clone();
    let tensors = model.named_weights();
    crate::load::save(dir, &cfg, &tensors)?;
    crate::load::copy_tokenizer(base, dir)
}
