//! Evaluation metrics: what an `evaluate` stage measures on model outputs.
//!
//! Design: the user lists metrics ([`MetricCfg`]) in the pipeline file;
//! [`Scorer::compile`] turns the list into checks once (regexes and JSON
//! Schemas compiled, errors returned as [`MetricError`], never a panic);
//! [`Scorer::score`] scores one output (and its reference, if any) into a
//! [`Scored`]; [`Scorer::corpus`] aggregates many; [`gate`] compares corpus
//! values with thresholds. Everything is pure Rust with no I/O except the
//! convenience loaders [`Scorer::new`] and [`schema_files`], which read
//! schema files relative to the project root.
//!
//! Conventions:
//!
//! * **Values.** Pass/fail metrics are `1.0` (pass) or `0.0` (fail) per
//!   sample and their mean (the pass rate) per corpus. Similarities (`chrf`,
//!   `rouge_l`) are **0–1** everywhere — sacrebleu prints chrF × 100. Lengths
//!   are counts; the ratio is a plain ratio.
//! * **Names.** Each metric's value is keyed by its name ([`MetricCfg::name`]);
//!   a parameterised metric listed again (a second `regex`) gets `_2`, `_3`,
//!   …; listing a parameterless metric twice is an error. `length` yields
//!   `length_chars`, `length_tokens` and `length_ratio` per sample and
//!   `length_{chars,tokens}_{mean,median,p90,max}` and `length_ratio` per
//!   corpus. Every corpus also has `n` (samples), `passed` and `pass_rate`.
//! * **References.** `exact_match`, `contains`, `chrf`, `rouge_l` and
//!   `length_ratio` need a reference; without one they are skipped (absent
//!   from the sample's values, and left out of the corpus means).
//! * **Pass rule.** A sample passes when every pass/fail metric that was
//!   scored for it (`exact_match`, `contains`, `regex`, `json_valid`,
//!   `json_schema`, `register`) passed. Similarities and lengths never fail
//!   a sample; with no pass/fail metric every sample passes.
//! * **Loss.** `loss` (and the perplexity `exp(loss)`) comes from scoring the
//!   split with the model, not from outputs: the evaluate stage computes it
//!   and adds `loss` and `perplexity` to the corpus values. The scorer
//!   ignores the variant.
//! * **Corpus values.** Pass/fail metrics and `rouge_l` are means over the
//!   samples that have them; `chrf` is the corpus chrF from n-gram
//!   statistics summed over all samples (as sacrebleu's corpus score), not a
//!   mean of sentence scores.

pub mod agreement;
pub mod chrf;
pub mod gate;
pub mod loglik;
pub mod rouge;
mod score;
pub mod stats;
pub mod text;

#[cfg(test)]
mod parity;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use score::{Scored, Scorer};

use tailor_text::register::Register;

/// One metric of an `evaluate` stage. Written as a bare name (`chrf`) or,
/// with a parameter, as a one-key mapping (`regex: "^\\{.*\\}$"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricCfg {
    /// Mean cross-entropy per target token on the split, and perplexity
    /// (`loss`, `perplexity`); computed by scoring with the model, not from
    /// generated outputs.
    Loss,
    /// The output equals the reference after NFKC, trimming and collapsing
    /// whitespace (1 or 0 per sample).
    ExactMatch,
    /// The normalized reference occurs in the normalized output (1 or 0).
    Contains,
    /// The trimmed output matches this regular expression somewhere (anchor
    /// with `^…$` for a full match) (1 or 0).
    Regex(String),
    /// The trimmed output is one valid JSON document (1 or 0).
    JsonValid,
    /// The trimmed output is valid JSON that passes this JSON Schema file,
    /// relative to the pipeline file (1 or 0).
    JsonSchema(PathBuf),
    /// chrF (character 6-gram F-score, β = 2, as sacrebleu), 0–1; the corpus
    /// value comes from statistics summed over all samples.
    Chrf,
    /// ROUGE-L F-measure (longest common subsequence), 0–1: on words, or on
    /// characters when the reference is mostly Japanese/CJK.
    RougeL,
    /// Japanese register: every classifiable sentence ending is in the given
    /// register, and there is at least one (1 or 0).
    Register(RegisterTarget),
    /// Output length in characters and whitespace tokens, and the ratio of
    /// output to reference characters.
    Length,
}

