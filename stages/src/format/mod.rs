//! `format`: records → training-ready tokens.
//!
//! Each record is rendered with a template into text plus the byte ranges
//! the model learns (completion / assistant turns), tokenized with the
//! `tokenizers` crate from a `tokenizer.json`, and its loss mask is derived
//! from the token offsets against those ranges. Samples longer than
//! `max_tokens` are truncated or dropped (and counted); records are split
//! into train and validation by a hash of their id; samples are optionally
//! packed. Output per split: `tokens.safetensors` (`input_ids` u32,
//! `loss_mask` u8, `offsets` u64 sample boundaries, and `pack_offsets` /
//! `pack_samples` when packed), `manifest.json` and `samples.jsonl`.

pub mod pack;
pub mod template;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tailor_engine::{ConfigIssue, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use tailor_model::tokenizer::{self, TokenizerFiles};
use tailor_text::record::{Record, read_jsonl};
use template::{Jinja, Rendered, Template};

/// Configuration of a `format` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    /// The records to format (a `collect` or `clean` stage).
    pub input: String,
    /// A `tokenizer.json`, or a model directory containing one (its
    /// `tokenizer_config.json` supplies special tokens and the chat template).
    pub tokenizer: PathBuf,
    /// How records become text; see the template docs.
    #[serde(default)]
    pub template: Template,
    /// A Jinja chat template (Hugging Face convention) to use instead of a
    /// built-in one.
    pub chat_template: Option<String>,
    /// System prompt added to records that have none (chat templates).
    pub system: Option<String>,
    /// Longest sample in tokens.
    #[serde(default = "default_max_tokens")]
    #[schemars(range(min = 8))]
    pub max_tokens: usize,
    /// What to do with longer samples.
    #[serde(default)]
    pub truncation: Truncation,
    /// Pack samples into sequences of `max_tokens` (best-fit decreasing;
    /// attention and loss never cross sample boundaries).
    #[serde(default)]
    pub packing: bool,
    /// Train/validation split.
    #[serde(default)]
    pub split: Split,
}

fn default_max_tokens() -> usize {
    512
}

/// Handling of samples over `max_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Keep the first `max_tokens` tokens (samples left with nothing to
    /// learn are dropped).
    #[default]
    Truncate,
    /// Drop the sample.
    Drop,
}

/// Deterministic split by record id.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Share of records for validation (0 = none).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 0.9))]
    pub validation: f64,
    /// Seed of the split.
    #[serde(default)]
    pub seed: u64,
}

/// The `format` stage kind.
pub struct Format;

/// One tokenized sample.
struct Sample {
    id: String,
    ids: Vec<u32>,
    mask: Vec<u8>,
    truncated: bool,
    /// The record's last question and answer (for evaluation and review).
    asked: String,
    answer: String,
    /// The id of the record this one corrects (`meta.fix_of`), if any.
    fix_of: Option<String>,
}

/// Tokenize a rendered sample; the mask is 1 on tokens whose bytes start
/// inside a trained range.
fn encode(tok: &TokenizerFiles, r: &Rendered, bos: Option<u32>, eos: Option<u32>) -> Result<(Vec<u32>, Vec<u8>), String> {
    let enc = tok.tokenizer.encode(r.text.as_str(), false).map_err(|e| e.to_string())?;
    let mut ids = Vec::with_capacity(enc.len() + 2);
    let mut mask = Vec::with_capacity(enc.len() + 2);
    if let Some(b) = bos {
        ids.push(b);
        mask.push(0);
    }
    let mut span = 0;
    for (&id, &(start, _)) in enc.get_ids().iter().zip(enc.get_offsets()) {
        while span < r.train.len() && r.train[span].end <= start {
            span += 1;
        }
        let on = span < r.train.len() && r.train[span].start <= start;
        ids.push(id);
        mask.push(u8::from(on));
    }
    if let (true, Some(e)) = (r.add_eos, eos) {
        ids.push(e);
        mask.push(1);
    }
    Ok((ids, mask))
}

