//! The clean steps. A step is made [`Ready`] once (selector, tokenizer,
//! schema compiled); steps that look at the whole dataset — deduplication,
//! the majority register, spelling variants — first take a census of their
//! input; then every step runs on the records a chunk at a time, keeping or
//! changing them and appending removals to the rejects, in input order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;
use serde_json::{Value, json};

use super::select::{self, Selector};
use super::{
    CheckStep, DedupStep, Field, FilterStep, Keep, PiiAction, PiiStep, Politeness, Prefer, RuleAction, Step, StepEntry, StepStats, StyleStep, VariantField,
    VariantRule, VariantsStep,
};
use crate::stream::{self, Loc, RecordFile};
use tailor_text::record::{Body, Record, Reject};
use tailor_text::variants::{Census, Family, Finder, Spelling, rewrite};
use tailor_text::{self, MinHashConfig, NearDupSearch, NormalizeOptions, Register, normalize, quality};

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

/// A step with its settings compiled and, after [`Ready::census`], what it
/// learned from its whole input.
pub struct Ready<'a> {
    step: &'a Step,
    sel: Option<Selector>,
    /// The step's counts so far.
    pub stats: StepStats,
    tok: Option<tailor_model::tokenizer::TokenizerFiles>,
    rules: Option<CheckRules>,
    /// The style step's target register (fixed, or the census's majority).
    target: Option<Register>,
    variants: Option<VariantsState>,
    dedup: Option<DedupState>,
}

struct CheckRules {
    schema: Option<jsonschema::Validator>,
    re: Option<regex::Regex>,
}

struct VariantsState {
    finder: Finder,
    keys: HashSet<String>,
    preferred: BTreeMap<(Family, String), String>,
}

/// Why a record is a duplicate, and of which record (index among the
/// step's input records).
#[derive(Clone, Copy)]
enum Dup {
    Exact(u32),
    Superseded(u32),
    Near(u32),
}

struct DedupState {
    verdicts: Vec<Option<Dup>>,
    /// Ids of the records duplicates point at.
    ids: HashMap<u32, String>,
    /// Records of the step's input handed to `run` so far.
    seen: usize,
}

impl<'a> Ready<'a> {
    /// Compile the step's settings (tokenizer, schema, regex, selector).
    pub fn new(entry: &'a StepEntry, root: &Path) -> Result<Self, String> {
        let step = &entry.step;
        let sel = entry.selector.as_ref().map(|w| w.compile()).transpose()?;
        let stats = StepStats { step: name(step).to_string(), scope: entry.selector.as_ref().map(|w| w.describe()), ..Default::default() };
        let tok = match step {
            Step::Filter(FilterStep { tokenizer: Some(t), .. }) => Some(tailor_model::tokenizer::load(&root.join(t))?),
            _ => None,
        };
        let rules = match step {
            Step::Check(c) => Some(CheckRules::new(c, root)?),
            _ => None,
        };
        let target = match step {
            Step::Style(StyleStep { politeness: Politeness::DesuMasu, .. }) => Some(Register::Polite),
            Step::Style(StyleStep { politeness: Politeness::DaDearu, .. }) => Some(Register::Plain),
            _ => None,
        };
        Ok(Self { step, sel, stats, tok, rules, target, variants: None, dedup: None })
    }

    /// Whether the step must see its whole input before it runs.
    pub fn needs_census(&self) -> bool {
        matches!(self.step, Step::Dedup(_) | Step::Variants(_) | Step::Style(StyleStep { politeness: Politeness::Majority, .. }))
    }

