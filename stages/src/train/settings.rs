//! Settings shared by `train` and `retrain`: the optimisation
//! hyper-parameters, LoRA and QLoRA, precision and device, checkpoints. They
//! are flattened into both stage configs, so a pipeline writes `lr:` at the
//! stage's top level either way.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Training method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MethodCfg {
    /// All weights train (float32 master weights).
    Full,
    /// Low-rank adapters; the base is frozen.
    #[default]
    Lora,
    /// Low-rank adapters over a base quantized to 4-bit NormalFloat.
    Qlora,
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

/// Floating-point kind of the frozen weights and of the computation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DtypeCfg {
    /// float32 on CPU, bfloat16 on CUDA.
    #[default]
    Auto,
    /// 32-bit floats.
    Float32,
    /// bfloat16.
    Bfloat16,
    /// float16.
    Float16,
}

/// Where to train.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceCfg {
    /// CUDA when libtorch sees a GPU, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (an error when there is none).
    Cuda,
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
pub struct Method {
    /// `full` (all weights), `lora` (adapters; base frozen) or `qlora`
    /// (adapters over an NF4-quantized base).
    #[serde(default)]
    pub method: MethodCfg,
    /// LoRA settings (methods `lora` and `qlora`).
    #[serde(default)]
    pub lora: LoraCfg,
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
    pub schedule: ScheduleCfg,
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
    pub dtype: DtypeCfg,
    /// Where to train.
    #[serde(default)]
    pub device: DeviceCfg,
    /// CPU threads for libtorch (default: all).
    pub threads: Option<usize>,
    /// Write a checkpoint every N steps; a killed run resumes from the last
    /// one and ends with the same weights as an uninterrupted run.
    pub checkpoint_every: Option<usize>,
    /// Batch samples of similar length together, so batches pad less
    /// (within runs of 50 optimizer steps' worth of rows, longest first).
    #[serde(default)]
    pub group_by_length: bool,
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
