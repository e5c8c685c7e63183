//! `clean`: an ordered list of steps over the records, each of which may
//! change records (normalize, redact) or remove them (filter, dedup, pii
//! drop, style, check). Every removal becomes a reject `{id, step, reason,
//! record}`, and every step's counts go to `stats.json` and `tailor show`.
//!
//! The records stream through the steps a chunk at a time (`crate::stream`), so
//! memory does not grow with the dataset. A step that must see the whole
//! dataset first (dedup, the majority register, spelling variants) ends a
//! pass: the records as they reach it are written to a scratch file, the
//! step takes its census of that file, and the next pass reads it. Steps run
//! record-parallel with rayon and every result keeps input order, so the
//! output is identical for any thread count and any chunk size.

mod select;
mod step;

use crate::stream;

pub use select::{StepEntry, Where};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tailor_engine::{ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use tailor_text::{MinHashConfig, NormalizeOptions, PiiKind};

/// Configuration of a `clean` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanConfig {
    /// The records to clean: a `collect` or `clean` stage (`raw` or `raw.records`).
    pub input: String,
    /// Steps, applied in order. A step may carry a sibling `where:` key
    /// that limits it to some records (by metadata, regex or language).
    pub steps: Vec<StepEntry>,
}

/// One cleaning step. Written as a one-key mapping: `- dedup: {exact: true}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Unicode NFKC (full-width → half-width), whitespace, control
    /// characters and newlines, on every text field.
    Normalize(NormalizeOptions),
    /// Remove records that fail length, quality or language rules.
    Filter(FilterStep),
    /// Remove exact and near duplicates.
    Dedup(DedupStep),
    /// Find personal data and redact it or drop the record.
    Pii(PiiStep),
    /// Japanese register consistency of the completion (です/ます vs だ/である).
    Style(StyleStep),
    /// Format rules on the completion: JSON, JSON Schema, regex, suffix.
    Check(CheckStep),
    /// Japanese spelling variants (表記ゆれ) across the dataset: report the
    /// groups, or rewrite each to one spelling.
    Variants(VariantsStep),
}

/// Which text a rule looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The completion (output, last assistant message, or text).
    #[default]
    Target,
    /// All text of the record joined.
    All,
    /// The question: prompt, instruction (with input), or the last user
    /// message before the last reply.
    Prompt,
}

/// Length, quality and language rules (Gopher/C4-style). Unset rules are off.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterStep {
    /// Which text the rules measure.
    #[serde(default)]
    pub field: Field,
    /// Minimum length in characters.
    pub min_chars: Option<usize>,
    /// Maximum length in characters.
    pub max_chars: Option<usize>,
    /// Minimum length in tokens (needs `tokenizer`).
    pub min_tokens: Option<usize>,
    /// Maximum length in tokens (needs `tokenizer`).
    pub max_tokens: Option<usize>,
    /// A `tokenizer.json` (or a model directory) for the token-length rules.
    pub tokenizer: Option<PathBuf>,
    /// Metadata keys every record must have, non-empty (`[lang, source_url]`).
    #[serde(default)]
    pub required_meta: Vec<String>,
    /// Maximum share of characters that are neither letters, digits nor spaces.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_symbol_ratio: Option<f64>,
    /// Maximum share of non-empty lines that repeat an earlier line.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_duplicate_line_ratio: Option<f64>,
    /// Maximum share of characters covered by the most frequent character 3-gram.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_top_ngram_ratio: Option<f64>,
    /// Require the text to end with sentence punctuation (. ! ? 。！？).
    #[serde(default)]
    pub require_terminal_punct: bool,
    /// Keep only these languages (`ja`, `en`, `zh`, `ko`, `latin`, …).
    pub lang: Option<Vec<String>>,
    /// Drop records whose prompt or completion is empty.
    #[serde(default = "yes")]
    pub drop_empty: bool,
}

fn yes() -> bool {
    true
}

/// Which duplicate of a group survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The first in input order.
    #[default]
    First,
    /// The longest (ties: the first).
    Longest,
    /// The last in input order: later sources supersede earlier ones (a
    /// corrections file listed after the data, deduplicated on `prompt`,
    /// replaces the records it corrects).
    Last,
}

