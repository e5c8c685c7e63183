//! `tailor-train bench`: the training step of [`crate::trainer`] timed on
//! the benchmark's fixed workload, so it can be set beside PyTorch + PEFT
//! (`bench/peer_lora.py` in the shared peer scripts) on the same model, data
//! stream, batch, sequence length and threads. One step is forward
//! (loss on every next token), backward, AdamW step, zero_grad;
//! tokens/s = batch · seq / median step time after the warm-up steps; peak
//! RSS is the process's `VmHWM`.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use tch::Device;

use crate::data::{Dataset, Rng, masked_loss};
use crate::model::Attend;
use crate::optim::{AdamW, AdamWConfig};
use crate::peft::LoraSpec;
use crate::trainer::{Method, TrainJob, build, peak_rss_mib};

/// Benchmark settings (the peer script's flags).
#[derive(Debug, Clone)]
pub struct Bench {
    /// Model directory.
    pub model: PathBuf,
    /// Method.
    pub method: Method,
    /// Sequence length.
    pub seq: usize,
    /// Rows per step.
    pub batch: usize,
    /// Steps timed (including warm-up).
    pub steps: usize,
    /// Steps left out of the median.
    pub warmup: usize,
    /// Threads.
    pub threads: usize,
    /// LoRA rank.
    pub r: i64,
    /// LoRA alpha.
    pub alpha: f64,
    /// LoRA targets.
    pub targets: Vec<String>,
    /// Activation checkpointing.
    pub checkpointing: bool,
    /// Device.
    pub device: crate::trainer::DeviceSpec,
    /// Weights and compute kind.
    pub dtype: crate::trainer::Dtype,
    /// Learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// Distinct sequences in the cycled stream.
    pub pool: usize,
    /// The token stream (u32 little-endian), e.g. the peer's `--dump-data`.
    pub data: Option<PathBuf>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        f64::NAN
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

/// What `tailor plan` and `tailor estimate` predict for this run (the same
/// model of memory, `tailor_model::estimate::run_memory`), MiB.
fn estimate_mib(model: &std::path::Path, b: &Bench, bytes: f64) -> Option<f64> {
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("config.json")).ok()?).ok()?;
    let shape = tailor_model::estimate::Shape::from_config(&cfg)?;
    let vocab = cfg["vocab_size"].as_f64()?;
    let targets = if b.targets.iter().any(|t| t == "all-linear") { 7.0 } else { b.targets.len() as f64 };
    let m = tailor_model::estimate::run_memory(&shape, vocab, b.method, bytes, b.r as f64, targets, b.seq as f64, b.batch as f64, b.checkpointing);
    Some(m.total() / (1u64 << 20) as f64)
}

