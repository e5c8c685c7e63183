//! End-to-end tests of the engine with small test stages: caching, exact
//! reruns, early cut-off, failures, parallelism and concurrent runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tailor_engine::PlanStatus;
use tailor_engine::exec::Outcome;
use tailor_engine::{
    ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Overrides, Registry, Reporter, RunOptions, Stage, StageContext, StageError, StageOutcome,
    StageSpec, Workspace,
};

const TEXT: &[OutputDecl] = &[OutputDecl { name: "text", kind: "text", about: "text" }];

/// Reads a file.
struct Source;
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SourceCfg {
    path: String,
}
impl Stage for Source {
    type Config = SourceCfg;
    const KIND: &'static str = "source";
    const VERSION: u32 = 1;
    const IMPLEMENTATION: &'static str = "source-code";
    const ABOUT: &'static str = "read a file";
    const OUTPUTS: &'static [OutputDecl] = TEXT;
    fn spec(c: &SourceCfg, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        if !root.join(&c.path).exists() {
            return Err(vec![ConfigIssue::new("/path", "missing")]);
        }
        Ok(StageSpec { files: vec![FileDecl { path: c.path.clone().into(), pointer: "/path".into() }], ..Default::default() })
    }
    fn run(c: &SourceCfg, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let text = std::fs::read_to_string(ctx.resolve(Path::new(&c.path))).ctx(|| "read".into())?;
        std::fs::write(ctx.output_dir("text")?.join("t.txt"), text).ctx(|| "write".into())?;
        Ok(StageOutcome::default())
    }
}

/// Transforms its input; `note` does not change the output. `NEW` stands
/// for the same stage after its code changed (another implementation
/// identity, same manual version).
struct ShoutCode<const NEW: bool>;
type Shout = ShoutCode<false>;
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShoutCfg {
    input: String,
    #[serde(default)]
    suffix: String,
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    rendezvous: bool,
}
impl<const NEW: bool> Stage for ShoutCode<NEW> {
    type Config = ShoutCfg;
    const KIND: &'static str = "shout";
    const VERSION: u32 = 1;
    const IMPLEMENTATION: &'static str = if NEW { "c0de0002" } else { "c0de0001" };
    const ABOUT: &'static str = "uppercase";
    const OUTPUTS: &'static [OutputDecl] = TEXT;
    fn spec(c: &ShoutCfg, _: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        Ok(StageSpec {
            inputs: vec![InputDecl { role: "input".into(), reference: c.input.clone(), pointer: "/input".into(), accepts: vec!["text"] }],
            ..Default::default()
        })
    }
    fn run(c: &ShoutCfg, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        if c.fail {
            return Err(StageError::msg("asked to fail"));
        }
        if c.panic {
            panic!("asked to panic");
        }
        if c.rendezvous {
            rendezvous()?;
        }
        let text = std::fs::read_to_string(ctx.input("input")?.dir.join("t.txt")).ctx(|| "read".into())?;
        std::fs::write(ctx.output_dir("text")?.join("t.txt"), format!("{}{}", text.to_uppercase(), c.suffix)).ctx(|| "write".into())?;
        let mut metrics = BTreeMap::new();
        metrics.insert("chars".into(), serde_json::json!(text.len()));
        Ok(StageOutcome { metrics, warnings: vec![], check: None })
    }
}

/// Two stages meet here; fails unless both are running at the same time.
fn rendezvous() -> Result<(), StageError> {
    static STATE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
    let (m, cv) = &STATE;
    let mut n = m.lock().map_err(|_| StageError::msg("poisoned"))?;
    *n += 1;
    cv.notify_all();
    let (n, timeout) = cv.wait_timeout_while(n, Duration::from_secs(20), |n| *n % 2 == 1).map_err(|_| StageError::msg("poisoned"))?;
    drop(n);
    if timeout.timed_out() { Err(StageError::msg("the other stage never ran concurrently")) } else { Ok(()) }
}

