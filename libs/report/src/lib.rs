//! HTML fragments for `tailor report`, one per artifact kind: counts and
//! rejects by reason for data, length histograms for tokenized splits, loss
//! curves for models, base-versus-tuned metrics and sample outputs for
//! evaluations. Each reads only the artifact's own files.

pub mod svg;

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;
use svg::{Series, bars, esc, histogram, line_chart};

fn json_file(p: &Path) -> Value {
    std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// The first `max` JSON lines of a file (read only that far: a records
/// file may hold millions).
fn lines(p: &Path, max: usize) -> Vec<Value> {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open(p) else { return Vec::new() };
    std::io::BufReader::new(f).lines().map_while(Result::ok).take(max).filter_map(|l| serde_json::from_str(&l).ok()).collect()
}

fn table(rows: &[(String, String)]) -> String {
    let mut s = String::from("<table class=\"kv\">");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    s.push_str("</table>");
    s
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Some(f) => format!("{f:.4}"),
        None => v.as_str().map_or_else(|| v.to_string(), str::to_string),
    }
}

/// A `records` artifact: counts per step (clean) or source (collect), and
/// the length of the answers.
pub fn records(dir: &Path) -> String {
    let stats = json_file(&dir.join("stats.json"));
    let mut s = String::new();
    let top: Vec<(String, String)> = stats.as_object().into_iter().flatten().filter(|(_, v)| v.is_number()).map(|(k, v)| (k.clone(), num(v))).collect();
    s.push_str(&table(&top));
    if let Some(steps) = stats["steps"].as_array() {
        let removed: Vec<(String, f64)> =
            steps.iter().map(|st| (st["step"].as_str().unwrap_or("?").to_string(), st["removed"].as_f64().unwrap_or(0.0))).collect();
        s.push_str("<h4>Removed per cleaning step</h4>");
        s.push_str(&bars(&removed, "#c97b6b"));
        let mut reasons: Vec<(String, f64)> = steps
            .iter()
            .flat_map(|st| {
                st["reasons"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(r, n)| (format!("{}: {r}", st["step"].as_str().unwrap_or("?")), n.as_f64().unwrap_or(0.0)))
            })
            .collect();
        reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
        if !reasons.is_empty() {
            s.push_str("<h4>Rejects by reason</h4>");
            s.push_str(&bars(&reasons, "#d9a441"));
        }
    }
    let recs: Vec<tailor_text::record::Record> =
        lines(&dir.join("records.jsonl"), 50_000).into_iter().filter_map(|r| serde_json::from_value::<tailor_text::record::Record>(r).ok()).collect();
    if !recs.is_empty() {
        let replies: Vec<&str> = recs.iter().map(|r| r.body.target()).collect();
        let joined: Vec<String> = recs.iter().map(|r| r.body.joined()).collect();
        let texts: Vec<&str> = joined.iter().map(String::as_str).collect();
        let profile = tailor_text::profile::profile(&replies, &texts);
        s.push_str("<h4>Dataset profile</h4><ul>");
        for line in profile.lines() {
            s.push_str(&format!("<li>{}</li>", esc(&line)));
        }
        s.push_str("</ul>");
    }
    let lens: Vec<f64> = recs.iter().take(20_000).map(|r| r.body.exchange().1.chars().count() as f64).collect();
    if !lens.is_empty() {
        s.push_str("<h4>Answer length (characters)</h4>");
        s.push_str(&histogram(&lens, 30, "characters"));
    }
    s
}

/// A tokenized split: its manifest and the sample lengths.
pub fn tokenized(dir: &Path) -> String {
    let m = json_file(&dir.join("manifest.json"));
    let keys = ["samples", "tokens", "target_tokens", "truncated", "dropped", "packs", "max_tokens", "template"];
    let rows: Vec<(String, String)> = keys.iter().filter(|k| !m[**k].is_null()).map(|k| (k.to_string(), num(&m[*k]))).collect();
    let mut s = table(&rows);
    let lens: Vec<f64> = lines(&dir.join("samples.jsonl"), 100_000).iter().filter_map(|r| r["tokens"].as_f64()).collect();
    if !lens.is_empty() {
        s.push_str("<h4>Sample length (tokens)</h4>");
        s.push_str(&histogram(&lens, 30, "tokens"));
    }
    s
}

