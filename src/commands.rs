//! One function per subcommand. Each returns an exit code; errors are
//! printed here, at the edge, in words a person can act on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::json;
use tailor_engine::exec::{Outcome, RunOptions, selection};
use tailor_engine::{Overrides, Pipeline, Reporter, Workspace};

use crate::{Cli, Command, DagFormat, OverrideArgs, exit};

/// Run the parsed command line.
pub fn dispatch(cli: Cli) -> u8 {
    let registry = tailor_stages::registry();
    match &cli.command {
        Command::Schema { write, check } => schema(&registry, write.as_deref(), check.as_deref()),
        Command::Validate { ov } => with_pipeline(&cli, ov, |p| {
            if cli.json {
                println!("{}", json!({"ok": true, "pipeline": p.header.name, "stages": p.dag.order()}));
            } else {
                eprintln!("{}: ok — pipeline `{}`, {} stages", p.file.display(), p.header.name, p.stages.len());
            }
            exit::OK
        }),
        Command::Plan { stages, force, ov } => with_workspace(&cli, ov, |p, ws| {
            let opts = RunOptions { targets: stages.clone(), force: *force, jobs: 1, job: false, remote: None };
            match tailor_engine::plan(p, ws, &opts) {
                Ok(entries) => {
                    if cli.json {
                        println!("{}", pretty(&entries));
                    } else {
                        print_plan(&entries);
                    }
                    exit::OK
                }
                Err(e) => fail(exit::INVALID, &e.to_string()),
            }
        }),
        Command::Status { ov } => with_workspace(&cli, ov, |p, ws| match tailor_engine::plan(p, ws, &RunOptions::default()) {
            Ok(entries) => {
                if cli.json {
                    println!("{}", pretty(&entries));
                } else {
                    for e in &entries {
                        println!("{:<12} {:<14} {}", e.status, e.name, e.reasons.first().cloned().unwrap_or_default());
                    }
                    crate::cluster::print_active(ws);
                }
                exit::OK
            }
            Err(e) => fail(exit::INVALID, &e.to_string()),
        }),
        Command::StageJob { stage, outcome, ov } => with_workspace(&cli, ov, |p, ws| crate::cluster::stage_job(p, ws, stage, outcome)),
        Command::Cancel => with_workspace(&cli, &OverrideArgs::default(), |_, ws| crate::cluster::cancel(ws)),
        Command::Push { stages, ov } => with_workspace(&cli, ov, |p, ws| crate::remote::push(p, ws, stages, cli.json)),
        Command::Pull { stages, ov } => with_workspace(&cli, ov, |p, ws| crate::remote::pull(p, ws, stages, cli.json)),
        Command::Remote(crate::RemoteCmd::Add { url, endpoint, region }) => {
            crate::remote::add(&pipeline_file(&cli), url, endpoint.as_deref(), region.as_deref())
        }
        Command::Run { stages, force, jobs, executor, push, ov } => with_workspace(&cli, ov, |p, ws| {
            let remote = crate::remote::for_run(p);
            let opts = RunOptions { targets: stages.clone(), force: *force, jobs: *jobs, job: false, remote: remote.clone() };
            let rep = Reporter::new(cli.json);
            let n = selection(p, &opts.targets).map(|s| s.len()).unwrap_or(0);
            let slurm = match executor {
                Some(crate::ExecutorArg::Slurm) => true,
                Some(crate::ExecutorArg::Local) => false,
                None => p.header.executor == tailor_engine::config::Executor::Slurm,
            };
            let result = if slurm {
                rep.line(&format!("tailor: pipeline `{}` ({} stages, on Slurm)", p.header.name, n));
                crate::cluster::run(&cli, p, ws, &opts, &rep, ov)
            } else {
                rep.line(&format!("tailor: pipeline `{}` ({} stages, {} jobs)", p.header.name, n, opts.jobs.max(1)));
                tailor_engine::run(p, ws, &opts, &rep)
            };
            match result {
                Ok(summary) => {
                    if cli.json {
                        println!("{}", pretty(&summary));
                    }
                    let count = |f: fn(&Outcome) -> bool| summary.stages.iter().filter(|(_, o)| f(o)).count();
                    let ran = count(|o| matches!(o, Outcome::Ran { .. }));
                    let cached = count(|o| matches!(o, Outcome::Cached { .. }));
                    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
                    let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
                    let unneeded = count(|o| matches!(o, Outcome::NotNeeded { .. }));
                    if !cli.json {
                        let later = if unneeded > 0 { format!(", {unneeded} not needed (a loop ended early)") } else { String::new() };
                        if ran == 0 && failed == 0 {
                            eprintln!("Nothing to do: all {cached} stages are up to date (no stage ran){later}.");
                        } else {
                            eprintln!("{ran} ran, {cached} cached, {failed} failed, {skipped} skipped{later}; lock file: {}", ws.lock_path.display());
                        }
                        for (name, o) in &summary.stages {
                            if let Outcome::Failed { error } = o {
                                eprintln!("\nstage `{name}` failed:\n  {}", error.replace('\n', "\n  "));
                            }
                        }
                    }
                    let pushed = if *push { crate::remote::push_ran(p, ws, &summary, cli.json) } else { exit::OK };
                    if !summary.ok() { exit::STAGE_FAILED } else { pushed }
                }
                Err(e) => fail(exit::IO, &e.to_string()),
            }
        }),
        Command::Dag { format } => with_pipeline(&cli, &OverrideArgs::default(), |p| {
            let kinds = p.kinds();
            let text = match format {
                DagFormat::Text => p.dag.render_text(&kinds),
                DagFormat::Mermaid => p.dag.render_mermaid(&kinds),
                DagFormat::Dot => p.dag.render_dot(&kinds),
            };
            print!("{text}");
            exit::OK
        }),
        Command::Show { target, limit, export, path, ov } => {
            with_workspace(&cli, ov, |p, ws| show(&registry, p, ws, target, *limit, export.as_deref(), *path, cli.json))
        }
        Command::Verify { repair } => with_workspace(&cli, &OverrideArgs::default(), |_, ws| verify(ws, *repair, cli.json)),
        Command::Lock { ov } => with_workspace(&cli, ov, rebuild_lock),
        Command::Gc { dry_run } => with_workspace(&cli, &OverrideArgs::default(), |_, ws| gc(ws, *dry_run)),
        Command::Runs => with_workspace(&cli, &OverrideArgs::default(), |_, ws| runs(ws, cli.json)),
        Command::Estimate(a) => estimate(a, cli.json),
        Command::Review(crate::ReviewCmd::Merge { files, out }) => review_merge(files, out, cli.json),
        Command::Import { file, out } => match tailor_model::import::import(file, out) {
            Ok(summary) => {
                if cli.json {
                    println!("{}", pretty(&summary));
                } else {
                    eprintln!("imported {} into {}: {}", file.display(), out.display(), serde_json::to_string(&summary).unwrap_or_else(|e| e.to_string()));
                }
                exit::OK
            }
            Err(e) => fail(exit::INVALID, &e),
        },
        Command::Report { out, compare } => with_workspace(&cli, &OverrideArgs::default(), |p, ws| {
            let pair = compare.as_ref().and_then(|c| Some((c.first()?.as_str(), c.get(1)?.as_str())));
            match crate::insight::report_html(p, ws, &registry, pair) {
                Ok(html) => {
                    let path = out.clone().unwrap_or_else(|| p.root.join("report.html"));
                    match std::fs::write(&path, html) {
                        Ok(()) => {
                            eprintln!("wrote {}", path.display());
                            exit::OK
                        }
                        Err(e) => fail(exit::IO, &format!("{}: {e}", path.display())),
                    }
                }
                Err(e) => fail(exit::INVALID, &e),
            }
        }),
        Command::Compare { a, b } => {
            with_workspace(&cli, &OverrideArgs::default(), |p, ws| match crate::insight::compare_text(a, b, p, ws, &registry, cli.json) {
                Ok(text) => {
                    print!("{text}");
                    exit::OK
                }
                Err(e) => fail(exit::INVALID, &e),
            })
        }
        Command::Tokenizer(crate::TokenizerCmd::Train { files, vocab, out }) => {
            let texts = match tailor_model::tokenizer::texts_from_files(files) {
                Ok(t) => t,
                Err(e) => return fail(exit::IO, &e),
            };
            match tailor_model::tokenizer::train_bpe(&texts, *vocab, out) {
                Ok(()) => {
                    eprintln!("trained a {vocab}-token BPE tokenizer on {} texts → {}", texts.len(), out.display());
                    exit::OK
                }
                Err(e) => fail(exit::IO, &e),
            }
        }
    }
}

