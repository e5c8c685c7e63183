//! What a training run will need before it starts: peak memory per GPU
//! (weights, gradients, optimizer state, activations), the number of GPUs,
//! and time and cost from a throughput/price table the user can override.
//!
//! The model is the usual back-of-the-envelope one:
//! - weights: P × bytes per parameter (bf16 2; f32 4; NF4 ≈ 0.52 with the
//!   per-64 absmax and double quantisation);
//! - trainable parameters: P (full) or the LoRA matrices r·(in + out) of
//!   every targeted linear layer, from a Llama-shaped model of P parameters
//!   (hidden ≈ (P·128/12)^(1/3), layers ≈ hidden/128, MLP ≈ 2.7·hidden)
//!   unless the real `config.json` is given;
//! - gradients: 2 bytes per trainable parameter (bf16), optimizer: AdamW's
//!   two fp32 moments (8 bytes), plus a 4-byte fp32 master copy for full
//!   mixed-precision training;
//! - activations with gradient checkpointing: 2·seq·batch·hidden bytes per
//!   layer (the saved layer inputs) plus one layer's working set,
//!   34·seq·batch·hidden + 5·heads·seq²·batch bytes;
//! - compute: 6·P FLOPs per token for full training, 4·P for LoRA (no
//!   weight gradients for the base), ×1.3 for QLoRA's dequantisation, at a
//!   model-FLOPs utilisation of 35% of the GPU's dense bf16 peak.
//!
//! It reproduces the rule of thumb: 7–13B LoRA/QLoRA fit one A100, 70B LoRA
//! needs 2–4 A100-80GB, 70B full fine-tuning needs a dozen or more.

use serde::Serialize;

pub use tailor_protocol::settings::Method;

/// An accelerator: memory, dense bf16 peak and a default hourly price (USD,
/// typical cloud list prices in 2026; override with `--price`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gpu {
    /// Name used on the command line.
    pub name: &'static str,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Dense bf16 TFLOP/s.
    pub tflops: f64,
    /// USD per GPU-hour.
    pub price: f64,
}

/// Known accelerators.
pub const GPUS: &[Gpu] = &[
    Gpu { name: "t4", memory_gib: 16.0, tflops: 65.0, price: 0.35 },
    Gpu { name: "l4", memory_gib: 24.0, tflops: 121.0, price: 0.70 },
    Gpu { name: "a10g", memory_gib: 24.0, tflops: 125.0, price: 1.00 },
    Gpu { name: "rtx4090", memory_gib: 24.0, tflops: 165.0, price: 0.50 },
    Gpu { name: "a100-40gb", memory_gib: 40.0, tflops: 312.0, price: 1.30 },
    Gpu { name: "a100-80gb", memory_gib: 80.0, tflops: 312.0, price: 1.80 },
    Gpu { name: "h100-80gb", memory_gib: 80.0, tflops: 989.0, price: 3.00 },
    Gpu { name: "h200", memory_gib: 141.0, tflops: 989.0, price: 3.80 },
];

/// A model's shape.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shape {
    /// Parameters.
    pub params: f64,
    /// Hidden width.
    pub hidden: f64,
    /// Layers.
    pub layers: f64,
    /// MLP width.
    pub ffn: f64,
    /// Attention heads.
    pub heads: f64,
}

impl Shape {
    /// A Llama-proportioned model of `params` parameters.
    pub fn from_params(params: f64) -> Shape {
        let hidden = (params * 128.0 / 12.0).cbrt();
        Shape { params, hidden, layers: (hidden / 128.0).round().max(1.0), ffn: 2.7 * hidden, heads: (hidden / 128.0).max(1.0) }
    }
}

/// The inputs of an estimate.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// Model shape.
    pub shape: Shape,
    /// Method.
    pub method: Method,
    /// LoRA rank.
    pub lora_r: f64,
    /// Linear layers per block that carry adapters (7 = all-linear).
    pub lora_targets: f64,
    /// Sequence length.
    pub seq: f64,
    /// Micro-batch per GPU.
    pub batch: f64,
    /// Training tokens per epoch.
    pub tokens: f64,
    /// Epochs.
    pub epochs: f64,
    /// Accelerator.
    pub gpu: Gpu,
    /// Model-FLOPs utilisation.
    pub mfu: f64,
}

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Trainable parameters.
    pub trainable: f64,
    /// GiB for weights (all GPUs together).
    pub weights_gib: f64,
    /// GiB for gradients.
    pub gradients_gib: f64,
    /// GiB for optimizer state (and master weights).
    pub optimizer_gib: f64,
    /// GiB of activations per GPU.
    pub activations_gib: f64,
    /// Total GiB.
    pub total_gib: f64,
    /// GiB one GPU needs when every GPU holds the whole model (replicated
    /// data parallelism, what Tailor's `workers:` do): weights, gradients,
    /// optimizer and activations.
    pub replica_gib: f64,
    /// GPUs needed (weights, gradients and optimizer sharded, FSDP-style);
    /// 0 when one GPU cannot even hold the activations of a micro-batch.
    pub gpus: u32,
    /// Wall-clock hours.
    pub hours: f64,
    /// USD.
    pub cost: f64,
}

