//! What the measuring stages (`evaluate`, `benchmark`) share: the models
//! they compare — the tuned one, and with `compare_to: base` its base or
//! with `compare_with: STAGE` another trained model (`before`) — as
//! inference variants, gates absolute or relative to the compared model,
//! and the metrics they put in the lock.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tailor_engine::resources::Resources;
use tailor_engine::{Check, ConfigIssue, StageContext, StageError};
use tailor_metric as metric;
use tailor_protocol::job::Variant;
use tailor_protocol::settings::{Device, Dtype};

/// What to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompareTo {
    /// The base model, without the fine-tuning.
    Base,
}

/// Metrics per variant (`tuned`, and `base` or `before`).
pub type Corpus = BTreeMap<String, BTreeMap<String, f64>>;

/// The name of the comparison variant, if any.
pub fn compared(compare_to: Option<CompareTo>, compare_with: Option<&str>) -> Option<&'static str> {
    match (compare_to, compare_with) {
        (Some(CompareTo::Base), _) => Some("base"),
        (None, Some(_)) => Some("before"),
        (None, None) => None,
    }
}

/// A model artifact as an inference variant: its base with its adapter,
/// or its full model.
pub fn variant(name: &str, artifact: &Path, base_dir: &Path) -> Variant {
    if artifact.join("adapter").exists() {
        Variant { name: name.into(), model: base_dir.to_path_buf(), adapter: Some(artifact.join("adapter")) }
    } else {
        Variant { name: name.into(), model: artifact.join("model"), adapter: None }
    }
}

/// The variants to run: the compared one first (input `before` for
/// `compare_with`), then `tuned`.
pub fn variants(ctx: &StageContext<'_>, other: Option<&str>, model: &Path, base_dir: &Path) -> Result<Vec<Variant>, StageError> {
    let mut out = vec![];
    match other {
        Some("base") => out.push(Variant { name: "base".into(), model: base_dir.to_path_buf(), adapter: None }),
        Some(_) => out.push(variant("before", &ctx.input("before")?.dir, base_dir)),
        None => {}
    }
    out.push(variant("tuned", model, base_dir));
    Ok(out)
}

/// Configuration problems of a comparison and its gate: both `compare_to`
/// and `compare_with`, unparsable thresholds, a gate relative to a model
/// not evaluated, a gate on a metric not measured (`names`).
pub fn issues(compare_to: Option<CompareTo>, compare_with: Option<&str>, gate: &BTreeMap<String, String>, names: &[String]) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if compare_to.is_some() && compare_with.is_some() {
        issues.push(ConfigIssue::new("/compare_with", "give `compare_to: base` or `compare_with: STAGE`, not both"));
    }
    let other = compared(compare_to, compare_with);
    for (k, v) in gate {
        match metric::gate::parse(v) {
            Err(e) => issues.push(
                ConfigIssue::new(format!("/gate/{k}"), String::from(e))
                    .help("write a comparison and a number: \">= 0.8\", \"< 2.5\", \"== 1\", or relative to the compared model: \">= base - 0.02\""),
            ),
            Ok(t) => {
                if let Some(r) = &t.reference
                    && other != Some(r.as_str())
                {
                    issues.push(
                        ConfigIssue::new(format!("/gate/{k}"), format!("the gate is relative to `{r}`, which this stage does not evaluate"))
                            .help(if r == "base" { "add `compare_to: base`" } else { "add `compare_with: STAGE` (its results are named `before`)" }),
                    );
                }
            }
        }
        if !names.iter().any(|n| n == k) {
            issues.push(
                ConfigIssue::new(format!("/gate/{k}"), format!("`{k}` is not one of this stage's metrics"))
                    .help(format!("metrics measured here: {}", names.join(", "))),
            );
        }
    }
    issues
}

/// The gate as the stage's check (none without a gate), on the tuned
/// model's metrics, relative bounds from the compared model's.
pub fn check(gate: &BTreeMap<String, String>, corpus: &Corpus, other: Option<&str>) -> Result<Option<Check>, StageError> {
    if gate.is_empty() {
        return Ok(None);
    }
    let empty = BTreeMap::new();
    let tuned = corpus.get("tuned").unwrap_or(&empty);
    let others: Corpus = other.and_then(|o| corpus.get(o).map(|m| (o.to_string(), m.clone()))).into_iter().collect();
    let results = metric::gate::check(gate, tuned, &others).map_err(|e| StageError::msg(String::from(e)))?;
    let passed = results.iter().all(|r| r.passed);
    let summary = results
        .iter()
        .map(|r| {
            let bound = if r.threshold.reference.is_some() { format!(" ({:.3})", r.bound) } else { String::new() };
            format!("{} {:.3} {} {}{bound}", r.metric, r.actual, if r.passed { "meets" } else { "misses" }, r.threshold)
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Some(Check { passed, summary }))
}

/// The metrics for the lock: the tuned model's under their names, the
/// compared model's prefixed (`base_acc`).
pub fn lock_metrics(corpus: &Corpus, other: Option<&str>) -> BTreeMap<String, Value> {
    let mut metrics = BTreeMap::new();
    for (k, v) in corpus.get("tuned").into_iter().flatten() {
        metrics.insert(k.clone(), round(*v));
    }
    if let Some((o, m)) = other.and_then(|o| corpus.get(o).map(|m| (o, m))) {
        for (k, v) in m {
            metrics.insert(format!("{o}_{k}"), round(*v));
        }
    }
    metrics
}

/// What a stage that runs models declares: the environment its numbers
/// depend on (libtorch, device, dtype, the pinned numerics and thread
/// count) and the resources it asks for.
pub fn inference(device: Device, dtype: Dtype, threads: Option<usize>) -> (BTreeMap<String, String>, Resources) {
    let threads = crate::numerics::threads(threads);
    let mut env = BTreeMap::new();
    env.insert("libtorch".into(), "2.13.0".into());
    env.insert("device".into(), format!("{device:?}").to_lowercase());
    env.insert("dtype".into(), format!("{dtype:?}").to_lowercase());
    env.extend(crate::numerics::env(threads));
    env.extend(crate::train::trainer_knobs());
    (env, crate::train::resources(device, threads, 1))
}

/// A metric for the lock file: counts as integers, rates to 6 decimals.
fn round(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 { json!(v as i64) } else { json!((v * 1e6).round() / 1e6) }
}