fn fail(code: u8, msg: &(impl std::fmt::Display + ?Sized)) -> u8 {
    eprintln!("error: {msg}");
    code
}

pub fn pipeline_file(cli: &Cli) -> PathBuf {
    if let Some(f) = &cli.file {
        return f.clone();
    }
    ["tailor.yaml", "pipeline.yaml"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from("tailor.yaml"))
}

fn with_pipeline(cli: &Cli, ov: &OverrideArgs, f: impl FnOnce(&Pipeline) -> u8) -> u8 {
    let registry = tailor_stages::registry();
    let overrides = Overrides { params: ov.params.clone(), sets: ov.sets.clone() };
    match tailor_engine::load(&pipeline_file(cli), &registry, &overrides) {
        Ok(p) => {
            if !p.warnings.is_empty() {
                eprint!("{}", tailor_engine::diag::render_all(&p.warnings, &p.file.display().to_string(), &p.source));
            }
            f(&p)
        }
        Err(e) => {
            eprint!("{}", e.render());
            exit::INVALID
        }
    }
}

fn with_workspace(cli: &Cli, ov: &OverrideArgs, f: impl FnOnce(&Pipeline, &Workspace) -> u8) -> u8 {
    with_pipeline(cli, ov, |p| match Workspace::open(p, cli.store.as_deref()) {
        Ok(ws) => f(p, &ws),
        Err(e) => fail(exit::IO, &format!("cannot open the workspace store: {e}")),
    })
}