/// Passes its check when the input text has at least `min` characters;
/// `resume` fails the first attempt after leaving a marker in its state
/// directory, and succeeds when a later attempt finds it.
struct Gate;
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GateCfg {
    input: String,
    #[serde(default)]
    min: usize,
    #[serde(default)]
    resume: bool,
}
impl Stage for Gate {
    type Config = GateCfg;
    const KIND: &'static str = "gate";
    const VERSION: u32 = 1;
    const IMPLEMENTATION: &'static str = "gate-code";
    const ABOUT: &'static str = "length gate";
    const OUTPUTS: &'static [OutputDecl] = TEXT;
    fn spec(c: &GateCfg, _: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        Ok(StageSpec {
            inputs: vec![InputDecl { role: "input".into(), reference: c.input.clone(), pointer: "/input".into(), accepts: vec!["text"] }],
            ..Default::default()
        })
    }
    fn run(c: &GateCfg, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        if c.resume {
            let marker = ctx.state_dir()?.join("attempted");
            if !marker.exists() {
                std::fs::write(&marker, "1").ctx(|| "marker".into())?;
                return Err(StageError::msg("first attempt fails"));
            }
        }
        let text = std::fs::read_to_string(ctx.input("input")?.dir.join("t.txt")).ctx(|| "read".into())?;
        let out = ctx.output_dir("text")?;
        std::fs::write(out.join("t.txt"), &text).ctx(|| "write".into())?;
        std::fs::write(out.join("lineage.json"), ctx.lineage().to_string()).ctx(|| "write".into())?;
        let passed = text.len() >= c.min;
        let check = tailor_engine::Check { passed, summary: format!("length {} {} {}", text.len(), if passed { ">=" } else { "<" }, c.min) };
        Ok(StageOutcome { check: Some(check), ..Default::default() })
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<Source>().register::<Shout>().register::<Gate>();
    r
}

/// The same kinds after `shout`'s code changed.
fn registry_after_code_change() -> Registry {
    let mut r = Registry::new();
    r.register::<Source>().register::<ShoutCode<true>>().register::<Gate>();
    r
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "hello").unwrap();
        std::fs::write(dir.path().join("tailor.yaml"), yaml).unwrap();
        Project { dir }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("tailor.yaml")
    }
    fn run_with(&self, ov: Overrides, opts: RunOptions) -> Vec<(String, Outcome)> {
        let p = tailor_engine::load(&self.file(), &registry(), &ov).unwrap_or_else(|e| panic!("{}", e.render()));
        let ws = Workspace::open(&p, None).unwrap();
        tailor_engine::run(&p, &ws, &RunOptions { jobs: opts.jobs.max(1), ..opts }, &Reporter::new(true)).unwrap().stages
    }
    fn run(&self) -> Vec<(String, Outcome)> {
        self.run_with(Overrides::default(), RunOptions::default())
    }
    fn plan(&self, ov: Overrides) -> Vec<tailor_engine::PlanEntry> {
        self.plan_in(&registry(), ov)
    }
    fn plan_in(&self, reg: &Registry, ov: Overrides) -> Vec<tailor_engine::PlanEntry> {
        let p = tailor_engine::load(&self.file(), reg, &ov).unwrap();
        let ws = Workspace::open(&p, None).unwrap();
        tailor_engine::plan(&p, &ws, &RunOptions::default()).unwrap()
    }
}

/// Names of the stages that ran, sorted.
fn ran(stages: &[(String, Outcome)]) -> Vec<&str> {
    let mut v: Vec<&str> = stages.iter().filter(|(_, o)| matches!(o, Outcome::Ran { .. })).map(|(n, _)| n.as_str()).collect();
    v.sort();
    v
}

const CHAIN: &str = "version: 1\nname: t\nparams: {suffix: '!', note: a}\nstages:\n  src: {kind: source, path: in.txt}\n  up: {kind: shout, input: src, note: '${params.note}'}\n  down: {kind: shout, input: up, suffix: '${params.suffix}'}\n  side: {kind: shout, input: src}\n";

#[test]
fn second_run_runs_nothing_and_param_change_reruns_exactly_the_affected_stage() {
    let p = Project::new(CHAIN);
    assert_eq!(ran(&p.run()), vec!["down", "side", "src", "up"]);
    assert!(ran(&p.run()).is_empty());
    let ov = Overrides { params: vec![("suffix".into(), "?".into())], sets: vec![] };
    let plan = p.plan(ov.clone());
    let down = plan.iter().find(|e| e.name == "down").unwrap();
    assert_eq!(down.status, PlanStatus::WillRun);
    assert_eq!(down.reasons, vec!["suffix changed ! → ?"]);
    assert!(plan.iter().filter(|e| e.name != "down").all(|e| e.status == PlanStatus::UpToDate));
    assert_eq!(ran(&p.run_with(ov.clone(), RunOptions::default())), vec!["down"]);
    assert!(ran(&p.run_with(ov, RunOptions::default())).is_empty());
}

