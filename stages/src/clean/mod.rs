//! `clean`: an ordered list of steps over the records, each of which may
//! change records (normalize, redact) or remove them (filter, dedup, pii
//! drop, style, check). Every removal becomes a reject `{id, step, reason,
//! record}`, and every step's counts go to `stats.json` and `tailor show`.
//! Steps run record-parallel with rayon; results are collected in input
//! order, so the output is identical for any thread count.

mod select;
mod step;

pub use select::{StepEntry, Where};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tailor_engine::{ConfigIssue, FileDecl, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use tailor_text::record::{Record, Reject, read_jsonl, write_jsonl};
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
        let mut records: Vec<Record> = read_jsonl(&input).ctx(|| format!("reading {}", input.display()))?;
        let before = records.len();
        let mut rejects: Vec<Reject> = Vec::new();
        let mut stats = Vec::new();
        ctx.progress().set_length(config.steps.len() as u64);
        for (i, e) in config.steps.iter().enumerate() {
            let name = step::name(&e.step);
            ctx.progress().set_message(name);
            let failed = |e: String| StageError::msg(format!("step {} ({name}): {e}", i + 1));
            let st = match &e.selector {
                None => step::apply(&e.step, &mut records, &mut rejects, ctx.root).map_err(failed)?,
                Some(w) => {
                    let sel = w.compile().map_err(failed)?;
                    let mut st = StepStats::default();
                    let total = records.len();
                    let picked = select::on_subset(&mut records, &sel, |sub| {
                        st = step::apply(&e.step, sub, &mut rejects, ctx.root)?;
                        Ok(())
                    })
                    .map_err(failed)?;
                    st.scope = Some(w.describe());
                    st.skipped = total - picked;
                    st
                }
            };
            tracing::info!(step = name, removed = st.removed, changed = st.changed, "clean step");
            stats.push(st);
            ctx.progress().inc(1);
        }
        let out = ctx.output_dir("records")?;
        write_jsonl(&out.join("records.jsonl"), &records).ctx(|| "writing records.jsonl".into())?;
        let summary = json!({"input": before, "kept": records.len(), "rejected": rejects.len(), "steps": stats});
        crate::files::write_json(&out.join("stats.json"), &summary)?;
        let rej = ctx.output_dir("rejects")?;
        write_jsonl(&rej.join("rejects.jsonl"), &rejects).ctx(|| "writing rejects.jsonl".into())?;
        let mut metrics = BTreeMap::new();
        metrics.insert("input".into(), json!(before));
        metrics.insert("kept".into(), json!(records.len()));
        metrics.insert("rejected".into(), json!(rejects.len()));
        let mut warnings = Vec::new();
        if records.len() < 50 {
            warnings.push(format!("only {} records left after cleaning; fine-tuning needs dozens at least, and thousands give stable effects", records.len()));
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
