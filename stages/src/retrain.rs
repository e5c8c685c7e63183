//! `retrain`: continue training a `train` (or `retrain`) result on improved
//! data — the original data plus corrections, formatted like the rest.
//! Adapters continue from their trained values and, by default, from the
//! saved AdamW moments; a fully fine-tuned model becomes the base of the
//! next run. Method and LoRA settings come from the model being continued
//! (`train.json` in its artifact), so the adapters line up.
//!
//! `focus: {failures: 3}` reads an `evaluate` stage's per-sample results
//! and repeats three times per epoch the training samples that stand for a
//! failed case — the same sample, a correction of it (`meta.fix_of`, as
//! `review.html` exports), or the same question: the "fix what the model
//! gets wrong" half of the loop. When none matches, the stage says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tailor_engine::{ConfigIssue, InputDecl, IoContext, OutputDecl, Stage, StageContext, StageError, StageOutcome, StageSpec};

use crate::files::read_record;
use crate::train::settings::Hyper;
use crate::train::{self, base};
use crate::train::{BaseRecord, TrainRecord};
use tailor_protocol::job::{Init, Oversample};

/// Configuration of a `retrain` stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RetrainConfig {
    /// The model to continue: a `train` or `retrain` stage.
    pub from: String,
    /// Tokenized training data (the improved dataset).
    pub data: String,
    /// Tokenized validation data, for the validation loss.
    pub validation: Option<String>,
    /// An `evaluate` stage whose failed samples `focus` repeats.
    pub evaluation: Option<String>,
    /// What to emphasise.
    pub focus: Option<Focus>,
    /// `resume` the optimizer state saved with the model (adapters), or
    /// start it `fresh`.
    #[serde(default)]
    pub optimizer: OptimizerStart,
    /// Optimisation and runtime settings.
    #[serde(flatten)]
    pub hyper: Hyper,
}

/// Emphasis on some samples.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Focus {
    /// Repeat each training sample that failed the evaluation this many
    /// times per epoch (2 or more).
    #[schemars(range(min = 2, max = 100))]
    pub failures: usize,
}

/// Where the optimizer starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerStart {
    /// Continue from the saved AdamW moments when the model has them.
    #[default]
    Resume,
    /// New moments.
    Fresh,
}

/// The `retrain` stage kind.
pub struct Retrain;

/// The cases the tuned model failed in an evaluation: (ids, prompts).
pub fn failures(results: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>), StageError> {
    let text = std::fs::read_to_string(results).ctx(|| format!("reading {}", results.display()))?;
    let (mut ids, mut prompts) = (BTreeSet::new(), BTreeSet::new());
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).map_err(|e| StageError::msg(format!("{}:{}: {e}", results.display(), i + 1)))?;
        if v["variant"] == "tuned" && v["pass"] == false {
            ids.extend(v["id"].as_str().map(str::to_string));
            prompts.extend(v["prompt"].as_str().filter(|p| !p.is_empty()).map(str::to_string));
        }
    }
    Ok((ids, prompts))
}

/// Training samples that stand for failed cases: the same sample, a
/// correction of it (`fix_of`), or the same question.
fn matching(data: &Path, ids: &BTreeSet<String>, prompts: &BTreeSet<String>) -> Result<BTreeSet<String>, StageError> {
    let path = data.join("samples.jsonl");
    let text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
    let mut hit = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).map_err(|e| StageError::msg(format!("{}:{}: {e}", path.display(), i + 1)))?;
        let has = |k: &str, set: &BTreeSet<String>| v[k].as_str().is_some_and(|x| set.contains(x));
        if has("id", ids) || has("fix_of", ids) || has("prompt", prompts) {
            hit.extend(v["id"].as_str().map(str::to_string));
        }
    }
    Ok(hit)
}

impl Stage for Retrain {
    type Config = RetrainConfig;
    const KIND: &'static str = "retrain";
    const VERSION: u32 = 1;
    const IMPLEMENTATION: &'static str = crate::identity::RETRAIN;
    const ABOUT: &'static str = "Continue training a train/retrain result on improved data, optionally repeating an evaluation's failures.";
    const OUTPUTS: &'static [OutputDecl] = train::MODEL_OUTPUTS;

    fn spec(config: &RetrainConfig, _root: &Path) -> Result<StageSpec, Vec<ConfigIssue>> {
        let mut inputs = train::data_inputs(&config.data, config.validation.as_ref());
        inputs.push(InputDecl { role: "from".into(), reference: config.from.clone(), pointer: "/from".into(), accepts: vec!["model"] });
        match (&config.evaluation, &config.focus) {
            (Some(e), _) => {
                inputs.push(InputDecl { role: "evaluation".into(), reference: e.clone(), pointer: "/evaluation".into(), accepts: vec!["evaluation"] })
            }
            (None, Some(_)) => {
                return Err(vec![
                    ConfigIssue::new("/focus", "`focus: failures` needs an `evaluation:` stage to read failures from")
                        .help("add `evaluation: NAME` of an evaluate stage"),
                ]);
            }
            (None, None) => {}
        }
        Ok(StageSpec {
            inputs,
            files: vec![],
            env: train::env(&config.hyper),
            resources: train::resources(config.hyper.device, crate::numerics::threads(config.hyper.threads), config.hyper.workers),
        })
    }

    fn run(config: &RetrainConfig, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        let from = ctx.input("from")?.dir.clone();
        let method = read_record::<TrainRecord>(&from, "train.json")?.method;
        let base_rec: BaseRecord = read_record(&from, "base.json")?;
        let base_path = base_rec.path.clone();
        let out = ctx.output_dir("model")?;
        // Adapters continue on the same base; a full model is the new base.
        let base_dir = if !method.method.is_adapter() { from.join("model") } else { base::materialize(&base_path, ctx.root, &out.with_file_name("import"))? };
        train::check_tokenizer(&ctx.input("data")?.dir, &base_dir, &base_path)?;
        let mut job = train::job(&method, &config.hyper, &base_dir, ctx, &out)?;
        if method.method.is_adapter() {
            let opt = from.join("optimizer.safetensors");
            let resume = config.optimizer == OptimizerStart::Resume && opt.exists();
            job.init = Some(Init { adapter: Some(from.join("adapter")), optimizer: resume.then_some(opt) });
        }
        let mut warnings = Vec::new();
        let mut extra = BTreeMap::new();
        if let (Some(f), Ok(eval)) = (&config.focus, ctx.input("evaluation")) {
            let (ids, prompts) = failures(&eval.dir.join("results.jsonl"))?;
            let hit = matching(&ctx.input("data")?.dir, &ids, &prompts)?;
            if hit.is_empty() && !ids.is_empty() {
                warnings.push(format!("none of the {} failed cases has a training sample (the same sample, a correction with `meta.fix_of`, or the same question); nothing is repeated", ids.len()));
            }
            extra.insert("focused_samples".to_string(), json!(hit.len()));
            job.oversample = Some(Oversample { ids: hit, factor: f.failures });
        }
        // `base.json` keeps naming the original base model (what `evaluate`
        // compares against), however many rounds of retraining follow.
        let mut metrics = train::execute(ctx, &job, &out, &base_rec, &method, &config.hyper)?;
        metrics.extend(extra);
        Ok(StageOutcome { metrics, warnings, check: None })
    }

    fn report(_output: &OutputDecl, dir: &Path) -> Option<String> {
        Some(tailor_report::model(dir))
    }

    fn show(_output: &OutputDecl, dir: &Path, w: &mut dyn std::io::Write, _limit: usize) -> std::io::Result<bool> {
        crate::show::model(dir, w)
    }
}
