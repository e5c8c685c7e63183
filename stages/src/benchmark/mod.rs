//! `benchmark`: what fine-tuning did to a model's general ability, next to
//! what the `evaluate` stage shows it gained on the task.
//!
//! Two measures, both from log-likelihoods the trainer computes
//! (lm-evaluation-harness semantics, see [`tasks`]):
//! - **multiple-choice tasks** — per item, each choice's summed
//!   log-probability after the prompt; `acc` (highest sum) and `acc_norm`
//!   (highest per character), with few-shot prompts drawn with a fixed seed;
//! - **rolling perplexity** on general text — documents longer than the
//!   model's window are scored in windows, every token once — as token,
//!   word and byte perplexity and bits per byte.
//!
//! With `compare_to: base` (or `compare_with: STAGE`) the same requests
//! are scored by the compared model in the same stage, so retention is a
//! difference in one table, and a gate can be relative
//! (`acc: ">= base - 0.02"`).
//!
//! Output `results` (kind `benchmark`): `metrics.json` (per variant;
//! standard errors; item counts) and `items.jsonl` (per item and variant:
//! each choice's log-probability, the picks, correct or not).

pub mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tailor_engine::{ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};
use tailor_metric::loglik::{Rolling, choose, mean_stderr, windows};
use tailor_protocol::job::{InferJob, Loglik, LoglikRequest};

use crate::compare::{CompareTo, Corpus};
use crate::train::settings::{Device, Dtype};

/// Configuration of a `benchmark` stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkConfig {
    /// The model: a `train` or `retrain` stage.
    pub model: String,
    /// Also score the base model the tuned one came from.
    pub compare_to: Option<CompareTo>,
    /// Or compare with another `train`/`retrain` result (named `before`).
    pub compare_with: Option<String>,
    /// Multiple-choice tasks.
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
    /// Text corpora for rolling perplexity.
    #[serde(default)]
    pub perplexity: Vec<CorpusConfig>,
    /// Thresholds on the tuned model's metrics (`acc: ">= base - 0.02"`,
    /// `general_bits_per_byte: "<= base + 0.05"`).
    #[serde(default)]
    pub gate: BTreeMap<String, String>,
    /// Score only the first N items of each task (few-shot examples still
    /// come from the whole file) and documents of each corpus.
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

/// A multiple-choice task (see the format in [`tasks`]).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Name in the metrics (`NAME_acc`, `NAME_acc_norm`): lower-case
    /// letters, digits, `_` and `-`.
    pub name: String,
    /// JSON-lines file of items (`context`, `choices`, `gold`), relative to
    /// the pipeline file.
    pub path: PathBuf,
    /// Solved examples from the same file before each item.
    #[serde(default)]
    pub num_fewshot: usize,
    /// Seed of the few-shot draw.
    #[serde(default = "default_seed")]
    pub fewshot_seed: u64,
    /// Between a context and its choice.
    #[serde(default = "default_target_delimiter")]
    pub target_delimiter: String,
    /// Between few-shot examples.
    #[serde(default = "default_fewshot_delimiter")]
    pub fewshot_delimiter: String,
    /// Text before the examples (an instruction).
    #[serde(default)]
    pub description: String,
}

/// A text corpus for rolling perplexity.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorpusConfig {
    /// Name in the metrics (`NAME_perplexity`, `NAME_bits_per_byte`, …).
    pub name: String,
    /// A `.txt` file (one document) or JSON lines with `text`, relative to
    /// the pipeline file.
    pub path: PathBuf,
    /// Input tokens per window (default: the model's context, at most 2048).
    pub window: Option<usize>,
    /// New tokens predicted per window after the first (default: the
    /// window, as lm-evaluation-harness; smaller gives more context).
    pub stride: Option<usize>,
}

fn default_seed() -> u64 {
    1234
}
fn default_target_delimiter() -> String {
    " ".into()
}
fn default_fewshot_delimiter() -> String {
    "\n\n".into()
}

/// Longest default window for rolling perplexity.
const MAX_DEFAULT_WINDOW: usize = 2048;

impl BenchmarkConfig {
    /// The metric names this stage reports, in order.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if !self.tasks.is_empty() {
            names.extend(["acc".to_string(), "acc_norm".to_string()]);
        }
        for t in &self.tasks {
            names.extend([format!("{}_acc", t.name), format!("{}_acc_norm", t.name)]);
        }
        if !self.perplexity.is_empty() {
            names.push("bits_per_byte".into());
        }
        for c in &self.perplexity {
            for (m, _) in Rolling::default().metrics() {
                names.push(format!("{}_{m}", c.name));
            }
        }
        names
    }
}

