//! `evaluate`: measure a trained model on a tokenized split — the
//! validation split, or any records run through a `format` stage — and,
//! with `compare_to: base`, the base model it was trained from, in the same
//! stage and on the same prompts, so the effect of fine-tuning is measured,
//! not assumed.
//!
//! The loss and perplexity come from scoring the split; everything else
//! from decoding the prompts (greedy or sampled, with a key-value cache)
//! in the `tailor-train` binary, then comparing outputs with references
//! here (see [`crate::metric`]). A `gate` (`exact_match: ">= 0.8"`) becomes
//! the stage's check: when the tuned model falls short, the stage keeps its
//! results but its dependents do not run — or, inside a `rounds` loop,
//! another round follows.
//!
//! Output `results` (kind `evaluation`): `metrics.json` (per variant, and
//! the gate), `results.jsonl` (per sample and variant: prompt, reference,
//! output, each metric, pass), `review.csv` and `review.html` (worst cases
//! first, for a human check whose fixes come back as a JSONL source).

pub mod cases;
pub mod review;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tailor_engine::{ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use crate::compare::CompareTo;
use crate::train::settings::{Decoding, Device, Dtype};
use tailor_metric::{self as metric, MetricCfg};
use tailor_protocol::job::{Generation, InferJob, Prompt, Scored};

/// Configuration of an `evaluate` stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    /// The model: a `train` or `retrain` stage.
    pub model: String,
    /// Tokenized data: `formatted.validation`, or the `train` output of a
    /// `format` stage over any records.
    pub data: String,
    /// What to measure.
    #[serde(default = "default_metrics")]
    pub metrics: Vec<MetricCfg>,
    /// Also evaluate the base model the tuned one came from.
    pub compare_to: Option<CompareTo>,
    /// Or compare with another `train`/`retrain` result (say, the model
    /// before a retrain), on the same prompts.
    pub compare_with: Option<String>,
    /// How to decode.
    #[serde(default)]
    pub generate: Decoding,
    /// Thresholds on the tuned model's metrics (`exact_match: ">= 0.8"`),
    /// absolute or relative to the compared model (`exact_match: ">= base -
    /// 0.02"` with `compare_to: base`; `before` with `compare_with`).
    #[serde(default)]
    pub gate: BTreeMap<String, String>,
    /// Evaluate only the first N samples.
    pub limit: Option<usize>,
    /// Floating-point kind of weights and computation.
    #[serde(default)]
    pub dtype: Dtype,
    /// Where to run.
    #[serde(default)]
    pub device: Device,
    /// CPU threads for libtorch (default: all).
    pub threads: Option<usize>,
}

fn default_metrics() -> Vec<MetricCfg> {
    vec![MetricCfg::Loss, MetricCfg::ExactMatch, MetricCfg::Chrf]
}
/// The `evaluate` stage kind.
pub struct Evaluate;

fn read_lines<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Vec<T>, StageError> {
    std::fs::read_to_string(p)
        .ctx(|| format!("reading {}", p.display()))?
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| StageError::msg(format!("{}:{}: {e}", p.display(), i + 1))))
        .collect()
}

/// The name of the comparison variant, if any.
fn compared(config: &EvaluateConfig) -> Option<&'static str> {
    crate::compare::compared(config.compare_to, config.compare_with.as_deref())
}