#[test]
fn changed_stage_code_is_never_served_from_the_cache() {
    let p = Project::new(CHAIN);
    assert_eq!(ran(&p.run()).len(), 4);
    let plan = p.plan_in(&registry_after_code_change(), Overrides::default());
    for e in &plan {
        if e.kind == "shout" {
            assert_ne!(e.status, PlanStatus::UpToDate, "{e:?}");
            if e.name != "down" {
                assert_eq!(e.reasons, vec!["stage implementation changed (code c0de0001 → c0de0002)"], "{e:?}");
            }
        } else {
            assert_eq!(e.status, PlanStatus::UpToDate, "{e:?}");
        }
    }
    let pipeline = tailor_engine::load(&p.file(), &registry_after_code_change(), &Overrides::default()).unwrap();
    let ws = Workspace::open(&pipeline, None).unwrap();
    let summary = tailor_engine::run(&pipeline, &ws, &RunOptions { jobs: 1, ..Default::default() }, &Reporter::new(true)).unwrap();
    assert_eq!(ran(&summary.stages), vec!["down", "side", "up"]);
    // The old code's results are still in the store: going back is a cache hit.
    assert!(ran(&p.run()).is_empty());
}

#[test]
fn identical_upstream_output_cuts_off_dependents() {
    let p = Project::new(CHAIN);
    p.run();
    let ov = Overrides { params: vec![("note".into(), "b".into())], sets: vec![] };
    let plan = p.plan(ov.clone());
    let down = plan.iter().find(|e| e.name == "down").unwrap();
    assert_eq!(down.status, PlanStatus::MayRun, "{plan:?}");
    let out = p.run_with(ov, RunOptions::default());
    assert_eq!(ran(&out), vec!["up"]);
    assert!(out.iter().any(|(n, o)| n == "down" && matches!(o, Outcome::Cached { cutoff: true, .. })));
}

#[test]
fn changed_input_file_reruns_downstream_and_says_why() {
    let p = Project::new(CHAIN);
    p.run();
    std::fs::write(p.dir.path().join("in.txt"), "changed").unwrap();
    let plan = p.plan(Overrides::default());
    assert_eq!(plan.iter().find(|e| e.name == "src").unwrap().reasons, vec!["in.txt changed"]);
    assert_eq!(ran(&p.run()), vec!["down", "side", "src", "up"]);
}

#[test]
fn failure_skips_dependents_and_keeps_independent_branches() {
    let yaml = "version: 1\nname: t\nstages:\n  src: {kind: source, path: in.txt}\n  bad: {kind: shout, input: src, fail: true}\n  after: {kind: shout, input: bad}\n  side: {kind: shout, input: src}\n";
    let p = Project::new(yaml);
    let out = p.run();
    let get = |n: &str| out.iter().find(|(x, _)| x == n).map(|(_, o)| o.clone()).unwrap();
    assert!(matches!(get("bad"), Outcome::Failed { .. }));
    assert!(matches!(get("after"), Outcome::Skipped { ref because } if because == "bad"));
    assert!(matches!(get("side"), Outcome::Ran { .. }));
    let lock = std::fs::read_to_string(p.dir.path().join("tailor.lock")).unwrap();
    assert!(lock.contains("side:") && !lock.contains("bad:"));
}

#[test]
fn a_panicking_stage_fails_alone() {
    let yaml = "version: 1\nname: t\nstages:\n  src: {kind: source, path: in.txt}\n  boom: {kind: shout, input: src, panic: true}\n";
    let out = Project::new(yaml).run();
    assert!(matches!(&out[1].1, Outcome::Failed { error } if error.contains("panic")));
}

#[test]
fn independent_stages_run_concurrently_with_jobs_2() {
    let yaml = "version: 1\nname: t\nstages:\n  src: {kind: source, path: in.txt}\n  a: {kind: shout, input: src, rendezvous: true}\n  b: {kind: shout, input: src, rendezvous: true, suffix: x}\n";
    let out = Project::new(yaml).run_with(Overrides::default(), RunOptions { jobs: 2, ..Default::default() });
    assert_eq!(ran(&out).len(), 3, "{out:?}");
}

#[test]
fn concurrent_runs_in_one_workspace_do_not_corrupt_it() {
    let p = Project::new(CHAIN);
    std::thread::scope(|s| {
        let h: Vec<_> = (0..3).map(|_| s.spawn(|| p.run())).collect();
        for t in h {
            assert!(t.join().unwrap().iter().all(|(_, o)| matches!(o, Outcome::Ran { .. } | Outcome::Cached { .. })));
        }
    });
    let store = tailor_engine::store::Store::open(&p.dir.path().join(".tailor")).unwrap();
    assert!(store.verify(false).unwrap().problems.is_empty());
    assert!(ran(&p.run()).is_empty());
}