/// A model: training and validation loss per step, and the headline numbers.
pub fn model(dir: &Path) -> String {
    let log = lines(&dir.join("log.jsonl"), 1_000_000);
    let train: Vec<(f64, f64)> = log.iter().filter_map(|r| Some((r["step"].as_f64()?, r["loss"].as_f64()?))).collect();
    let val: Vec<(f64, f64)> = log.iter().filter_map(|r| Some((r["step"].as_f64()?, r["val_loss"].as_f64()?))).collect();
    let mut series = vec![Series { name: "train loss".into(), points: train, color: "#3a6ea5", markers: false }];
    if !val.is_empty() {
        series.push(Series { name: "validation loss".into(), points: val, color: "#c0392b", markers: true });
    }
    let m = json_file(&dir.join("metrics.json"));
    let t = json_file(&dir.join("train.json"));
    let mut rows = vec![
        ("method".to_string(), t["method"]["method"].as_str().unwrap_or("?").to_string()),
        ("base".into(), json_file(&dir.join("base.json"))["path"].as_str().unwrap_or("?").to_string()),
    ];
    rows.extend(m.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), num(v))));
    if let Some(n) = m["samples"].as_u64() {
        rows.push(("data size band".into(), tailor_text::profile::SizeBand::of(n as usize).describe().to_string()));
    }
    format!("{}{}", table(&rows), line_chart(&series, "step", "loss"))
}

