//! Comparing two results of a pipeline — two lock files, two git
//! revisions, two recorded runs or two parameter sets, all reduced to a
//! [`Lock`] — side by side: parameters that differ, and per stage whether it
//! is the same result, what differs (its own settings or inputs, the data it
//! read, the artifacts it wrote) and its metrics with the change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use crate::lockfile::{Lock, LockedStage};

/// One side of a comparison.
#[derive(Debug, Clone)]
pub struct Side {
    /// How the user named it (`HEAD~1`, `run:-1`, `params:lr=1e-4`).
    pub label: String,
    /// Its results.
    pub lock: Lock,
}

/// A value on each side.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pair {
    /// Name.
    pub name: String,
    /// Side A.
    pub a: Option<Value>,
    /// Side B.
    pub b: Option<Value>,
}

/// One stage compared.
#[derive(Debug, Clone, Serialize)]
pub struct StageDiff {
    /// Stage name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// `same`, `changed`, `only in A`, `only in B`.
    pub status: &'static str,
    /// What differs, one line each.
    pub changes: Vec<String>,
    /// Metrics on both sides.
    pub metrics: Vec<Pair>,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Label of A.
    pub a: String,
    /// Label of B.
    pub b: String,
    /// Parameters that differ.
    pub params: Vec<Pair>,
    /// Stages, in A's order then B's extras.
    pub stages: Vec<StageDiff>,
}

fn pairs(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>, all: bool) -> Vec<Pair> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().map(|k| Pair { name: k.clone(), a: a.get(k).cloned(), b: b.get(k).cloned() }).filter(|p| all || p.a != p.b).collect()
}

fn stage_changes(a: &LockedStage, b: &LockedStage) -> Vec<String> {
    let mut out = Vec::new();
    let digest = |s: &str| s.rsplit('@').next().unwrap_or(s).chars().take(12).collect::<String>();
    for (role, ia) in &a.inputs {
        match b.inputs.get(role) {
            Some(ib) if ib != ia => out.push(format!("input `{role}` differs ({} → {})", digest(ia), digest(ib))),
            None => out.push(format!("input `{role}` only in A")),
            _ => {}
        }
    }
    for (path, da) in &a.files {
        match b.files.get(path) {
            Some(db) if db != da => out.push(format!("file {path} changed")),
            None => out.push(format!("file {path} only in A")),
            _ => {}
        }
    }
    for path in b.files.keys().filter(|p| !a.files.contains_key(*p)) {
        out.push(format!("file {path} only in B"));
    }
    if out.is_empty() && a.fingerprint != b.fingerprint {
        out.push("its settings differ (same inputs)".into());
    }
    for (o, da) in &a.outputs {
        if b.outputs.get(o).is_some_and(|db| db != da) {
            out.push(format!("output `{o}` differs"));
        }
    }
    out
}

/// Compare two sides.
pub fn compare(a: &Side, b: &Side) -> Comparison {
    let params = pairs(&a.lock.params, &b.lock.params, false);
    let mut names: Vec<&String> = a.lock.stages.keys().collect();
    names.extend(b.lock.stages.keys().filter(|n| !a.lock.stages.contains_key(*n)));
    let stages = names
        .into_iter()
        .map(|n| {
            let (sa, sb) = (a.lock.stages.get(n), b.lock.stages.get(n));
            let empty = BTreeMap::new();
            let metrics = pairs(sa.map_or(&empty, |s| &s.metrics), sb.map_or(&empty, |s| &s.metrics), true);
            let (status, changes) = match (sa, sb) {
                (Some(x), Some(y)) if x.fingerprint == y.fingerprint => ("same", vec![]),
                (Some(x), Some(y)) => ("changed", stage_changes(x, y)),
                (Some(_), None) => ("only in A", vec![]),
                _ => ("only in B", vec![]),
            };
            StageDiff { name: n.clone(), kind: sa.or(sb).map_or(String::new(), |s| s.kind.clone()), status, changes, metrics }
        })
        .collect();
    Comparison { a: a.label.clone(), b: b.label.clone(), params, stages }
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn delta(p: &Pair) -> String {
    match (p.a.as_ref().and_then(Value::as_f64), p.b.as_ref().and_then(Value::as_f64)) {
        (Some(x), Some(y)) if x != y => format!("{:+.4}", y - x),
        _ => String::new(),
    }
}

impl Comparison {
    /// A terminal table.
    pub fn render_text(&self) -> String {
        let mut s = format!("A: {}\nB: {}\n", self.a, self.b);
        if self.params.is_empty() {
            s.push_str("\nparameters: the same\n");
        } else {
            s.push_str("\nparameters:\n");
            for p in &self.params {
                let _ = writeln!(s, "  {:<20} {:>14} → {}", p.name, show(&p.a), show(&p.b));
            }
        }
        for st in &self.stages {
            let _ = writeln!(s, "\n{} ({}): {}", st.name, st.kind, st.status);
            for c in &st.changes {
                let _ = writeln!(s, "    {c}");
            }
            for m in st.metrics.iter().filter(|m| st.status != "same" || m.a != m.b) {
                let _ = writeln!(s, "    {:<22} {:>14} {:>14} {:>10}", m.name, show(&m.a), show(&m.b), delta(m));
            }
        }
        s
    }

    /// An HTML table for reports.
    pub fn render_html(&self) -> String {
        let e = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut s = format!("<p>A: <b>{}</b> · B: <b>{}</b></p>", e(&self.a), e(&self.b));
        if !self.params.is_empty() {
            s.push_str("<table><tr><th>parameter</th><th>A</th><th>B</th></tr>");
            for p in &self.params {
                let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", e(&p.name), e(&show(&p.a)), e(&show(&p.b)));
            }
            s.push_str("</table>");
        }
        s.push_str("<table><tr><th>stage</th><th>status</th><th>what differs</th><th>metric</th><th>A</th><th>B</th><th>change</th></tr>");
        for st in &self.stages {
            let rows = st.metrics.len().max(1);
            let _ = write!(
                s,
                "<tr><td rowspan=\"{rows}\">{} <i>{}</i></td><td rowspan=\"{rows}\">{}</td><td rowspan=\"{rows}\">{}</td>",
                e(&st.name),
                e(&st.kind),
                st.status,
                e(&st.changes.join("; "))
            );
            if st.metrics.is_empty() {
                s.push_str("<td></td><td></td><td></td><td></td></tr>");
            }
            for (i, m) in st.metrics.iter().enumerate() {
                if i > 0 {
                    s.push_str("<tr>");
                }
                let _ = write!(s, "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", e(&m.name), e(&show(&m.a)), e(&show(&m.b)), delta(m));
            }
        }
        s.push_str("</table>");
        s
    }
}