/// The `benchmark` stage kind.
pub struct Benchmark;

impl Stage for Benchmark {
    type Config = BenchmarkConfig;
    const KIND: &'static str = "benchmark";
    const VERSION: u32 = 1;
    const IMPLEMENTATION: &'static str = crate::identity::BENCHMARK;
    const ABOUT: &'static str = "Measure general ability (and its retention against the base): multiple-choice log-likelihood tasks and rolling perplexity.";
    const OUTPUTS: &'static [OutputDecl] = &[OutputDecl { name: "results", kind: "benchmark", about: "metrics.json, items.jsonl" }];

    fn spec(config: &BenchmarkConfig, _root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if config.tasks.is_empty() && config.perplexity.is_empty() {
            issues.push(ConfigIssue::new("/tasks", "nothing to measure").help("list multiple-choice `tasks:` or `perplexity:` corpora (or both)"));
        }
        let mut seen = std::collections::BTreeSet::new();
        let named = config.tasks.iter().map(|t| ("tasks", &t.name)).chain(config.perplexity.iter().map(|c| ("perplexity", &c.name)));
        for (i, (list, name)) in named.enumerate() {
            let at = if list == "tasks" { i } else { i - config.tasks.len() };
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            if !ok {
                issues.push(
                    ConfigIssue::new(format!("/{list}/{at}/name"), format!("{name:?} is not a usable name"))
                        .help("use lower-case letters, digits, `_` and `-`, e.g. `cloze-en`"),
                );
            } else if !seen.insert(name.clone()) {
                issues.push(
                    ConfigIssue::new(format!("/{list}/{at}/name"), format!("the name {name:?} is used twice")).help("give every task and corpus its own name"),
                );
            }
        }
        for (i, c) in config.perplexity.iter().enumerate() {
            if c.window == Some(0) || c.stride == Some(0) {
                issues.push(ConfigIssue::new(format!("/perplexity/{i}"), "`window` and `stride` must be at least 1"));
            }
            if let (Some(w), Some(s)) = (c.window, c.stride)
                && s > w
            {
                issues.push(
                    ConfigIssue::new(format!("/perplexity/{i}/stride"), format!("the stride {s} is longer than the window {w}"))
                        .help("a stride is at most the window"),
                );
            }
        }
        issues.extend(crate::compare::issues(config.compare_to, config.compare_with.as_deref(), &config.gate, &config.metric_names()));
        if !issues.is_empty() {
            return Err(issues);
        }
        let mut inputs = vec![InputDecl { role: "model".into(), reference: config.model.clone(), pointer: "/model".into(), accepts: vec!["model"] }];
        if let Some(other) = &config.compare_with {
            inputs.push(InputDecl { role: "before".into(), reference: other.clone(), pointer: "/compare_with".into(), accepts: vec!["model"] });
        }
        let files = config
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| FileDecl { path: t.path.clone(), pointer: format!("/tasks/{i}/path") })
            .chain(config.perplexity.iter().enumerate().map(|(i, c)| FileDecl { path: c.path.clone(), pointer: format!("/perplexity/{i}/path") }))
            .collect();
        let (env, resources) = crate::compare::inference(config.device, config.dtype, config.threads);
        Ok(StageSpec { inputs, files, env, resources })
    }

    fn run(config: &BenchmarkConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let model = ctx.input("model")?.dir.clone();
        let out = ctx.output_dir("results")?;
        let base_path = crate::files::read_record::<crate::train::BaseRecord>(&model, "base.json")?.path;
        let base_dir = crate::train::base::materialize(&base_path, ctx.root, &out.with_file_name("import"))?;
        let tok = tailor_model::tokenizer::load(&base_dir).map_err(StageError::msg)?;
        let prefix = tok
            .id(tok.config.bos_token.as_deref())
            .or_else(|| tok.id(tok.config.eos_token.as_deref()))
            .ok_or_else(|| StageError::msg(format!("{}: the tokenizer names no BOS or EOS token to begin documents with", tok.path.display())))?;
        let model_window = model_window(&base_dir)?;

        // Requests: every choice of every item, every window of every document.
        let mut requests: Vec<LoglikRequest> = Vec::new();
        let mut task_items = Vec::new();
        for t in &config.tasks {
            let items = tasks::read_items(&ctx.root.join(&t.path)).map_err(StageError::msg)?;
            let scored = config.limit.map_or(items.len(), |l| l.min(items.len()));
            let p = tasks::Prompting {
                description: t.description.clone(),
                num_fewshot: t.num_fewshot,
                seed: t.fewshot_seed,
                target_delimiter: t.target_delimiter.clone(),
                fewshot_delimiter: t.fewshot_delimiter.clone(),
            };
            requests.extend(tasks::requests(&t.name, &items, scored, &p, &tok.tokenizer, prefix).map_err(StageError::msg)?);
            task_items.push(items.into_iter().take(scored).collect::<Vec<_>>());
        }
        let mut corpus_docs = Vec::new();
        for c in &config.perplexity {
            let window = c.window.unwrap_or(model_window.min(MAX_DEFAULT_WINDOW));
            if window > model_window {
                return Err(StageError::msg(format!(
                    "perplexity corpus {}: window {window} is longer than the model's context ({model_window} tokens)",
                    c.name
                )));
            }
            let docs = tasks::read_documents(&ctx.root.join(&c.path), config.limit).map_err(StageError::msg)?;
            let mut counts = Vec::new();
            for (d, text) in docs.iter().enumerate() {
                let ids = tok.tokenizer.encode(text.as_str(), false).map_err(|e| StageError::msg(format!("corpus {}: tokenizing: {e}", c.name)))?;
                let s: Vec<u32> = std::iter::once(prefix).chain(ids.get_ids().iter().copied()).collect();
                for (k, w) in windows(s.len() - 1, window, c.stride.unwrap_or(window)).into_iter().enumerate() {
                    requests.push(LoglikRequest {
                        id: format!("{}/{d}/{k}", c.name),
                        context: s[w.start..w.first].to_vec(),
                        continuation: s[w.first..w.end].to_vec(),
                    });
                }
                counts.push(s.len() - 1);
            }
            corpus_docs.push((docs, counts));
        }

        let work = out.with_file_name("work");
        std::fs::create_dir_all(&work).ctx(|| "creating a work directory".into())?;
        let req_file = work.join("requests.jsonl");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&req_file).ctx(|| "requests.jsonl".into())?);
        for r in &requests {
            let line = serde_json::to_string(r).map_err(|e| StageError::msg(format!("requests.jsonl: {e}")))?;
            writeln!(w, "{line}").ctx(|| "requests.jsonl".into())?;
        }
        w.flush().ctx(|| "requests.jsonl".into())?;
        drop(w);
        let other = crate::compare::compared(config.compare_to, config.compare_with.as_deref());
        let variants = crate::compare::variants(ctx, other, &model, &base_dir)?;
        let names: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
        let job = InferJob {
            variants,
            dtype: config.dtype,
            device: config.device,
            threads: Some(crate::numerics::threads(config.threads)),
            score: None,
            prompts: None,
            loglikelihood: Some(req_file),
            eos: vec![],
            decoding: Default::default(),
            out: work.clone(),
        };
        crate::runner::run(ctx, &job, &work.join("job.json"))?;
        let text = std::fs::read_to_string(work.join("loglikelihood.jsonl")).ctx(|| "reading the trainer's loglikelihood.jsonl".into())?;
        let mut scored: HashMap<(String, String), Loglik> = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let s: Loglik = serde_json::from_str(l).map_err(|e| StageError::msg(format!("loglikelihood.jsonl:{}: {e}", i + 1)))?;
            scored.insert((s.variant.clone(), s.id.clone()), s);
        }
        let get = |v: &str, id: &str| {
            scored.get(&(v.to_string(), id.to_string())).ok_or_else(|| StageError::msg(format!("the trainer returned no score for {id} ({v})")))
        };

        let mut corpus: Corpus = BTreeMap::new();
        let mut stderr: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let mut lines = Vec::new();
        for v in &names {
            let m = corpus.entry(v.clone()).or_default();
            let se = stderr.entry(v.clone()).or_default();
            let (mut all, mut all_norm) = (Vec::new(), Vec::new());
            for (t, items) in config.tasks.iter().zip(&task_items) {
                let (mut hits, mut hits_norm) = (Vec::new(), Vec::new());
                for item in items {
                    let lps: Vec<f64> =
                        (0..item.choices.len()).map(|c| get(v, &tasks::request_id(&t.name, &item.id, c)).map(|s| s.logprob)).collect::<Result<_, _>>()?;
                    let choices: Vec<&str> = item.choices.iter().map(String::as_str).collect();
                    let (pick, pick_norm) = choose(&lps, &choices).unwrap_or((0, 0));
                    hits.push(pick == item.gold);
                    hits_norm.push(pick_norm == item.gold);
                    lines.push(json!({"variant": v, "task": t.name, "id": item.id, "gold": item.gold, "pick": pick, "pick_norm": pick_norm, "correct": pick == item.gold, "logprobs": lps}));
                }
                let (acc, acc_se) = mean_stderr(&hits);
                let (norm, norm_se) = mean_stderr(&hits_norm);
                m.insert(format!("{}_acc", t.name), acc);
                m.insert(format!("{}_acc_norm", t.name), norm);
                se.insert(format!("{}_acc", t.name), acc_se);
                se.insert(format!("{}_acc_norm", t.name), norm_se);
                all.extend(hits);
                all_norm.extend(hits_norm);
            }
            if !config.tasks.is_empty() {
                let ((acc, acc_se), (norm, norm_se)) = (mean_stderr(&all), mean_stderr(&all_norm));
                m.insert("acc".into(), acc);
                m.insert("acc_norm".into(), norm);
                se.insert("acc".into(), acc_se);
                se.insert("acc_norm".into(), norm_se);
            }
            let mut pooled = Rolling::default();
            for (c, (docs, counts)) in config.perplexity.iter().zip(&corpus_docs) {
                let mut r = Rolling::default();
                for (d, (text, &n)) in docs.iter().zip(counts).enumerate() {
                    let (mut lp, mut k) = (0.0, 0);
                    while let Some(s) = scored.get(&(v.clone(), format!("{}/{d}/{k}", c.name))) {
                        lp += s.logprob;
                        k += 1;
                    }
                    if k == 0 && n > 0 {
                        return Err(StageError::msg(format!("the trainer returned no score for document {d} of {} ({v})", c.name)));
                    }
                    r.add(text, lp, n);
                    pooled.add(text, lp, n);
                }
                for (name, value) in r.metrics() {
                    m.insert(format!("{}_{name}", c.name), value);
                }
            }
            if !config.perplexity.is_empty() {
                m.extend(pooled.metrics().into_iter().filter(|(n, _)| *n == "bits_per_byte").map(|(n, x)| (n.to_string(), x)));
            }
        }
        let items: BTreeMap<&str, usize> = config.tasks.iter().zip(&task_items).map(|(t, i)| (t.name.as_str(), i.len())).collect();
        let documents: BTreeMap<&str, usize> = config.perplexity.iter().zip(&corpus_docs).map(|(c, d)| (c.name.as_str(), d.0.len())).collect();
        crate::files::write_json(
            &out.join("metrics.json"),
            &json!({"variants": corpus, "compared": other, "stderr": stderr, "items": items, "documents": documents, "requests": requests.len()}),
        )?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(out.join("items.jsonl")).ctx(|| "items.jsonl".into())?);
        for l in &lines {
            writeln!(w, "{l}").ctx(|| "items.jsonl".into())?;
        }
        w.flush().ctx(|| "items.jsonl".into())?;
        let check = crate::compare::check(&config.gate, &corpus, other)?;
        Ok(StageOutcome { metrics: crate::compare::lock_metrics(&corpus, other), warnings: vec![], check })
    }

    fn report(_output: &OutputDecl, dir: &Path) -> Option<String> {
        Some(tailor_report::benchmark(dir))
    }

    fn show(_output: &OutputDecl, dir: &Path, w: &mut dyn Write, limit: usize) -> std::io::Result<bool> {
        crate::show::benchmark(dir, w, limit)
    }
}