fn print_plan(entries: &[tailor_engine::PlanEntry]) {
    let mut run = 0;
    for e in entries {
        use tailor_engine::PlanStatus;
        let mark = match e.status {
            PlanStatus::UpToDate => "  ✓",
            PlanStatus::WillRun => {
                run += 1;
                "  ▶"
            }
            PlanStatus::MayRun => {
                run += 1;
                "  ?"
            }
            PlanStatus::NotSelected => "  -",
        };
        println!("{mark} {} ({}): {}", e.name, e.kind, e.status);
        for r in &e.reasons {
            println!("      {r}");
        }
        for n in &e.notes {
            println!("      · {n}");
        }
    }
    if run == 0 {
        println!("Nothing to do: every selected stage is up to date.");
    } else {
        println!("{run} stage(s) would run (? = runs only if its upstream output changes).");
    }
}

fn schema(registry: &tailor_engine::Registry, write: Option<&Path>, check: Option<&Path>) -> u8 {
    let all = tailor_engine::schema::all_schemas(registry);
    let render = |v: &serde_json::Value| format!("{}\n", pretty(v));
    if let Some(dir) = write {
        for (name, v) in &all {
            let p = dir.join(name);
            if let Err(e) = p.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&p, render(v))) {
                return fail(exit::IO, &format!("{}: {e}", p.display()));
            }
            eprintln!("wrote {}", p.display());
        }
        return exit::OK;
    }
    if let Some(dir) = check {
        let mut stale = Vec::new();
        for (name, v) in &all {
            let p = dir.join(name);
            let want = render(v);
            match std::fs::read_to_string(&p) {
                Ok(have) if have == want => {}
                Ok(have) => {
                    let first = have.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or(have.lines().count().min(want.lines().count()));
                    stale.push(format!(
                        "{} differs from line {}:\n  committed: {}\n  generated: {}",
                        p.display(),
                        first + 1,
                        have.lines().nth(first).unwrap_or("(end)"),
                        want.lines().nth(first).unwrap_or("(end)")
                    ));
                }
                Err(_) => stale.push(format!("{} is missing", p.display())),
            }
        }
        if stale.is_empty() {
            eprintln!("schemas in {} are up to date", dir.display());
            return exit::OK;
        }
        for s in &stale {
            eprintln!("{s}");
        }
        eprintln!("the committed schemas drifted from the config types; regenerate them with `cargo run -- schema --write schemas`");
        return exit::MISMATCH;
    }
    print!("{}", render(&all["pipeline.schema.json"]));
    exit::OK
}