/// Token ids that end a reply: the tokenizer's EOS and the usual end-of-turn tokens.
fn eos_ids(model_dir: &Path) -> Result<Vec<u32>, StageError> {
    let tok = tailor_model::tokenizer::load(model_dir).map_err(StageError::msg)?;
    let mut ids: Vec<u32> =
        ["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end_of_text|>"].iter().filter_map(|t| tok.tokenizer.token_to_id(t)).collect();
    ids.extend(tok.id(tok.config.eos_token.as_deref()));
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Stage for Evaluate {
    type Config = EvaluateConfig;
    const KIND: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const IMPLEMENTATION: &'static str = crate::identity::EVALUATE;
    const ABOUT: &'static str = "Measure a trained model (and its base) on tokenized data: loss, generation metrics, a gate, review files.";
    const OUTPUTS: &'static [OutputDecl] = &[OutputDecl { name: "results", kind: "evaluation", about: "metrics.json, results.jsonl, review.csv, review.html" }];

    fn spec(config: &EvaluateConfig, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let (files, schemas) = metric::schema_files(&config.metrics, root);
        for (i, e) in &schemas {
            issues.push(ConfigIssue::new(format!("/metrics/{i}"), e.clone()));
        }
        if schemas.is_empty()
            && let Err(e) = metric::Scorer::new(&config.metrics, root)
        {
            issues.push(ConfigIssue::new(format!("/metrics/{}", e.index()), String::from(e)));
        }
        issues.extend(crate::compare::issues(config.compare_to, config.compare_with.as_deref(), &config.gate, &metric::names(&config.metrics)));
        if !issues.is_empty() {
            return Err(issues);
        }
        let mut inputs = vec![
            InputDecl { role: "model".into(), reference: config.model.clone(), pointer: "/model".into(), accepts: vec!["model"] },
            InputDecl { role: "data".into(), reference: config.data.clone(), pointer: "/data".into(), accepts: vec!["tokenized"] },
        ];
        if let Some(other) = &config.compare_with {
            inputs.push(InputDecl { role: "before".into(), reference: other.clone(), pointer: "/compare_with".into(), accepts: vec!["model"] });
        }
        let files = files.into_iter().map(|(i, p)| FileDecl { path: p, pointer: format!("/metrics/{i}") }).collect();
        let (env, resources) = crate::compare::inference(config.device, config.dtype, config.threads);
        Ok(StageSpec { inputs, files, env, resources })
    }

    fn run(config: &EvaluateConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let model = ctx.input("model")?.dir.clone();
        let data = ctx.input("data")?.dir.clone();
        let out = ctx.output_dir("results")?;
        let base_path = crate::files::read_record::<crate::train::BaseRecord>(&model, "base.json")?.path;
        let base_dir = crate::train::base::materialize(&base_path, ctx.root, &out.with_file_name("import"))?;
        crate::train::check_tokenizer(&data, &base_dir, &base_path)?;
        let cases = cases::read(&data, config.limit).map_err(StageError::msg)?;
        if cases.is_empty() {
            return Err(StageError::msg("the data has no samples to evaluate (an empty validation split? set `split: {validation: 0.1}` in the format stage)"));
        }
        let work = out.with_file_name("work");
        std::fs::create_dir_all(&work).ctx(|| "creating a work directory".into())?;
        let mut prompts = std::io::BufWriter::new(std::fs::File::create(work.join("prompts.jsonl")).ctx(|| "prompts.jsonl".into())?);
        for c in &cases {
            let line =
                serde_json::to_string(&Prompt { id: c.id.clone(), ids: c.prompt_ids.clone() }).map_err(|e| StageError::msg(format!("prompts.jsonl: {e}")))?;
            writeln!(prompts, "{line}").ctx(|| "prompts.jsonl".into())?;
        }
        prompts.flush().ctx(|| "prompts.jsonl".into())?;
        let wants_loss = config.metrics.iter().any(|m| matches!(m, MetricCfg::Loss));
        let wants_text = config.metrics.iter().any(|m| !matches!(m, MetricCfg::Loss));
        let variants = crate::compare::variants(ctx, compared(config), &model, &base_dir)?;
        let job = InferJob {
            variants,
            dtype: config.dtype,
            device: config.device,
            threads: Some(crate::numerics::threads(config.threads)),
            score: wants_loss.then(|| data.clone()),
            prompts: wants_text.then(|| work.join("prompts.jsonl")),
            loglikelihood: None,
            eos: eos_ids(&base_dir)?,
            decoding: config.generate.clone(),
            out: work.clone(),
        };
        crate::runner::run(ctx, &job, &work.join("job.json"))?;
        let scorer = metric::Scorer::new(&config.metrics, ctx.root).map_err(|e| StageError::msg(String::from(e)))?;
        let generations: Vec<Generation> = read_lines(&work.join("generations.jsonl"))?;
        let losses: Vec<Scored> = read_lines(&work.join("losses.jsonl"))?;
        let other = compared(config);
        let report = score(&scorer, &cases, &generations, &losses, other);
        write_results(&out, ctx.name, &report, other)?;
        let check = crate::compare::check(&config.gate, &report.corpus, other)?;
        let metrics = crate::compare::lock_metrics(&report.corpus, other);
        Ok(StageOutcome { metrics, warnings: vec![], check })
    }

    fn report(_output: &OutputDecl, dir: &Path) -> Option<String> {
        Some(tailor_report::evaluation(dir))
    }

    fn show(_output: &OutputDecl, dir: &Path, w: &mut dyn Write, limit: usize) -> std::io::Result<bool> {
        crate::show::evaluation(dir, w, limit)
    }
}

/// Scored outputs of an evaluation.
pub struct Report {
    /// Corpus metrics per variant (`tuned`, `base`).
    pub corpus: BTreeMap<String, BTreeMap<String, f64>>,
    /// Per-sample results, one line per case and variant.
    pub samples: Vec<Value>,
    /// Review rows, worst first.
    pub review: Vec<review::Row>,
}

fn score(scorer: &metric::Scorer, cases: &[cases::Case], generations: &[Generation], losses: &[Scored], other: Option<&str>) -> Report {
    let mut corpus = BTreeMap::new();
    let mut samples = Vec::new();
    let mut by_variant: BTreeMap<String, BTreeMap<String, (String, metric::Scored)>> = BTreeMap::new();
    let variants: Vec<&str> = other.into_iter().chain(["tuned"]).collect();
    for v in &variants {
        let outs: BTreeMap<&str, &Generation> = generations.iter().filter(|g| g.variant == *v).map(|g| (g.id.as_str(), g)).collect();
        for c in cases {
            // No generation for a case only when no text metric was asked for.
            let output = outs.get(c.id.as_str()).map(|g| g.text.clone()).unwrap_or_default();
            let s = scorer.score(&output, Some(&c.reference));
            samples.push(json!({"variant": v, "id": c.id, "prompt": c.prompt, "reference": c.reference, "output": output, "finish": outs.get(c.id.as_str()).map(|g| g.finish.as_str()), "metrics": s.values, "pass": s.pass}));
            by_variant.entry(v.to_string()).or_default().insert(c.id.clone(), (output, s));
        }
        let scored: Vec<&metric::Scored> = cases.iter().filter_map(|c| by_variant[*v].get(&c.id).map(|(_, s)| s)).collect();
        let mut m = if generations.is_empty() { BTreeMap::new() } else { scorer.corpus(scored) };
        let (nll, n) = losses.iter().filter(|l| l.variant == *v).fold((0.0, 0i64), |(a, b), l| (a + l.nll, b + l.targets));
        if n > 0 {
            m.insert("loss".into(), nll / n as f64);
            m.insert("perplexity".into(), (nll / n as f64).exp());
        }
        corpus.insert(v.to_string(), m);
    }
    let tuned = by_variant.remove("tuned").unwrap_or_default();
    let base = other.and_then(|o| by_variant.remove(o));
    let mut review: Vec<review::Row> = cases
        .iter()
        .filter_map(|c| {
            let (output, s) = tuned.get(&c.id)?;
            Some(review::Row {
                id: c.id.clone(),
                prompt: c.prompt.clone(),
                reference: c.reference.clone(),
                output: output.clone(),
                base_output: base.as_ref().and_then(|b| b.get(&c.id)).map(|(o, _)| o.clone()),
                pass: s.pass,
                metrics: json!(s.values),
            })
        })
        .collect();
    // Worst first: failures, then by the similarity to the reference.
    let sim = |r: &review::Row| r.metrics["chrf"].as_f64().or_else(|| r.metrics["rouge_l"].as_f64()).unwrap_or(0.0);
    review.sort_by(|a, b| a.pass.cmp(&b.pass).then(sim(a).total_cmp(&sim(b))).then(a.id.cmp(&b.id)));
    Report { corpus, samples, review }
}

fn write_results(out: &Path, name: &str, r: &Report, other: Option<&str>) -> Result<(), StageError> {
    crate::files::write_json(&out.join("metrics.json"), &json!({"variants": r.corpus, "compared": other, "samples": r.review.len()}))?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out.join("results.jsonl")).ctx(|| "results.jsonl".into())?);
    for s in &r.samples {
        writeln!(w, "{s}").ctx(|| "results.jsonl".into())?;
    }
    w.flush().ctx(|| "results.jsonl".into())?;
    review::write(out, name, &r.review)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(extra: Value) -> Vec<String> {
        let mut cfg = serde_json::json!({"model": "tuned", "data": "formatted.validation", "metrics": ["exact_match"]});
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let config: EvaluateConfig = serde_json::from_value(cfg).unwrap();
        match Evaluate::spec(&config, Path::new(".")) {
            Ok(_) => vec![],
            Err(issues) => issues.iter().map(|i| format!("{i:?}")).collect(),
        }
    }

    #[test]
    fn relative_gates_need_the_model_they_name() {
        assert!(issues(serde_json::json!({"compare_to": "base", "gate": {"exact_match": ">= base - 0.02"}})).is_empty());
        assert!(issues(serde_json::json!({"compare_with": "old", "gate": {"exact_match": ">= before"}})).is_empty());
        let got = issues(serde_json::json!({"gate": {"exact_match": ">= base - 0.02"}}));
        assert!(got.iter().any(|i| i.contains("relative to `base`") && i.contains("compare_to: base")), "{got:?}");
        let got = issues(serde_json::json!({"compare_to": "base", "gate": {"exact_match": ">= before"}}));
        assert!(got.iter().any(|i| i.contains("relative to `before`")), "{got:?}");
        let got = issues(serde_json::json!({"compare_to": "base", "gate": {"exact_match": ">= basis"}}));
        assert!(got.iter().any(|i| i.contains("is not a threshold")), "{got:?}");
    }
}