/// The model's context length (`max_position_embeddings`; 2048 when the
/// config does not say).
fn model_window(dir: &Path) -> Result<usize, StageError> {
    let p: PathBuf = dir.join("config.json");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).ctx(|| format!("reading {}", p.display()))?).map_err(|e| StageError::msg(format!("{}: {e}", p.display())))?;
    Ok(v["max_position_embeddings"].as_u64().map_or(MAX_DEFAULT_WINDOW, |n| n as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names a gate may use are the names the run writes (the run's
    /// side is asserted with the same list in tests/benchmark.rs).
    #[test]
    fn gateable_names_are_the_measured_ones() {
        let config: BenchmarkConfig = serde_json::from_value(json!({
            "model": "tuned",
            "tasks": [{"name": "sums", "path": "a"}, {"name": "kana", "path": "b"}],
            "perplexity": [{"name": "prose", "path": "c"}],
        }))
        .unwrap();
        let names: std::collections::BTreeSet<String> = config.metric_names().into_iter().collect();
        let expected: std::collections::BTreeSet<String> = [
            "acc",
            "acc_norm",
            "sums_acc",
            "sums_acc_norm",
            "kana_acc",
            "kana_acc_norm",
            "bits_per_byte",
            "prose_perplexity",
            "prose_word_perplexity",
            "prose_byte_perplexity",
            "prose_bits_per_byte",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(names, expected);
    }
}