/// Bytes in a GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Compute an estimate.
pub fn estimate(r: &Request) -> Estimate {
    let s = r.shape;
    let per_layer_linear_in_out = [
        s.hidden + s.hidden,       // q
        s.hidden + s.hidden / 4.0, // k (GQA-ish)
        s.hidden + s.hidden / 4.0, // v
        s.hidden + s.hidden,       // o
        s.hidden + s.ffn,          // gate
        s.hidden + s.ffn,          // up
        s.ffn + s.hidden,          // down
    ];
    let targeted: f64 = per_layer_linear_in_out.iter().take(r.lora_targets.clamp(1.0, 7.0) as usize).sum();
    let trainable = match r.method {
        Method::Full => s.params,
        Method::Lora | Method::Qlora => r.lora_r * targeted * s.layers,
    };
    let weight_bytes = match r.method {
        Method::Qlora => 0.52,
        _ => 2.0,
    };
    let weights = s.params * weight_bytes;
    let gradients = trainable * 2.0;
    let optimizer = trainable * if r.method == Method::Full { 12.0 } else { 8.0 };
    let saved = 2.0 * r.seq * r.batch * s.hidden * s.layers;
    let working = 34.0 * r.seq * r.batch * s.hidden + 5.0 * s.heads * r.seq * r.seq * r.batch;
    let activations = saved + working;
    let usable = r.gpu.memory_gib * GIB * 0.9 - GIB; // context and fragmentation
    let sharded = weights + gradients + optimizer;
    let gpus = if activations >= usable { 0 } else { (sharded / (usable - activations)).ceil().max(1.0) as u32 };
    let flops_per_token = s.params
        * match r.method {
            Method::Full => 6.0,
            Method::Lora => 4.0,
            Method::Qlora => 4.0 * 1.3,
        };
    let seconds = if gpus == 0 { f64::INFINITY } else { flops_per_token * r.tokens * r.epochs / (r.gpu.tflops * 1e12 * r.mfu * gpus as f64) };
    let hours = seconds / 3600.0;
    Estimate {
        trainable,
        weights_gib: weights / GIB,
        gradients_gib: gradients / GIB,
        optimizer_gib: optimizer / GIB,
        activations_gib: activations / GIB,
        total_gib: (sharded + activations * gpus as f64) / GIB,
        replica_gib: (sharded + activations) / GIB,
        gpus,
        hours,
        cost: if gpus == 0 { f64::INFINITY } else { hours * gpus as f64 * r.gpu.price },
    }
}

/// A GPU by name.
pub fn gpu(name: &str) -> crate::error::Result<Gpu> {
    GPUS.iter()
        .copied()
        .find(|g| g.name == name)
        .ok_or_else(|| crate::ModelError::Invalid(format!("unknown GPU `{name}`; known: {}", GPUS.iter().map(|g| g.name).collect::<Vec<_>>().join(", "))))
}

impl Shape {
    /// The exact shape of a Hugging Face `config.json` (Llama family).
    pub fn from_config(cfg: &serde_json::Value) -> Option<Shape> {
        let f = |k: &str| cfg[k].as_f64();
        let (h, l, i, v) = (f("hidden_size")?, f("num_hidden_layers")?, f("intermediate_size")?, f("vocab_size")?);
        let heads = f("num_attention_heads").unwrap_or(1.0).max(1.0);
        let kv = f("num_key_value_heads").unwrap_or(heads);
        let d = f("head_dim").unwrap_or(h / heads);
        let attn = h * heads * d * 2.0 + 2.0 * h * kv * d;
        let params = v * h * if cfg["tie_word_embeddings"] == true { 1.0 } else { 2.0 } + l * (attn + 3.0 * h * i + 2.0 * h) + h;
        Some(Shape { params, hidden: h, layers: l, ffn: i, heads })
    }
}

/// What one training run of Tailor's own trainer needs in memory, as
/// implemented and measured (peak RSS, SmolLM2-135M, `tailor-train bench`;
/// the table is in the README): frozen weights in their dtype (NF4 for
/// QLoRA's linear layers); trainable float32 weights with their gradient
/// and AdamW's two moments; the activations autograd keeps — without
/// checkpointing, per token and layer about 10·hidden + 4·ffn values (norm,
/// q/k/v, attention output, MLP inputs and products) plus heads·seq
/// attention probabilities (libtorch's CPU attention keeps them for the
/// backward pass); with checkpointing, one hidden-size input per token and
/// layer plus one layer's working set and the gradient flowing back
/// (2·hidden); either way six vocab-wide float32 rows per token for the
/// logits, their log-softmax, the loss's copies and the gradient; and
/// libtorch's own runtime, about 200 MiB.
#[derive(Debug, Clone, Serialize)]
pub struct RunMemory {
    /// Frozen (or master) weights, bytes.
    pub weights: f64,
    /// Trainable parameters.
    pub trainable: f64,
    /// Gradients and optimizer state of the trainable parameters, bytes.
    pub optimizer: f64,
    /// Activations of one micro-batch, bytes.
    pub activations: f64,
    /// libtorch's runtime and allocator slack, bytes.
    pub runtime: f64,
}