fn le32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le64(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_split(
    dir: &Path,
    samples: &[&Sample],
    cfg: &FormatConfig,
    tok: &TokenizerFiles,
    manifest: serde_json::Value,
) -> Result<serde_json::Value, StageError> {
    // The tokenizer travels with the tokens (stored once, by content), so
    // the artifact can be decoded and checked against a model on its own.
    std::fs::write(dir.join("tokenizer.json"), &tok.bytes).ctx(|| "writing tokenizer.json".into())?;
    let mut ids: Vec<u32> = Vec::new();
    let mut mask: Vec<u8> = Vec::new();
    let mut offsets: Vec<u64> = vec![0];
    for s in samples {
        ids.extend_from_slice(&s.ids);
        mask.extend_from_slice(&s.mask);
        offsets.push(ids.len() as u64);
    }
    let (ids_b, off_b) = (le32(&ids), le64(&offsets));
    let mut tensors: Vec<(String, TensorView<'_>)> = vec![
        ("input_ids".into(), TensorView::new(Dtype::U32, vec![ids.len()], &ids_b).map_err(|e| StageError::msg(e.to_string()))?),
        ("loss_mask".into(), TensorView::new(Dtype::U8, vec![mask.len()], &mask).map_err(|e| StageError::msg(e.to_string()))?),
        ("offsets".into(), TensorView::new(Dtype::U64, vec![offsets.len()], &off_b).map_err(|e| StageError::msg(e.to_string()))?),
    ];
    let mut packs = 0;
    let (po_b, ps_b);
    if cfg.packing {
        let lengths: Vec<usize> = samples.iter().map(|s| s.ids.len()).collect();
        let bins = pack::best_fit_decreasing(&lengths, cfg.max_tokens);
        packs = bins.len();
        let mut pack_offsets = vec![0u64];
        let mut pack_samples: Vec<u32> = Vec::new();
        for b in &bins {
            pack_samples.extend_from_slice(b);
            pack_offsets.push(pack_samples.len() as u64);
        }
        po_b = le64(&pack_offsets);
        ps_b = le32(&pack_samples);
        tensors.push(("pack_offsets".into(), TensorView::new(Dtype::U64, vec![pack_offsets.len()], &po_b).map_err(|e| StageError::msg(e.to_string()))?));
        tensors.push(("pack_samples".into(), TensorView::new(Dtype::U32, vec![pack_samples.len()], &ps_b).map_err(|e| StageError::msg(e.to_string()))?));
    }
    safetensors::serialize_to_file(tensors, None, &dir.join("tokens.safetensors")).map_err(|e| StageError::msg(format!("writing tokens.safetensors: {e}")))?;
    let target: usize = mask.iter().map(|&m| m as usize).sum();
    let mut m = manifest;
    m["samples"] = json!(samples.len());
    m["tokens"] = json!(ids.len());
    m["target_tokens"] = json!(target);
    m["truncated"] = json!(samples.iter().filter(|s| s.truncated).count());
    m["packs"] = json!(packs);
    crate::files::write_json(&dir.join("manifest.json"), &m)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("samples.jsonl")).ctx(|| "samples.jsonl".into())?);
    for s in samples {
        let t: usize = s.mask.iter().map(|&m| m as usize).sum();
        writeln!(w, "{}", json!({"id": s.id, "tokens": s.ids.len(), "target_tokens": t, "truncated": s.truncated, "prompt": s.asked, "reference": s.answer, "fix_of": s.fix_of})).ctx(|| "samples.jsonl".into())?;
    }
    w.flush().ctx(|| "samples.jsonl".into())?;
    Ok(m)
}

