//! Inference jobs for the `evaluate` stage: for each model variant (the
//! tuned model, and optionally the base it came from), the loss of every
//! sample of a tokenized split and generated continuations of prompts.
//! Results are JSON lines the stage turns into metrics; the numbers here
//! are only what needs libtorch.

use std::io::Write;
use std::path::PathBuf;

use tailor_protocol::event::{Done, Event, Start};
use tailor_protocol::job::{Generation, InferJob, Loglik, LoglikRequest, Prompt, Scored, Variant};
use tch::Device;

use crate::data::Dataset;
use crate::generate::generate;
use crate::load::LoadOptions;
use crate::model::Llama;
use crate::trainer::{emit, row_losses};

fn load(v: &Variant, opts: LoadOptions) -> Result<Llama, String> {
    let cfg = crate::load::config(&v.model)?;
    let w = crate::load::weights(&v.model, opts)?;
    let mut m = Llama::from_weights(cfg, w, opts.kind, opts.device)?;
    if let Some(a) = &v.adapter {
        crate::peft::load(&mut m, a, opts.device)?;
    }
    Ok(m)
}

/// Read a JSON-lines file of `T`.
fn read_lines<T: serde::de::DeserializeOwned>(p: &Option<PathBuf>) -> Result<Vec<T>, String> {
    let Some(p) = p else { return Ok(Vec::new()) };
    std::fs::read_to_string(p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", p.display(), i + 1)))
        .collect()
}

/// Padded tokens per log-likelihood batch.
const LOGLIK_BUDGET: usize = 4096;

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
    let device: Device = crate::trainer::device(job.device)?;
    let opts = LoadOptions { kind: crate::trainer::kind(job.dtype, device), device, nf4: None };
    let prompts: Vec<Prompt> = read_lines(&job.prompts)?;
    let requests: Vec<LoglikRequest> = read_lines(&job.loglikelihood)?;
    let score = job.score.as_ref().map(|p| Dataset::open(p)).transpose()?;
    let mut losses = std::fs::File::create(job.out.join("losses.jsonl")).map_err(|e| e.to_string())?;
    let mut gens = std::fs::File::create(job.out.join("generations.jsonl")).map_err(|e| e.to_string())?;
    let mut logliks = std::fs::File::create(job.out.join("loglikelihood.jsonl")).map_err(|e| e.to_string())?;
    let total = job.variants.len() * (prompts.len() + requests.len() + score.as_ref().map_or(0, Dataset::len));
    emit(&Event::Start(Start {
        steps: total as u64,
        trainer: tailor_protocol::TRAINER.into(),
        rows: None,
        trainable_parameters: None,
        weight_bytes: None,
        device: Some(format!("{device:?}")),
        dtype: Some(format!("{:?}", opts.kind)),
    }));
    let mut done = 0usize;
    // Generation throughput: tokens generated and seconds spent generating.
    let (mut generated, mut gen_seconds) = (0usize, 0.0f64);
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
                let line = Scored { variant: v.name.clone(), id: ds.sample_id(row).map(str::to_string), nll, targets: n };
                writeln!(losses, "{}", json_line(&line)?).map_err(|e| e.to_string())?;
            }
            done += ds.len();
            emit(&Event::Progress { step: done as u64, steps: total as u64, variant: v.name.clone() });
        }
        if !requests.is_empty() {
            let window = model.cfg.max_position_embeddings.unwrap_or(2048);
            let mut progress = |n: usize| {
                done += n;
                emit(&Event::Progress { step: done as u64, steps: total as u64, variant: v.name.clone() });
            };
            let scored = crate::loglik::score(model, &requests, window, LOGLIK_BUDGET, crate::loglik::HEAD_ROWS, device, &mut progress)?;
            for (r, s) in requests.iter().zip(scored) {
                let line = Loglik { variant: v.name.clone(), id: r.id.clone(), logprob: s.logprob, tokens: r.continuation.len(), greedy: s.greedy };
                writeln!(logliks, "{}", json_line(&line)?).map_err(|e| e.to_string())?;
            }
        }
        if !prompts.is_empty() {
            let tok = tokenizers::Tokenizer::from_file(v.model.join("tokenizer.json")).map_err(|e| format!("{}/tokenizer.json: {e}", v.model.display()))?;
            let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_default();
            let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
            let mut progress = |n: usize| {
                done += n;
                emit(&Event::Progress { step: done as u64, steps: total as u64, variant: v.name.clone() });
            };
            let t0 = std::time::Instant::now();
            let out = generate(model, &ids, &job.eos, &job.decoding, device, &decode, &mut progress)?;
            gen_seconds += t0.elapsed().as_secs_f64();
            generated += out.iter().map(|g| g.ids.len() + usize::from(g.finish == "eos")).sum::<usize>();
            for (p, g) in prompts.iter().zip(out) {
                let line = Generation { variant: v.name.clone(), id: p.id.clone(), text: g.text, tokens: g.ids.len(), finish: g.finish };
                writeln!(gens, "{}", json_line(&line)?).map_err(|e| e.to_string())?;
            }
        }
    }
    let (tokens_per_s, seconds) = if generated > 0 { (Some(generated as f64 / gen_seconds), Some(gen_seconds)) } else { (None, None) };
    emit(&Event::Done(Done { metrics: None, tokens_per_s, seconds, peak_rss_mib: crate::trainer::peak_rss_mib() }));
    Ok(())
}

fn json_line<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("serialising a result line: {e}"))
}
