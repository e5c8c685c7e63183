//! The order of a run: which stages are ready, which wait on others, and
//! what a finished stage's check means for the rest (go on, stop its
//! dependents, start the next round of a loop, end a loop early).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use crate::exec::Outcome;
use crate::fingerprint::StageRecord;
use crate::pipeline::Pipeline;
use crate::report::Reporter;

/// What a finished (or cached) stage means for the rest of the run.
enum Verdict {
    /// Go on.
    Go,
    /// Go on; the stage's check failed, and the next round of its loop follows.
    NextRound(String),
    /// Its check failed: dependents do not run.
    Stop(String),
    /// Its check passed and ends its loop after this round.
    Converged { loop_name: String, round: usize },
}

/// When a finished stage's check stops its dependents: the failure, as
/// [`RunState::settle`] words it (a failed check that only means "another
/// round" does not stop anything).
pub(crate) fn check_failure(p: &Pipeline, name: &str, rec: &StageRecord) -> Option<String> {
    match verdict(p, name, rec) {
        Verdict::Stop(summary) => Some(format!("check failed: {summary}")),
        _ => None,
    }
}

fn verdict(p: &Pipeline, name: &str, rec: &StageRecord) -> Verdict {
    let Some(check) = &rec.check else { return Verdict::Go };
    match p.until_of(name) {
        Some((lp, round)) if check.passed => Verdict::Converged { loop_name: lp.name.clone(), round },
        Some((lp, round)) if round < lp.rounds.len() => Verdict::NextRound(check.summary.clone()),
        _ if check.passed => Verdict::Go,
        Some((lp, _)) => Verdict::Stop(format!("{} (after all {} rounds of loop `{}`)", check.summary, lp.rounds.len(), lp.name)),
        None => Verdict::Stop(check.summary.clone()),
    }
}

/// Mutable state of one run.
pub(crate) struct RunState<'a> {
    pub p: &'a Pipeline,
    pub chosen: HashSet<&'a str>,
    pub position: HashMap<&'a str, usize>,
    pub pending: BTreeMap<String, usize>,
    pub ready: Vec<String>,
    pub outcomes: BTreeMap<String, Outcome>,
    pub order: Vec<String>,
    pub lineage: BTreeMap<String, Value>,
}

impl RunState<'_> {
    /// Mark every selected descendant of `name` (not yet decided) with `o`.
    pub fn close_descendants(&mut self, name: &str, rep: &Reporter, o: impl Fn(&str) -> Outcome) {
        for d in descendants(self.p, name, &self.chosen) {
            self.close(&d, rep, o(&d));
        }
    }

    pub fn close(&mut self, d: &str, rep: &Reporter, o: Outcome) {
        if self.outcomes.contains_key(d) {
            return;
        }
        match &o {
            Outcome::Skipped { because } => rep.line(&format!("  skip    {d}: upstream `{because}` failed")),
            Outcome::NotNeeded { reason } => rep.line(&format!("  -       {d}: not needed ({reason})")),
            _ => {}
        }
        self.outcomes.insert(d.to_string(), o);
        self.order.push(d.to_string());
        self.pending.insert(d.to_string(), usize::MAX);
        self.ready.retain(|r| r != d);
    }

    /// Act on a finished or cached stage's verdict; true if its dependents may run.
    pub fn settle(&mut self, name: &str, rec: &StageRecord, rep: &Reporter) -> bool {
        match verdict(self.p, name, rec) {
            Verdict::Go => true,
            Verdict::NextRound(summary) => {
                rep.line(&format!("          {name}: check not met ({summary}); next round follows"));
                true
            }
            Verdict::Stop(summary) => {
                rep.line(&format!("  FAILED  {name}: check failed: {summary}"));
                self.outcomes.insert(name.to_string(), Outcome::Failed { error: format!("check failed: {summary}") });
                debug_assert_eq!(check_failure(self.p, name, rec).as_deref(), Some(format!("check failed: {summary}").as_str()));
                self.close_descendants(name, rep, |_| Outcome::Skipped { because: name.to_string() });
                false
            }
            Verdict::Converged { loop_name, round } => {
                rep.line(&format!("          {name}: check passed; loop `{loop_name}` ends after round {round}"));
                let later: Vec<String> =
                    self.p.loops.iter().filter(|l| l.name == loop_name).flat_map(|l| l.rounds.iter().skip(round).flat_map(|r| r.values().cloned())).collect();
                let reason = format!("loop `{loop_name}` ended after round {round}");
                for s in &later {
                    self.close(s, rep, Outcome::NotNeeded { reason: reason.clone() });
                    self.close_descendants(s, rep, |_| Outcome::NotNeeded { reason: reason.clone() });
                }
                true
            }
        }
    }
}

impl RunState<'_> {
    /// A stage is done: its children that wait on nothing else become ready.
    pub fn release(&mut self, name: &str) {
        for c in self.p.dag.children(name) {
            if !self.chosen.contains(c.as_str()) {
                continue;
            }
            if let Some(n) = self.pending.get_mut(&c)
                && *n != usize::MAX
            {
                *n -= 1;
                if *n == 0 {
                    self.ready.push(c);
                    // Keep the queue in topological (file) order.
                    let position = &self.position;
                    self.ready.sort_by_key(|r| position.get(r.as_str()).copied().unwrap_or(usize::MAX));
                }
            }
        }
    }
}

pub(crate) fn descendants(p: &Pipeline, name: &str, selected: &HashSet<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = p.dag.children(name);
    while let Some(n) = stack.pop() {
        if selected.contains(n.as_str()) && seen.insert(n.clone()) {
            stack.extend(p.dag.children(&n));
            out.push(n);
        }
    }
    out
}
