//! The compiled metric list: per-sample scoring and corpus aggregation.
//!
//! Design: [`Scorer`] holds one compiled check per listed metric, keyed as
//! [`super::keys`] decides, and is immutable and `Sync`, so samples can be
//! scored in parallel. A [`Scored`] sample carries, besides its values,
//! whatever the corpus needs and a mean cannot recover — the chrF n-gram
//! statistics and the lengths — so [`Scorer::corpus`] needs only the scored
//! samples. Conventions (values, names, the pass rule) are in the
//! [module notes](super).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::chrf::ChrfStats;
use super::stats::{self, Lengths};
use super::{MetricCfg, MetricError, keys, load_schema, rouge, text};
use tailor_text::register::Register;

/// One compiled metric.
enum Check {
    ExactMatch,
    Contains,
    Regex(regex::Regex),
    JsonValid,
    JsonSchema(Box<jsonschema::Validator>),
    Chrf,
    RougeL,
    Register(Register),
    Length,
}

/// Compiles a JSON Schema value, or explains why it is not one.
pub(crate) fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema ({e})"))
}

/// A metric list compiled for scoring.
pub struct Scorer {
    checks: Vec<(String, Check)>,
}

impl fmt::Debug for Scorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scorer").field("metrics", &self.checks.iter().map(|(k, _)| k).collect::<Vec<_>>()).finish()
    }
}

/// The scores of one output.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scored {
    /// Metric values by name (pass/fail as 1.0 / 0.0, similarities 0–1,
    /// lengths as counts); metrics skipped for want of a reference are absent.
    pub values: BTreeMap<String, f64>,
    /// Whether every pass/fail metric scored here passed.
    pub pass: bool,
    /// Why each failed pass/fail metric failed, by name.
    pub failures: BTreeMap<String, String>,
    #[serde(skip)]
    chrf: Option<ChrfStats>,
    #[serde(skip)]
    lengths: Option<Lengths>,
}

impl Scored {
    fn verdict(&mut self, key: &str, result: Result<(), String>) {
        let value = match result {
            Ok(()) => 1.0,
            Err(why) => {
                self.failures.insert(key.to_string(), why);
                0.0
            }
        };
        self.values.insert(key.to_string(), value);
    }
}

fn compile_one(index: usize, metric: &MetricCfg, load: &mut dyn FnMut(&Path) -> Result<Value, String>) -> Result<Option<Check>, MetricError> {
    Ok(Some(match metric {
        MetricCfg::Loss => return Ok(None),
        MetricCfg::ExactMatch => Check::ExactMatch,
        MetricCfg::Contains => Check::Contains,
        MetricCfg::Regex(pattern) => {
            Check::Regex(regex::Regex::new(pattern).map_err(|e| MetricError::Regex { index, pattern: pattern.clone(), message: e.to_string() })?)
        }
        MetricCfg::JsonValid => Check::JsonValid,
        MetricCfg::JsonSchema(path) => {
            let schema_error = |message| MetricError::Schema { index, path: path.clone(), message };
            let value = load(path).map_err(schema_error)?;
            Check::JsonSchema(Box::new(compile_schema(&value).map_err(schema_error)?))
        }
        MetricCfg::Chrf => Check::Chrf,
        MetricCfg::RougeL => Check::RougeL,
        MetricCfg::Register(target) => Check::Register(target.register()),
        MetricCfg::Length => Check::Length,
    }))
}

fn pass_fail(check: &Check, output: &str, reference: Option<&str>) -> Option<Result<(), String>> {
    let needs_ref = |ok: fn(&str, &str) -> bool, why: &str| reference.map(|r| if ok(output, r) { Ok(()) } else { Err(why.to_string()) });
    match check {
        Check::ExactMatch => needs_ref(text::exact_match, "differs from the reference (after normalization)"),
        Check::Contains => needs_ref(text::contains, "does not contain the reference (after normalization)"),
        Check::Regex(re) => Some(text::regex_match(re, output)),
        Check::JsonValid => Some(text::json_valid(output)),
        Check::JsonSchema(schema) => Some(text::json_schema_valid(schema, output)),
        Check::Register(target) => Some(text::register_consistent(output, *target)),
        Check::Chrf | Check::RougeL | Check::Length => None,
    }
}

