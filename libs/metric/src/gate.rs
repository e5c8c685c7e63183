//! Gate thresholds on corpus metrics: `exact_match: ">= 0.8"`.
//!
//! Design: a threshold is a comparison operator and a number, parsed from
//! the text a user writes ([`parse`]), so the pipeline file stays plain YAML
//! strings. A bare number (`"0.8"`) means `>=`, the usual intent of a
//! quality bar. `==` compares with a tolerance of 1e-9 (relative to the
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

/// A parsed threshold such as `>= 0.8`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    /// How the actual value is compared.
    pub op: Op,
    /// The value compared against.
    pub value: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.value)
    }
}

/// Why a gate could not be checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    /// The threshold text is not `OP NUMBER` or `NUMBER`.
    #[error("`{0}` is not a threshold: write an operator (>=, >, <=, <, ==) and a number, such as \">= 0.8\" (a bare number means >=)")]
    Malformed(String),
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
    /// Whether `actual` satisfies the threshold (NaN never does).
    pub fn holds(&self, actual: f64) -> bool {
        match self.op {
            Op::Ge => actual >= self.value,
            Op::Gt => actual > self.value,
            Op::Le => actual <= self.value,
            Op::Lt => actual < self.value,
            Op::Eq => (actual - self.value).abs() <= 1e-9 * actual.abs().max(self.value.abs()).max(1.0),
        }
    }
}

impl FromStr for Threshold {
    type Err = GateError;

    fn from_str(s: &str) -> Result<Self, GateError> {
        parse(s)
    }
}

/// Parses `">= 0.8"`, `"> 0.5"`, `"<= 2.5"`, `"< 3"`, `"== 1"` or a bare
/// number (meaning `>=`). Space around the operator is optional; the number
/// must be finite.
pub fn parse(expr: &str) -> Result<Threshold, GateError> {
    let text = expr.trim();
    let ops = [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), (">", Op::Gt), ("<", Op::Lt)];
    let (op, rest) = ops.iter().find_map(|(sym, op)| text.strip_prefix(sym).map(|rest| (*op, rest))).unwrap_or((Op::Ge, text));
    match rest.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Threshold { op, value }),
        _ => Err(GateError::Malformed(expr.to_string())),
    }
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
    /// Whether the value meets the threshold.
    pub passed: bool,
}

/// Checks each `metric → threshold` of `gates` against the corpus values,
/// in the gates' order. Fails on a malformed threshold or on a metric with
/// no value in `corpus` (the error lists the known names).
pub fn check<S: AsRef<str>>(gates: &BTreeMap<String, S>, corpus: &BTreeMap<String, f64>) -> Result<Vec<GateResult>, GateError> {
    gates
        .iter()
        .map(|(metric, expr)| {
            let threshold = parse(expr.as_ref()).map_err(|e| GateError::Threshold { metric: metric.clone(), source: Box::new(e) })?;
            let actual = *corpus.get(metric).ok_or_else(|| GateError::UnknownMetric { metric: metric.clone(), known: corpus.keys().cloned().collect() })?;
            Ok(GateResult { metric: metric.clone(), actual, threshold, passed: threshold.holds(actual) })
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
            assert_eq!(t.holds(*actual), *passes, "{actual} {expr}");
        }
    }

    #[test]
    fn check_gates() {
        let corpus: BTreeMap<String, f64> = [("exact_match".to_string(), 0.85), ("chrf".into(), 0.4), ("loss".into(), 1.2)].into();
        let gates: BTreeMap<String, &str> = [("exact_match".to_string(), ">= 0.8"), ("chrf".into(), "0.5"), ("loss".into(), "< 1.5")].into();
        let results = check(&gates, &corpus).expect("known metrics");
        let summary: Vec<(&str, f64, bool)> = results.iter().map(|r| (r.metric.as_str(), r.actual, r.passed)).collect();
        assert_eq!(summary, [("chrf", 0.4, false), ("exact_match", 0.85, true), ("loss", 1.2, true)]);
        assert_eq!(results[0].threshold.to_string(), ">= 0.5");

        let typo: BTreeMap<String, &str> = [("exact_mach".to_string(), ">= 0.8")].into();
        let err = check(&typo, &corpus).unwrap_err().to_string();
        assert!(err.contains("`exact_mach`") && err.contains("known metrics: chrf, exact_match, loss"), "{err}");

        let bad: BTreeMap<String, &str> = [("chrf".to_string(), "at least 0.5")].into();
        let err = String::from(check(&bad, &corpus).unwrap_err());
        assert!(err.starts_with("gate on `chrf`: `at least 0.5` is not a threshold"), "{err}");
    }
}