/// Duplicate removal.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupStep {
    /// Remove records whose normalized text (NFKC, case-folded, whitespace
    /// collapsed) equals an earlier one.
    #[serde(default = "yes")]
    pub exact: bool,
    /// Remove near duplicates with MinHash + LSH over character n-grams
    /// (works for Japanese); leave out to disable.
    pub near: Option<MinHashConfig>,
    /// Which record of a duplicate group is kept.
    #[serde(default)]
    pub keep: Keep,
    /// Which text is compared.
    #[serde(default = "all_field")]
    pub field: Field,
}

fn all_field() -> Field {
    Field::All
}

/// What to do with personal data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    /// Replace each match with a placeholder such as `[EMAIL]`.
    #[default]
    Redact,
    /// Remove the record.
    Drop,
}

/// Personal data detection.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiStep {
    /// Kinds to look for.
    #[serde(default = "all_pii")]
    pub kinds: Vec<PiiKind>,
    /// Redact or drop.
    #[serde(default)]
    pub action: PiiAction,
}

fn all_pii() -> Vec<PiiKind> {
    PiiKind::ALL.to_vec()
}

/// The register the completions should keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Politeness {
    /// Polite: です/ます.
    DesuMasu,
    /// Plain: だ/である.
    DaDearu,
    /// Whatever most completions of the dataset use.
    #[default]
    Majority,
    /// No target: flag only completions that mix です/ます and だ/である
    /// sentence endings within themselves; a consistent completion passes
    /// whichever register it uses. Quoted speech (「…」『…』) never counts.
    Mixed,
}

/// What a style or check rule does with a failing record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Remove it (to rejects).
    #[default]
    Reject,
    /// Keep it, count it, and mark it in `meta.flags`.
    Report,
}

/// Register consistency (Japanese).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StyleStep {
    /// Language of the rule; only `ja` is implemented.
    #[serde(default = "ja")]
    pub lang: String,
    /// Target register.
    #[serde(default)]
    pub politeness: Politeness,
    /// Reject or report records that mix registers or break the target.
    #[serde(default)]
    pub action: RuleAction,
}

fn ja() -> String {
    "ja".into()
}

/// Output-format rules on the completion.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckStep {
    /// The completion must parse as JSON.
    #[serde(default)]
    pub json: bool,
    /// The completion must be JSON valid against this JSON Schema file.
    pub schema: Option<PathBuf>,
    /// The completion must match this regular expression.
    pub regex: Option<String>,
    /// The completion must end with this string.
    pub ends_with: Option<String>,
    /// Reject or report failures.
    #[serde(default)]
    pub action: RuleAction,
}

/// Families of spelling variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VariantRule {
    /// Katakana with and without ー (サーバー/サーバ; インターフェース/インタフェース).
    LongVowel,
    /// Compounds with and without okurigana (申し込み/申込み).
    Okurigana,
    /// Words written in kanji or kana (出来る/できる, 下さい/ください).
    KanjiKana,
}

/// Which spelling a rewrite keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    /// Each group's most used spelling (ties: the longer); dictionary
    /// words keep the dictionary's form.
    Majority,
    /// Only the dictionary's words, to its preferred forms.
    Dictionary,
}

/// Which texts the variants step reads and rewrites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VariantField {
    /// The completion (output, last assistant message, or text).
    #[default]
    Target,
    /// Every text field (prompts too).
    All,
}

/// Japanese spelling variants. Without `normalize` the step reports: the
/// groups with counts go to `stats.json`, `tailor show` and the report, and
/// each record that uses a less-used spelling is flagged in `meta.flags`.
/// With `normalize` it rewrites and records each change in `meta.variants`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantsStep {
    /// Rewrite to `majority` (each group's most used spelling) or to the
    /// `dictionary`'s preferred forms only; leave out to report.
    pub normalize: Option<Prefer>,
    /// Preferred form → the spellings to replace (`{サーバー: [サーバ]}`),
    /// matched literally; these override the built-in rules.
    #[serde(default)]
    pub dictionary: BTreeMap<String, Vec<String>>,
    /// Which built-in rules run.
    #[serde(default = "all_rules")]
    pub rules: Vec<VariantRule>,
    /// Which texts are read and rewritten.
    #[serde(default)]
    pub field: VariantField,
}

