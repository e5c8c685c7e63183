//! Loading a pipeline: parse → overrides → parameters → schema → stage specs
//! → references, artifact kinds and cycles. Every step collects its problems,
//! and the result is either a fully checked [`Pipeline`] or every diagnostic
//! at once. Nothing runs until this succeeds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{Overrides, PipelineHeader, apply_overrides, resolve_params};
use crate::dag::Dag;
use crate::diag::{Diagnostic, did_you_mean, render_all};
use crate::paths::OutsidePaths;
use crate::rounds::{Loop, unroll};
use crate::schema::{pipeline_schema, validate};
use crate::stage::{OutputDecl, PreparedStage, Registry};
use crate::yaml::{self, SpanMap, escape};

/// A stage input bound to a producing stage's output.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The consumer's input role.
    pub role: String,
    /// Producing stage.
    pub stage: String,
    /// Producing output.
    pub output: String,
    /// Artifact kind flowing along the edge.
    pub kind: String,
}

/// One checked stage.
pub struct StageNode {
    /// Name in the pipeline.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Implementation version of the kind.
    pub version: u32,
    /// Implementation identity of the kind (version and code digest).
    pub implementation: String,
    /// The resolved config, without `kind` (what gets fingerprinted).
    pub config: Value,
    /// Bound inputs.
    pub inputs: Vec<Binding>,
    /// Declared outputs.
    pub outputs: &'static [OutputDecl],
    /// The configured stage.
    pub prepared: Box<dyn PreparedStage>,
    /// What it asks of a cluster: the kind's defaults with the file's
    /// `resources:` over them.
    pub resources: crate::resources::Resources,
}

/// A validated pipeline, ready to plan and run.
pub struct Pipeline {
    /// The pipeline file.
    pub file: PathBuf,
    /// Project root: the directory of the pipeline file.
    pub root: PathBuf,
    /// The header (name, resolved params).
    pub header: PipelineHeader,
    /// Stages in file order.
    pub stages: Vec<StageNode>,
    /// The graph.
    pub dag: Dag,
    /// Warnings found while loading.
    pub warnings: Vec<Diagnostic>,
    /// The file's text (for rendering warnings).
    pub source: String,
    /// Unrolled `rounds` loops.
    pub loops: Vec<Loop>,
}

impl Pipeline {
    /// A stage by name.
    pub fn stage(&self, name: &str) -> Option<&StageNode> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The loop and round of a stage that is its loop's `until` stage.
    pub fn until_of(&self, stage: &str) -> Option<(&Loop, usize)> {
        self.loops.iter().find_map(|l| match l.position(stage) {
            Some((round, body)) if l.until.as_deref() == Some(body) => Some((l, round)),
            _ => None,
        })
    }

    /// Stage name → kind, for renderings.
    pub fn kinds(&self) -> BTreeMap<String, String> {
        self.stages.iter().map(|s| (s.name.clone(), s.kind.clone())).collect()
    }
}

/// Why a pipeline could not be loaded.
#[derive(Debug)]
pub struct LoadError {
    /// The file, as the user named it.
    pub file: String,
    /// Its text (empty if unreadable).
    pub source: String,
    /// Every problem found.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadError {
    /// Render all diagnostics with snippets.
    pub fn render(&self) -> String {
        render_all(&self.diagnostics, &self.file, &self.source)
    }
}

