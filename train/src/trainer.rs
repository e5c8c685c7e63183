//! The training loop: full fine-tuning, LoRA or QLoRA over a Llama model,
//! with the loss on completion tokens only, normalised by the number of
//! target tokens in the whole gradient-accumulation window; AdamW (fused,
//! decoupled decay on matrices only); warm-up then constant/linear/cosine
//! learning rate; gradient clipping; periodic validation loss; a stop with a
//! clear error on NaN/inf; atomic checkpoints that resume bit-exactly.
//! Progress goes to stdout as JSON lines.
//!
//! With data-parallel ranks ([`crate::dist::Group`]) every rank holds the
//! whole model and walks the same data order; an optimizer step's window is
//! `batch_size × grad_accum × ranks` rows, its micro-batches dealt to the
//! ranks in turn, the gradients summed across ranks before clipping, and the
//! same update applied everywhere — so N ranks compute what one process with
//! `grad_accum × N` computes. Rank 0 alone writes the log, checkpoints and
//! results, and reports.
//!
//! Random streams are separate and derived, never carried: adapter
//! initialisation from (seed, "init"), dropout from (seed, step), data order
//! from (seed, epoch). That is what makes a resumed run equal an
//! uninterrupted one without saving generator state.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, LoopState};
use crate::data::{Dataset, masked_loss};
use crate::dist::Group;
use crate::load::LoadOptions;
use crate::model::{Attend, Llama};
use crate::optim::{AdamW, AdamWConfig};
use crate::peft;
use tailor_protocol::event::{Done, Event, Start, Step, TrainMetrics};

pub use tailor_protocol::job::{Init, Oversample, TrainJob};
pub use tailor_protocol::settings::{Device as DeviceSpec, Dtype, LoraSpec, Method, Schedule};

/// The libtorch device a job's `device` setting means here.
pub fn device(spec: DeviceSpec) -> Result<Device, String> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Auto => Ok(Device::cuda_if_available()),
        DeviceSpec::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceSpec::Cuda => Err("`device: cuda` was asked for, but libtorch sees no CUDA device here (use `device: auto` or `cpu`)".into()),
    }
}

/// The libtorch kind a job's `dtype` setting means on `device`.
pub fn kind(dtype: Dtype, device: Device) -> Kind {
    match dtype {
        Dtype::Auto if device.is_cuda() => Kind::BFloat16,
        Dtype::Auto | Dtype::Float32 => Kind::Float,
        Dtype::Bfloat16 => Kind::BFloat16,
        Dtype::Float16 => Kind::Half,
    }
}

/// Identifies a job's settings (not where its files are: an imported base
/// lands in a new scratch directory on every attempt, and the checkpoint
/// directory already belongs to one stage fingerprint), for matching
/// checkpoints.
fn job_key(job: &TrainJob) -> Result<String, String> {
    let mut v = serde_json::to_value(job).map_err(|e| format!("serialising the job: {e}"))?;
    for k in ["base", "train", "validation", "out", "checkpoint_dir", "init", "threads"] {
        v[k] = serde_json::Value::Null;
    }
    Ok(format!("{:016x}", fnv(v.to_string().as_bytes())))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// How a batch attends. Rows of one sample with little padding (under a
/// fifth of the batch, as `group_by_length` makes them): plain causal
/// attention over the padded batch, the faster path there. Otherwise the
/// decoder runs on the real tokens alone, attending within each sample
/// (padded rows and packed rows alike): gathering and scattering costs less
/// than computing the padding (bench/packing.sh).
/// `TAILOR_PACKED_ATTENTION=mask` takes the path before 2026-12-03 instead —
/// padded rows computed with their padding, packed rows through a dense
/// block-diagonal mask — for bench/packing.sh's before/after.
fn packed_attention(b: &crate::data::Batch) -> Attend<'_> {
    static MASK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let old = *MASK.get_or_init(|| std::env::var("TAILOR_PACKED_ATTENTION").is_ok_and(|v| v == "mask"));
    let little_padding = (b.tokens as f64) >= 0.8 * b.ids.numel() as f64;
    if b.simple && (old || little_padding) {
        Attend::Causal
    } else if old {
        Attend::SegmentsMasked(&b.segments)
    } else {
        Attend::Segments(&b.segments)
    }
}

