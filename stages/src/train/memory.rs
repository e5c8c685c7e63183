//! What a configured training run will need in memory, from the base
//! model's `config.json` (or its GGUF metadata), the method and dtype, and
//! the data's `max_tokens` — for `tailor plan`'s note and for the check
//! before any weight loads. The model itself is [`tailor_model::estimate::run_memory`].

use std::path::Path;

use crate::train::settings::{Device, Dtype, Hyper, MethodSettings};
use tailor_model::estimate::{GIB, RunMemory, Shape, available_memory, run_memory};
use tailor_model::gguf::is_gguf;

/// An estimate with what it assumed.
pub struct RunEstimate {
    /// Bytes by part.
    pub memory: RunMemory,
    /// Tokens per row.
    pub seq: f64,
    /// Whether `seq` comes from the data (else assumed).
    pub seq_known: bool,
    /// Bytes per frozen value and activation.
    pub bytes: f64,
}

/// Estimate a run; `None` when the base's shape cannot be read.
pub fn estimate(base: &Path, m: &MethodSettings, h: &Hyper, data: Option<&Path>) -> Option<RunEstimate> {
    let cfg = if is_gguf(base) {
        tailor_model::import::config_json(base).ok()
    } else {
        std::fs::read(base.join("config.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    let cfg = cfg?;
    let (shape, vocab) = (Shape::from_config(&cfg)?, cfg["vocab_size"].as_f64()?);
    let manifest = data.and_then(|d| std::fs::read(d.join("manifest.json")).ok()).and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let (seq, seq_known) = match manifest.as_ref().and_then(|m| m["max_tokens"].as_f64()) {
        Some(s) => (s, true),
        None => (512.0, false),
    };
    let bytes = match h.dtype {
        Dtype::Bfloat16 | Dtype::Float16 => 2.0,
        Dtype::Float32 => 4.0,
        Dtype::Auto if h.device == Device::Cuda => 2.0,
        Dtype::Auto => 4.0,
    };
    let targets = if m.lora.targets.iter().any(|t| t == "all-linear") { 7.0 } else { m.lora.targets.len() as f64 };
    let memory = run_memory(&shape, vocab, m.method, bytes, m.lora.r as f64, targets, seq, h.batch_size as f64, h.checkpointing());
    Some(RunEstimate { memory, seq, seq_known, bytes })
}

/// The line `tailor plan` prints under a train stage: estimated peak memory
/// and whether it fits this machine (CPU runs; a CUDA run is compared with
/// nothing, since the plan does not load libtorch).
pub fn plan_note(base: &Path, m: &MethodSettings, h: &Hyper, data: Option<&Path>) -> Vec<String> {
    let Some(e) = estimate(base, m, h, data) else { return vec![] };
    let gib = |b: f64| b / GIB;
    let mm = &e.memory;
    let mut line = format!(
        "memory ≈ {:.2} GiB: weights {:.2} · {:.2}M trainable with AdamW {:.2} · activations {:.2} ({} × {} tokens{}, {}-bit, checkpointing {})",
        gib(mm.total()),
        gib(mm.weights),
        mm.trainable / 1e6,
        gib(mm.optimizer),
        gib(mm.activations),
        h.batch_size,
        e.seq,
        if e.seq_known { "" } else { ", assumed until the data exists" },
        e.bytes * 8.0,
        if h.checkpointing() { "on" } else { "off" }
    );
    // Every data-parallel worker holds the whole model and its own batch.
    let machine = mm.total() * h.workers.max(1) as f64;
    if h.workers > 1 {
        line.push_str(&format!(" per worker; {} workers ≈ {:.2} GiB", h.workers, gib(machine)));
    }
    if h.device != Device::Cuda
        && let Some(avail) = available_memory()
    {
        line.push_str(&if machine < avail * 0.9 {
            format!(" — fits in the {:.1} GiB available", gib(avail))
        } else {
            format!(" — does NOT fit in the {:.1} GiB available: lower batch_size or max_tokens, or use qlora", gib(avail))
        });
    }
    let mut lines = vec![line];
    if h.device != Device::Cuda && e.bytes == 4.0 && cpu_has_native_bf16() {
        lines.push(
            "this CPU computes bfloat16 natively (AVX-512 BF16), and `dtype: bfloat16` trained SmolLM2 LoRA 1.5× faster in 0.7× the memory of float32 \
             (bench/train.sh); float32 stays the CPU default so that results do not depend on the CPU model"
                .into(),
        );
    }
    lines
}

/// Whether this CPU has bfloat16 dot-product instructions (AVX-512 BF16;
/// CPUs with AMX have them too), which libtorch's bf16 matmuls use.
fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Before any weight loads: refuse a CPU run whose estimate exceeds the
/// memory available (the estimate is a lower bound, so this never refuses a
/// run that would fit).
pub fn preflight(base: &Path, m: &MethodSettings, h: &Hyper, data: &Path) -> Result<(), String> {
    let (Some(e), Some(avail)) = (estimate(base, m, h, Some(data)), available_memory()) else { return Ok(()) };
    let workers = h.workers.max(1);
    if h.device != Device::Cuda && e.memory.total() * workers as f64 > avail {
        return Err(format!(
            "this run needs about {:.1} GiB ({} × {} tokens, {:?}{}), more than the {:.1} GiB available; lower `batch_size`{} or the format stage's `max_tokens`, or use `method: qlora`",
            e.memory.total() * workers as f64 / GIB,
            h.batch_size,
            e.seq,
            m.method,
            if workers > 1 { format!(", {workers} workers each holding the model") } else { String::new() },
            avail / GIB,
            if workers > 1 { " or `workers`" } else { "" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(batch: usize) -> (MethodSettings, Hyper) {
        (serde_json::from_str(r#"{"method": "full"}"#).unwrap(), serde_json::from_value(serde_json::json!({"batch_size": batch})).unwrap())
    }

    #[test]
    fn plan_notes_and_preflight_use_the_model_shape() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/loop/models/tiny");
        let (m, h) = settings(16);
        let note = plan_note(&base, &m, &h, None);
        assert!(note[0].starts_with("memory ≈ ") && note[0].contains("0.13M trainable") && note[0].contains("assumed until the data exists"), "{note:?}");
        // The bf16 hint: only for a float32 CPU run on a CPU that has the
        // instructions, never once bfloat16 is chosen.
        assert_eq!(note.iter().any(|l| l.contains("`dtype: bfloat16`")), cpu_has_native_bf16(), "{note:?}");
        let bf16: Hyper = serde_json::from_value(serde_json::json!({"batch_size": 16, "dtype": "bfloat16"})).unwrap();
        let note = plan_note(&base, &m, &bf16, None);
        assert!(note.len() == 1 && note[0].contains("16-bit"), "{note:?}");
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("manifest.json"), r#"{"max_tokens": 64}"#).unwrap();
        assert!(preflight(&base, &m, &h, data.path()).is_ok());
        // Ten million rows of 64 tokens cannot fit anywhere.
        let (m, h) = settings(10_000_000);
        let err = preflight(&base, &m, &h, data.path()).unwrap_err();
        assert!(err.contains("more than the") && err.contains("lower `batch_size`"), "{err}");
        // Each data-parallel worker holds the model: the machine needs N times one.
        let (m, one) = settings(4);
        let three: Hyper = serde_json::from_value(serde_json::json!({"batch_size": 4, "workers": 3})).unwrap();
        let total = |l: &str| l.split_whitespace().nth(2).unwrap().parse::<f64>().unwrap();
        let (a, b) = (plan_note(&base, &m, &one, None), plan_note(&base, &m, &three, None));
        assert_eq!(total(&a[0]), total(&b[0]), "the per-worker figure changed: {b:?}");
        assert!(b[0].contains(" per worker; 3 workers ≈ "), "{b:?}");
    }
}