#[test]
fn force_and_targets() {
    let p = Project::new(CHAIN);
    let out = p.run_with(Overrides::default(), RunOptions { targets: vec!["up".into()], ..Default::default() });
    assert_eq!(ran(&out), vec!["src", "up"]);
    let out = p.run_with(Overrides::default(), RunOptions { targets: vec!["up".into()], force: true, ..Default::default() });
    assert_eq!(ran(&out), vec!["up"]);
}

#[test]
fn a_loop_stops_after_the_round_whose_check_passes() {
    let yaml = "version: 1\nname: t\nstages:\n  src: {kind: source, path: in.txt}\n  improve:\n    rounds: 4\n    until: check\n    stages:\n      grow: {kind: shout, input: '${prev.grow|src}', suffix: '!!'}\n      check: {kind: gate, input: grow, min: 9}\n  after: {kind: shout, input: check_4}\n";
    let p = Project::new(yaml);
    let out = p.run();
    let get =
        |out: &[(String, Outcome)], n: &str| out.iter().find(|(x, _)| x == n).map(|(_, o)| o.clone()).unwrap_or_else(|| panic!("no outcome for {n}: {out:?}"));
    // hello → HELLO!! (7 chars, round 1 fails its check) → HELLO!!!! (9, passes).
    assert_eq!(ran(&out), vec!["check_1", "check_2", "grow_1", "grow_2", "src"]);
    for n in ["grow_3", "check_3", "grow_4", "check_4", "after"] {
        assert!(matches!(get(&out, n), Outcome::NotNeeded { .. }), "{n}: {:?}", get(&out, n));
    }
    assert!(out.iter().all(|(_, o)| !matches!(o, Outcome::Failed { .. } | Outcome::Skipped { .. })), "{out:?}");
    // Cached rounds decide the same way.
    let again = p.run();
    assert!(ran(&again).is_empty(), "{again:?}");
    assert!(matches!(get(&again, "grow_3"), Outcome::NotNeeded { .. }));
}

#[test]
fn a_failed_check_stops_dependents_but_keeps_its_result() {
    let yaml =
        "version: 1\nname: t\nstages:\n  src: {kind: source, path: in.txt}\n  check: {kind: gate, input: src, min: 50}\n  after: {kind: shout, input: check}\n";
    let p = Project::new(yaml);
    let out = p.run();
    assert!(matches!(&out.iter().find(|(n, _)| n == "check").unwrap().1, Outcome::Failed { error } if error.contains("length 5 < 50")), "{out:?}");
    assert!(matches!(&out.iter().find(|(n, _)| n == "after").unwrap().1, Outcome::Skipped { .. }));
    let lock = std::fs::read_to_string(p.dir.path().join("tailor.lock")).unwrap();
    assert!(lock.contains("check:"), "the checked stage's result is locked: {lock}");
    // Nothing reruns: the same inputs fail the same check, from the cache.
    let again = p.run();
    assert!(ran(&again).is_empty());
    assert!(matches!(&again.iter().find(|(n, _)| n == "check").unwrap().1, Outcome::Failed { .. }));
    let plan = p.plan(Overrides::default());
    assert!(plan.iter().find(|e| e.name == "check").unwrap().reasons[0].contains("its check failed"));
}

#[test]
fn state_survives_a_failed_attempt_and_goes_with_success_and_lineage_nests() {
    let yaml =
        "version: 1\nname: t\nstages:\n  src: {kind: source, path: in.txt}\n  up: {kind: shout, input: src}\n  g: {kind: gate, input: up, resume: true}\n";
    let p = Project::new(yaml);
    let first = p.run();
    assert!(matches!(&first.iter().find(|(n, _)| n == "g").unwrap().1, Outcome::Failed { .. }));
    let state = p.dir.path().join(".tailor/state");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1, "the failed attempt's state is kept");
    let second = p.run();
    assert_eq!(ran(&second), vec!["g"], "{second:?}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "state is removed after success");
    let lock: serde_json::Value = serde_json::to_value(tailor_engine::lockfile::Lock::read(&p.dir.path().join("tailor.lock")).unwrap()).unwrap();
    let digest = lock["stages"]["g"]["outputs"]["text"].as_str().unwrap().to_string();
    let store = tailor_engine::store::Store::open(&p.dir.path().join(".tailor")).unwrap();
    let lineage: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(store.view(&digest).unwrap().join("lineage.json")).unwrap()).unwrap();
    assert_eq!(lineage["kind"], "gate");
    assert_eq!(lineage["inputs"]["input"]["from"]["kind"], "shout");
    assert_eq!(lineage["inputs"]["input"]["from"]["inputs"]["input"]["from"]["files"]["in.txt"].as_str().map(str::len), Some(64));
}
