//! `tailor push`, `tailor pull`, `tailor remote add`, and the remote a run
//! consults.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tailor_engine::remote::{Fetched, Remote, RemoteConfig};
use tailor_engine::{Outcome, Pipeline, RunSummary, Workspace};
use tailor_remote::ObjectRemote;

use crate::commands::pretty;
use crate::exit;

fn open(p: &Pipeline) -> Option<Result<ObjectRemote, String>> {
    let cfg = p.header.remote.as_ref()?;
    Some(tailor_remote::open(cfg, &p.root))
}

fn required(p: &Pipeline) -> Result<ObjectRemote, u8> {
    match open(p) {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            Err(exit::IO)
        }
        None => {
            eprintln!("error: the pipeline has no `remote:`; add one with `tailor remote add s3://BUCKET/PREFIX` (or a shared directory)");
            Err(exit::INVALID)
        }
    }
}

/// The remote a run consults, if the pipeline names one. A remote that
/// cannot be opened is reported, and the run goes on without it.
pub fn for_run(p: &Pipeline) -> Option<Arc<dyn Remote>> {
    match open(p)? {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            eprintln!("warning: the remote cache cannot be used ({e}); running without it");
            None
        }
    }
}

/// The fingerprints of the locked stages to move (all, or the named ones).
fn locked(ws: &Workspace, stages: &[String]) -> Result<Vec<(String, String)>, u8> {
    let lock = ws.lock().map_err(|e| {
        eprintln!("error: {e}");
        exit::IO
    })?;
    if let Some(s) = stages.iter().find(|s| !lock.stages.contains_key(*s)) {
        eprintln!("error: `{s}` is not in the lock file ({}); run it first", ws.lock_path.display());
        return Err(exit::INVALID);
    }
    Ok(lock.stages.iter().filter(|(n, _)| stages.is_empty() || stages.contains(n)).map(|(n, l)| (n.clone(), l.fingerprint.clone())).collect())
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn do_push(remote: &ObjectRemote, ws: &Workspace, fps: &[String], json: bool) -> u8 {
    let t = Instant::now();
    match remote.push(&ws.store, fps) {
        Ok(stats) => {
            if json {
                println!("{}", pretty(&stats));
            } else {
                eprintln!(
                    "pushed {} stage records to {}: {} objects uploaded ({}), {} already there, in {:.1}s",
                    stats.records,
                    remote.name(),
                    stats.uploaded,
                    human(stats.bytes),
                    stats.present,
                    t.elapsed().as_secs_f64()
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: push to {} failed: {e}\n  nothing half-done is visible there; `tailor push` again completes it", remote.name());
            exit::IO
        }
    }
}

/// `tailor push [STAGE…]`.
pub fn push(p: &Pipeline, ws: &Workspace, stages: &[String], json: bool) -> u8 {
    let remote = match required(p) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let fps = match locked(ws, stages) {
        Ok(l) => l.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
        Err(code) => return code,
    };
    do_push(&remote, ws, &fps, json)
}

/// `tailor run --push`: push the stages that ran.
pub fn push_ran(p: &Pipeline, ws: &Workspace, summary: &RunSummary, json: bool) -> u8 {
    let remote = match required(p) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let fps: Vec<String> =
        summary.stages.iter().filter_map(|(_, o)| if let Outcome::Ran { fingerprint, .. } = o { Some(fingerprint.clone()) } else { None }).collect();
    do_push(&remote, ws, &fps, json)
}

/// `tailor pull [STAGE…]`.
pub fn pull(p: &Pipeline, ws: &Workspace, stages: &[String], json: bool) -> u8 {
    let remote = match required(p) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let wanted = match locked(ws, stages) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // Downloads go through the store's scratch space, which a starting run clears.
    let _guard = match ws.lock_runs() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: taking the run lock: {e}");
            return exit::IO;
        }
    };
    let t = Instant::now();
    let (mut bytes, mut got, mut had) = (0u64, 0usize, 0usize);
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for (name, fp) in &wanted {
        let local = std::fs::read(ws.store.record_path(fp))
            .ok()
            .and_then(|b| serde_json::from_slice::<tailor_engine::fingerprint::StageRecord>(&b).ok())
            .is_some_and(|r| r.outputs.values().all(|d| ws.store.has_artifact(d)));
        let status = if local {
            had += 1;
            "present".to_string()
        } else {
            match remote.fetch(&ws.store, fp) {
                Ok(Fetched::Hit { bytes: n }) => {
                    got += 1;
                    bytes += n;
                    format!("pulled ({})", human(n))
                }
                Ok(Fetched::Miss) => {
                    problems.push(format!("{name}: not on the remote"));
                    "not on the remote".into()
                }
                Ok(Fetched::Damaged(m)) => {
                    problems.push(format!("{name}: {m} — not used"));
                    format!("damaged on the remote, not used: {m}")
                }
                Err(e) => {
                    eprintln!("error: pull from {} failed: {e}", remote.name());
                    return exit::IO;
                }
            }
        };
        if !json {
            println!("  {name:<16} {status}");
        }
        rows.push(serde_json::json!({"stage": name, "fingerprint": fp, "status": status}));
    }
    if json {
        println!("{}", pretty(&rows));
    }
    eprintln!(
        "pulled {got} stages ({}) from {} in {:.1}s; {had} were already here{}",
        human(bytes),
        remote.name(),
        t.elapsed().as_secs_f64(),
        if problems.is_empty() { String::new() } else { format!("; {} could not be pulled (`tailor run` computes them)", problems.len()) }
    );
    if problems.is_empty() { exit::OK } else { exit::STAGE_FAILED }
}

/// `tailor remote add URL`: set the pipeline file's top-level `remote:`
/// line (replacing a one-line `remote:`, else added after `name:`), then
/// check the file still loads.
pub fn add(file: &Path, url: &str, endpoint: Option<&str>, region: Option<&str>) -> u8 {
    let cfg = match (endpoint, region) {
        (None, None) => RemoteConfig::Url(url.to_string()),
        _ => RemoteConfig::Full(tailor_engine::remote::RemoteSettings {
            url: url.to_string(),
            endpoint: endpoint.map(str::to_string),
            region: region.map(str::to_string),
        }),
    };
    let Ok(text) = std::fs::read_to_string(file) else {
        eprintln!("error: cannot read the pipeline file {}", file.display());
        return exit::IO;
    };
    let value = serde_json::to_string(&cfg).unwrap_or_default();
    let line = format!("remote: {value}");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(i) = lines.iter().position(|l| l.starts_with("remote:")) {
        if lines.get(i + 1).is_some_and(|n| n.starts_with(' ')) {
            eprintln!("error: {} has a multi-line `remote:`; edit it by hand", file.display());
            return exit::INVALID;
        }
        lines[i] = line;
    } else if let Some(i) = lines.iter().position(|l| l.starts_with("name:")) {
        lines.insert(i + 1, line);
    } else {
        eprintln!("error: {} has no top-level `name:` to put `remote:` after", file.display());
        return exit::INVALID;
    }
    let new = lines.join("\n") + "\n";
    if let Err(e) = tailor_engine::store::write_atomic(file, new.as_bytes()) {
        eprintln!("error: writing {}: {e}", file.display());
        return exit::IO;
    }
    let registry = tailor_stages::registry();
    if let Err(e) = tailor_engine::load(file, &registry, &tailor_engine::Overrides::default()) {
        let _ = tailor_engine::store::write_atomic(file, text.as_bytes());
        eprint!("{}", e.render());
        eprintln!("error: the pipeline would not load with this remote; {} is unchanged", file.display());
        return exit::INVALID;
    }
    eprintln!("{}: remote is now {}", file.display(), url);
    exit::OK
}