fn all_rules() -> Vec<VariantRule> {
    vec![VariantRule::LongVowel, VariantRule::Okurigana, VariantRule::KanjiKana]
}

/// Counts for one step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepStats {
    /// Step name.
    pub step: String,
    /// Records seen.
    pub input: usize,
    /// Records modified.
    pub changed: usize,
    /// Records removed.
    pub removed: usize,
    /// Records flagged but kept.
    pub flagged: usize,
    /// Removals/flags by reason.
    pub reasons: BTreeMap<String, usize>,
    /// The step's `where:` selector in words, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Records the selector passed over (unchanged).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: usize,
    /// Step-specific findings (the variants step's groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The `clean` stage kind.
pub struct Clean;

impl Stage for Clean {
    type Config = CleanConfig;
    const KIND: &'static str = "clean";
    const VERSION: u32 = 1;
    const IMPLEMENTATION: &'static str = crate::identity::CLEAN;
    const ABOUT: &'static str = "Normalize, filter, deduplicate, redact and style-check records; every removal is kept with its reason.";
    const OUTPUTS: &'static [OutputDecl] = &[
        OutputDecl { name: "records", kind: "records", about: "the records that passed (records.jsonl, stats.json)" },
        OutputDecl { name: "rejects", kind: "rejects", about: "removed records with step and reason (rejects.jsonl)" },
    ];

    fn spec(config: &CleanConfig, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let mut spec = StageSpec {
            inputs: vec![InputDecl { role: "input".into(), reference: config.input.clone(), pointer: "/input".into(), accepts: vec!["records"] }],
            ..Default::default()
        };
        let mut issues = Vec::new();
        for (i, e) in config.steps.iter().enumerate() {
            if let Some(w) = &e.selector
                && let Err(why) = w.compile()
            {
                issues.push(ConfigIssue::new(format!("/steps/{i}/where"), why));
            }
            match &e.step {
                Step::Check(c) => {
                    if let Some(p) = &c.schema {
                        match tailor_engine::paths::not_a_file(&root.join(p)) {
                            None => spec.files.push(FileDecl { path: p.clone(), pointer: format!("/steps/{i}/check/schema") }),
                            Some(what) => issues.push(ConfigIssue::new(format!("/steps/{i}/check/schema"), format!("schema file `{}` {what}", p.display()))),
                        }
                    }
                    if let Some(r) = &c.regex
                        && let Err(e) = regex::Regex::new(r)
                    {
                        issues.push(ConfigIssue::new(
                            format!("/steps/{i}/check/regex"),
                            format!("invalid regular expression: {}", e.to_string().lines().last().unwrap_or("").trim_start_matches("error: ")),
                        ));
                    }
                }
                Step::Filter(f) => {
                    let wants = f.min_tokens.is_some() || f.max_tokens.is_some();
                    match (&f.tokenizer, wants) {
                        (None, true) => issues.push(
                            ConfigIssue::new(format!("/steps/{i}/filter"), "`min_tokens`/`max_tokens` need a `tokenizer`")
                                .help("add `tokenizer: path/to/tokenizer.json` (or a model directory) to the filter"),
                        ),
                        (Some(t), _) => match crate::inputs::tokenizer(root, t, &format!("/steps/{i}/filter/tokenizer")) {
                            Ok((_, decl)) => spec.files.extend(decl),
                            Err(e) => issues.push(ConfigIssue::new(format!("/steps/{i}/filter/tokenizer"), e)),
                        },
                        _ => {}
                    }
                }
                Step::Variants(v) if v.normalize == Some(Prefer::Dictionary) && v.dictionary.is_empty() => {
                    issues.push(
                        ConfigIssue::new(format!("/steps/{i}/variants/normalize"), "`normalize: dictionary` needs a `dictionary`")
                            .help("add `dictionary: {サーバー: [サーバ]}` (preferred form: variants), or use `normalize: majority`"),
                    );
                }
                Step::Style(st) if st.lang != "ja" => {
                    issues.push(ConfigIssue::new(format!("/steps/{i}/style/lang"), format!("register rules exist only for `ja`, not `{}`", st.lang)));
                }
                _ => {}
            }
        }
        if issues.is_empty() { Ok(spec) } else { Err(issues) }
    }

    fn run(config: &CleanConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let input = ctx.input("input")?.dir.join("records.jsonl");
        let scratch = ctx.state_dir()?.join("clean");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).ctx(|| format!("creating {}", scratch.display()))?;
        let mut steps: Vec<step::Ready<'_>> = Vec::with_capacity(config.steps.len());
        for (i, e) in config.steps.iter().enumerate() {
            steps.push(step::Ready::new(e, ctx.root).map_err(|why| StageError::msg(format!("step {} ({}): {why}", i + 1, step::name(&e.step))))?);
        }
        let mut rejects: Vec<_> = (0..steps.len())
            .map(|i| stream::create(&scratch.join(format!("rejects-{i}.jsonl"))))
            .collect::<Result<_, _>>()
            .ctx(|| "creating scratch files".into())?;
        let out = ctx.output_dir("records")?;
        // Passes: run the steps up to the next one that needs a census,
        // writing what reaches it to a scratch file; take its census there.
        let (mut source, mut start, mut before) = (input.clone(), 0, None);
        let passes = 1 + steps.iter().filter(|s| s.needs_census()).count();
        for g in 0..steps.len() {
            if !steps[g].needs_census() {
                continue;
            }
            if g > start {
                let spill = scratch.join(format!("before-step-{}.jsonl", g + 1));
                let (read, _) = pass(&source, &spill, &mut steps[start..g], &mut rejects[start..g], ctx, start, passes)?;
                before.get_or_insert(read);
                if source != input {
                    let _ = std::fs::remove_file(&source);
                }
                (source, start) = (spill, g);
            }
            ctx.progress().set_message(format!("census for step {} ({})", g + 1, step::name(&config.steps[g].step)));
            let read =
                steps[g].census(&source, &scratch).map_err(|why| StageError::msg(format!("step {} ({}): {why}", g + 1, step::name(&config.steps[g].step))))?;
            before.get_or_insert(read);
        }
        let (read, kept) = pass(&source, &out.join("records.jsonl"), &mut steps[start..], &mut rejects[start..], ctx, start, passes)?;
        let before = before.unwrap_or(read);
        if source != input {
            let _ = std::fs::remove_file(&source);
        }
        // Rejects in step order, each step's in input order.
        let rej = ctx.output_dir("rejects")?;
        let mut all = stream::create(&rej.join("rejects.jsonl")).ctx(|| "writing rejects.jsonl".into())?;
        let mut rejected = 0;
        for (i, w) in rejects.into_iter().enumerate() {
            drop(w.into_inner().map_err(|e| StageError::msg(format!("writing rejects: {e}")))?);
            let path = scratch.join(format!("rejects-{i}.jsonl"));
            let mut f = std::fs::File::open(&path).ctx(|| format!("reading {}", path.display()))?;
            std::io::copy(&mut f, &mut all).ctx(|| "writing rejects.jsonl".into())?;
        }
        std::io::Write::flush(&mut all).ctx(|| "writing rejects.jsonl".into())?;
        let _ = std::fs::remove_dir_all(&scratch);
        let stats: Vec<StepStats> = steps.into_iter().map(|s| s.stats).collect();
        for st in &stats {
            rejected += st.removed;
            tracing::info!(step = st.step, removed = st.removed, changed = st.changed, "clean step");
        }
        let summary = json!({"input": before, "kept": kept, "rejected": rejected, "steps": stats});
        crate::files::write_json(&out.join("stats.json"), &summary)?;
        let mut metrics = BTreeMap::new();
        metrics.insert("input".into(), json!(before));
        metrics.insert("kept".into(), json!(kept));
        metrics.insert("rejected".into(), json!(rejected));
        let mut warnings = Vec::new();
        if kept < 50 {
            warnings.push(format!("only {kept} records left after cleaning; fine-tuning needs dozens at least, and thousands give stable effects"));
        }
        Ok(StageOutcome { metrics, warnings, check: None })
    }

    fn report(output: &OutputDecl, dir: &Path) -> Option<String> {
        (output.kind == "records").then(|| tailor_report::records(dir))
    }

    fn show(output: &OutputDecl, dir: &Path, w: &mut dyn std::io::Write, limit: usize) -> std::io::Result<bool> {
        if output.kind == "records"
            && let Ok(bytes) = std::fs::read(dir.join("stats.json"))
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
        {
            writeln!(w, "{} in → {} kept, {} rejected", v["input"], v["kept"], v["rejected"])?;
            writeln!(w, "{:<10} {:>8} {:>8} {:>8} {:>8}", "step", "in", "changed", "removed", "flagged")?;
            for s in v["steps"].as_array().into_iter().flatten() {
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                writeln!(w, "{:<10} {:>8} {:>8} {:>8} {:>8}", s["step"].as_str().unwrap_or(""), n("input"), n("changed"), n("removed"), n("flagged"))?;
                if let Some(scope) = s["scope"].as_str() {
                    writeln!(w, "{:<10} {:>8}  not selected by `where: {scope}`, passed unchanged", "", n("skipped"))?;
                }
                for (reason, n) in s["reasons"].as_object().into_iter().flatten() {
                    writeln!(w, "{:<10} {:>8}  {reason}", "", n.as_u64().unwrap_or(0))?;
                }
                for g in s["details"]["groups"].as_array().into_iter().flatten().take(20) {
                    let forms: Vec<String> =
                        g["forms"].as_array().into_iter().flatten().map(|f| format!("{} ×{}", f["text"].as_str().unwrap_or("?"), f["count"])).collect();
                    writeln!(w, "{:<10} {:>8}  {} ({})", "", "", forms.join(" / "), g["family"].as_str().unwrap_or(""))?;
                }
            }
            writeln!(w)?;
        }
        crate::show::records_or_rejects(output, dir, w, limit)
    }
}

