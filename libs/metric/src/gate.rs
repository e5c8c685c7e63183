//! Gate thresholds on corpus metrics: `exact_match: ">= 0.8"`, or relative
//! to the model compared with: `acc: ">= base - 0.02"`.
//!
//! Design: a threshold is a comparison operator and a bound, parsed from
//! the text a user writes ([`parse`]), so the pipeline file stays plain YAML
//! strings. The bound is a number, or a compared model's name (`base` for
//! `compare_to: base`, `before` for `compare_with`) plus or minus a number:
//! the same metric measured on that model, in the same stage. A bare number
//! (`"0.8"`) means `>=`, the usual intent of a quality bar. `==` compares with a tolerance of 1e-9 (relative to the
//! larger magnitude, at least 1), so `"== 1"` holds for a mean of ones
//! whatever the summation order. [`check`] compares every gated metric with
//! the corpus values and fails loudly for a name it does not know, listing
//! the known ones, rather than silently passing a typo.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `==`
    Eq,
}

impl Op {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
        }
    }
}

/// A parsed threshold such as `>= 0.8` or `>= base - 0.02`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// How the actual value is compared.
    pub op: Op,
    /// The value compared against, or the offset from the reference.
    pub value: f64,
    /// A compared model whose value of the same metric is the bound's base.
    pub reference: Option<String>,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            None => write!(f, "{} {}", self.op.symbol(), self.value),
            Some(r) if self.value == 0.0 => write!(f, "{} {r}", self.op.symbol()),
            Some(r) if self.value < 0.0 => write!(f, "{} {r} - {}", self.op.symbol(), -self.value),
            Some(r) => write!(f, "{} {r} + {}", self.op.symbol(), self.value),
        }
    }
}

/// Why a gate could not be checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    /// The threshold text is not `OP NUMBER`, `OP NAME ± NUMBER` or `NUMBER`.
    #[error(
        "`{0}` is not a threshold: write an operator (>=, >, <=, <, ==) and a number, such as \">= 0.8\" (a bare number means >=), or a compared model and an offset, such as \">= base - 0.02\""
    )]
    Malformed(String),
    /// A relative gate names a model the stage does not compare with.
    #[error("gate on `{metric}` is relative to `{reference}`, which this stage does not measure; {}", if known.is_empty() { "add `compare_to: base` (or `compare_with: STAGE`, named `before`)".to_string() } else { format!("compared here: {}", known.join(", ")) })]
    UnknownReference {
        /// The gated metric.
        metric: String,
        /// The name in the threshold.
        reference: String,
        /// The compared models the stage has.
        known: Vec<String>,
    },
    /// The gate names a metric that was not measured.
    #[error("the gate names `{metric}`, which is not a measured metric; known metrics: {}", known.join(", "))]
    UnknownMetric {
        /// The name in the gate.
        metric: String,
        /// The names that have values.
        known: Vec<String>,
    },
    /// The threshold of a metric is malformed.
    #[error("gate on `{metric}`: {source}")]
    Threshold {
        /// The gated metric.
        metric: String,
        /// The parse error.
        source: Box<GateError>,
    },
}

impl From<GateError> for String {
    fn from(e: GateError) -> String {
        e.to_string()
    }
}

impl Threshold {
    /// Whether `actual` satisfies the threshold (NaN never does); a
    /// relative threshold needs the reference model's value.
    pub fn holds(&self, actual: f64, reference: Option<f64>) -> bool {
        match (&self.reference, reference) {
            (None, _) => self.op.compare(actual, self.value),
            (Some(_), Some(r)) => self.op.compare(actual, self.bound(r)),
            (Some(_), None) => false,
        }
    }

    /// The bound: the value, or the reference's value plus the offset.
    pub fn bound(&self, reference: f64) -> f64 {
        if self.reference.is_some() { reference + self.value } else { self.value }
    }
}

impl Op {
    fn compare(self, actual: f64, bound: f64) -> bool {
        match self {
            Op::Ge => actual >= bound,
            Op::Gt => actual > bound,
            Op::Le => actual <= bound,
            Op::Lt => actual < bound,
            Op::Eq => (actual - bound).abs() <= 1e-9 * actual.abs().max(bound.abs()).max(1.0),
        }
    }
}

impl FromStr for Threshold {
    type Err = GateError;

    fn from_str(s: &str) -> Result<Self, GateError> {
        parse(s)
    }
}

/// The models a relative gate can name: `base` (`compare_to: base`) and
/// `before` (`compare_with: STAGE`).
pub const REFERENCES: &[&str] = &["base", "before"];