/// The Japanese register an output should keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegisterTarget {
    /// Polite: です/ます.
    DesuMasu,
    /// Plain: だ/である.
    DaDearu,
}

impl RegisterTarget {
    /// The analyzer's register for this target.
    pub fn register(self) -> Register {
        match self {
            RegisterTarget::DesuMasu => Register::Polite,
            RegisterTarget::DaDearu => Register::Plain,
        }
    }
}

impl MetricCfg {
    /// The metric's name, as written in the pipeline file.
    pub fn name(&self) -> &'static str {
        match self {
            MetricCfg::Loss => "loss",
            MetricCfg::ExactMatch => "exact_match",
            MetricCfg::Contains => "contains",
            MetricCfg::Regex(_) => "regex",
            MetricCfg::JsonValid => "json_valid",
            MetricCfg::JsonSchema(_) => "json_schema",
            MetricCfg::Chrf => "chrf",
            MetricCfg::RougeL => "rouge_l",
            MetricCfg::Register(_) => "register",
            MetricCfg::Length => "length",
        }
    }

    /// Whether the metric takes a parameter (and may be listed more than once).
    pub fn is_parameterised(&self) -> bool {
        matches!(self, MetricCfg::Regex(_) | MetricCfg::JsonSchema(_) | MetricCfg::Register(_))
    }
}

/// Why a metric list could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// A `regex` pattern does not compile.
    #[error("metrics[{index}]: /{pattern}/ is not a valid regular expression: {message}")]
    Regex {
        /// Position in the metric list.
        index: usize,
        /// The pattern as written.
        pattern: String,
        /// The regex engine's explanation.
        message: String,
    },
    /// A `json_schema` file cannot be read, is not JSON, or is not a schema.
    #[error("metrics[{index}]: JSON Schema {}: {message}", path.display())]
    Schema {
        /// Position in the metric list.
        index: usize,
        /// The schema path as written.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A parameterless metric is listed twice.
    #[error("metrics[{index}]: `{name}` is listed twice")]
    Duplicate {
        /// Position of the second listing.
        index: usize,
        /// The metric's name.
        name: &'static str,
    },
}

impl MetricError {
    /// Position of the offending metric in the list (for `/metrics/{i}`).
    pub fn index(&self) -> usize {
        match self {
            MetricError::Regex { index, .. } | MetricError::Schema { index, .. } | MetricError::Duplicate { index, .. } => *index,
        }
    }
}

impl From<MetricError> for String {
    fn from(e: MetricError) -> String {
        e.to_string()
    }
}

/// The value key of each metric, in list order: the name, with `_2`, `_3`,
/// … for repeated parameterised metrics; `None` for a repeated
/// parameterless one (an error for [`Scorer::compile`]).
pub(crate) fn keys(metrics: &[MetricCfg]) -> Vec<Option<String>> {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    metrics
        .iter()
        .map(|m| {
            let count = seen.entry(m.name()).or_insert(0);
            *count += 1;
            match *count {
                1 => Some(m.name().to_string()),
                n if m.is_parameterised() => Some(format!("{}_{n}", m.name())),
                _ => None,
            }
        })
        .collect()
}

/// Corpus names `length` produces.
pub const LENGTH_NAMES: &[&str] = &[
    "length_chars_mean",
    "length_chars_median",
    "length_chars_p90",
    "length_chars_max",
    "length_tokens_mean",
    "length_tokens_median",
    "length_tokens_p90",
    "length_tokens_max",
    "length_ratio",
];

/// Corpus names every evaluation has.
pub const COUNT_NAMES: &[&str] = &["n", "passed", "pass_rate"];

