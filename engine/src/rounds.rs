//! Loops without cycles: a `rounds` block unrolls into ordinary stages.
//!
//! ```yaml
//! stages:
//!   improve:
//!     rounds: 3            # at most three rounds
//!     until: check         # stop after the first round whose `check` passes its gate
//!     stages:
//!       again: {kind: retrain, from: "${prev.again|tuned}", evaluation: "${prev.check|scored}", data: formatted}
//!       check: {kind: evaluate, model: again, data: formatted.validation, gate: {exact_match: ">= 0.9"}}
//! ```
//!
//! becomes `again_1`, `check_1`, `again_2`, `check_2`, `again_3`, `check_3`.
//! Inside a round, a reference to a body stage (`model: again`) binds to
//! that round's copy — the rename happens when references are bound, so
//! only real references are touched. `${prev.NAME|FIRST}` is the previous
//! round's `NAME`, or `FIRST` in round 1; `${round}` is the round number.
//! Each round is cached on its own, like any stage. When the `until` stage
//! of round k passes its check, the later rounds are not needed and do not
//! run; a failed check in an earlier round only means "go another round".
//! The engine knows nothing of what the stages do: a loop is names, rounds
//! and one stage's check.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::diag::{Diagnostic, did_you_mean};
use crate::yaml::{Document, escape};

/// An unrolled loop.
#[derive(Debug, Clone, Default)]
pub struct Loop {
    /// The block's name in `stages:`.
    pub name: String,
    /// Per round (index 0 = round 1): body name → stage name.
    pub rounds: Vec<BTreeMap<String, String>>,
    /// The body stage whose passing check ends the loop.
    pub until: Option<String>,
}

impl Loop {
    /// (round number from 1, body name) of an unrolled stage.
    pub fn position(&self, stage: &str) -> Option<(usize, &str)> {
        self.rounds.iter().enumerate().find_map(|(i, r)| r.iter().find(|(_, s)| s.as_str() == stage).map(|(b, _)| (i + 1, b.as_str())))
    }
}

const MAX_ROUNDS: u64 = 100;

/// Unroll every `rounds` block of `doc.stages` in place. Spans of body
/// nodes are copied to the unrolled stages, so later diagnostics point at
/// the body.
pub fn unroll(doc: &mut Document) -> (Vec<Loop>, Vec<Diagnostic>) {
    let mut loops = Vec::new();
    let mut diags = Vec::new();
    let Some(stages) = doc.value.get("stages").and_then(Value::as_object).cloned() else { return (loops, diags) };
    let mut out = Map::new();
    for (name, v) in &stages {
        let is_loop = v.get("rounds").is_some() && v.get("kind").is_none();
        if !is_loop {
            out.insert(name.clone(), v.clone());
            continue;
        }
        match expand(doc, name, v, &stages) {
            Ok((lp, unrolled)) => {
                for (n, s) in unrolled {
                    if stages.contains_key(&n) || out.contains_key(&n) {
                        diags.push(
                            Diagnostic::error(format!("loop `{name}` unrolls into `{n}`, which is already a stage"))
                                .at(doc.spans.key(&format!("/stages/{}", escape(name))))
                                .help("rename the body stage or the other stage"),
                        );
                    }
                    out.insert(n, s);
                }
                loops.push(lp);
            }
            Err(mut d) => diags.append(&mut d),
        }
    }
    if let Some(s) = doc.value.get_mut("stages") {
        *s = Value::Object(out);
    }
    (loops, diags)
}

fn expand(doc: &mut Document, name: &str, v: &Value, outer: &Map<String, Value>) -> Result<(Loop, Vec<(String, Value)>), Vec<Diagnostic>> {
    let ptr = format!("/stages/{}", escape(name));
    let mut diags = Vec::new();
    for k in v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if !["rounds", "until", "stages"].contains(&k.as_str()) {
            let mut d =
                Diagnostic::error(format!("unknown key `{k}` in loop `{name}`")).at(doc.spans.key(&format!("{ptr}/{}", escape(&k)))).label("not a loop key");
            d = match did_you_mean(&k, ["rounds", "until", "stages"]) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help("a loop has `rounds`, `until` and `stages`"),
            };
            diags.push(d);
        }
    }
    let rounds = v["rounds"].as_u64().filter(|n| (1..=MAX_ROUNDS).contains(n));
    if rounds.is_none() {
        diags.push(
            Diagnostic::error(format!("`rounds` of loop `{name}` must be a whole number from 1 to {MAX_ROUNDS}")).at(doc.spans.value(&format!("{ptr}/rounds"))),
        );
    }
    let body = v["stages"].as_object().cloned().unwrap_or_default();
    if body.is_empty() {
        diags.push(Diagnostic::error(format!("loop `{name}` has no `stages`")).at(doc.spans.key(&ptr)).help("put the stages of one round under `stages:`"));
    }
    let until = v.get("until").and_then(Value::as_str).map(str::to_string);
    if let Some(u) = &until
        && !body.contains_key(u)
    {
        let mut d = Diagnostic::error(format!("`until: {u}` is not a stage of loop `{name}`")).at(doc.spans.value(&format!("{ptr}/until")));
        if let Some(s) = did_you_mean(u, body.keys().map(String::as_str)) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        diags.push(d);
    }
    let (Some(rounds), true) = (rounds, diags.is_empty()) else { return Err(diags) };
    let mut lp = Loop { name: name.to_string(), rounds: Vec::new(), until };
    let mut unrolled = Vec::new();
    for k in 1..=rounds as usize {
        let names: BTreeMap<String, String> = body.keys().map(|b| (b.clone(), format!("{b}_{k}"))).collect();
        for (b, cfg) in &body {
            let from = format!("{ptr}/stages/{}", escape(b));
            let to = format!("/stages/{}", escape(&names[b]));
            doc.spans.copy_prefix(&from, &to);
            let mut cfg = cfg.clone();
            substitute(&mut cfg, &from, k, &body, outer, doc, &mut diags);
            unrolled.push((names[b].clone(), cfg));
        }
        lp.rounds.push(names);
    }
    if diags.is_empty() { Ok((lp, unrolled)) } else { Err(diags) }
}

