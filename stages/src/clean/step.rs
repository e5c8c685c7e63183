//! The clean steps. Each takes the records in order, keeps or changes them,
//! and appends removals to the rejects, returning its counts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;
use serde_json::{Value, json};

use super::{
    CheckStep, DedupStep, Field, FilterStep, Keep, PiiAction, PiiStep, Politeness, Prefer, RuleAction, Step, StepStats, StyleStep, VariantField, VariantRule,
    VariantsStep,
};
use tailor_text::record::{Body, Record, Reject};
use tailor_text::{self, NormalizeOptions, Register, normalize, quality};

/// The step's name as written in the config.
pub fn name(s: &Step) -> &'static str {
    match s {
        Step::Normalize(_) => "normalize",
        Step::Filter(_) => "filter",
        Step::Dedup(_) => "dedup",
        Step::Pii(_) => "pii",
        Step::Style(_) => "style",
        Step::Check(_) => "check",
        Step::Variants(_) => "variants",
    }
}

/// Run one step.
pub fn apply(s: &Step, records: &mut Vec<Record>, rejects: &mut Vec<Reject>, root: &Path) -> Result<StepStats, String> {
    let mut st = StepStats { step: name(s).to_string(), input: records.len(), ..Default::default() };
    match s {
        Step::Normalize(o) => st.changed = normalize_all(records, o),
        Step::Filter(f) => {
            let tok = match &f.tokenizer {
                Some(t) => Some(tailor_model::tokenizer::load(&root.join(t))?),
                None => None,
            };
            let verdicts: Vec<Option<String>> = records.par_iter().map(|r| filter_reason(r, f, tok.as_ref())).collect();
            remove(records, rejects, &mut st, verdicts);
        }
        Step::Dedup(d) => dedup(records, rejects, &mut st, d),
        Step::Pii(p) => pii(records, rejects, &mut st, p),
        Step::Style(sty) => style(records, rejects, &mut st, sty),
        Step::Check(c) => check(records, rejects, &mut st, c, root)?,
        Step::Variants(v) => variants(records, &mut st, v),
    }
    Ok(st)
}

pub(super) fn text_of(r: &Record, f: Field) -> String {
    match f {
        Field::Target => r.body.target().to_string(),
        Field::All => r.body.joined(),
        Field::Prompt => r.body.exchange().0,
    }
}

/// Move records whose verdict is `Some(reason)` to the rejects, in order.
fn remove(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, verdicts: Vec<Option<String>>) {
    let mut kept = Vec::with_capacity(records.len());
    for (r, v) in std::mem::take(records).into_iter().zip(verdicts) {
        match v {
            None => kept.push(r),
            Some(reason) => {
                let key = reason.split(" (").next().unwrap_or(&reason).to_string();
                *st.reasons.entry(key).or_insert(0) += 1;
                st.removed += 1;
                rejects.push(Reject { id: r.id.clone(), step: st.step.clone(), reason, record: serde_json::to_value(&r).unwrap_or(Value::Null) });
            }
        }
    }
    *records = kept;
}

/// Flag (keep) or remove records, per the rule's action.
fn enforce(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, verdicts: Vec<Option<String>>, action: RuleAction) {
    match action {
        RuleAction::Reject => remove(records, rejects, st, verdicts),
        RuleAction::Report => {
            for (r, v) in records.iter_mut().zip(verdicts) {
                if let Some(reason) = v {
                    let key = reason.split(" (").next().unwrap_or(&reason).to_string();
                    *st.reasons.entry(key).or_insert(0) += 1;
                    st.flagged += 1;
                    let flags = r.meta.entry("flags").or_insert_with(|| json!([]));
                    if let Value::Array(a) = flags {
                        a.push(json!({"step": st.step, "reason": reason}));
                    }
                }
            }
        }
    }
}

fn normalize_all(records: &mut [Record], o: &NormalizeOptions) -> usize {
    records
        .par_iter_mut()
        .map(|r| {
            let mut changed = false;
            for t in r.body.texts_mut() {
                if let std::borrow::Cow::Owned(n) = normalize(t, o)
                    && n != *t
                {
                    *t = n;
                    changed = true;
                }
            }
            usize::from(changed)
        })
        .sum()
}

