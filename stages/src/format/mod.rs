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
mod split;
pub mod template;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tailor_engine::{ConfigIssue, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use crate::stream;
use tailor_model::tokenizer::{self, TokenizerFiles};
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
pub(crate) struct Sample {
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
        let manifest = json!({
            "tokenizer": {"digest": tok.digest, "vocab_size": tok.tokenizer.get_vocab_size(true), "bos_id": bos, "eos_id": eos},
            "template": config.chat_template.as_ref().map_or_else(|| json!(config.template), |_| json!("custom")),
            "max_tokens": config.max_tokens,
            "packing": config.packing,
        });
        let scratch = ctx.state_dir()?.join("format");
        std::fs::create_dir_all(&scratch).ctx(|| format!("creating {}", scratch.display()))?;
        let mut train = split::SplitWriter::new(&ctx.output_dir("train")?, &scratch)?;
        let mut val = split::SplitWriter::new(&ctx.output_dir("validation")?, &scratch)?;
        ctx.progress().set_length(std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0));
        ctx.progress().set_message("tokenizing");
        let bar = ctx.progress().clone();
        let max = config.max_tokens;
        let mut dropped = 0;
        // Records stream through a chunk at a time; samples are written as
        // they come, in input order, each to its split.
        let mut failed: Option<StageError> = None;
        stream::for_each_chunk(&input, |records, locs| {
            let results: Vec<Result<Option<Sample>, String>> = records
                .par_iter()
                .map(|r| {
                    let rendered = match &jinja {
                        Some(j) => j.render(&r.body, config.system.as_deref()).map_err(|e| format!("record {}: {e}", r.id))?,
                        None => template::render(config.template, &r.body, config.system.as_deref()),
                    };
                    let (mut ids, mut mask) = encode(&tok, &rendered, bos, eos).map_err(|e| format!("record {}: {e}", r.id))?;
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
            for r in results {
                match r? {
                    Some(s) => {
                        let held_out = config.split.validation > 0.0 && pack::unit(&s.id, config.split.seed) < config.split.validation;
                        let w = if held_out { &mut val } else { &mut train };
                        if let Err(e) = w.push(&s) {
                            failed = Some(e);
                            return Err(String::new());
                        }
                    }
                    None => dropped += 1,
                }
            }
            bar.inc(locs.iter().map(|l| u64::from(l.len) + 1).sum());
            Ok(())
        })
        .map_err(|e| failed.take().unwrap_or_else(|| StageError::msg(e)))?;
        let (train_n, manifest) = (train.len(), {
            let mut m = manifest;
            m["dropped"] = json!(dropped);
            m
        });
        let t = train.finish(config, &tok, manifest.clone())?;
        let v = val.finish(config, &tok, manifest)?;
        let _ = std::fs::remove_dir_all(&scratch);
        let mut metrics = BTreeMap::new();
        metrics.insert("train_samples".into(), t["samples"].clone());
        metrics.insert("validation_samples".into(), v["samples"].clone());
        metrics.insert("train_tokens".into(), t["tokens"].clone());
        metrics.insert("truncated".into(), json!(t["truncated"].as_u64().unwrap_or(0) + v["truncated"].as_u64().unwrap_or(0)));
        metrics.insert("dropped".into(), json!(dropped));
        let mut warnings = Vec::new();
        if train_n < 50 {
            warnings.push(format!("only {train_n} training samples: dozens are a minimum and thousands give stable effects"));
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