/// Read, check and bind a pipeline file.
#[tracing::instrument(skip(registry, overrides))]
pub fn load(file: &Path, registry: &Registry, overrides: &Overrides) -> Result<Pipeline, LoadError> {
    let shown = file.display().to_string();
    // A directory, FIFO or device is named as such (reading /dev/zero or a
    // pipe would never end); a huge file is no pipeline.
    const MAX_PIPELINE_BYTES: u64 = 16 << 20;
    let not_file = crate::paths::not_a_file(file).or_else(|| {
        std::fs::metadata(file)
            .ok()
            .filter(|m| m.len() > MAX_PIPELINE_BYTES)
            .map(|m| format!("is {} bytes; a pipeline file is at most {MAX_PIPELINE_BYTES}", m.len()))
    });
    if let Some(what) = not_file {
        return Err(LoadError {
            file: shown.clone(),
            source: String::new(),
            diagnostics: vec![
                Diagnostic::error(format!("cannot read pipeline file: `{shown}` {what}"))
                    .help("pass the pipeline with `-f FILE` (default: tailor.yaml or pipeline.yaml in the current directory)"),
            ],
        });
    }
    let source = std::fs::read_to_string(file).map_err(|e| LoadError {
        file: shown.clone(),
        source: String::new(),
        diagnostics: vec![
            Diagnostic::error(format!("cannot read pipeline file: {e}"))
                .help("pass the pipeline with `-f FILE` (default: tailor.yaml or pipeline.yaml in the current directory)"),
        ],
    })?;
    let root = file.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."));
    let fail = |diagnostics: Vec<Diagnostic>, source: &str| LoadError { file: shown.clone(), source: source.to_string(), diagnostics };
    let mut doc = yaml::parse(&source).map_err(|d| fail(d, &source))?;
    let mut diags = apply_overrides(&mut doc, overrides);
    let (loops, loop_errs) = unroll(&mut doc);
    diags.extend(loop_errs);
    let (param_errs, used) = resolve_params(&mut doc);
    diags.extend(param_errs);
    diags.extend(validate(&pipeline_schema(registry), &doc.value, &doc.spans));
    let broken: BTreeSet<String> = diags.iter().filter_map(|d| d.span).flat_map(|s| stage_at_line(&doc.value, &doc.spans, s.line)).collect();
    let header: Option<PipelineHeader> = serde_json::from_value(doc.value.clone()).ok();
    let Some(header) = header else {
        if diags.is_empty() {
            diags.push(Diagnostic::error("the pipeline file does not have the expected shape").help("start from an example in pipelines/"));
        }
        return Err(fail(diags, &source));
    };

    // Unused parameters.
    for name in header.params.keys().filter(|p| !used.contains(*p)) {
        diags.push(
            Diagnostic::error(format!("parameter `{name}` is never used"))
                .at(doc.spans.key(&format!("/params/{}", escape(name))))
                .label("declared here")
                .help(format!("reference it from a stage as \"${{params.{name}}}\", or remove it")),
        );
    }

    // Stages in file order.
    let mut names: Vec<&String> = header.stages.keys().collect();
    names.sort_by_key(|n| doc.spans.key(&format!("/stages/{}", escape(n))).map(|s| (s.line, s.col)));
    let mut nodes = Vec::new();
    for name in names {
        if broken.contains(name) {
            continue;
        }
        let ptr = format!("/stages/{}", escape(name));
        let mut config = header.stages[name].clone();
        let kind = config.as_object_mut().and_then(|m| m.remove("kind")).and_then(|k| k.as_str().map(str::to_string)).unwrap_or_default();
        // Where a stage runs is not what it computes: `resources` stays out of the config (and the fingerprint).
        let resources: crate::resources::Resources =
            config.as_object_mut().and_then(|m| m.remove("resources")).and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default();
        let Some(stage) = registry.get(&kind) else { continue };
        match stage.prepare(&config, &root) {
            Ok(prepared) => {
                let resources = prepared.spec().resources.overridden_by(&resources);
                nodes.push((name.clone(), kind, stage.version(), stage.implementation(), config, stage.outputs(), prepared, resources))
            }
            Err(issues) => {
                for i in issues {
                    let p = format!("{ptr}{}", i.pointer);
                    let target = doc.value.pointer(&p).unwrap_or(&Value::Null);
                    let mut d = Diagnostic::error(format!("stage `{name}`: {}", i.message)).at(doc.spans.node(&p, target));
                    if let Some(h) = i.help {
                        d = d.help(h);
                    }
                    diags.push(d);
                }
            }
        }
    }

    // References and artifact kinds.
    let outputs_of: BTreeMap<String, (String, &'static [OutputDecl])> = header
        .stages
        .iter()
        .filter_map(|(n, v)| {
            let kind = v.get("kind")?.as_str()?;
            Some((n.clone(), (kind.to_string(), registry.get(kind)?.outputs())))
        })
        .collect();
    let mut dag = Dag::new(nodes.iter().map(|n| n.0.as_str()));
    let mut stages = Vec::new();
    let mut edge_spans = BTreeMap::new();
    for (name, kind, version, implementation, config, outputs, prepared, resources) in nodes {
        let ptr = format!("/stages/{}", escape(&name));
        let mut inputs = Vec::new();
        for input in &prepared.spec().inputs {
            let span = doc.spans.value(&format!("{ptr}{}", input.pointer));
            let (up, out) = match input.reference.split_once('.') {
                Some((s, o)) => (s.to_string(), Some(o.to_string())),
                None => (input.reference.clone(), None),
            };
            // Inside a loop round, a body stage's name means that round's copy.
            let up = loops.iter().find_map(|l| l.position(&name).and_then(|(r, _)| l.rounds[r - 1].get(&up).cloned())).unwrap_or(up);
            let Some((up_kind, up_outputs)) = outputs_of.get(&up) else {
                let mut d =
                    Diagnostic::error(format!("stage `{name}` reads `{}`, but there is no stage `{up}`", input.reference)).at(span).label("unknown stage");
                d = match did_you_mean(&up, outputs_of.keys().map(String::as_str)) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("stages in this pipeline: {}", outputs_of.keys().cloned().collect::<Vec<_>>().join(", "))),
                };
                diags.push(d);
                continue;
            };
            let decl = match &out {
                None => up_outputs.first(),
                Some(o) => up_outputs.iter().find(|d| d.name == o),
            };
            let Some(decl) = decl else {
                let names: Vec<&str> = up_outputs.iter().map(|d| d.name).collect();
                let o = out.unwrap_or_default();
                let mut d = Diagnostic::error(format!("stage `{up}` ({up_kind}) has no output `{o}`")).at(span).label("unknown output");
                d = match did_you_mean(&o, names.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{up}.{s}`?")),
                    None => d.help(format!("`{up_kind}` stages produce: {}", names.join(", "))),
                };
                diags.push(d);
                continue;
            };
            if !input.accepts.contains(&decl.kind) {
                let producers: Vec<String> =
                    registry.kinds().filter(|k| k.outputs().iter().any(|o| input.accepts.contains(&o.kind))).map(|k| format!("`{}`", k.kind())).collect();
                let mut d = Diagnostic::error(format!(
                    "stage `{name}` ({kind}) needs {} for `{}`, but `{}` is {}",
                    input.accepts.join(" or "),
                    input.role,
                    input.reference,
                    decl.kind
                ))
                .at(span)
                .label(format!("this is a `{}` artifact", decl.kind));
                if !producers.is_empty() {
                    d = d.help(format!("{} stages produce {}; put one between `{up}` and `{name}`", producers.join(" or "), input.accepts.join(" or ")));
                }
                diags.push(d);
                continue;
            }
            edge_spans.entry((up.clone(), name.clone())).or_insert(span);
            dag.edge(&up, &name, &input.role);
            inputs.push(Binding { role: input.role.clone(), stage: up, output: decl.name.to_string(), kind: decl.kind.to_string() });
        }
        // One diagnostic per setting (a model directory names several files).
        let mut reported = BTreeSet::new();
        for f in &prepared.spec().files {
            let Some(real) = crate::paths::outside(&root, &f.path) else { continue };
            if !reported.insert(f.pointer.clone()) {
                continue;
            }
            let span = doc.spans.value(&format!("{ptr}{}", f.pointer));
            let shown = doc.value.pointer(&format!("{ptr}{}", f.pointer)).and_then(Value::as_str).map_or_else(|| f.path.display().to_string(), str::to_string);
            let what = format!("stage `{name}` reads `{shown}`, outside the project directory ({real})");
            let why = "results would depend on a file that is not kept with the pipeline";
            match header.outside_paths {
                OutsidePaths::Allow => {}
                OutsidePaths::Warn => diags.push(
                    Diagnostic::warning(what)
                        .at(span)
                        .label("outside the project")
                        .help(format!("{why}: move it into the project, or say `outside_paths: allow` at the top of the file (`deny` refuses such paths)")),
                ),
                OutsidePaths::Deny => diags.push(
                    Diagnostic::error(what)
                        .at(span)
                        .label("outside the project")
                        .help(format!("{why}; this pipeline says `outside_paths: deny`: move the file into the project")),
                ),
            }
        }
        stages.push(StageNode { name, kind, version, implementation, config, inputs, outputs, prepared, resources });
    }
    // A round starts after the previous round's `until` stage has decided
    // whether another round is needed (an ordering edge, not an input).
    for l in &loops {
        let Some(u) = &l.until else { continue };
        for k in 1..l.rounds.len() {
            if let Some(prev) = l.rounds[k - 1].get(u) {
                for s in l.rounds[k].values() {
                    dag.edge(prev, s, "after");
                }
            }
        }
    }
    if let Some(cycle) = dag.find_cycle() {
        let span = cycle.windows(2).find_map(|w| edge_spans.get(&(w[0].clone(), w[1].clone())).copied().flatten());
        diags.push(
            Diagnostic::error(format!("the stages form a cycle: {}", cycle.join(" → ")))
                .at(span)
                .label("this reference closes the cycle")
                .help("a pipeline is a DAG: a stage cannot depend on its own output; for improve-and-retrain loops use a `retrain` stage"),
        );
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(fail(all, &source));
    }
    Ok(Pipeline { file: file.to_path_buf(), root, header, stages, dag, warnings, source, loops })
}

/// The stage whose block contains `line`, if any (to skip deeper checks on
/// stages that already failed schema validation).
fn stage_at_line(doc: &Value, spans: &SpanMap, line: usize) -> Vec<String> {
    let Some(stages) = doc.get("stages").and_then(Value::as_object) else { return Vec::new() };
    let mut starts: Vec<(usize, &String)> = stages.keys().filter_map(|k| Some((spans.key(&format!("/stages/{}", escape(k)))?.line, k))).collect();
    starts.sort();
    // Unrolled loop stages share their body's lines: all of them are broken.
    let best = starts.iter().rev().find(|(l, _)| *l <= line).map(|(l, _)| *l);
    starts.iter().filter(|(l, _)| Some(*l) == best).map(|(_, k)| (*k).clone()).collect()
}
