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
        ..TrainJob::with_defaults(b.model.clone(), PathBuf::new(), PathBuf::new(), b.method, lora)
    };
    let t_load = Instant::now();
    let built = build(&job, Device::Cpu)?;
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
        let batch = data.batch(&rows, Device::Cpu);
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
        "checkpointing": b.checkpointing, "estimate_mib": estimate_mib(&b.model, b, 4.0),
        "peak_rss_mib": peak_rss_mib(), "rss_at_start_mib": rss_start, "load_s": load_s,
        "first_loss": losses.first(), "final_loss": losses.last(), "losses": losses, "step_s": times,
    }))
}
