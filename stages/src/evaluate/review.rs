//! Files for a human check of an evaluation, worst cases first:
//!
//! - `review.csv`: one row per case (prompt, reference, outputs, metrics,
//!   and empty `verdict` / `fix` columns to fill in a spreadsheet);
//! - `review.html`: one static page (no network, no build step) where a
//!   reviewer marks each case `accept` or `fix`, edits the reply, and
//!   downloads `review.jsonl` — records `{"prompt", "completion", "meta"}`
//!   that a `collect` source reads as they are, so corrections flow into the
//!   next `retrain`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use tailor_engine::{IoContext, StageError};

/// One reviewed case: the data shown and the metric values per variant.
pub struct Row {
    /// Sample id.
    pub id: String,
    /// The question.
    pub prompt: String,
    /// Expected answer.
    pub reference: String,
    /// Tuned model's output.
    pub output: String,
    /// Base model's output, when compared.
    pub base_output: Option<String>,
    /// Whether the tuned output passed.
    pub pass: bool,
    /// Metric values of the tuned output.
    pub metrics: Value,
}

/// The page `tailor review merge` writes: agreement and the cases to adjudicate.
pub use tailor_report::agreement_page;

/// Write `review.csv` and `review.html` into `dir` (rows already sorted).
pub fn write(dir: &Path, title: &str, rows: &[Row]) -> Result<(), StageError> {
    let mut csv = csv::Writer::from_path(dir.join("review.csv")).map_err(|e| StageError::msg(format!("review.csv: {e}")))?;
    let metric_names: Vec<String> = rows.first().and_then(|r| r.metrics.as_object()).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let mut header = vec!["id".to_string(), "pass".into()];
    header.extend(metric_names.iter().cloned());
    header.extend(["prompt", "reference", "output", "base_output", "verdict", "fix"].map(String::from));
    csv.write_record(&header).map_err(|e| StageError::msg(format!("review.csv: {e}")))?;
    for r in rows {
        let mut rec = vec![r.id.clone(), r.pass.to_string()];
        rec.extend(metric_names.iter().map(|m| r.metrics[m].as_f64().map_or(String::new(), |v| format!("{v:.4}"))));
        rec.extend([r.prompt.clone(), r.reference.clone(), r.output.clone(), r.base_output.clone().unwrap_or_default(), String::new(), String::new()]);
        csv.write_record(&rec).map_err(|e| StageError::msg(format!("review.csv: {e}")))?;
    }
    csv.flush().ctx(|| "review.csv".into())?;
    let data: Vec<Value> = rows.iter().map(|r| json!({"id": r.id, "prompt": r.prompt, "reference": r.reference, "output": r.output, "base": r.base_output, "pass": r.pass, "metrics": r.metrics})).collect();
    // Inside <script>, only `</` can end the element early.
    let payload = serde_json::to_string(&data).unwrap_or_default().replace("</", "<\\/");
    let page = PAGE.replace("{{TITLE}}", &html_escape(title)).replace("{{DATA}}", &payload);
    let mut f = std::fs::File::create(dir.join("review.html")).ctx(|| "review.html".into())?;
    f.write_all(page.as_bytes()).ctx(|| "review.html".into())
}

/// One reviewer's judgement of a case, from their `review.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Judgement {
    /// `accept` or `fix`.
    pub verdict: String,
    /// The reply they keep (the model's, or their fix).
    pub completion: String,
}

/// Several reviewers' files for one evaluation, merged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Merged {
    /// Reviewers, in the order given.
    pub reviewers: Vec<String>,
    /// Agreement over the cases everyone judged.
    pub agreement: Option<tailor_metric::agreement::Agreement>,
    /// Cases to adjudicate, disagreements first: (case, prompt, why,
    /// each reviewer's judgement).
    pub adjudicate: Vec<(String, String, String, BTreeMap<String, Judgement>)>,
    /// Records everyone agreed on, as `collect` reads them.
    pub agreed: Vec<Value>,
}

/// Merge `files` (reviewer name, the lines of their `review.jsonl`).
/// A case goes to `agreed` when every reviewer judged it the same way with
/// the same reply; otherwise to `adjudicate`, with the reason.
pub fn merge(files: &[(String, Vec<Value>)]) -> Merged {
    // case → (prompt, reviewer → judgement), in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut cases: BTreeMap<String, (String, BTreeMap<String, Judgement>)> = BTreeMap::new();
    for (who, lines) in files {
        for v in lines {
            let Some(case) = v["meta"]["fix_of"].as_str() else { continue };
            let entry = cases.entry(case.to_string()).or_insert_with(|| {
                order.push(case.to_string());
                (v["prompt"].as_str().unwrap_or_default().to_string(), BTreeMap::new())
            });
            let verdict = v["meta"]["verdict"].as_str().unwrap_or("accept").to_string();
            entry.1.insert(who.clone(), Judgement { verdict, completion: v["completion"].as_str().unwrap_or_default().to_string() });
        }
    }
    let reviewers: Vec<String> = files.iter().map(|(w, _)| w.clone()).collect();
    let mut labels = Vec::new();
    let mut split = Vec::new();
    let mut text = Vec::new();
    let mut partial = Vec::new();
    let mut agreed = Vec::new();
    for case in order {
        let Some((prompt, by)) = cases.remove(&case) else { continue };
        if by.len() < reviewers.len() {
            partial.push((case, prompt, format!("judged by {} of {} reviewers", by.len(), reviewers.len()), by));
            continue;
        }
        labels.push(reviewers.iter().filter_map(|r| by.get(r)).map(|j| j.verdict.clone()).collect::<Vec<_>>());
        let first = by.values().next().cloned();
        match first {
            Some(j) if by.values().all(|o| o.verdict == j.verdict && o.completion == j.completion) => {
                agreed
                    .push(json!({"prompt": prompt, "completion": j.completion, "meta": {"fix_of": case, "verdict": j.verdict, "reviewers": reviewers.len()}}));
            }
            Some(j) if by.values().all(|o| o.verdict == j.verdict) => text.push((case, prompt, "all fixed it, with different replies".to_string(), by)),
            _ => split.push((case, prompt, "verdicts differ".to_string(), by)),
        }
    }
    let agreement = tailor_metric::agreement::agreement(&labels);
    let mut adjudicate = split;
    adjudicate.extend(text);
    adjudicate.extend(partial);
    Merged { reviewers, agreement, adjudicate, agreed }
}