/// Run the benchmark; returns its report.
pub fn run(b: &Bench) -> Result<serde_json::Value, String> {
    tch::set_num_threads(b.threads as i32);
    let rss_start = peak_rss_mib();
    let lora = Some(LoraSpec { r: b.r, alpha: b.alpha, dropout: 0.0, targets: b.targets.clone(), rslora: false });
    let job = TrainJob {
        lr: b.lr,
        max_steps: Some(b.steps),
        batch_size: b.batch,
        seed: b.seed,
        threads: Some(b.threads),
        device: b.device,
        dtype: b.dtype,
        ..TrainJob::with_defaults(b.model.clone(), PathBuf::new(), PathBuf::new(), b.method, lora)
    };
    let device = crate::trainer::device(b.device)?;
    let t_load = Instant::now();
    let built = build(&job, device)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let mut model = built.model;
    let vocab = model.cfg.vocab_size as u64;
    let stream: Vec<u32> = match &b.data {
        Some(p) => {
            std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        None => {
            let mut r = Rng::new(b.seed);
            (0..b.pool * b.seq).map(|_| (r.next_u64() % vocab.min(4096)) as u32).collect()
        }
    };
    if stream.len() < b.pool * b.seq {
        return Err(format!("the data stream has {} tokens, the benchmark needs {} ({} × {})", stream.len(), b.pool * b.seq, b.pool, b.seq));
    }
    let data = Dataset::from_stream(&stream, b.seq, b.pool);
    let mut opt = AdamW::new(built.params, AdamWConfig::default());
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for step in 0..b.steps {
        let rows: Vec<usize> = (0..b.batch).map(|k| (step * b.batch + k) % b.pool).collect();
        let batch = data.batch(&rows, device);
        let t0 = Instant::now();
        let loss = if b.checkpointing {
            model.backward_checkpointed(&batch.ids, None, Attend::Causal, true, |logits| masked_loss(logits, &batch, batch.targets as f64))?
        } else {
            let logits = model.forward(&batch.ids, None, Attend::Causal, true)?;
            let loss = masked_loss(&logits, &batch, batch.targets as f64);
            loss.f_backward().map_err(|e| e.to_string())?;
            loss.double_value(&[])
        };
        opt.step(b.lr)?;
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        times.push(t0.elapsed().as_secs_f64());
        losses.push(loss);
    }
    let meas = if times.len() > b.warmup { &times[b.warmup..] } else { &times[..] };
    let med = median(meas);
    Ok(json!({
        "model": b.model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "method": format!("{:?}", b.method).to_lowercase(), "seq": b.seq, "batch": b.batch, "steps": b.steps, "warmup": b.warmup,
        "threads": b.threads, "r": b.r, "alpha": b.alpha, "targets": b.targets.join(","), "lr": b.lr,
        "params_trainable": opt.numel(), "weight_bytes": model.weight_bytes(),
        "tokens_per_s": (b.batch * b.seq) as f64 / med, "step_s_median": med,
        "step_s_min": meas.iter().copied().fold(f64::INFINITY, f64::min), "step_s_max": meas.iter().copied().fold(0.0, f64::max),
        "checkpointing": b.checkpointing, "device": format!("{device:?}"), "dtype": format!("{:?}", crate::trainer::kind(b.dtype, device)),
        "estimate_mib": estimate_mib(&b.model, b, if crate::trainer::kind(b.dtype, device) == tch::Kind::Float { 4.0 } else { 2.0 }),
        "peak_rss_mib": peak_rss_mib(), "rss_at_start_mib": rss_start, "load_s": load_s,
        "first_loss": losses.first(), "final_loss": losses.last(), "losses": losses, "step_s": times,
    }))
}

/// Logits of the base model on `device`/`dtype` against CPU float32 on the
/// same random token ids: the largest absolute difference, relative to the
/// logits' spread, and how often the top-1 token agrees.
pub fn logits_parity(
    model: &std::path::Path,
    device: crate::trainer::DeviceSpec,
    dtype: crate::trainer::Dtype,
    seq: usize,
    batch: usize,
) -> Result<serde_json::Value, String> {
    let load = |d: Device, k: crate::trainer::Dtype| -> Result<crate::model::Llama, String> {
        let job = TrainJob {
            device: crate::trainer::DeviceSpec::Cpu,
            dtype: k,
            ..TrainJob::with_defaults(model.to_path_buf(), PathBuf::new(), PathBuf::new(), Method::Full, None)
        };
        Ok(build(&job, d)?.model)
    };
    let dev = crate::trainer::device(device)?;
    let reference = load(Device::Cpu, crate::trainer::Dtype::Float32)?;
    let other = load(dev, dtype)?;
    tch::manual_seed(0);
    let vocab = reference.cfg.vocab_size as i64;
    let ids = tch::Tensor::randint(vocab.min(4096), [batch as i64, seq as i64], (tch::Kind::Int64, Device::Cpu));
    let (a, b) = tch::no_grad(|| -> Result<(tch::Tensor, tch::Tensor), String> {
        let a = reference.forward(&ids, None, Attend::Causal, false)?;
        let b = other.forward(&ids.to_device(dev), None, Attend::Causal, false)?.to_device(Device::Cpu).to_kind(tch::Kind::Float);
        Ok((a, b))
    })?;
    let diff = (&a - &b).abs();
    let max_abs = diff.max().double_value(&[]);
    let mean_abs = diff.mean(tch::Kind::Float).double_value(&[]);
    let spread = a.std(true).double_value(&[]);
    let top1 = a.argmax(-1, false).eq_tensor(&b.argmax(-1, false)).to_kind(tch::Kind::Float).mean(tch::Kind::Float).double_value(&[]);
    Ok(json!({"device": format!("{dev:?}"), "dtype": format!("{:?}", crate::trainer::kind(dtype, dev)), "tokens": seq * batch,
        "max_abs_diff": max_abs, "logit_std": spread, "max_abs_diff_over_std": max_abs / spread.max(1e-12),
        "mean_abs_diff_over_std": mean_abs / spread.max(1e-12), "top1_agreement": top1}))
}