    /// Read the step's input (`input`, the records as they reach the
    /// step) once or twice and keep what the step needs to decide each
    /// record. Returns the number of records in `input`.
    pub fn census(&mut self, input: &Path, scratch: &Path) -> Result<usize, String> {
        let sel = self.sel.as_ref();
        let picked = |records: Vec<Record>, locs: Vec<Loc>| -> (Vec<Record>, Vec<Loc>) {
            match sel {
                None => (records, locs),
                Some(s) => {
                    let keep: Vec<bool> = records.par_iter().map(|r| s.picks(r)).collect();
                    records.into_iter().zip(locs).zip(keep).filter(|(_, k)| *k).map(|(rl, _)| rl).unzip()
                }
            }
        };
        match self.step {
            Step::Style(_) => {
                let (mut polite, mut plain) = (0usize, 0usize);
                let n = stream::for_each_chunk(input, |records, locs| {
                    let (records, _) = picked(records, locs);
                    let dominant: Vec<Option<Register>> = records.par_iter().map(|r| tailor_text::analyze(r.body.target()).dominant).collect();
                    polite += dominant.iter().filter(|d| **d == Some(Register::Polite)).count();
                    plain += dominant.iter().filter(|d| **d == Some(Register::Plain)).count();
                    Ok(())
                })?;
                self.target = match (polite, plain) {
                    (0, 0) => None,
                    (p, q) if p >= q => Some(Register::Polite),
                    _ => Some(Register::Plain),
                };
                Ok(n)
            }
            Step::Variants(v) => {
                let finder = Finder::new(&v.dictionary);
                // Pass 1: the okurigana keys the dataset's mixed spellings produce.
                let mut keys: HashSet<String> = HashSet::new();
                let n = if wanted(v, Family::Okurigana) {
                    stream::for_each_chunk(input, |records, locs| {
                        let (mut records, _) = picked(records, locs);
                        let found: Vec<HashSet<String>> = records
                            .par_iter_mut()
                            .map(|r| variant_texts(r, v.field).into_iter().flat_map(|t| finder.okurigana_keys(t)).collect::<HashSet<_>>())
                            .collect();
                        keys.extend(found.into_iter().flatten());
                        Ok(())
                    })?
                } else {
                    0
                };
                // Pass 2: every spelling, then the dataset's counts.
                let mut census = Census::default();
                let m = stream::for_each_chunk(input, |records, locs| {
                    let (mut records, _) = picked(records, locs);
                    let found = find_variants(&mut records, v, &finder, &keys);
                    for (r, per_text) in records.iter_mut().zip(&found) {
                        for (t, f) in variant_texts(r, v.field).into_iter().zip(per_text) {
                            census.add(t, f);
                        }
                    }
                    Ok(())
                })?;
                let groups = census.groups();
                let preferred = groups
                    .iter()
                    .filter(|g| v.normalize != Some(Prefer::Dictionary) || g.family == Family::Dictionary)
                    .map(|g| ((g.family, g.key.clone()), g.preferred.clone()))
                    .collect();
                self.stats.details = Some(json!({"groups": groups.iter().take(200).collect::<Vec<_>>(), "total_groups": groups.len()}));
                self.variants = Some(VariantsState { finder, keys, preferred });
                Ok(n.max(m))
            }
            Step::Dedup(d) => {
                let (state, n) = dedup_census(d, input, scratch, &picked)?;
                self.dedup = Some(state);
                Ok(n)
            }
            _ => Ok(0),
        }
    }

    /// Run the step on the next chunk of records (in input order).
    pub fn run(&mut self, records: &mut Vec<Record>, rejects: &mut Vec<Reject>) -> Result<(), String> {
        match self.sel.take() {
            None => self.run_all(records, rejects),
            Some(sel) => {
                let total = records.len();
                let picked = select::on_subset(records, &sel, |sub| self.run_all(sub, rejects));
                self.sel = Some(sel);
                self.stats.skipped += total - picked?;
                Ok(())
            }
        }
    }