/// Escape text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Review: {{TITLE}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.3em}table{border-collapse:collapse;width:100%}
td,th{border-top:1px solid #ddd;padding:.5em;vertical-align:top;text-align:left}
.fail{background:#fff4f2}.ok{background:#f4fbf4}pre{white-space:pre-wrap;margin:0;font:13px ui-monospace,monospace}
textarea{width:100%;min-height:4em;font:13px ui-monospace,monospace}.m{color:#555;font-size:12px}
#bar{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc}
</style></head><body>
<h1>Review: {{TITLE}}</h1>
<div id="bar"><span id="count"></span> · <button id="dl">Download review.jsonl</button>
<span class="m">accepted and fixed cases become records {"prompt","completion","meta"} a collect source reads</span></div>
<table><thead><tr><th>case</th><th>prompt</th><th>reference</th><th>output</th><th>verdict / fix</th></tr></thead><tbody id="rows"></tbody></table>
<script id="data" type="application/json">{{DATA}}</script>
<script>
const rows = JSON.parse(document.getElementById('data').textContent);
const body = document.getElementById('rows');
function pre(t){const p=document.createElement('pre');p.textContent=t??'';return p;}
rows.forEach((r,i)=>{
  const tr=document.createElement('tr');tr.className=r.pass?'ok':'fail';
  const c0=document.createElement('td');c0.append(pre(r.id));
  const m=document.createElement('div');m.className='m';
  m.textContent=(r.pass?'pass':'FAIL')+' · '+Object.entries(r.metrics).map(([k,v])=>k+' '+(typeof v==='number'?v.toFixed(3):v)).join(' · ');
  c0.append(m);
  const c1=document.createElement('td');c1.append(pre(r.prompt));
  const c2=document.createElement('td');c2.append(pre(r.reference));
  const c3=document.createElement('td');c3.append(pre(r.output));
  if(r.base!==null&&r.base!==undefined){const b=document.createElement('div');b.className='m';b.textContent='base: '+r.base;c3.append(b);}
  const c4=document.createElement('td');
  for(const v of ['accept','fix']){const l=document.createElement('label');const x=document.createElement('input');
    x.type='radio';x.name='v'+i;x.value=v;x.onchange=()=>{r.verdict=v;count();};l.append(x,' '+v+' ');c4.append(l);}
  const ta=document.createElement('textarea');ta.value=r.output;ta.oninput=()=>{r.fix=ta.value;};c4.append(ta);
  tr.append(c0,c1,c2,c3,c4);body.append(tr);
});
function count(){const n=rows.filter(r=>r.verdict).length;document.getElementById('count').textContent=n+' of '+rows.length+' reviewed';}
count();
document.getElementById('dl').onclick=()=>{
  const lines=rows.filter(r=>r.verdict).map(r=>JSON.stringify({prompt:r.prompt,completion:r.verdict==='fix'?(r.fix??r.output):r.output,meta:{fix_of:r.id,verdict:r.verdict}}));
  const a=document.createElement('a');a.href=URL.createObjectURL(new Blob([lines.join('\n')+'\n'],{type:'application/jsonl'}));
  a.download='review.jsonl';a.click();
};
</script></body></html>
"#;

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn line(case: &str, verdict: &str, completion: &str) -> Value {
        json!({"prompt": format!("q{case}"), "completion": completion, "meta": {"fix_of": case, "verdict": verdict}})
    }

    #[test]
    fn agreed_cases_merge_and_disagreements_come_first() {
        let ann = vec![line("1", "accept", "a1"), line("2", "fix", "better"), line("3", "fix", "x"), line("4", "accept", "a4"), line("5", "fix", "f5")];
        let bob = vec![line("1", "accept", "a1"), line("2", "accept", "a2"), line("3", "fix", "y"), line("4", "accept", "a4")];
        let m = merge(&[("ann".into(), ann), ("bob".into(), bob)]);
        let order: Vec<(&str, &str)> = m.adjudicate.iter().map(|(c, _, why, _)| (c.as_str(), why.as_str())).collect();
        assert_eq!(order, [("2", "verdicts differ"), ("3", "all fixed it, with different replies"), ("5", "judged by 1 of 2 reviewers")]);
        assert_eq!(m.agreed.len(), 2);
        assert_eq!(m.agreed[0]["meta"]["fix_of"], "1");
        // Four cases judged by both: 1 accept/accept, 2 fix/accept, 3 fix/fix, 4 accept/accept.
        let a = m.agreement.unwrap();
        assert_eq!(a.cases, 4);
        assert!((a.raw - 0.75).abs() < 1e-12);
        // p_o 0.75; ann fix 2/4, bob fix 1/4: p_e = 0.5·0.25 + 0.5·0.75 = 0.5; kappa 0.5.
        assert!((a.cohen.unwrap() - 0.5).abs() < 1e-12, "{a:?}");
    }
}
