//! Settings shared by `train` and `retrain`: the optimisation
//! hyper-parameters, LoRA and QLoRA, precision and device, checkpoints. They
//! are flattened into both stage configs, so a pipeline writes `lr:` at the
//! stage's top level either way.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use tailor_protocol::settings::{Decoding, Device, Dtype, LoraSpec, Method, Schedule};

/// QLoRA settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QloraCfg {
    /// Quantize the per-block absmax values to 8 bits too (QLoRA's double
    /// quantization: ≈ 4.13 instead of 4.5 bits per weight).
    #[serde(default = "yes")]
    pub double_quant: bool,
}

fn yes() -> bool {
    true
}

impl Default for QloraCfg {
    fn default() -> Self {
        QloraCfg { double_quant: true }
    }
}

/// What is trained: all weights or adapters (a `retrain` continues with
/// the settings of the model it starts from).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MethodSettings {
    /// `full` (all weights), `lora` (adapters; base frozen) or `qlora`
    /// (adapters over an NF4-quantized base).
    #[serde(default)]
    pub method: Method,
    /// LoRA settings (methods `lora` and `qlora`).
    #[serde(default)]
    pub lora: LoraSpec,
    /// QLoRA settings (method `qlora`).
    #[serde(default)]
    pub qlora: QloraCfg,
}

/// Optimisation and runtime settings of a training run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Hyper {
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Passes over the data.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub epochs: usize,
    /// Stop after this many optimizer steps (overrides `epochs`).
    #[schemars(range(min = 1))]
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
    pub schedule: Schedule,
    /// AdamW weight decay (matrices only).
    #[serde(default)]
    pub weight_decay: f64,
    /// Gradient clipping (global norm; 0 = off).
    #[serde(default = "one_f")]
    pub max_grad_norm: f64,
    /// Seed of every random stream (adapter init, dropout, data order).
    #[serde(default)]
    pub seed: u64,
    /// Validation loss every N steps (and at the end).
    pub eval_every: Option<usize>,
    /// Also write the merged model (base + adapter) in Hugging Face layout.
    #[serde(default)]
    pub merge: bool,
    /// Floating-point kind of weights and computation.
    #[serde(default)]
    pub dtype: Dtype,
    /// Where to train.
    #[serde(default)]
    pub device: Device,
    /// CPU threads for libtorch (default: all).
    pub threads: Option<usize>,
    /// Write a checkpoint every N steps; a killed run resumes from the last
    /// one and ends with the same weights as an uninterrupted run.
    pub checkpoint_every: Option<usize>,
    /// Batch samples of similar length together, so batches pad less
    /// (within runs of 50 optimizer steps' worth of rows, longest first).
    #[serde(default)]
    pub group_by_length: bool,
    /// Activation checkpointing: keep only each decoder layer's input in
    /// the forward pass and recompute the layer in the backward pass — the
    /// activations then take about one layer's working set plus one
    /// hidden-size vector per token and layer, for roughly a third more
    /// compute. Default: on for `device: cuda`, off on the CPU (and for
    /// `auto`, decided by the device found).
    pub gradient_checkpointing: Option<bool>,
    /// Data-parallel workers: this many training processes, each holding
    /// the whole model and computing its share of every step's
    /// micro-batches, with the gradients summed across them (libtorch's
    /// c10d over Gloo). An optimizer step then covers
    /// `batch_size × grad_accum × workers` rows — the same result as one
    /// process with `grad_accum × workers`. The processes share `threads`.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    pub workers: usize,
}

impl Hyper {
    /// Whether the run checkpoints activations, as far as the plan can tell
    /// (`device: auto` is assumed to find no GPU, as on this kind of machine).
    pub fn checkpointing(&self) -> bool {
        self.gradient_checkpointing.unwrap_or(self.device == Device::Cuda)
    }
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