/// Parses `">= 0.8"`, `"> 0.5"`, `"<= 2.5"`, `"< 3"`, `"== 1"`, a bare
/// number (meaning `>=`), or a compared model with an optional offset:
/// `">= base"`, `">= base - 0.02"`, `"< before + 0.1"`. Space is optional;
/// numbers must be finite.
pub fn parse(expr: &str) -> Result<Threshold, GateError> {
    let text = expr.trim();
    let bad = || GateError::Malformed(expr.to_string());
    let ops = [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), (">", Op::Gt), ("<", Op::Lt)];
    let (op, rest) = ops.iter().find_map(|(sym, op)| text.strip_prefix(sym).map(|rest| (*op, rest))).unwrap_or((Op::Ge, text));
    let rest = rest.trim();
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let (name, tail) = rest.split_at(end);
        if !REFERENCES.contains(&name) {
            return Err(bad());
        }
        let tail = tail.trim();
        let value = if tail.is_empty() {
            0.0
        } else if let Some(n) = tail.strip_prefix('+') {
            number(n).filter(|_| !n.trim().starts_with(['+', '-'])).ok_or_else(bad)?
        } else if let Some(n) = tail.strip_prefix('-') {
            -number(n).filter(|_| !n.trim().starts_with(['+', '-'])).ok_or_else(bad)?
        } else {
            return Err(bad());
        };
        return Ok(Threshold { op, value, reference: Some(name.to_string()) });
    }
    number(rest).map(|value| Threshold { op, value, reference: None }).ok_or_else(bad)
}

/// The outcome of one gated metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    /// The metric's name.
    pub metric: String,
    /// Its corpus value.
    pub actual: f64,
    /// The threshold it was held to.
    pub threshold: Threshold,
    /// The bound it was compared with (the reference's value plus the
    /// offset, for a relative threshold).
    pub bound: f64,
    /// Whether the value meets the threshold.
    pub passed: bool,
}