#[allow(clippy::too_many_arguments)]
fn show(
    registry: &tailor_engine::Registry,
    p: &Pipeline,
    ws: &Workspace,
    target: &str,
    limit: usize,
    export: Option<&Path>,
    path_only: bool,
    json_out: bool,
) -> u8 {
    let (stage, output) = match target.split_once('.') {
        Some((s, o)) => (s, Some(o)),
        None => (target, None),
    };
    let Some(node) = p.stage(stage) else {
        return fail(exit::INVALID, &format!("no stage named `{stage}`; stages: {}", p.dag.order().join(", ")));
    };
    let decl = match output {
        None => node.outputs.first(),
        Some(o) => node.outputs.iter().find(|d| d.name == o),
    };
    let Some(decl) = decl else {
        let names: Vec<&str> = node.outputs.iter().map(|d| d.name).collect();
        return fail(exit::INVALID, &format!("stage `{stage}` has no output `{}`; outputs: {}", output.unwrap_or(""), names.join(", ")));
    };
    let lock = match ws.lock() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: {e}\n  showing the result the store holds for the pipeline as configured (`tailor lock` rewrites the lock file from it).");
            match tailor_engine::exec::cached_lock(p, ws) {
                Ok(l) => l,
                Err(e) => return fail(exit::IO, &e.to_string()),
            }
        }
    };
    let Some(digest) = lock.stages.get(stage).and_then(|s| s.outputs.get(decl.name)) else {
        return fail(exit::INVALID, &format!("`{stage}` has no recorded result yet; run `tailor run {stage}` first"));
    };
    // What is handed out is checked against its digest first (files written
    // since they were last hashed are hashed again).
    let mut cache = ws.stat_cache();
    let dir = match ws.store.checked_view(digest, Some(&mut cache)) {
        Ok(d) => d,
        Err(e) => return fail(exit::IO, &format!("{e}; run `tailor run {stage}` to recompute it (`tailor verify --repair` removes the damaged copy)")),
    };
    if let Err(e) = cache.save() {
        tracing::debug!("could not save the stat cache: {e}");
    }
    if path_only {
        println!("{}", dir.display());
        return exit::OK;
    }
    if let Some(to) = export {
        let Ok(m) = ws.store.manifest(digest) else { return fail(exit::IO, "manifest missing") };
        for f in &m.files {
            let dst = to.join(&f.path);
            if let Err(e) = dst.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::copy(dir.join(&f.path), &dst)) {
                return fail(exit::IO, &format!("{}: {e}", dst.display()));
            }
        }
        eprintln!("exported {} files to {}", m.files.len(), to.display());
        return exit::OK;
    }
    let m = ws.store.manifest(digest).ok();
    if json_out {
        println!("{}", json!({"stage": stage, "output": decl.name, "kind": decl.kind, "digest": digest, "path": dir, "files": m.map(|m| m.files)}));
        return exit::OK;
    }
    println!("{stage}.{} ({}) {digest}", decl.name, decl.kind);
    if let Some(m) = &m {
        for f in &m.files {
            println!("  {:>10}  {}", human(f.size), f.path);
        }
    }
    println!();
    let mut out = std::io::stdout().lock();
    let shown = registry.get(&node.kind).map(|k| k.show(decl, &dir, &mut out, limit));
    match shown {
        Some(Ok(true)) => exit::OK,
        Some(Err(e)) => fail(exit::IO, &e.to_string()),
        _ => exit::OK,
    }
}

fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[u]) }
}

fn verify(ws: &Workspace, repair: bool, json_out: bool) -> u8 {
    let _guard = match ws.lock_runs() {
        Ok(g) => g,
        Err(e) => return fail(exit::IO, &e.to_string()),
    };
    let rep = match ws.verify(repair) {
        Ok(r) => r,
        Err(e) => return fail(exit::IO, &e.to_string()),
    };
    if json_out {
        println!("{}", json!({"objects": rep.objects, "manifests": rep.manifests, "problems": rep.problems}));
    } else {
        for p in &rep.problems {
            println!("MISMATCH {p}");
        }
        println!("checked {} objects, {} artifacts and {} views: {} problem(s)", rep.objects, rep.manifests, rep.views, rep.problems.len());
    }
    if rep.problems.is_empty() { exit::OK } else { exit::MISMATCH }
}

/// Rewrite `tailor.lock` from the results the store holds for the
/// pipeline as configured.
fn rebuild_lock(p: &Pipeline, ws: &Workspace) -> u8 {
    let _guard = match ws.lock_runs() {
        Ok(g) => g,
        Err(e) => return fail(exit::IO, &e.to_string()),
    };
    match tailor_engine::exec::cached_lock(p, ws) {
        Ok(lock) => {
            let missing: Vec<String> = p.dag.order().into_iter().filter(|n| !lock.stages.contains_key(n)).collect();
            if let Err(e) = lock.write(&ws.lock_path) {
                return fail(exit::IO, &e);
            }
            eprintln!("wrote {} with {} of {} stages from the store", ws.lock_path.display(), lock.stages.len(), p.stages.len());
            if !missing.is_empty() {
                eprintln!("not in the store for this configuration (run them to record them): {}", missing.join(", "));
            }
            exit::OK
        }
        Err(e) => fail(exit::IO, &e.to_string()),
    }
}

fn gc(ws: &Workspace, dry_run: bool) -> u8 {
    let _guard = match ws.lock_runs() {
        Ok(g) => g,
        Err(e) => return fail(exit::IO, &e.to_string()),
    };
    let lock = match ws.lock() {
        Ok(l) => l,
        Err(e) => return fail(exit::IO, &e),
    };
    let records: BTreeSet<String> = lock.stages.values().map(|s| s.fingerprint.clone()).collect();
    let artifacts: BTreeSet<String> = lock.stages.values().flat_map(|s| s.outputs.values().cloned()).collect();
    match ws.store.gc(&records, &artifacts, dry_run) {
        Ok((n, bytes)) => {
            println!("{} {n} entries ({})", if dry_run { "would remove" } else { "removed" }, human(bytes));
            exit::OK
        }
        Err(e) => fail(exit::IO, &e.to_string()),
    }
}

fn runs(ws: &Workspace, json_out: bool) -> u8 {
    let runs = match ws.runs() {
        Ok(r) => r,
        Err(e) => return fail(exit::IO, &format!("listing recorded runs: {e}")),
    };
    let rows: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| match &r.record {
            Ok(rec) => json!({"id": r.id, "created": rec.created, "params": rec.params, "counts": rec.counts()}),
            Err(e) => json!({"id": r.id, "error": format!("{}: {e}", r.path.display())}),
        })
        .collect();
    if json_out {
        println!("{}", pretty(&rows));
    } else {
        for r in &rows {
            match r.get("error") {
                Some(e) => println!("{}  unreadable: {}", r["id"].as_str().unwrap_or(""), e.as_str().unwrap_or("")),
                None => println!("{}  {}  params={}", r["id"].as_str().unwrap_or(""), r["counts"], r["params"]),
            }
        }
    }
    exit::OK
}