fn filter_reason(r: &Record, f: &FilterStep, tok: Option<&tailor_model::tokenizer::TokenizerFiles>) -> Option<String> {
    for key in &f.required_meta {
        let present = r.meta.get(key).is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
        if !present {
            return Some(format!("missing metadata ({key})"));
        }
    }
    if f.drop_empty {
        let empty = match &r.body {
            Body::Completion { prompt, completion } => prompt.trim().is_empty() || completion.trim().is_empty(),
            Body::Instruction { instruction, output, .. } => instruction.trim().is_empty() || output.trim().is_empty(),
            Body::Chat { messages } => messages.iter().all(|m| m.role != "assistant" || m.content.trim().is_empty()),
            Body::Text { text } => text.trim().is_empty(),
        };
        if empty {
            return Some("empty prompt or completion".into());
        }
    }
    let t = text_of(r, f.field);
    let n = quality::char_count(&t);
    if let Some(min) = f.min_chars.filter(|m| n < *m) {
        return Some(format!("too short ({n} < {min} characters)"));
    }
    if let Some(max) = f.max_chars.filter(|m| n > *m) {
        return Some(format!("too long ({n} > {max} characters)"));
    }
    if let (Some(tok), true) = (tok, f.min_tokens.is_some() || f.max_tokens.is_some()) {
        let n = tok.tokenizer.encode_fast(t.as_str(), false).map(|e| e.len()).unwrap_or(0);
        if let Some(min) = f.min_tokens.filter(|m| n < *m) {
            return Some(format!("too few tokens ({n} < {min})"));
        }
        if let Some(max) = f.max_tokens.filter(|m| n > *m) {
            return Some(format!("too many tokens ({n} > {max})"));
        }
    }
    if let Some(max) = f.max_symbol_ratio {
        let v = quality::symbol_ratio(&t);
        if v > max {
            return Some(format!("too many symbols ({v:.2} > {max})"));
        }
    }
    if let Some(max) = f.max_duplicate_line_ratio {
        let v = quality::duplicate_line_ratio(&t);
        if v > max {
            return Some(format!("repeated lines ({v:.2} > {max})"));
        }
    }
    if let Some(max) = f.max_top_ngram_ratio {
        let v = quality::top_ngram_ratio(&t, 3);
        if v > max {
            return Some(format!("repetitive text ({v:.2} > {max} of characters in one 3-gram)"));
        }
    }
    if f.require_terminal_punct && !quality::ends_with_terminal_punct(&t) {
        return Some("no sentence-ending punctuation".into());
    }
    if let Some(langs) = &f.lang {
        let got = tailor_text::detect(&t).unwrap_or("none");
        if !langs.iter().any(|l| l == got) {
            return Some(format!("language not allowed ({got} not in {})", langs.join(", ")));
        }
    }
    None
}

/// The text exact dedup compares: NFKC, lower case, whitespace removed.
fn exact_key(s: &str) -> u128 {
    let n = normalize(s, &NormalizeOptions::default());
    let folded: String = n.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
    let h = blake3::hash(folded.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_le_bytes(b)
}

fn dedup(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, d: &DedupStep) {
    let texts: Vec<String> = records.par_iter().map(|r| text_of(r, d.field)).collect();
    // Visit order decides who survives: input order, or longest first.
    let mut order: Vec<usize> = (0..records.len()).collect();
    match d.keep {
        Keep::Longest => order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count())),
        Keep::Last => order.reverse(),
        Keep::First => {}
    }
    let mut verdicts: Vec<Option<String>> = vec![None; records.len()];
    if d.exact {
        let keys: Vec<u128> = texts.par_iter().map(|t| exact_key(t)).collect();
        let mut first: HashMap<u128, usize> = HashMap::with_capacity(keys.len());
        for &i in &order {
            match first.get(&keys[i]) {
                Some(&j) if d.keep == Keep::Last => verdicts[i] = Some(format!("superseded by a later record with the same text ({})", records[j].id)),
                Some(&j) => verdicts[i] = Some(format!("exact duplicate (of {})", records[j].id)),
                None => {
                    first.insert(keys[i], i);
                }
            }
        }
    }
    if let Some(cfg) = &d.near {
        let alive: Vec<usize> = order.iter().copied().filter(|&i| verdicts[i].is_none()).collect();
        let refs: Vec<&str> = alive.iter().map(|&i| texts[i].as_str()).collect();
        // Over whole records, the answers must be alike too: one question
        // with different answers is two records, not a duplicate.
        let answers_alike = |a: usize, b: usize| {
            d.field != Field::All || matches!(records[alive[a]].body, Body::Text { .. }) || {
                let (x, y) = (records[alive[a]].body.target(), records[alive[b]].body.target());
                x == y || tailor_text::jaccard(x, y, cfg) >= cfg.threshold
            }
        };
        for (k, dup) in tailor_text::near_duplicates_where(&refs, cfg, answers_alike).into_iter().enumerate() {
            if let Some(j) = dup {
                verdicts[alive[k]] = Some(format!("near duplicate (of {}, Jaccard ≥ {})", records[alive[j]].id, cfg.threshold));
            }
        }
    }
    remove(records, rejects, st, verdicts);
}

