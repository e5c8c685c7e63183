//! Inference jobs for the `evaluate` stage: for each model variant (the
//! tuned model, and optionally the base it came from), the loss of every
//! sample of a tokenized split and generated continuations of prompts.
//! Results are JSON lines the stage turns into metrics; the numbers here
//! are only what needs libtorch.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::Device;

use crate::data::Dataset;
use crate::generate::{Decoding, generate};
use crate::load::LoadOptions;
use crate::model::Llama;
use crate::trainer::{DeviceSpec, Dtype, emit, row_losses};

/// One model to evaluate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// Name in the results (`tuned`, `base`).
    pub name: String,
    /// Model directory (Hugging Face layout).
    pub model: PathBuf,
    /// PEFT adapter on top, if any.
    pub adapter: Option<PathBuf>,
}

/// A prompt to continue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prompt {
    /// Sample id.
    pub id: String,
    /// Token ids of the prompt (template applied, up to the reply).
    pub ids: Vec<u32>,
}

/// What to compute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferJob {
    /// Models, in order.
    pub variants: Vec<Variant>,
    /// Weights and compute kind.
    #[serde(default)]
    pub dtype: Dtype,
    /// Device.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Intra-op threads.
    pub threads: Option<usize>,
    /// A tokenized split whose per-sample loss is wanted.
    pub score: Option<PathBuf>,
    /// Prompts to continue (JSON lines of [`Prompt`]).
    pub prompts: Option<PathBuf>,
    /// Token ids that end a reply.
    pub eos: Vec<u32>,
    /// Decoding settings.
    pub decoding: Decoding,
    /// Output directory: `losses.jsonl`, `generations.jsonl`.
    pub out: PathBuf,
}

fn load(v: &Variant, opts: LoadOptions) -> Result<Llama, String> {
    let cfg = crate::load::config(&v.model)?;
    let w = crate::load::weights(&v.model, opts)?;
    let mut m = Llama::from_weights(cfg, w, opts.kind, opts.device)?;
    if let Some(a) = &v.adapter {
        crate::peft::load(&mut m, a, opts.device)?;
    }
    Ok(m)
}

fn detach_adapters(m: &mut Llama) {
    for (_, l) in m.linears_mut() {
        l.lora = None;
    }
}

/// Run an inference job.
pub fn run(job: &InferJob) -> Result<(), String> {
    if let Some(n) = job.threads {
        tch::set_num_threads(n as i32);
    }
    let device: Device = job.device.resolve()?;
    let opts = LoadOptions { kind: job.dtype.resolve(device), device, nf4: None };
    let prompts: Vec<Prompt> = match &job.prompts {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .lines()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", p.display(), i + 1)))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let score = job.score.as_ref().map(|p| Dataset::open(p)).transpose()?;
    let mut losses = std::fs::File::create(job.out.join("losses.jsonl")).map_err(|e| e.to_string())?;
    let mut gens = std::fs::File::create(job.out.join("generations.jsonl")).map_err(|e| e.to_string())?;
    let total = job.variants.len() * (prompts.len() + score.as_ref().map_or(0, Dataset::len));
    emit(json!({"event": "start", "steps": total}));
    let mut done = 0usize;
    let mut loaded: Option<(PathBuf, Llama)> = None;
    for v in &job.variants {
        // Variants over the same model directory share one load: only the
        // adapter changes.
        let model = match loaded.take() {
            Some((dir, mut m)) if dir == v.model => {
                detach_adapters(&mut m);
                if let Some(a) = &v.adapter {
                    crate::peft::load(&mut m, a, device)?;
                }
                loaded.insert((dir, m))
            }
            _ => loaded.insert((v.model.clone(), load(v, opts)?)),
        };
        let model = &model.1;
        if let Some(ds) = &score {
            for (row, (nll, n)) in row_losses(model, ds, 8, device)?.into_iter().enumerate() {
                writeln!(losses, "{}", json!({"variant": v.name, "id": ds.sample_id(row), "nll": nll, "targets": n})).map_err(|e| e.to_string())?;
            }
            done += ds.len();
            emit(json!({"event": "step", "step": done, "steps": total, "variant": v.name}));
        }
        if !prompts.is_empty() {
            let tok = tokenizers::Tokenizer::from_file(v.model.join("tokenizer.json")).map_err(|e| format!("{}/tokenizer.json: {e}", v.model.display()))?;
            let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_default();
            let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
            let mut progress = |n: usize| {
                done += n;
                emit(json!({"event": "step", "step": done, "steps": total, "variant": v.name}));
            };
            let out = generate(model, &ids, &job.eos, &job.decoding, device, &decode, &mut progress)?;
            for (p, g) in prompts.iter().zip(out) {
                writeln!(gens, "{}", json!({"variant": v.name, "id": p.id, "text": g.text, "tokens": g.ids.len(), "finish": g.finish}))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    emit(json!({"event": "done", "metrics": {}}));
    Ok(())
}