    fn run_all(&mut self, records: &mut Vec<Record>, rejects: &mut Vec<Reject>) -> Result<(), String> {
        let st = &mut self.stats;
        st.input += records.len();
        match self.step {
            Step::Normalize(o) => st.changed += normalize_all(records, o),
            Step::Filter(f) => {
                let tok = self.tok.as_ref();
                let verdicts: Vec<Option<String>> = records.par_iter().map(|r| filter_reason(r, f, tok)).collect();
                remove(records, rejects, st, verdicts);
            }
            Step::Dedup(d) => {
                let state = self.dedup.as_mut().ok_or("the dedup step ran without its census")?;
                let verdicts = (state.seen..state.seen + records.len())
                    .map(|k| {
                        let id = |j: &u32| state.ids.get(j).map_or("?", String::as_str);
                        state.verdicts.get(k).copied().flatten().map(|dup| match dup {
                            Dup::Superseded(j) => format!("superseded by a later record with the same text ({})", id(&j)),
                            Dup::Exact(j) => format!("exact duplicate (of {})", id(&j)),
                            Dup::Near(j) => format!("near duplicate (of {}, Jaccard ≥ {})", id(&j), d.near.as_ref().map_or(0.0, |c| c.threshold)),
                        })
                    })
                    .collect();
                state.seen += records.len();
                remove(records, rejects, st, verdicts);
            }
            Step::Pii(p) => pii(records, rejects, st, p),
            Step::Style(s) => style(records, rejects, st, s, self.target),
            Step::Check(c) => {
                let rules = self.rules.as_ref().ok_or("the check step has no rules")?;
                check(records, rejects, st, c, rules);
            }
            Step::Variants(v) => {
                let state = self.variants.as_ref().ok_or("the variants step ran without its census")?;
                variants(records, st, v, state);
            }
        }
        Ok(())
    }
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

/// The dedup step's census: keys of every input record, then who
/// duplicates whom. Near-duplicate band keys wait in `scratch`; candidate
/// pairs are confirmed by reading the two records again from `input`.
fn dedup_census(
    d: &DedupStep,
    input: &Path,
    scratch: &Path,
    picked: &dyn Fn(Vec<Record>, Vec<Loc>) -> (Vec<Record>, Vec<Loc>),
) -> Result<(DedupState, usize), String> {
    let mut exact: Vec<u128> = Vec::new();
    let mut lengths: Vec<u32> = Vec::new();
    let mut locs: Vec<Loc> = Vec::new();
    let spill = scratch.join("near-dup");
    let mut search = match &d.near {
        Some(cfg) => Some(NearDupSearch::spilled(cfg, &spill).map_err(|e| format!("{}: {e}", spill.display()))?),
        None => None,
    };
    let n = stream::for_each_chunk(input, |records, chunk_locs| {
        let (records, chunk_locs) = picked(records, chunk_locs);
        let texts: Vec<String> = records.par_iter().map(|r| text_of(r, d.field)).collect();
        if d.exact {
            exact.par_extend(texts.par_iter().map(|t| exact_key(t)));
        }
        if d.keep == Keep::Longest {
            lengths.par_extend(texts.par_iter().map(|t| t.chars().count() as u32));
        }
        if let Some(s) = &mut search {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            s.add(&refs).map_err(|e| format!("{}: {e}", spill.display()))?;
        }
        locs.extend(chunk_locs);
        Ok(())
    })?;
    let count = locs.len();
    // Visit order decides who survives: input order, or longest first.
    let mut order: Vec<u32> = (0..count as u32).collect();
    match d.keep {
        Keep::Longest => order.sort_by_key(|&i| std::cmp::Reverse(lengths[i as usize])),
        Keep::Last => order.reverse(),
        Keep::First => {}
    }
    drop(lengths);
    let mut verdicts: Vec<Option<Dup>> = vec![None; count];
    if d.exact {
        let mut first: HashMap<u128, u32> = HashMap::with_capacity(count);
        for &i in &order {
            match first.get(&exact[i as usize]) {
                Some(&j) if d.keep == Keep::Last => verdicts[i as usize] = Some(Dup::Superseded(j)),
                Some(&j) => verdicts[i as usize] = Some(Dup::Exact(j)),
                None => {
                    first.insert(exact[i as usize], i);
                }
            }
        }
    }
    drop(exact);
    let file = RecordFile::open(input)?;
    if let (Some(cfg), Some(search)) = (&d.near, search) {
        let alive: Vec<u32> = order.iter().copied().filter(|&i| verdicts[i as usize].is_none()).collect();
        drop(order);
        let failed = std::sync::Mutex::new(None);
        let found = search
            .resolve(&alive, |i, j| match (file.read(locs[i]), file.read(locs[j])) {
                (Ok(a), Ok(b)) => near_pair(&a, &b, d.field, cfg),
                (Err(e), _) | (_, Err(e)) => {
                    failed.lock().map(|mut f| f.get_or_insert(e).clone()).ok();
                    false
                }
            })
            .map_err(|e| format!("{}: {e}", spill.display()))?;
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        let _ = std::fs::remove_dir(&spill);
        for (i, dup) in found.into_iter().enumerate() {
            if let Some(j) = dup {
                verdicts[i] = Some(Dup::Near(j as u32));
            }
        }
    }
    // The ids the reasons name, read back from the input.
    let mut ids = HashMap::new();
    for v in verdicts.iter().flatten() {
        let (Dup::Exact(j) | Dup::Superseded(j) | Dup::Near(j)) = *v;
        if let std::collections::hash_map::Entry::Vacant(slot) = ids.entry(j) {
            slot.insert(file.read(locs[j as usize])?.id);
        }
    }
    Ok((DedupState { verdicts, ids, seen: 0 }, n))
}

/// Whether record `a` is a near duplicate of record `b`: their texts are
/// alike, and — over whole records — so are their answers (one question
/// with different answers is two records, not a duplicate).
fn near_pair(a: &Record, b: &Record, field: Field, cfg: &MinHashConfig) -> bool {
    tailor_text::confirmed(&text_of(a, field), &text_of(b, field), cfg)
        && (field != Field::All || matches!(a.body, Body::Text { .. }) || {
            let (x, y) = (a.body.target(), b.body.target());
            x == y || tailor_text::jaccard(x, y, cfg) >= cfg.threshold
        })
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

fn style(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, s: &StyleStep, target: Option<Register>) {
    let reports: Vec<tailor_text::RegisterReport> = records.par_iter().map(|r| tailor_text::analyze(r.body.target())).collect();
    // `mixed` has no target; `majority` got its target from the census.
    let target = if s.politeness == Politeness::Mixed { None } else { target };
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

impl CheckRules {
    fn new(c: &CheckStep, root: &Path) -> Result<Self, String> {
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
        Ok(Self { schema, re })
    }
}

fn check(records: &mut Vec<Record>, rejects: &mut Vec<Reject>, st: &mut StepStats, c: &CheckStep, rules: &CheckRules) {
    let (schema, re) = (&rules.schema, &rules.re);
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
}

/// The texts the variants step reads, mutable.
fn variant_texts(r: &mut Record, f: VariantField) -> Vec<&mut String> {
    match f {
        VariantField::Target => r.body.target_mut().into_iter().collect(),
        VariantField::All => r.body.texts_mut(),
    }
}

fn wanted(v: &VariantsStep, f: Family) -> bool {
    match f {
        Family::Dictionary => true,
        Family::LongVowel => v.rules.contains(&VariantRule::LongVowel),
        Family::Okurigana => v.rules.contains(&VariantRule::Okurigana),
        Family::KanjiKana => v.rules.contains(&VariantRule::KanjiKana),
    }
}

/// The spellings of each record's texts that the step's rules look for.
fn find_variants(records: &mut [Record], v: &VariantsStep, finder: &Finder, keys: &HashSet<String>) -> Vec<Vec<Vec<Spelling>>> {
    records
        .par_iter_mut()
        .map(|r| variant_texts(r, v.field).into_iter().map(|t| finder.find(t, keys).into_iter().filter(|s| wanted(v, s.family)).collect()).collect())
        .collect()
}

fn variants(records: &mut [Record], st: &mut StepStats, v: &VariantsStep, state: &VariantsState) {
    let found = find_variants(records, v, &state.finder, &state.keys);
    let preferred = &state.preferred;
    let per_record: Vec<Vec<(String, String)>> = records
        .par_iter_mut()
        .zip(&found)
        .map(|(r, per_text)| {
            let mut changes = Vec::new();
            for (t, f) in variant_texts(r, v.field).into_iter().zip(per_text) {
                let (new, made) = rewrite(t, f, preferred);
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
}
