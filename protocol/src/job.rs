//! Job files: what a stage asks `tailor-train` to do. The stage writes one
//! as pretty JSON next to its outputs (`job.json`) and passes its path.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::settings::{Decoding, Device, Dtype, LoraSpec, Method, Schedule};

/// A job file and the `tailor-train` subcommand that runs it.
pub trait Job: Serialize + DeserializeOwned {
    /// `tailor-train SUBCOMMAND JOB`.
    const SUBCOMMAND: &'static str;
}

/// Where a run starts from instead of fresh adapters (a `retrain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Init {
    /// A PEFT adapter directory whose A/B values initialise the adapters.
    pub adapter: Option<PathBuf>,
    /// A saved optimizer state (`optimizer.safetensors`) to continue from.
    pub optimizer: Option<PathBuf>,
}

/// Samples to repeat (a `retrain` focusing on an evaluation's failures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Oversample {
    /// Sample ids.
    pub ids: BTreeSet<String>,
    /// Times each appears per epoch.
    pub factor: usize,
}

/// Everything a training run needs (written by `train` and `retrain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
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
    pub double_quant: bool,
    /// Weights and compute kind.
    pub dtype: Dtype,
    /// Device.
    pub device: Device,
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
    /// Clip the global gradient norm to this (0 = off).
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
    pub checkpoint_every: Option<usize>,
    /// Where checkpoints live (kept across attempts of the same job).
    pub checkpoint_dir: Option<PathBuf>,
    /// Start from an earlier result.
    pub init: Option<Init>,
    /// Repeat some samples.
    pub oversample: Option<Oversample>,
    /// Write the optimizer state beside the result (for a later retrain).
    pub save_optimizer: bool,
    /// Batch rows of similar length together (less padding).
    pub group_by_length: bool,
    /// Activation checkpointing: recompute each decoder layer in the
    /// backward pass (`None`: on for CUDA, off on the CPU).
    #[serde(default)]
    pub gradient_checkpointing: Option<bool>,
    /// Data-parallel ranks (processes), each computing its share of every
    /// optimizer step's micro-batches; the step's window is
    /// `batch_size × grad_accum × workers` rows.
    #[serde(default = "one_worker")]
    pub workers: usize,
}

impl Job for TrainJob {
    const SUBCOMMAND: &'static str = "run";
}

impl TrainJob {
    /// A job with the usual defaults (float32 on the CPU, constant learning
    /// rate 2e-4 without warm-up, one epoch, batch 4, no clipping, seed 0,
    /// no checkpoints) for callers that set only what they measure.
    pub fn with_defaults(base: PathBuf, train: PathBuf, out: PathBuf, method: Method, lora: Option<LoraSpec>) -> TrainJob {
        TrainJob {
            base,
            train,
            validation: None,
            out,
            method,
            lora,
            double_quant: true,
            dtype: Dtype::Float32,
            device: Device::Cpu,
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
            gradient_checkpointing: None,
            workers: 1,
        }
    }

    /// Optimizer steps per pass over `rows` rows.
    pub fn steps_per_epoch(&self, rows: usize) -> usize {
        rows.div_ceil(self.batch_size.max(1) * self.grad_accum.max(1) * self.workers.max(1)).max(1)
    }
}

fn one_worker() -> usize {
    1
}

/// One model to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Name in the results (`tuned`, `base`, `before`).
    pub name: String,
    /// Model directory (Hugging Face layout).
    pub model: PathBuf,
    /// PEFT adapter on top, if any.
    pub adapter: Option<PathBuf>,
}

/// A prompt to continue (one line of the prompts file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// Sample id.
    pub id: String,
    /// Token ids of the prompt (template applied, up to the reply).
    pub ids: Vec<u32>,
}

/// What to compute for an evaluation (written by `evaluate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferJob {
    /// Models, in order.
    pub variants: Vec<Variant>,
    /// Weights and compute kind.
    pub dtype: Dtype,
    /// Device.
    pub device: Device,
    /// Intra-op threads.
    pub threads: Option<usize>,
    /// A tokenized split whose per-sample loss is wanted (`losses.jsonl`).
    pub score: Option<PathBuf>,
    /// Prompts to continue (JSON lines of [`Prompt`]; `generations.jsonl`).
    pub prompts: Option<PathBuf>,
    /// Continuations to score given their contexts (JSON lines of
    /// [`LoglikRequest`]; `loglikelihood.jsonl`).
    pub loglikelihood: Option<PathBuf>,
    /// Token ids that end a reply.
    pub eos: Vec<u32>,
    /// Decoding settings.
    pub decoding: Decoding,
    /// Output directory: `losses.jsonl`, `generations.jsonl`,
    /// `loglikelihood.jsonl`.
    pub out: PathBuf,
}

impl Job for InferJob {
    const SUBCOMMAND: &'static str = "infer";
}

/// One line of `losses.jsonl`: a sample's summed loss under one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Variant name.
    pub variant: String,
    /// Sample id (absent when the split has none).
    pub id: Option<String>,
    /// Summed negative log-likelihood of the sample's target tokens.
    pub nll: f64,
    /// Number of target tokens.
    pub targets: i64,
}

/// A continuation to score given its context (one line of the
/// log-likelihood requests file), lm-evaluation-harness style: the summed
/// log-probability of `continuation` after `context`. A context longer than
/// the model's window loses its oldest tokens; the continuation is never
/// cut (it must fit the window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoglikRequest {
    /// Request id (unique in the file).
    pub id: String,
    /// Token ids of the context (at least one).
    pub context: Vec<u32>,
    /// Token ids to score (at least one).
    pub continuation: Vec<u32>,
}

/// One line of `loglikelihood.jsonl`: a request scored by one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loglik {
    /// Variant name.
    pub variant: String,
    /// Request id.
    pub id: String,
    /// Summed natural-log probability of the continuation's tokens.
    pub logprob: f64,
    /// Continuation tokens scored.
    pub tokens: usize,
    /// Whether greedy decoding would have produced the continuation
    /// (every token the most likely one).
    pub greedy: bool,
}

/// One line of `generations.jsonl`: a reply from one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Variant name.
    pub variant: String,
    /// Sample id.
    pub id: String,
    /// The reply, cut at a stop string.
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Why it ended: `eos`, `stop` or `length`.
    pub finish: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job file is complete: a field the stage forgets to write, or one
    /// the trainer does not know, is an error rather than a silent default.
    #[test]
    fn job_files_are_strict_both_ways() {
        let j = TrainJob::with_defaults("b".into(), "t".into(), "o".into(), Method::Lora, Some(LoraSpec::default()));
        let mut v = serde_json::to_value(&j).unwrap();
        assert_eq!(serde_json::from_value::<TrainJob>(v.clone()).unwrap(), j);
        v["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<TrainJob>(v.clone()).unwrap_err().to_string().contains("surprise"));
        v.as_object_mut().unwrap().remove("surprise");
        v.as_object_mut().unwrap().remove("lr");
        assert!(serde_json::from_value::<TrainJob>(v).unwrap_err().to_string().contains("lr"));
    }
}