fn pii(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, p: &PiiStep) {
    let found: Vec<BTreeMap<String, usize>> = records
        .par_iter_mut()
        .map(|r| {
            let mut kinds = BTreeMap::new();
            for t in r.body.texts_mut() {
                let m = tailor_text::find_pii(t, &p.kinds);
                for x in &m {
                    *kinds.entry(format!("{:?}", x.kind).to_lowercase()).or_insert(0) += 1;
                }
                if !m.is_empty() && p.action == PiiAction::Redact {
                    *t = tailor_text::redact(t, &m);
                }
            }
            kinds
        })
        .collect();
    match p.action {
        PiiAction::Redact => {
            for k in &found {
                if !k.is_empty() {
                    st.changed += 1;
                }
                for (kind, n) in k {
                    *st.reasons.entry(format!("redacted {kind}")).or_insert(0) += n;
                }
            }
        }
        PiiAction::Drop => {
            let verdicts = found
                .iter()
                .map(|k| (!k.is_empty()).then(|| format!("contains personal data ({})", k.keys().cloned().collect::<Vec<_>>().join(", "))))
                .collect();
            remove(records, rejects, st, verdicts);
        }
    }
}

fn style(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, s: &StyleStep) {
    let reports: Vec<tailor_text::RegisterReport> = records.par_iter().map(|r| tailor_text::analyze(r.body.target())).collect();
    let target = match s.politeness {
        Politeness::Mixed => None,
        Politeness::DesuMasu => Some(Register::Polite),
        Politeness::DaDearu => Some(Register::Plain),
        Politeness::Majority => {
            let polite = reports.iter().filter(|r| r.dominant == Some(Register::Polite)).count();
            let plain = reports.iter().filter(|r| r.dominant == Some(Register::Plain)).count();
            if polite + plain == 0 {
                None
            } else if polite >= plain {
                Some(Register::Polite)
            } else {
                Some(Register::Plain)
            }
        }
    };
    let label = |r: Register| if r == Register::Polite { "です/ます" } else { "だ/である" };
    let verdicts = reports
        .iter()
        .map(|rep| {
            if rep.mixed {
                Some(format!("mixed register ({} polite and {} plain sentence endings)", rep.polite, rep.plain))
            } else {
                match (rep.dominant, target) {
                    (Some(d), Some(t)) if d != t => Some(format!("wrong register ({} where the dataset uses {})", label(d), label(t))),
                    _ => None,
                }
            }
        })
        .collect();
    enforce(records, rejects, st, verdicts, s.action);
}

fn check(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, c: &CheckStep, root: &Path) -> Result<(), String> {
    let schema = match &c.schema {
        Some(p) => {
            let text = std::fs::read_to_string(root.join(p)).map_err(|e| format!("{}: {e}", p.display()))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", p.display()))?;
            Some(jsonschema::validator_for(&v).map_err(|e| format!("{} is not a valid JSON Schema: {e}", p.display()))?)
        }
        None => None,
    };
    let re = match &c.regex {
        Some(r) => Some(regex::Regex::new(r).map_err(|e| e.to_string())?),
        None => None,
    };
    let verdicts = records
        .par_iter()
        .map(|r| {
            let t = r.body.target().trim();
            if c.json || schema.is_some() {
                match serde_json::from_str::<Value>(t) {
                    Err(e) => return Some(format!("not valid JSON ({e})")),
                    Ok(v) => {
                        if let Some(s) = &schema
                            && let Some(err) = s.iter_errors(&v).next()
                        {
                            return Some(format!("fails the JSON Schema ({} at `{}`)", err, err.instance_path().as_str()));
                        }
                    }
                }
            }
            if let Some(re) = &re
                && !re.is_match(t)
            {
                return Some(format!("does not match /{}/", re.as_str()));
            }
            if let Some(end) = &c.ends_with
                && !t.ends_with(end.as_str())
            {
                return Some(format!("does not end with {end:?}"));
            }
            None
        })
        .collect();
    enforce(records, rejects, st, verdicts, c.action);
    Ok(())
}