/// Read `source` a chunk at a time, run `steps` on each chunk (step `first
/// + k` is `steps[k]`), append each step's removals to its rejects file and
/// write the survivors to `dest`. Returns (records read, records written).
fn pass(
    source: &Path,
    dest: &Path,
    steps: &mut [step::Ready<'_>],
    rejects: &mut [std::io::BufWriter<std::fs::File>],
    ctx: &StageContext<'_>,
    first: usize,
    passes: usize,
) -> Result<(usize, usize), StageError> {
    let bar = ctx.progress();
    bar.set_length(std::fs::metadata(source).map(|m| m.len()).unwrap_or(0));
    bar.set_position(0);
    let names: Vec<&str> = steps.iter().map(|s| s.stats.step.as_str()).collect();
    bar.set_message(format!("steps {}–{} of {passes} passes ({})", first + 1, first + steps.len(), names.join(", ")));
    let mut out = stream::create(dest).ctx(|| format!("writing {}", dest.display()))?;
    let mut written = 0;
    let read = stream::for_each_chunk(source, |mut records, locs| {
        let bytes: u64 = locs.iter().map(|l| u64::from(l.len) + 1).sum();
        for (k, (s, w)) in steps.iter_mut().zip(rejects.iter_mut()).enumerate() {
            let mut removed = Vec::new();
            s.run(&mut records, &mut removed).map_err(|why| format!("step {} ({}): {why}", first + k + 1, s.stats.step))?;
            stream::write_lines(w, &removed).map_err(|e| format!("writing rejects: {e}"))?;
        }
        stream::write_lines(&mut out, &records).map_err(|e| format!("writing {}: {e}", dest.display()))?;
        written += records.len();
        bar.inc(bytes);
        Ok(())
    })
    .map_err(StageError::msg)?;
    std::io::Write::flush(&mut out).ctx(|| format!("writing {}", dest.display()))?;
    Ok((read, written))
}