/// Every corpus value name these metrics can produce (what a gate may
/// name), in list order, followed by [`COUNT_NAMES`]. `loss` adds `loss`
/// and `perplexity`.
pub fn names(metrics: &[MetricCfg]) -> Vec<String> {
    let mut out = Vec::new();
    for (m, key) in metrics.iter().zip(keys(metrics)) {
        let Some(key) = key else { continue };
        match m {
            MetricCfg::Loss => out.extend(["loss".to_string(), "perplexity".to_string()]),
            MetricCfg::Length => out.extend(LENGTH_NAMES.iter().map(|s| s.to_string())),
            _ => out.push(key),
        }
    }
    out.extend(COUNT_NAMES.iter().map(|s| s.to_string()));
    out
}

/// Reads and parses the JSON Schema file `path` (relative to `root`).
pub fn load_schema(root: &Path, path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(root.join(path)).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("not JSON ({e})"))
}

/// The schema files the metrics name, as `(index, path as written)`, and
/// the problems found loading and compiling them, as `(index, message)`.
pub fn schema_files(metrics: &[MetricCfg], root: &Path) -> (Vec<(usize, PathBuf)>, Vec<(usize, String)>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        if let MetricCfg::JsonSchema(path) = m {
            files.push((i, path.clone()));
            let compiled = load_schema(root, path).and_then(|v| score::compile_schema(&v));
            if let Err(message) = compiled {
                problems.push((i, format!("JSON Schema {}: {message}", path.display())));
            }
        }
    }
    (files, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_from_the_pipeline_file() {
        let v = json!([
            "loss", "exact_match", "contains", {"regex": "^\\{.*\\}$"}, "json_valid",
            {"json_schema": "schemas/reply.json"}, "chrf", "rouge_l", {"register": "desu_masu"}, "length"
        ]);
        let metrics: Vec<MetricCfg> = serde_json::from_value(v.clone()).expect("the documented list parses");
        assert_eq!(metrics[3], MetricCfg::Regex("^\\{.*\\}$".into()));
        assert_eq!(metrics[5], MetricCfg::JsonSchema("schemas/reply.json".into()));
        assert_eq!(metrics[8], MetricCfg::Register(RegisterTarget::DesuMasu));
        assert_eq!(serde_json::to_value(&metrics).ok(), Some(v));
    }

    #[test]
    fn config_rejects() {
        let bad = [json!("bleu"), json!({"regex": 3}), json!({"register": "keigo"}), json!({"chrf": {}}), json!({"regex": "a", "json_valid": null})];
        for v in bad {
            assert!(serde_json::from_value::<MetricCfg>(v.clone()).is_err(), "{v} should not parse");
        }
    }

    #[test]
    fn json_schema_documents_variants() {
        let schema = serde_json::to_string(&schemars::schema_for!(Vec<MetricCfg>)).unwrap_or_default();
        for fragment in ["exact_match", "json_schema", "desu_masu", "da_dearu", "ROUGE-L F-measure"] {
            assert!(schema.contains(fragment), "schema lacks {fragment}");
        }
    }

    #[test]
    fn names_and_keys() {
        let metrics = vec![MetricCfg::Loss, MetricCfg::Regex("a".into()), MetricCfg::Regex("b".into()), MetricCfg::Chrf, MetricCfg::Chrf, MetricCfg::Length];
        let k = keys(&metrics);
        assert_eq!(k, [Some("loss".to_string()), Some("regex".into()), Some("regex_2".into()), Some("chrf".into()), None, Some("length".into())]);
        let n = names(&metrics);
        assert_eq!(&n[..5], ["loss", "perplexity", "regex", "regex_2", "chrf"]);
        assert!(n.contains(&"length_chars_p90".to_string()) && n.ends_with(&["n".into(), "passed".into(), "pass_rate".into()]));
    }

    #[test]
    fn schema_files_report_problems() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write("ok.json", r#"{"type": "object"}"#);
        write("broken.json", "{not json");
        write("bad.json", r#"{"type": 12}"#);
        let metrics: Vec<MetricCfg> = ["ok.json", "broken.json", "bad.json", "missing.json"].iter().map(|p| MetricCfg::JsonSchema(p.into())).collect();
        let (files, problems) = schema_files(&metrics, dir.path());
        assert_eq!(files.len(), 4);
        let idx: Vec<usize> = problems.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [1, 2, 3]);
        assert!(problems[0].1.contains("not JSON"), "{problems:?}");
    }
}