/// Ranks other than 0 stay silent (rank 0 reports for all).
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A seed for one random stream.
fn stream(seed: u64, name: &str, index: u64) -> i64 {
    let mut r = crate::data::Rng::new(seed ^ fnv(name.as_bytes()) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (r.next_u64() >> 1) as i64
}

fn lr_at(job: &TrainJob, step: usize, total: usize) -> f64 {
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

/// Print one event on stdout (the stage that started this process reads
/// them). When that stage is gone (the pipe is closed), there is no one to
/// report to: stop, leaving the last checkpoint to resume from.
pub fn emit(e: &Event) {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", e.to_line()).and_then(|()| out.flush()).is_err() {
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
                let attend = packed_attention(&b);
                let logits = model.forward(&b.ids, Some(&b.positions), attend, false)?;
                out.push((masked_loss(&logits, &b, 1.0).double_value(&[]), b.targets));
            }
        }
        Ok(out)
    })
}

/// Mean validation loss per target token.
pub fn evaluate(model: &Llama, data: &Dataset, batch_size: usize, device: Device) -> Result<f64, String> {
    evaluate_in(model, data, batch_size, device, None)
}

/// [`evaluate`], each rank of `group` scoring its share of the batches.
fn evaluate_in(model: &Llama, data: &Dataset, batch_size: usize, device: Device, group: Option<&Group>) -> Result<f64, String> {
    let (rank, world) = group.map_or((0, 1), |g| (g.rank, g.world));
    tch::no_grad(|| {
        let (mut sum, mut n) = (0.0, 0i64);
        let order = data.order(0, 0, false);
        for rows in order.chunks(batch_size.max(1)).skip(rank).step_by(world) {
            let b = data.batch(rows, device);
            if b.targets == 0 {
                continue;
            }
            let attend = packed_attention(&b);
            let logits = model.forward(&b.ids, Some(&b.positions), attend, false)?;
            sum += masked_loss(&logits, &b, 1.0).double_value(&[]);
            n += b.targets;
        }
        if let Some(g) = group {
            let total = g.sum_f64(&[sum, n as f64])?;
            (sum, n) = (total[0], total[1] as i64);
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
pub fn build(job: &TrainJob, device: Device) -> Result<Built, String> {
    let cfg = crate::load::config(&job.base)?;
    let kind = kind(job.dtype, device);
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

/// Run a job to completion in this process (resuming from its newest
/// checkpoint, if any); returns the final metrics.
pub fn train(job: &TrainJob) -> Result<TrainMetrics, String> {
    if job.workers > 1 {
        return Err(format!("`workers: {}` runs through the tailor-train binary, which starts the ranks", job.workers));
    }
    train_in(job, None)
}

/// Run a job as one rank of `group` (or alone); returns the final metrics.
pub fn train_in(job: &TrainJob, group: Option<&Group>) -> Result<TrainMetrics, String> {
    let (rank, world) = group.map_or((0, 1), |g| (g.rank, g.world));
    let lead = rank == 0;
    QUIET.store(!lead, std::sync::atomic::Ordering::Relaxed);
    // The ranks share the machine's cores (a started rank is told the
    // whole machine's count, like rank 0).
    if let Some(n) = job.threads {
        tch::set_num_threads((n / world).max(1) as i32);
    }
    let fault = fault_step(rank);
    let device = match device(job.device)? {
        // One GPU per rank: the ranks of one node take its GPUs in turn.
        Device::Cuda(_) if world > 1 => Device::Cuda(rank % tch::Cuda::device_count().max(1) as usize),
        d => d,
    };
    let mut train = Dataset::open(&job.train)?;
    if train.is_empty() {
        return Err("the training split is empty".into());
    }
    if let Some(o) = &job.oversample {
        let n = train.oversample(&o.ids, o.factor);
        emit(&Event::Note { message: format!("{n} samples repeated ×{}", o.factor) });
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
    let key = job_key(job)?;
    let mut st = LoopState::default();
    if let Some(dir) = &job.checkpoint_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some(ck) = checkpoint::latest(dir, &key)? {
            opt.load_state(&ck.tensors)?;
            st = ck.state;
            emit(&Event::Resume { step: st.step as u64, from: ck.dir });
        }
    }
    if let Some(g) = group {
        let steps = g.sum_f64(&[st.step as f64])?;
        if steps[0] != (st.step * world) as f64 {
            return Err(format!(
                "the ranks resumed from different checkpoints (rank {rank} at step {}); remove {} and rerun",
                st.step,
                job.checkpoint_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_default()
            ));
        }
    }
    let per_step = job.batch_size.max(1) * job.grad_accum.max(1) * world;
    let steps_per_epoch = job.steps_per_epoch(train.len());
    let total = job.max_steps.unwrap_or(steps_per_epoch * job.epochs.max(1));
    let weight_bytes = model.weight_bytes();
    emit(&Event::Start(Start {
        steps: total as u64,
        trainer: tailor_protocol::TRAINER.into(),
        rows: Some(train.len() as u64),
        trainable_parameters: Some(opt.numel() as u64),
        weight_bytes: Some(weight_bytes as u64),
        device: Some(format!("{device:?}")),
        dtype: Some(format!("{:?}", model.compute)),
    }));
    let mut log = if lead { Some(std::fs::File::create(job.out.join("log.jsonl")).map_err(|e| e.to_string())?) } else { None };
    for line in &st.log {
        if let Some(log) = &mut log {
            writeln!(log, "{line}").map_err(|e| e.to_string())?;
        }
    }
    let start = Instant::now();
    // Time in training steps alone: evaluation and checkpoints are not
    // training throughput (`seconds` in the done event is the whole attempt).
    let mut step_secs = 0.0f64;
    let mut tokens_now = 0i64;
    let checkpointing = job.gradient_checkpointing.unwrap_or(device.is_cuda());
    if checkpointing {
        emit(&Event::Note { message: "activation checkpointing: each decoder layer is recomputed in the backward pass".into() });
    }
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
        if fault == Some(st.step + 1) {
            kill_self(rank, st.step + 1);
        }
        // The loss of every micro-batch is divided by the targets of the
        // whole window, which every rank counts from the same order.
        let denom: i64 = window.iter().map(|&r| train.row_targets(r)).sum();
        let (mut loss_sum, mut tokens) = (0.0, 0);
        for (k, rows) in window.chunks(job.batch_size.max(1)).enumerate().skip(rank).step_by(world) {
            // Dropout is drawn per micro-batch, so a micro-batch draws the
            // same masks whichever rank computes it.
            tch::manual_seed(stream(job.seed, "dropout", ((st.step as u64) << 20) | k as u64));
            let b = &train.batch(rows, device);
            let attend = packed_attention(b);
            if checkpointing {
                loss_sum += model.backward_checkpointed(&b.ids, Some(&b.positions), attend, true, |logits| masked_loss(logits, b, denom as f64))?;
            } else {
                let logits = model.forward(&b.ids, Some(&b.positions), attend, true)?;
                let loss = masked_loss(&logits, b, denom as f64);
                loss.f_backward().map_err(|e| e.to_string())?;
                loss_sum += loss.double_value(&[]);
            }
            tokens += b.tokens;
        }
        if let Some(g) = group {
            g.sum(&opt.grads())?;
            let total = g.sum_f64(&[loss_sum, tokens as f64])?;
            (loss_sum, tokens) = (total[0], total[1] as i64);
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
        let step_s = t0.elapsed().as_secs_f64();
        step_secs += step_s;
        let tps = tokens as f64 / step_s.max(1e-9);
        // The log is part of the (content-addressed) result, so it holds
        // only what is reproducible; throughput goes to stdout alone.
        let mut rec = Step {
            step: st.step as u64,
            steps: total as u64,
            epoch: epoch as u64,
            loss: loss_sum,
            lr,
            grad_norm,
            tokens: tokens as u64,
            val_loss: None,
            tokens_per_s: None,
        };
        if let (Some(v), Some(every)) = (&val, job.eval_every)
            && (st.step % every == 0 || st.step == total)
        {
            let l = evaluate_in(&model, v, job.batch_size, device, group)?;
            rec.val_loss = Some(l);
            st.last_val = Some(l);
        }
        let line = Event::Step(rec.clone()).to_line();
        if let Some(log) = &mut log {
            writeln!(log, "{line}").map_err(|e| e.to_string())?;
        }
        st.log.push(line);
        rec.tokens_per_s = Some(tps);
        emit(&Event::Step(rec));
        if let (Some(dir), Some(every)) = (&job.checkpoint_dir, job.checkpoint_every)
            && lead
            && every > 0
            && st.step % every == 0
            && st.step < total
        {
            let at = checkpoint::save(dir, &key, &st, &opt.state())?;
            emit(&Event::Checkpoint { step: st.step as u64, dir: at });
        }
    }
    if let (Some(v), None) = (&val, st.last_val) {
        st.last_val = Some(evaluate_in(&model, v, job.batch_size, device, group)?);
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(g) = group {
        same_weights(g, &opt)?;
    }
    let metrics = TrainMetrics {
        steps: st.step as u64,
        train_loss: st.last_loss,
        val_loss: st.last_val,
        tokens: st.tokens as u64,
        trainable_parameters: opt.numel() as u64,
        weight_bytes: weight_bytes as u64,
    };
    if !lead {
        return Ok(metrics);
    }
    write_results(job, &mut model, &opt)?;
    let text = serde_json::to_string_pretty(&metrics).map_err(|e| format!("serialising metrics: {e}"))?;
    std::fs::write(job.out.join("metrics.json"), text).map_err(|e| format!("{}: {e}", job.out.join("metrics.json").display()))?;
    emit(&Event::Done(Done {
        metrics: Some(metrics.clone()),
        tokens_per_s: Some(tokens_now as f64 / step_secs.max(1e-9)),
        seconds: Some(secs),
        peak_rss_mib: peak_rss_mib(),
    }));
    Ok(metrics)
}

/// Every rank applies the same update to the same weights, so they must end
/// equal; a checksum of the trainable weights compared across ranks proves
/// it (bit-exact: the sums are of equal numbers).
fn same_weights(g: &Group, opt: &AdamW) -> Result<(), String> {
    let mine = tch::no_grad(|| opt.checksum());
    let total = g.sum_f64(&[mine, mine * mine])?;
    let n = g.world as f64;
    // Equal values: the sum is n·x and the sum of squares n·x².
    if (total[0] - n * mine).abs() > 1e-9 * mine.abs().max(1.0) || (total[1] - n * mine * mine).abs() > 1e-9 * (mine * mine).max(1.0) {
        return Err(format!("the ranks ended with different weights (rank {} checksum {mine}); this is a bug, please report it", g.rank));
    }
    Ok(())
}

/// `TAILOR_FAULT_KILL_RANK=R@S` (for fault tests): rank R kills itself with
/// SIGKILL as it starts step S.
fn fault_step(rank: usize) -> Option<usize> {
    let v = std::env::var("TAILOR_FAULT_KILL_RANK").ok()?;
    let (r, s) = v.split_once('@')?;
    (r.parse::<usize>().ok()? == rank).then(|| s.parse().ok()).flatten()
}

fn kill_self(rank: usize, step: usize) {
    eprintln!("TAILOR_FAULT_KILL_RANK: rank {rank} kills itself at step {step}");
    // SAFETY: sends a signal to this process; nothing to uphold.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

fn write_results(job: &TrainJob, model: &mut Llama, opt: &AdamW) -> Result<(), String> {
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