/// The texts the variants step reads, mutable.
fn variant_texts(r: &mut Record, f: VariantField) -> Vec<&mut String> {
    match f {
        VariantField::Target => r.body.target_mut().into_iter().collect(),
        VariantField::All => r.body.texts_mut(),
    }
}

fn variants(records: &mut [Record], st: &mut StepStats, v: &VariantsStep) {
    use std::collections::HashSet;
    use tailor_text::variants::{Census, Family, Finder, Spelling, rewrite};
    let finder = Finder::new(&v.dictionary);
    let wanted = |f: Family| match f {
        Family::Dictionary => true,
        Family::LongVowel => v.rules.contains(&VariantRule::LongVowel),
        Family::Okurigana => v.rules.contains(&VariantRule::Okurigana),
        Family::KanjiKana => v.rules.contains(&VariantRule::KanjiKana),
    };
    // Pass 1: the okurigana keys the dataset's mixed spellings produce.
    let keys: HashSet<String> = if wanted(Family::Okurigana) {
        records.par_iter_mut().map(|r| variant_texts(r, v.field).into_iter().flat_map(|t| finder.okurigana_keys(t)).collect::<HashSet<_>>()).reduce(
            HashSet::new,
            |mut a, b| {
                a.extend(b);
                a
            },
        )
    } else {
        HashSet::new()
    };
    // Pass 2: every spelling, then the dataset's counts.
    let found: Vec<Vec<Vec<Spelling>>> = records
        .par_iter_mut()
        .map(|r| variant_texts(r, v.field).into_iter().map(|t| finder.find(t, &keys).into_iter().filter(|s| wanted(s.family)).collect()).collect())
        .collect();
    let mut census = Census::default();
    for (r, per_text) in records.iter_mut().zip(&found) {
        for (t, f) in variant_texts(r, v.field).into_iter().zip(per_text) {
            census.add(t, f);
        }
    }
    let groups = census.groups();
    let preferred: BTreeMap<(Family, String), String> = groups
        .iter()
        .filter(|g| v.normalize != Some(Prefer::Dictionary) || g.family == Family::Dictionary)
        .map(|g| ((g.family, g.key.clone()), g.preferred.clone()))
        .collect();
    let per_record: Vec<Vec<(String, String)>> = records
        .par_iter_mut()
        .zip(&found)
        .map(|(r, per_text)| {
            let mut changes = Vec::new();
            for (t, f) in variant_texts(r, v.field).into_iter().zip(per_text) {
                let (new, made) = rewrite(t, f, &preferred);
                if v.normalize.is_some() && !made.is_empty() {
                    *t = new;
                }
                changes.extend(made);
            }
            changes
        })
        .collect();
    for (r, changes) in records.iter_mut().zip(per_record) {
        if changes.is_empty() {
            continue;
        }
        for (from, to) in &changes {
            *st.reasons.entry(format!("{from} → {to}")).or_insert(0) += 1;
        }
        let list: Vec<Value> = changes.iter().map(|(from, to)| json!({"from": from, "to": to})).collect();
        if v.normalize.is_some() {
            st.changed += 1;
            r.meta.insert("variants".into(), Value::Array(list));
        } else {
            st.flagged += 1;
            let words: Vec<String> = changes.iter().map(|(from, to)| format!("{from} where the dataset mostly writes {to}")).collect();
            let flags = r.meta.entry("flags").or_insert_with(|| json!([]));
            if let Value::Array(a) = flags {
                a.push(json!({"step": "variants", "reason": format!("spelling variant ({})", words.join(", "))}));
            }
        }
    }
    st.details = Some(json!({"groups": groups.iter().take(200).collect::<Vec<_>>(), "total_groups": groups.len()}));
}