/// Replace `${round}` and `${prev.NAME|FIRST}` in every string of a body stage.
fn substitute(v: &mut Value, ptr: &str, round: usize, body: &Map<String, Value>, outer: &Map<String, Value>, doc: &Document, diags: &mut Vec<Diagnostic>) {
    match v {
        Value::String(s) if s.contains("${round}") || s.contains("${prev.") => {
            if s == "${round}" {
                *v = Value::from(round);
                return;
            }
            let mut out = s.replace("${round}", &round.to_string());
            while let Some(start) = out.find("${prev.") {
                let Some(len) = out[start..].find('}') else { break };
                let expr = out[start + 7..start + len].to_string();
                let (prev, first) = expr.split_once('|').map_or((expr.as_str(), None), |(a, b)| (a.trim(), Some(b.trim())));
                let resolved = if !body.contains_key(prev) {
                    diags.push(
                        Diagnostic::error(format!("`${{prev.{expr}}}`: `{prev}` is not a stage of this loop"))
                            .at(doc.spans.value(ptr))
                            .help(format!("stages of the loop: {}", body.keys().cloned().collect::<Vec<_>>().join(", "))),
                    );
                    return;
                } else if round > 1 {
                    format!("{prev}_{}", round - 1)
                } else if let Some(f) = first.filter(|f| outer.contains_key(*f) && !body.contains_key(*f)) {
                    f.to_string()
                } else {
                    diags.push(
                        Diagnostic::error(format!("`${{prev.{expr}}}` has no stage for round 1"))
                            .at(doc.spans.value(ptr))
                            .help(format!("write `${{prev.{prev}|STAGE}}` with a stage outside the loop to use in round 1")),
                    );
                    return;
                };
                out.replace_range(start..start + len + 1, &resolved);
            }
            *v = Value::String(out);
        }
        Value::Object(m) => {
            for (k, c) in m.iter_mut() {
                substitute(c, &format!("{ptr}/{}", escape(k)), round, body, outer, doc, diags);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter_mut().enumerate() {
                substitute(c, &format!("{ptr}/{i}"), round, body, outer, doc, diags);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unrolled(src: &str) -> (Value, Vec<Loop>, Vec<Diagnostic>) {
        let mut d = crate::yaml::parse(src).unwrap();
        let (l, e) = unroll(&mut d);
        (d.value, l, e)
    }

    #[test]
    fn rounds_unroll_with_prev_and_round() {
        let (v, loops, errs) = unrolled(
            "stages:\n  base: {kind: x}\n  loop:\n    rounds: 2\n    until: b\n    stages:\n      a: {kind: x, from: '${prev.a|base}', seed: '${round}', tag: 'r${round}'}\n      b: {kind: y, model: a}\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let s = &v["stages"];
        assert_eq!(s["a_1"], json!({"kind": "x", "from": "base", "seed": 1, "tag": "r1"}));
        assert_eq!(s["a_2"], json!({"kind": "x", "from": "a_1", "seed": 2, "tag": "r2"}));
        assert_eq!(s["b_2"], json!({"kind": "y", "model": "a"}));
        assert!(s.get("loop").is_none());
        assert_eq!(loops[0].position("b_2"), Some((2, "b")));
        assert_eq!(loops[0].until.as_deref(), Some("b"));
    }

    #[test]
    fn bad_loops_are_explained() {
        let (_, _, errs) = unrolled("stages:\n  loop:\n    rounds: 0\n    untill: b\n    stages: {a: {kind: x, from: '${prev.a}'}}\n");
        let text: Vec<String> = errs.iter().map(|d| d.message.clone()).collect();
        assert!(text.iter().any(|m| m.contains("unknown key `untill`")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("`rounds` of loop `loop`")), "{text:?}");
        let (_, _, errs) = unrolled("stages:\n  loop:\n    rounds: 2\n    stages: {a: {kind: x, from: '${prev.a}'}}\n");
        assert!(errs[0].message.contains("has no stage for round 1"), "{:?}", errs[0].message);
        assert_eq!(errs[0].span.map(|s| s.line), Some(4));
    }
}