fn estimate(a: &crate::EstimateArgs, json_out: bool) -> u8 {
    use tailor_model::estimate::{self as est, Request, Shape};
    let method: est::Method = match a.method.parse() {
        Ok(m) => m,
        Err(e) => return fail(exit::INVALID, &e),
    };
    let shape = match (&a.model, a.params) {
        (Some(dir), _) => {
            let cfg: serde_json::Value =
                match std::fs::read(dir.join("config.json")).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
                    Ok(v) => v,
                    Err(e) => return fail(exit::INVALID, &format!("{}: {e}", dir.join("config.json").display())),
                };
            // The same shape (GQA, norms, tied embeddings) as the plan's memory note.
            match Shape::from_config(&cfg) {
                Some(s) => s,
                None => {
                    return fail(
                        exit::INVALID,
                        &format!(
                            "{}: not a Llama-family config (hidden_size, num_hidden_layers, intermediate_size, vocab_size)",
                            dir.join("config.json").display()
                        ),
                    );
                }
            }
        }
        (None, Some(p)) => Shape::from_params(p),
        (None, None) => return fail(exit::INVALID, "give --params or --model"),
    };
    let gpus: Vec<est::Gpu> = match &a.gpu {
        Some(name) => match est::gpu(name) {
            Ok(g) => vec![g],
            Err(e) => return fail(exit::INVALID, &e),
        },
        None => est::GPUS.to_vec(),
    };
    let mut rows = Vec::new();
    for mut g in gpus {
        if let Some(p) = a.price {
            g.price = p;
        }
        let r = Request {
            shape,
            method,
            lora_r: a.lora_r,
            lora_targets: a.lora_targets,
            seq: a.seq,
            batch: a.batch,
            tokens: a.tokens,
            epochs: a.epochs,
            gpu: g,
            mfu: a.mfu,
        };
        rows.push((g, est::estimate(&r)));
    }
    if json_out {
        println!("{}", pretty(&rows.iter().map(|(g, e)| json!({"gpu": g, "estimate": e})).collect::<Vec<_>>()));
        return exit::OK;
    }
    let e0 = &rows[0].1;
    println!(
        "{:.2}B parameters, {:?}: {:.1}M trainable; weights {:.1} GiB, gradients {:.1} GiB, optimizer {:.1} GiB, activations {:.1} GiB per GPU (seq {}, batch {}, checkpointing)",
        shape.params / 1e9,
        method,
        e0.trainable / 1e6,
        e0.weights_gib,
        e0.gradients_gib,
        e0.optimizer_gib,
        e0.activations_gib,
        a.seq,
        a.batch
    );
    println!("{:<10} {:>6} {:>10} {:>10} {:>10}", "gpu", "gpus", "GiB/gpu", "hours", "cost $");
    for (g, e) in &rows {
        if e.gpus == 0 {
            println!("{:<10} {:>6}   activations alone exceed its {} GiB: lower --batch or --seq", g.name, "-", g.memory_gib);
        } else {
            println!("{:<10} {:>6} {:>10.1} {:>10.2} {:>10.2}", g.name, e.gpus, e.total_gib / e.gpus as f64, e.hours, e.cost);
        }
    }
    println!("time and cost: {:.0e} tokens × {} epochs at {:.0}% MFU; override with --tokens, --epochs, --mfu, --price", a.tokens, a.epochs, a.mfu * 100.0);
    // The gpus column assumes FSDP-style sharding (what axolotl or torchtune
    // would run); Tailor's own workers replicate the model on every GPU.
    let fits: Vec<&str> = rows.iter().filter(|(g, e)| e.replica_gib <= g.memory_gib * 0.9 - 1.0).map(|(g, _)| g.name).collect();
    println!(
        "gpus assumes weights, gradients and optimizer sharded across GPUs (FSDP-style); Tailor's `workers:` replicate the model, so each GPU needs {:.1} GiB: {}",
        e0.replica_gib,
        if fits.is_empty() {
            "no GPU listed holds that, so Tailor cannot train this yet (it does not shard)".to_string()
        } else {
            format!("fits {}", fits.join(", "))
        }
    );
    exit::OK
}