/// Checks each `metric → threshold` of `gates` against the corpus values,
/// in the gates' order; a relative threshold takes the same metric from
/// `compared[reference]`. Fails on a malformed threshold, on a metric with
/// no value (the error lists the known names), or on a reference the stage
/// does not measure.
pub fn check<S: AsRef<str>>(
    gates: &BTreeMap<String, S>,
    corpus: &BTreeMap<String, f64>,
    compared: &BTreeMap<String, BTreeMap<String, f64>>,
) -> Result<Vec<GateResult>, GateError> {
    gates
        .iter()
        .map(|(metric, expr)| {
            let threshold = parse(expr.as_ref()).map_err(|e| GateError::Threshold { metric: metric.clone(), source: Box::new(e) })?;
            let actual = *corpus.get(metric).ok_or_else(|| GateError::UnknownMetric { metric: metric.clone(), known: corpus.keys().cloned().collect() })?;
            let reference = match &threshold.reference {
                None => None,
                Some(r) => {
                    let theirs = compared.get(r).ok_or_else(|| GateError::UnknownReference {
                        metric: metric.clone(),
                        reference: r.clone(),
                        known: compared.keys().cloned().collect(),
                    })?;
                    Some(*theirs.get(metric).ok_or_else(|| GateError::UnknownMetric { metric: metric.clone(), known: theirs.keys().cloned().collect() })?)
                }
            };
            let bound = reference.map_or(threshold.value, |r| threshold.bound(r));
            let passed = threshold.holds(actual, reference);
            Ok(GateResult { metric: metric.clone(), actual, threshold, bound, passed })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<(Op, f64)>)] = &[
            (">= 0.8", Some((Op::Ge, 0.8))),
            (">=0.8", Some((Op::Ge, 0.8))),
            ("> 0.5", Some((Op::Gt, 0.5))),
            ("<= 2.5", Some((Op::Le, 2.5))),
            ("< 3", Some((Op::Lt, 3.0))),
            ("== 1", Some((Op::Eq, 1.0))),
            ("0.75", Some((Op::Ge, 0.75))),
            ("  >=  -1e-3 ", Some((Op::Ge, -0.001))),
            ("=> 0.8", None),
            (">= ", None),
            ("", None),
            ("high", None),
            (">= NaN", None),
            (">= inf", None),
            ("0.8 >=", None),
            ("= 1", None),
        ];
        for (expr, expected) in cases {
            let got = parse(expr).ok().map(|t| (t.op, t.value));
            assert_eq!(got, *expected, "{expr:?}");
        }
        assert!(parse("nope").unwrap_err().to_string().contains("is not a threshold"));
    }

    #[test]
    fn holds_table() {
        let cases: &[(&str, f64, bool)] = &[
            (">= 0.8", 0.8, true),
            (">= 0.8", 0.79, false),
            ("> 0.5", 0.5, false),
            ("> 0.5", 0.51, true),
            ("<= 2.5", 2.5, true),
            ("< 3", 3.0, false),
            ("== 1", 1.0, true),
            ("== 1", 0.1 + 0.2 + 0.7, true),
            ("== 1", 0.999, false),
            ("0.9", 0.95, true),
            (">= 0", f64::NAN, false),
        ];
        for (expr, actual, passes) in cases {
            let t = parse(expr).expect("test threshold parses");
            assert_eq!(t.holds(*actual, None), *passes, "{actual} {expr}");
        }
    }

    #[test]
    fn check_gates() {
        let corpus: BTreeMap<String, f64> = [("exact_match".to_string(), 0.85), ("chrf".into(), 0.4), ("loss".into(), 1.2)].into();
        let gates: BTreeMap<String, &str> = [("exact_match".to_string(), ">= 0.8"), ("chrf".into(), "0.5"), ("loss".into(), "< 1.5")].into();
        let none = BTreeMap::new();
        let results = check(&gates, &corpus, &none).expect("known metrics");
        let summary: Vec<(&str, f64, bool)> = results.iter().map(|r| (r.metric.as_str(), r.actual, r.passed)).collect();
        assert_eq!(summary, [("chrf", 0.4, false), ("exact_match", 0.85, true), ("loss", 1.2, true)]);
        assert_eq!(results[0].threshold.to_string(), ">= 0.5");

        let typo: BTreeMap<String, &str> = [("exact_mach".to_string(), ">= 0.8")].into();
        let err = check(&typo, &corpus, &none).unwrap_err().to_string();
        assert!(err.contains("`exact_mach`") && err.contains("known metrics: chrf, exact_match, loss"), "{err}");

        let bad: BTreeMap<String, &str> = [("chrf".to_string(), "at least 0.5")].into();
        let err = String::from(check(&bad, &corpus, &none).unwrap_err());
        assert!(err.starts_with("gate on `chrf`: `at least 0.5` is not a threshold"), "{err}");
    }

    #[test]
    fn relative_gates() {
        let cases: &[(&str, Option<(Op, f64, Option<&str>)>)] = &[
            (">= base - 0.02", Some((Op::Ge, -0.02, Some("base")))),
            (">=base-0.02", Some((Op::Ge, -0.02, Some("base")))),
            ("> before + 0.1", Some((Op::Gt, 0.1, Some("before")))),
            ("base", Some((Op::Ge, 0.0, Some("base")))),
            ("<= base", Some((Op::Le, 0.0, Some("base")))),
            (">= base -", None),
            (">= base - -1", None),
            (">= base * 0.9", None),
            (">= base - inf", None),
            (">= inf", None),
        ];
        for (expr, expected) in cases {
            let got = parse(expr).ok().map(|t| (t.op, t.value, t.reference));
            assert_eq!(got, expected.map(|(o, v, r)| (o, v, r.map(str::to_string))), "{expr:?}");
        }
        assert_eq!(parse(">= base - 0.02").unwrap().to_string(), ">= base - 0.02");
        let rel = parse(">= base - 0.02").unwrap();
        assert!(rel.holds(0.7, Some(0.71)) && !rel.holds(0.68, Some(0.71)) && !rel.holds(0.7, None), "a relative bound needs its reference");
        let corpus: BTreeMap<String, f64> = [("acc".to_string(), 0.70), ("loss".into(), 1.3)].into();
        let base: BTreeMap<String, f64> = [("acc".to_string(), 0.71), ("loss".into(), 1.2)].into();
        let compared: BTreeMap<String, BTreeMap<String, f64>> = [("base".to_string(), base)].into();
        let gates: BTreeMap<String, &str> = [("acc".to_string(), ">= base - 0.02"), ("loss".into(), "<= base")].into();
        let r = check(&gates, &corpus, &compared).unwrap();
        assert!(r[0].passed && (r[0].bound - 0.69).abs() < 1e-12, "{r:?}");
        assert!(!r[1].passed, "1.3 is not <= base's 1.2: {r:?}");
        let missing: BTreeMap<String, &str> = [("acc".to_string(), ">= before")].into();
        let err = check(&missing, &corpus, &compared).unwrap_err().to_string();
        assert!(err.contains("relative to `before`") && err.contains("compared here: base"), "{err}");
        let err = check(&missing, &corpus, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("add `compare_to: base`"), "{err}");
    }
}