impl RunMemory {
    /// Everything together, bytes.
    pub fn total(&self) -> f64 {
        self.weights + self.optimizer + self.activations + self.runtime
    }
}

/// Memory of a run of `method` on `shape`: `dtype_bytes` per frozen value
/// and activation, LoRA rank `r` on `targets` of the seven linear layers
/// per block, micro-batches of `batch` × `seq` tokens.
#[allow(clippy::too_many_arguments)]
pub fn run_memory(shape: &Shape, vocab: f64, method: Method, dtype_bytes: f64, r: f64, targets: f64, seq: f64, batch: f64, checkpointing: bool) -> RunMemory {
    let (h, l, f) = (shape.hidden, shape.layers, shape.ffn);
    let linear = l * (4.0 * h * h + 3.0 * h * f);
    let rest = (shape.params - linear).max(0.0);
    let per_layer_in_out = [2.0 * h, 1.25 * h, 1.25 * h, 2.0 * h, h + f, h + f, f + h];
    let lora: f64 = r * l * per_layer_in_out.iter().take(targets.clamp(1.0, 7.0) as usize).sum::<f64>();
    let (weights, trainable) = match method {
        Method::Full => (shape.params * 4.0, shape.params),
        Method::Lora => (shape.params * dtype_bytes, lora),
        Method::Qlora => (linear * (0.5 + 1.0 / 64.0) + rest * dtype_bytes, lora),
    };
    let tokens = seq * batch;
    let layer = (10.0 * h + 4.0 * f + shape.heads * seq) * dtype_bytes;
    let kept = if checkpointing { l * h * dtype_bytes + layer + 2.0 * h * dtype_bytes } else { l * layer };
    let activations = tokens * (kept + 6.0 * vocab * 4.0);
    // Gradient and two moments per trainable value; an adapter's own float32 weight too (a full
    // run's weights are already counted above).
    let optimizer = trainable * if method == Method::Full { 12.0 } else { 16.0 };
    RunMemory { weights, trainable, optimizer, activations, runtime: 200.0 * (1u64 << 20) as f64 }
}

/// Memory the machine has available, bytes (Linux `MemAvailable`).
pub fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(params: f64, method: Method, gpu_name: &str) -> Request {
        Request {
            shape: Shape::from_params(params),
            method,
            lora_r: 16.0,
            lora_targets: 7.0,
            seq: 2048.0,
            batch: 4.0,
            tokens: 1e7,
            epochs: 3.0,
            gpu: gpu(gpu_name).unwrap(),
            mfu: 0.35,
        }
    }

    #[test]
    fn reproduces_the_rule_of_thumb() {
        for (params, method, gpu, lo, hi) in [
            (7e9, Method::Qlora, "a100-40gb", 1, 1),
            (7e9, Method::Lora, "a100-80gb", 1, 1),
            (13e9, Method::Lora, "a100-80gb", 1, 1),
            (13e9, Method::Qlora, "a100-40gb", 1, 1),
            (70e9, Method::Lora, "a100-80gb", 2, 4),
            (70e9, Method::Qlora, "a100-80gb", 1, 1),
            (70e9, Method::Full, "a100-80gb", 12, 64),
        ] {
            let e = estimate(&req(params, method, gpu));
            assert!((lo..=hi).contains(&e.gpus), "{params:e} {method:?} on {gpu}: {} GPUs ({:.0} GiB)", e.gpus, e.total_gib);
        }
    }

    #[test]
    fn a_replica_needs_what_one_gpu_would_hold() {
        // One GPU: replicating is the same as not sharding.
        let one = estimate(&req(7e9, Method::Qlora, "a100-40gb"));
        assert_eq!(one.gpus, 1);
        assert!((one.replica_gib - one.total_gib).abs() < 1e-9, "{one:?}");
        // 70B LoRA needs several GPUs only because it shards: a replica holds the whole 130 GiB of weights.
        let big = estimate(&req(70e9, Method::Lora, "a100-80gb"));
        assert!(big.gpus >= 2 && big.replica_gib > 80.0 && big.replica_gib > big.total_gib / big.gpus as f64, "{big:?}");
    }

    #[test]
    fn too_small_a_gpu_says_so() {
        let mut r = req(70e9, Method::Lora, "t4");
        r.seq = 8192.0;
        assert_eq!(estimate(&r).gpus, 0);
    }

    #[test]
    fn lora_trains_a_small_fraction() {
        let e = estimate(&req(7e9, Method::Lora, "a100-80gb"));
        let share = e.trainable / 7e9;
        assert!((0.001..0.02).contains(&share), "{share}");
        assert!(e.hours > 0.0 && e.cost > 0.0);
    }
}