/// Output as pretty JSON; our own types always serialise, but if one ever
/// did not, the output says so instead of being empty.
pub fn pretty<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"serialising the output failed: {e}\"}}"))
}

/// `tailor review merge`: read each reviewer's file (a bad line names
/// file:line), merge, write the three outputs, print the agreement and the
/// cases to adjudicate.
fn review_merge(files: &[PathBuf], out: &Path, json_out: bool) -> u8 {
    use tailor_stages::evaluate::review;
    let mut inputs = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => return fail(exit::IO, &format!("{}: {e}", f.display())),
        };
        let mut lines = Vec::new();
        for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) if v["meta"]["fix_of"].is_string() => lines.push(v),
                Ok(_) => {
                    return fail(
                        exit::INVALID,
                        &format!("{}:{}: not a review line (no `meta.fix_of`); give the review.jsonl files the review page downloads", f.display(), i + 1),
                    );
                }
                Err(e) => return fail(exit::INVALID, &format!("{}:{}: {e}", f.display(), i + 1)),
            }
        }
        let name = f.file_stem().map_or_else(|| f.display().to_string(), |s| s.to_string_lossy().into_owned());
        let name = if inputs.iter().any(|(n, _): &(String, Vec<serde_json::Value>)| *n == name) { f.display().to_string() } else { name };
        inputs.push((name, lines));
    }
    let merged = review::merge(&inputs);
    let write = |name: &str, lines: &[String]| std::fs::write(out.join(name), lines.iter().map(|l| format!("{l}\n")).collect::<String>());
    let adjudicate: Vec<String> = merged
        .adjudicate
        .iter()
        .map(|(case, prompt, why, by)| serde_json::json!({"fix_of": case, "prompt": prompt, "why": why, "reviews": by}).to_string())
        .collect();
    let agreement = serde_json::json!({"reviewers": merged.reviewers, "agreement": merged.agreement});
    let written = std::fs::create_dir_all(out)
        .and_then(|_| write("agreed.jsonl", &merged.agreed.iter().map(|v| v.to_string()).collect::<Vec<_>>()))
        .and_then(|_| write("adjudicate.jsonl", &adjudicate))
        .and_then(|_| std::fs::write(out.join("agreement.json"), pretty(&agreement)))
        .and_then(|_| {
            let cases: Vec<serde_json::Value> = adjudicate.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
            std::fs::write(out.join("agreement.html"), review::agreement_page(&agreement, &cases))
        });
    if let Err(e) = written {
        return fail(exit::IO, &format!("{}: {e}", out.display()));
    }
    if json_out {
        println!("{}", pretty(&merged));
        return exit::OK;
    }
    let k = |x: Option<f64>| x.map_or_else(|| "undefined (one label only)".to_string(), |v| format!("{v:.3}"));
    match &merged.agreement {
        Some(a) => println!(
            "{} reviewers, {} cases judged by all: raw agreement {:.1} %, {}Fleiss' kappa {}",
            a.raters,
            a.cases,
            a.raw * 100.0,
            if a.raters == 2 { format!("Cohen's kappa {}, ", k(a.cohen)) } else { String::new() },
            k(a.fleiss)
        ),
        None => println!("no case was judged by every reviewer"),
    }
    println!("{} agreed records → {}", merged.agreed.len(), out.join("agreed.jsonl").display());
    println!("{} to adjudicate → {} (and agreement.html, disagreements first)", merged.adjudicate.len(), out.join("adjudicate.jsonl").display());
    for (case, prompt, why, by) in merged.adjudicate.iter().take(20) {
        let short = |s: &str| s.chars().take(60).collect::<String>().replace('\n', " ");
        println!("\n[{case}] {why}: {}", short(prompt));
        for (who, j) in by {
            println!("  {who:>10}: {} — {}", j.verdict, short(&j.completion));
        }
    }
    exit::OK
}