impl Stage for Format {
    type Config = FormatConfig;
    const KIND: &'static str = "format";
    const VERSION: u32 = 2;
    const IMPLEMENTATION: &'static str = crate::identity::FORMAT;
    const ABOUT: &'static str = "Render records with a template, tokenize them with a loss mask on the completion, split and pack.";
    const OUTPUTS: &'static [OutputDecl] = &[
        OutputDecl { name: "train", kind: "tokenized", about: "training samples (tokens.safetensors, manifest.json)" },
        OutputDecl { name: "validation", kind: "tokenized", about: "validation samples (may be empty)" },
    ];

    fn spec(config: &FormatConfig, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut files = Vec::new();
        match crate::inputs::tokenizer(root, &config.tokenizer, "/tokenizer") {
            Ok((t, decl)) => {
                files = decl;
                if config.template == Template::Tokenizer && t.config.chat_template.is_none() {
                    issues.push(
                        ConfigIssue::new("/template", "the tokenizer has no `chat_template`")
                            .help("pick a built-in template (chatml, llama3, alpaca, completion, plain) or set `chat_template:`"),
                    );
                }
                if let Some(src) = &config.chat_template
                    && let Err(e) = Jinja::new(src, None, None)
                {
                    issues.push(ConfigIssue::new("/chat_template", e));
                }
            }
            Err(e) => issues.push(
                ConfigIssue::new("/tokenizer", e).help("point `tokenizer:` at a tokenizer.json or a model directory; `tailor tokenizer train` makes one"),
            ),
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(StageSpec {
            inputs: vec![InputDecl { role: "input".into(), reference: config.input.clone(), pointer: "/input".into(), accepts: vec!["records"] }],
            files,
            ..Default::default()
        })
    }

    fn run(config: &FormatConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let tok = tokenizer::load(&ctx.resolve(&config.tokenizer)).map_err(StageError::msg)?;
        let input = ctx.input("input")?.dir.join("records.jsonl");
        let records: Vec<Record> = read_jsonl(&input).ctx(|| format!("reading {}", input.display()))?;
        let jinja = match (&config.chat_template, config.template) {
            (Some(src), _) => Some(Jinja::new(src, tok.config.bos_token.as_deref(), tok.config.eos_token.as_deref()).map_err(StageError::msg)?),
            (None, Template::Tokenizer | Template::Auto) => match &tok.config.chat_template {
                Some(src) => Some(Jinja::new(src, tok.config.bos_token.as_deref(), tok.config.eos_token.as_deref()).map_err(StageError::msg)?),
                None if config.template == Template::Tokenizer => return Err(StageError::msg("the tokenizer has no chat_template")),
                None => None,
            },
            _ => None,
        };
        let bos = if tok.config.add_bos_token { tok.id(tok.config.bos_token.as_deref()) } else { None };
        let eos = tok.id(tok.config.eos_token.as_deref());
        if eos.is_none() && !matches!(config.template, Template::Chatml | Template::Llama3 | Template::Tokenizer) {
            return Err(StageError::msg(
                "the tokenizer has no EOS token (set `eos_token` in tokenizer_config.json); without it the model never learns to stop",
            ));
        }
        ctx.progress().set_length(records.len() as u64);
        ctx.progress().set_message("tokenizing");
        let bar = ctx.progress().clone();
        let max = config.max_tokens;
        let results: Vec<Result<Option<Sample>, String>> = records
            .par_iter()
            .map(|r| {
                let rendered = match &jinja {
                    Some(j) => j.render(&r.body, config.system.as_deref()).map_err(|e| format!("record {}: {e}", r.id))?,
                    None => template::render(config.template, &r.body, config.system.as_deref()),
                };
                let (mut ids, mut mask) = encode(&tok, &rendered, bos, eos).map_err(|e| format!("record {}: {e}", r.id))?;
                bar.inc(1);
                let truncated = ids.len() > max;
                if truncated {
                    if config.truncation == Truncation::Drop {
                        return Ok(None);
                    }
                    ids.truncate(max);
                    mask.truncate(max);
                }
                if !mask.contains(&1) {
                    return Ok(None);
                }
                let (asked, answer) = r.body.exchange();
                let fix_of = r.meta.get("fix_of").and_then(|v| v.as_str()).map(str::to_string);
                Ok(Some(Sample { id: r.id.clone(), ids, mask, truncated, asked, answer, fix_of }))
            })
            .collect();
        let mut samples = Vec::with_capacity(results.len());
        let mut dropped = 0;
        for r in results {
            match r.map_err(StageError::msg)? {
                Some(s) => samples.push(s),
                None => dropped += 1,
            }
        }
        let (val, train): (Vec<&Sample>, Vec<&Sample>) =
            samples.iter().partition(|s| config.split.validation > 0.0 && pack::unit(&s.id, config.split.seed) < config.split.validation);
        let manifest = json!({
            "tokenizer": {"digest": tok.digest, "vocab_size": tok.tokenizer.get_vocab_size(true), "bos_id": bos, "eos_id": eos},
            "template": config.chat_template.as_ref().map_or_else(|| json!(config.template), |_| json!("custom")),
            "max_tokens": max,
            "packing": config.packing,
            "dropped": dropped,
        });
        let t = write_split(&ctx.output_dir("train")?, &train, config, &tok, manifest.clone())?;
        let v = write_split(&ctx.output_dir("validation")?, &val, config, &tok, manifest)?;
        let mut metrics = BTreeMap::new();
        metrics.insert("train_samples".into(), t["samples"].clone());
        metrics.insert("validation_samples".into(), v["samples"].clone());
        metrics.insert("train_tokens".into(), t["tokens"].clone());
        metrics.insert("truncated".into(), json!(t["truncated"].as_u64().unwrap_or(0) + v["truncated"].as_u64().unwrap_or(0)));
        metrics.insert("dropped".into(), json!(dropped));
        let mut warnings = Vec::new();
        if train.len() < 50 {
            warnings.push(format!("only {} training samples: dozens are a minimum and thousands give stable effects", train.len()));
        }
        if dropped > 0 {
            warnings.push(format!("{dropped} records dropped (over max_tokens with `truncation: drop`, or nothing left to learn after truncation)"));
        }
        Ok(StageOutcome { metrics, warnings, check: None })
    }

    fn report(_output: &OutputDecl, dir: &Path) -> Option<String> {
        Some(tailor_report::tokenized(dir))
    }

    fn show(_output: &OutputDecl, dir: &Path, w: &mut dyn Write, limit: usize) -> std::io::Result<bool> {
        crate::show::tokenized(dir, w, limit)
    }
}