impl Scorer {
    /// Compiles `metrics`; `load` returns the JSON Schema for a
    /// `json_schema` path (the caller resolves the path). Regex and schema
    /// problems and repeated parameterless metrics come back as errors.
    pub fn compile(metrics: &[MetricCfg], mut load: impl FnMut(&Path) -> Result<Value, String>) -> Result<Scorer, MetricError> {
        let mut checks = Vec::new();
        for (index, (metric, key)) in metrics.iter().zip(keys(metrics)).enumerate() {
            let key = key.ok_or(MetricError::Duplicate { index, name: metric.name() })?;
            if let Some(check) = compile_one(index, metric, &mut load)? {
                checks.push((key, check));
            }
        }
        Ok(Scorer { checks })
    }

    /// [`Scorer::compile`] with schema files read relative to `root`.
    pub fn new(metrics: &[MetricCfg], root: &Path) -> Result<Scorer, MetricError> {
        Scorer::compile(metrics, |path| load_schema(root, path))
    }

    /// The names of the compiled metrics, in list order (`loss` excluded).
    pub fn metric_names(&self) -> Vec<&str> {
        self.checks.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Scores one output; metrics that need a reference are skipped when
    /// `reference` is `None`.
    pub fn score(&self, output: &str, reference: Option<&str>) -> Scored {
        let mut s = Scored::default();
        for (key, check) in &self.checks {
            if let Some(result) = pass_fail(check, output, reference) {
                s.verdict(key, result);
                continue;
            }
            match (check, reference) {
                (Check::Chrf, Some(r)) => {
                    let st = ChrfStats::of(output, r);
                    s.values.insert(key.clone(), st.score());
                    s.chrf = Some(st);
                }
                (Check::RougeL, Some(r)) => {
                    s.values.insert(key.clone(), rouge::rouge_l(output, r).fmeasure);
                }
                (Check::Length, _) => {
                    let l = Lengths::of(output, reference);
                    s.values.insert("length_chars".into(), l.chars as f64);
                    s.values.insert("length_tokens".into(), l.tokens as f64);
                    if let Some(ratio) = l.ratio() {
                        s.values.insert("length_ratio".into(), ratio);
                    }
                    s.lengths = Some(l);
                }
                _ => {}
            }
        }
        s.pass = s.failures.is_empty();
        s
    }

    /// Corpus values of scored samples: `n`, `passed`, `pass_rate`; means of
    /// pass/fail metrics and `rouge_l`; corpus chrF from summed statistics;
    /// length summaries. A metric no sample has is absent.
    pub fn corpus<'a>(&self, scored: impl IntoIterator<Item = &'a Scored>) -> BTreeMap<String, f64> {
        let scored: Vec<&Scored> = scored.into_iter().collect();
        let mut out = BTreeMap::new();
        let n = scored.len();
        let passed = scored.iter().filter(|s| s.pass).count();
        out.insert("n".to_string(), n as f64);
        out.insert("passed".to_string(), passed as f64);
        if n > 0 {
            out.insert("pass_rate".to_string(), passed as f64 / n as f64);
        }
        for (key, check) in &self.checks {
            match check {
                Check::Chrf => {
                    let mut stats = scored.iter().filter_map(|s| s.chrf.as_ref()).peekable();
                    if stats.peek().is_some() {
                        let mut total = ChrfStats::default();
                        stats.for_each(|st| total.add(st));
                        out.insert(key.clone(), total.score());
                    }
                }
                Check::Length => length_corpus(&scored, &mut out),
                _ => {
                    let values: Vec<f64> = scored.iter().filter_map(|s| s.values.get(key).copied()).collect();
                    if let Some(m) = stats::mean(&values) {
                        out.insert(key.clone(), m);
                    }
                }
            }
        }
        out
    }
}

