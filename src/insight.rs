//! `tailor report` and `tailor compare`: looking at results.
//!
//! A report is one static HTML file — no scripts, no network — with the DAG,
//! every stage's headline numbers and the fragment its kind contributes
//! (data counts and rejects, length histograms, loss curves, evaluation
//! metrics base vs tuned, sample outputs), the recorded runs, and
//! optionally a comparison. A comparison takes two sides, each one of:
//! a lock file path; `run:N` (a recorded run, as `tailor runs` lists them,
//! 1-based; negative counts from the newest); `params:k=v,k=v` (this
//! pipeline with those parameters, read from the cache); `current`; or
//! a git revision (`HEAD~1`), whose committed `tailor.lock` is read.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use tailor_engine::compare::{Side, compare};
use tailor_engine::lockfile::Lock;
use tailor_engine::{Overrides, Pipeline, Workspace};

fn git_lock(lock_path: &Path, rev: &str) -> Result<Lock, String> {
    let abs = lock_path.canonicalize().unwrap_or_else(|_| lock_path.to_path_buf());
    let dir = abs.parent().unwrap_or(Path::new("."));
    let top = std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", "--show-toplevel"]).output().map_err(|e| format!("running git: {e}"))?;
    if !top.status.success() {
        return Err(format!("`{rev}` is not a lock file, run or parameter set, and {} is not in a git repository", dir.display()));
    }
    let top = PathBuf::from(String::from_utf8_lossy(&top.stdout).trim());
    let rel = abs.strip_prefix(&top).unwrap_or(&abs).display().to_string();
    let out =
        std::process::Command::new("git").arg("-C").arg(&top).arg("show").arg(format!("{rev}:{rel}")).output().map_err(|e| format!("running git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git has no {rel} at `{rev}`: {} (is the lock file committed?)", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Lock::parse(&String::from_utf8_lossy(&out.stdout), &format!("{rev}:{rel}"))
}

/// Resolve one side of a comparison.
pub fn side(spec: &str, p: &Pipeline, ws: &Workspace, registry: &tailor_engine::Registry) -> Result<Side, String> {
    let label = spec.to_string();
    if spec == "current" {
        return Ok(Side { label, lock: ws.lock()? });
    }
    if let Some(n) = spec.strip_prefix("run:") {
        let runs = ws.runs().map_err(|e| format!("listing recorded runs: {e}"))?;
        let i: i64 = n.parse().map_err(|_| format!("`{spec}`: expected run:N (1 = oldest, -1 = newest)"))?;
        let idx = if i < 0 { runs.len() as i64 + i } else { i - 1 };
        let run = usize::try_from(idx).ok().and_then(|k| runs.get(k)).ok_or_else(|| format!("`{spec}`: there are {} recorded runs", runs.len()))?;
        let rec = run.record.as_ref().map_err(|e| format!("{}: {e} (damaged, or recorded by an older Tailor)", run.path.display()))?;
        return Ok(Side { label: format!("{spec} ({})", run.id), lock: rec.lock.clone() });
    }
    if let Some(kv) = spec.strip_prefix("params:") {
        let params = kv.split(',').filter(|s| !s.is_empty()).map(Overrides::parse_pair).collect::<Result<Vec<_>, _>>()?;
        let q = tailor_engine::load(&p.file, registry, &Overrides { params, sets: vec![] }).map_err(|e| e.render())?;
        let lock = tailor_engine::exec::cached_lock(&q, ws).map_err(|e| e.to_string())?;
        return Ok(Side { label, lock });
    }
    if Path::new(spec).is_file() {
        return Ok(Side { label, lock: Lock::read(Path::new(spec))? });
    }
    Ok(Side { label, lock: git_lock(&ws.lock_path, spec)? })
}

/// `tailor compare A B`: the comparison, rendered.
pub fn compare_text(a: &str, b: &str, p: &Pipeline, ws: &Workspace, registry: &tailor_engine::Registry, json: bool) -> Result<String, String> {
    let (sa, sb) = (side(a, p, ws, registry)?, side(b, p, ws, registry)?);
    let c = compare(&sa, &sb);
    Ok(if json { crate::commands::pretty(&c) } else { c.render_text() })
}

const STYLE: &str = concat!(
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}h1{font-size:1.5em}",
    "h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1.05em}h4{font-size:.95em;color:#444}",
    "table{border-collapse:collapse;margin:.5em 0}",
    "td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top;font-size:13px}",
    ".kv th{background:#f6f6f6}.fail{background:#fff4f2}.ok{background:#f4fbf4}.m{color:#666}svg{max-width:100%;height:auto}",
);

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The report's HTML.
pub fn report_html(p: &Pipeline, ws: &Workspace, registry: &tailor_engine::Registry, comparison: Option<(&str, &str)>) -> Result<String, String> {
    let lock = ws.lock()?;
    let plan = tailor_engine::plan(p, ws, &tailor_engine::RunOptions::default()).map_err(|e| e.to_string())?;
    let status: std::collections::BTreeMap<String, String> = plan
        .iter()
        .map(|e| (e.name.clone(), if e.status == tailor_engine::PlanStatus::UpToDate { "cached".to_string() } else { e.status.to_string() }))
        .collect();
    let mut h = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tailor report: {0}</title><style>{STYLE}</style></head><body><h1>Tailor report: {0}</h1>",
        esc(&p.header.name)
    );
    if let Some(d) = &p.header.description {
        let _ = write!(h, "<p>{}</p>", esc(d));
    }
    let params: Vec<String> = p.header.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let _ = write!(
        h,
        "<p class=\"m\">pipeline {} · params: {} · {} stages, {} with results</p>",
        esc(&p.file.display().to_string()),
        esc(&params.join(", ")),
        p.stages.len(),
        lock.stages.len()
    );
    let _ = write!(h, "<h2 id=\"dag\">Pipeline</h2>{}", p.dag.render_svg(&p.kinds(), &status));
    for name in p.dag.order() {
        let Some(s) = p.stage(&name) else { continue };
        let _ = write!(h, "<h2 id=\"stage-{0}\">{0} <span class=\"m\">({1})</span></h2>", esc(&name), esc(&s.kind));
        let Some(l) = lock.stages.get(&name) else {
            h.push_str("<p class=\"m\">no result yet: run <code>tailor run</code></p>");
            continue;
        };
        let metrics: Vec<String> = l
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_f64().map_or_else(|| v.to_string(), |f| if f.fract() == 0.0 { format!("{f:.0}") } else { format!("{f:.4}") })))
            .collect();
        let _ = write!(h, "<p class=\"m\">fingerprint {} · {}</p>", &l.fingerprint[..12.min(l.fingerprint.len())], esc(&metrics.join(" · ")));
        let Some(kind) = registry.get(&s.kind) else { continue };
        for o in kind.outputs() {
            let Some(dir) = l.outputs.get(o.name).and_then(|d| ws.store.view(d).ok()) else { continue };
            if let Some(frag) = kind.report(o, &dir) {
                let _ = write!(h, "<h3>{}.{} <span class=\"m\">({})</span></h3>{frag}", esc(&name), o.name, o.kind);
            }
        }
    }
    if let Some((a, b)) = comparison {
        let (sa, sb) = (side(a, p, ws, registry)?, side(b, p, ws, registry)?);
        let _ = write!(h, "<h2 id=\"compare\">Comparison</h2>{}", compare(&sa, &sb).render_html());
    }
    h.push_str("<h2 id=\"runs\">Runs</h2><table><tr><th>run</th><th>params</th><th>stages</th></tr>");
    for run in ws.runs().map_err(|e| format!("listing recorded runs: {e}"))?.iter().rev().take(50) {
        let (params, stages) = match &run.record {
            Ok(r) => (crate::commands::pretty(&r.params), r.stages.iter().map(|(n, o)| format!("{n} {}", o.status())).collect::<Vec<_>>().join(", ")),
            Err(e) => (String::new(), format!("unreadable: {e}")),
        };
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&run.id), esc(&params), esc(&stages));
    }
    h.push_str("</table></body></html>\n");
    Ok(h)
}