/// The metrics of each variant of a `metrics.json` (`variants`,
/// `compared`): tuned, the compared model, and the change.
fn variants_table(m: &Value) -> String {
    let tuned = m["variants"]["tuned"].as_object().cloned().unwrap_or_default();
    let other = m["compared"].as_str().unwrap_or("base").to_string();
    let base = m["variants"].get(&other).and_then(Value::as_object).cloned();
    let mut s = String::from("<table><tr><th>metric</th><th>tuned</th>");
    if base.is_some() {
        let _ = write!(s, "<th>{}</th><th>change</th>", esc(&other));
    }
    s.push_str("</tr>");
    for (k, v) in &tuned {
        let t = v.as_f64().unwrap_or(f64::NAN);
        let _ = write!(s, "<tr><td>{}</td><td>{t:.4}</td>", esc(k));
        if let Some(b) = base.as_ref().and_then(|b| b.get(k)).and_then(Value::as_f64) {
            let _ = write!(s, "<td>{b:.4}</td><td>{:+.4}</td>", t - b);
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// A benchmark: general-ability metrics of the tuned model and the one it
/// is compared with, and how many items each got right that the other did not.
pub fn benchmark(dir: &Path) -> String {
    let m = json_file(&dir.join("metrics.json"));
    let mut s = variants_table(&m);
    if let Some(other) = m["compared"].as_str() {
        let rows = lines(&dir.join("items.jsonl"), 10_000_000);
        let key = |r: &Value| (r["task"].to_string(), r["id"].to_string());
        let before: std::collections::BTreeMap<_, &Value> = rows.iter().filter(|r| r["variant"] == other).map(|r| (key(r), r)).collect();
        let (mut lost, mut gained) = (0, 0);
        for t in rows.iter().filter(|r| r["variant"] == "tuned") {
            match (before.get(&key(t)).map(|b| b["correct"] == true), t["correct"] == true) {
                (Some(true), false) => lost += 1,
                (Some(false), true) => gained += 1,
                _ => {}
            }
        }
        let _ = write!(s, "<p>Items {} got right and the tuned model gets wrong: {lost}; the other way: {gained}.</p>", esc(other));
    }
    s
}

/// An evaluation: metrics of the tuned model (and the base), and the worst cases.
pub fn evaluation(dir: &Path) -> String {
    let m = json_file(&dir.join("metrics.json"));
    let other = m["compared"].as_str().unwrap_or("base").to_string();
    let mut s = variants_table(&m);
    let rows = lines(&dir.join("results.jsonl"), 1_000_000);
    let mut worst: Vec<&Value> = rows.iter().filter(|r| r["variant"] == "tuned").collect();
    worst.sort_by_key(|r| r["pass"].as_bool().unwrap_or(false));
    let _ = write!(s, "<h4>Sample outputs (failures first)</h4><table><tr><th>prompt</th><th>reference</th><th>tuned</th><th>{}</th></tr>", esc(&other));
    for r in worst.iter().take(8) {
        let base_out = rows.iter().find(|b| b["variant"] == other.as_str() && b["id"] == r["id"]).and_then(|b| b["output"].as_str()).unwrap_or("");
        let _ = write!(
            s,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r["pass"] == true { "ok" } else { "fail" },
            esc(r["prompt"].as_str().unwrap_or("")),
            esc(r["reference"].as_str().unwrap_or("")),
            esc(r["output"].as_str().unwrap_or("")),
            esc(base_out)
        );
    }
    s.push_str("</table>");
    s
}

/// The page `tailor review merge` writes beside its outputs: the reviewers'
/// agreement (raw, Cohen's kappa for two, Fleiss' kappa for any number)
/// and the cases to adjudicate, disagreements first, each reviewer's
/// verdict and reply side by side. `agreement` is `agreement.json`;
/// `cases` are the lines of `adjudicate.jsonl`.
pub fn agreement_page(agreement: &Value, cases: &[Value]) -> String {
    let reviewers: Vec<String> = agreement["reviewers"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string)).collect();
    let a = &agreement["agreement"];
    let kappa = |v: &Value| v.as_f64().map_or_else(|| "undefined (one label only)".to_string(), |x| format!("{x:.3}"));
    let mut s = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Review agreement</title><style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}.differ{background:#fdecea}</style></head><body><h1>Review agreement</h1>",
    );
    let _ = write!(s, "<p>Reviewers: {}</p>", esc(&reviewers.join(", ")));
    if a.is_object() {
        let mut rows = vec![
            ("cases judged by every reviewer".to_string(), num(&a["cases"])),
            ("raw agreement".to_string(), a["raw"].as_f64().map_or_else(String::new, |x| format!("{:.1} %", x * 100.0))),
        ];
        if a["raters"].as_u64() == Some(2) {
            rows.push(("Cohen's kappa".into(), kappa(&a["cohen"])));
        }
        rows.push(("Fleiss' kappa".into(), kappa(&a["fleiss"])));
        s.push_str(&table(&rows));
    } else {
        s.push_str("<p>No case was judged by every reviewer.</p>");
    }
    let _ = write!(s, "<h2>To adjudicate ({})</h2><table><tr><th>case</th><th>why</th><th>prompt</th>", cases.len());
    for r in &reviewers {
        let _ = write!(s, "<th>{}</th>", esc(r));
    }
    s.push_str("</tr>");
    for c in cases {
        let why = c["why"].as_str().unwrap_or("");
        let _ = write!(
            s,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td>",
            if why.contains("verdicts differ") { "differ" } else { "" },
            esc(c["fix_of"].as_str().unwrap_or("")),
            esc(why),
            esc(c["prompt"].as_str().unwrap_or(""))
        );
        for r in &reviewers {
            let j = &c["reviews"][r];
            if j.is_object() {
                let _ = write!(s, "<td><b>{}</b><br>{}</td>", esc(j["verdict"].as_str().unwrap_or("")), esc(j["completion"].as_str().unwrap_or("")));
            } else {
                s.push_str("<td>—</td>");
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table></body></html>\n");
    s
}