fn length_corpus(scored: &[&Scored], out: &mut BTreeMap<String, f64>) {
    let lengths: Vec<&Lengths> = scored.iter().filter_map(|s| s.lengths.as_ref()).collect();
    let series: [(&str, Vec<f64>); 2] =
        [("chars", lengths.iter().map(|l| l.chars as f64).collect()), ("tokens", lengths.iter().map(|l| l.tokens as f64).collect())];
    for (what, values) in series {
        if let Some(sum) = stats::summarize(&values) {
            for (name, v) in [("mean", sum.mean), ("median", sum.median), ("p90", sum.p90), ("max", sum.max)] {
                out.insert(format!("length_{what}_{name}"), v);
            }
        }
    }
    if let Some(ratio) = stats::corpus_ratio(lengths.iter().copied()) {
        out.insert("length_ratio".into(), ratio);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegisterTarget;
    use serde_json::json;

    fn all_metrics() -> Vec<MetricCfg> {
        vec![
            MetricCfg::Loss,
            MetricCfg::ExactMatch,
            MetricCfg::Contains,
            MetricCfg::Regex("^\\{.*\\}$".into()),
            MetricCfg::JsonValid,
            MetricCfg::JsonSchema("reply.json".into()),
            MetricCfg::Chrf,
            MetricCfg::RougeL,
            MetricCfg::Register(RegisterTarget::DesuMasu),
            MetricCfg::Length,
        ]
    }

    fn reply_schema(_: &Path) -> Result<Value, String> {
        Ok(json!({"type": "object", "required": ["answer"]}))
    }

    fn get(s: &Scored, key: &str) -> Option<f64> {
        s.values.get(key).copied()
    }

    #[test]
    fn scores_one_sample() {
        let scorer = Scorer::compile(&all_metrics(), reply_schema).expect("compiles");
        assert!(!scorer.metric_names().contains(&"loss"));
        let s = scorer.score(r#"{"answer": "はい"}"#, Some(r#"{"answer":"はい"}"#));
        // (key, expected): pass/fail as 1/0; `{"answer": "はい"}` (no spaces: 14
        // characters) vs `{"answer":"はい"}` (14 chars after removing the
        // space) gives chrF 1; word tokens [answer] on both sides → ROUGE-L 1;
        // lengths: 16 chars, 2 tokens, ratio 16/15.
        let cases: &[(&str, Option<f64>)] = &[
            ("exact_match", Some(0.0)),
            ("contains", Some(0.0)),
            ("regex", Some(1.0)),
            ("json_valid", Some(1.0)),
            ("json_schema", Some(1.0)),
            ("register", Some(0.0)),
            ("chrf", Some(1.0)),
            ("rouge_l", Some(1.0)),
            ("length_chars", Some(16.0)),
            ("length_tokens", Some(2.0)),
            ("length_ratio", Some(16.0 / 15.0)),
            ("loss", None),
        ];
        for (key, expected) in cases {
            assert_eq!(get(&s, key), *expected, "{key}");
        }
        assert!(!s.pass);
        assert_eq!(s.failures.keys().collect::<Vec<_>>(), ["contains", "exact_match", "register"]);
    }

    #[test]
    fn without_reference_skips() {
        let scorer = Scorer::compile(&all_metrics(), reply_schema).expect("compiles");
        let s = scorer.score("ありがとうございます。", None);
        for key in ["exact_match", "contains", "chrf", "rouge_l", "length_ratio"] {
            assert_eq!(get(&s, key), None, "{key}");
        }
        assert_eq!(get(&s, "register"), Some(1.0));
        assert_eq!(get(&s, "json_valid"), Some(0.0));
        assert!(s.failures["json_schema"].contains("not valid JSON"));
    }

    #[test]
    fn pass_rule() {
        let scorer = Scorer::compile(&[MetricCfg::ExactMatch, MetricCfg::Chrf], reply_schema).expect("compiles");
        // (output, reference, pass): chrF never fails a sample.
        let cases: &[(&str, Option<&str>, bool)] = &[("１２３", Some("123"), true), ("12", Some("123"), false), ("anything", None, true)];
        for (out, reference, pass) in cases {
            assert_eq!(scorer.score(out, *reference).pass, *pass, "{out:?}");
        }
        let only_similarity = Scorer::compile(&[MetricCfg::RougeL], reply_schema).expect("compiles");
        assert!(only_similarity.score("x", Some("y")).pass);
    }

    #[test]
    fn compile_errors() {
        let bad_regex = Scorer::compile(&[MetricCfg::Chrf, MetricCfg::Regex("(unclosed".into())], reply_schema).unwrap_err();
        assert!(matches!(bad_regex, MetricError::Regex { index: 1, .. }), "{bad_regex}");
        let bad_schema = Scorer::compile(&[MetricCfg::JsonSchema("s.json".into())], |_| Ok(json!({"type": 5}))).unwrap_err();
        assert!(bad_schema.to_string().starts_with("metrics[0]: JSON Schema s.json: not a valid JSON Schema"), "{bad_schema}");
        let unreadable = Scorer::compile(&[MetricCfg::JsonSchema("s.json".into())], |_| Err("no such file".into())).unwrap_err();
        assert_eq!(unreadable.to_string(), "metrics[0]: JSON Schema s.json: no such file");
        let dup = Scorer::compile(&[MetricCfg::Chrf, MetricCfg::Chrf], reply_schema).unwrap_err();
        assert_eq!(String::from(dup), "metrics[1]: `chrf` is listed twice");
        let two_regexes = Scorer::compile(&[MetricCfg::Regex("a".into()), MetricCfg::Regex("b".into())], reply_schema).expect("compiles");
        let s = two_regexes.score("a", None);
        assert_eq!((get(&s, "regex"), get(&s, "regex_2")), (Some(1.0), Some(0.0)));
    }

    #[test]
    fn corpus_aggregates() {
        let metrics = [MetricCfg::ExactMatch, MetricCfg::Chrf, MetricCfg::RougeL, MetricCfg::Length];
        let scorer = Scorer::compile(&metrics, reply_schema).expect("compiles");
        let samples = [scorer.score("abc", Some("abd")), scorer.score("ab", Some("abc")), scorer.score("same", Some("same")), scorer.score("no ref", None)];
        let c = scorer.corpus(&samples);
        // passed: same/same, and the reference-less sample (nothing to fail) → 2.
        // exact_match: 0, 0, 1 (the reference-less sample is skipped) → 1/3.
        // chrf from summed statistics of the three pairs; checked against
        // the chrf module's own corpus function.
        // rouge_l: abc/abd 0, ab/abc 0, same/same 1 → 1/3.
        // chars 3, 2, 4, 6 → mean 3.75, median 3.5, p90 rank 2.7 → 4 + 0.7·2 = 5.4, max 6.
        // ratio (3 + 2 + 4) / (3 + 3 + 4) = 0.9.
        let expected_chrf = crate::chrf::corpus_chrf([("abc", "abd"), ("ab", "abc"), ("same", "same")]);
        let cases: &[(&str, f64)] = &[
            ("n", 4.0),
            ("passed", 2.0),
            ("pass_rate", 0.5),
            ("exact_match", 1.0 / 3.0),
            ("chrf", expected_chrf),
            ("rouge_l", 1.0 / 3.0),
            ("length_chars_mean", 3.75),
            ("length_chars_median", 3.5),
            ("length_chars_p90", 5.4),
            ("length_chars_max", 6.0),
            ("length_tokens_max", 2.0),
            ("length_ratio", 0.9),
        ];
        for (key, expected) in cases {
            let got = c.get(*key).copied().unwrap_or(f64::NAN);
            assert!((got - expected).abs() < 1e-12, "{key}: {got} != {expected}");
        }
        // The stage's gate names line up with what the corpus reports.
        let names = crate::names(&metrics);
        assert!(c.keys().all(|k| names.contains(k)), "{c:?} vs {names:?}");
        let empty = scorer.corpus(&[]);
        assert_eq!(empty.keys().collect::<Vec<_>>(), ["n", "passed"]);
    }

    #[test]
    fn scorer_is_shareable() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<Scorer>();
    }
}
