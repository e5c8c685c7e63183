//! The contract between the engine and the stages it runs.
//!
//! A stage kind is a type implementing [`Stage`]: a config type (which is also
//! its JSON Schema), a version that is bumped whenever its results would
//! change, the outputs it produces (named and typed by artifact kind), a
//! `spec` step that declares — before anything runs — what it reads (other
//! stages' outputs and external files), and a `run` step that is a pure
//! function of those inputs and its config, writing files into the output
//! directories the engine hands it. The engine never looks inside artifacts:
//! artifact kinds are plain strings that stages agree on (`records`,
//! `tokenized`, `model`, …), and the engine only checks that a reference
//! feeds a kind the consumer accepts.
//!
//! [`DynStage`] erases the config type so a [`Registry`] can hold every kind.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One output a stage kind produces.
#[derive(Debug, Clone, Copy)]
pub struct OutputDecl {
    /// Output name, used in references (`formatted.validation`).
    pub name: &'static str,
    /// Artifact kind, e.g. `records`.
    pub kind: &'static str,
    /// One line for `tailor dag` and docs.
    pub about: &'static str,
}

/// One input read from another stage's output.
#[derive(Debug, Clone)]
pub struct InputDecl {
    /// Name of the input in this stage (`input`, `data`, `model`).
    pub role: String,
    /// The reference as written: `stage` or `stage.output`.
    pub reference: String,
    /// JSON pointer, inside the stage's config, of the reference (for errors).
    pub pointer: String,
    /// Artifact kinds this input accepts.
    pub accepts: Vec<&'static str>,
}

/// An external file or directory a stage reads.
#[derive(Debug, Clone)]
pub struct FileDecl {
    /// Path relative to the project root (the pipeline file's directory).
    pub path: PathBuf,
    /// JSON pointer, inside the stage's config, of where it was named.
    pub pointer: String,
}

/// What a configured stage reads, declared before anything runs.
#[derive(Debug, Clone, Default)]
pub struct StageSpec {
    /// Upstream artifacts.
    pub inputs: Vec<InputDecl>,
    /// External files (already expanded from globs).
    pub files: Vec<FileDecl>,
    /// Parts of the environment that change results (library versions,
    /// device, dtype); they enter the fingerprint.
    pub env: BTreeMap<String, String>,
    /// What the stage asks of a cluster by default (a GPU for training);
    /// the pipeline file's `resources:` overrides it. Not fingerprinted.
    pub resources: crate::resources::Resources,
}

/// A problem with one stage's configuration, found by its `spec` step.
#[derive(Debug, Clone)]
pub struct ConfigIssue {
    /// JSON pointer inside the stage's config.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl ConfigIssue {
    /// An issue at `pointer`.
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue { pointer: pointer.into(), message: message.into(), help: None }
    }

    /// Add a fix.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// An artifact handed to a running stage, materialised read-only on disk.
#[derive(Debug, Clone)]
pub struct ArtifactView {
    /// Artifact kind.
    pub kind: String,
    /// Content digest.
    pub digest: String,
    /// Directory holding the artifact's files.
    pub dir: PathBuf,
    /// The stage and output that produced it.
    pub producer: String,
}

/// A condition a stage checked on its own results (an evaluation gate).
/// Its outputs are stored either way; a failed check stops the stage's
/// dependents — except in a loop, where it means "go another round".
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// Whether the condition holds.
    pub passed: bool,
    /// One line with the numbers (`exact_match 0.62 < 0.80`).
    pub summary: String,
}

/// Headline results of a stage run: recorded in the lock file and the run
/// record, printed after the stage.
#[derive(Debug, Clone, Default)]
pub struct StageOutcome {
    /// Small, reviewable numbers (`kept: 950`, `loss: 1.23`).
    pub metrics: BTreeMap<String, Value>,
    /// Warnings to show the user (they do not fail the stage).
    pub warnings: Vec<String>,
    /// A condition on the results, if the stage checks one.
    pub check: Option<Check>,
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A failure explained in words.
    #[error("{0}")]
    Message(String),
    /// An I/O failure with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the stage was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl StageError {
    /// A failure with a message.
    pub fn msg(m: impl Into<String>) -> Self {
        StageError::Message(m.into())
    }
}

/// Attach context to I/O results inside stages.
pub trait IoContext<T> {
    /// Wrap the error with what was being done.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, StageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, StageError> {
        self.map_err(|source| StageError::Io { context: what(), source })
    }
}

/// What a running stage can see and where it writes.
pub struct StageContext<'a> {
    /// This stage's name in the pipeline.
    pub name: &'a str,
    /// The project root; relative paths in configs resolve against it.
    pub root: &'a Path,
    pub(crate) inputs: &'a BTreeMap<String, ArtifactView>,
    pub(crate) out_root: PathBuf,
    pub(crate) outputs: &'static [OutputDecl],
    pub(crate) progress: ProgressBar,
    pub(crate) state: PathBuf,
    pub(crate) lineage: Value,
}

impl StageContext<'_> {
    /// The artifact bound to an input role.
    pub fn input(&self, role: &str) -> Result<&ArtifactView, StageError> {
        self.inputs.get(role).ok_or_else(|| StageError::msg(format!("stage `{}` has no input `{role}`", self.name)))
    }

    /// The (created) directory into which the stage writes output `name`.
    pub fn output_dir(&self, name: &str) -> Result<PathBuf, StageError> {
        if !self.outputs.iter().any(|o| o.name == name) {
            return Err(StageError::msg(format!("stage `{}` declares no output `{name}`", self.name)));
        }
        let dir = self.out_root.join(name);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Resolve a path from the config against the project root.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }

    /// The stage's progress bar: set a length and `inc` it, or set a message.
    pub fn progress(&self) -> &ProgressBar {
        &self.progress
    }

    /// A directory that survives a failed or killed attempt of this same
    /// stage (same fingerprint) and is removed once the stage succeeds: the
    /// place for checkpoints a rerun resumes from.
    pub fn state_dir(&self) -> Result<PathBuf, StageError> {
        std::fs::create_dir_all(&self.state).ctx(|| format!("creating {}", self.state.display()))?;
        Ok(self.state.clone())
    }

    /// Where this stage's result comes from: its kind, fingerprint, config
    /// and files, and the same for every upstream stage, recursively (JSON).
    pub fn lineage(&self) -> &Value {
        &self.lineage
    }
}

/// A stage kind.
pub trait Stage: Send + Sync + 'static {
    /// The stage's configuration; its schema is the stage's JSON Schema.
    type Config: DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// The `kind:` name in pipeline files.
    const KIND: &'static str;
    /// Bump whenever the same inputs and config would give different output.
    const VERSION: u32;
    /// The identity of the code behind this kind: a digest of its sources
    /// computed at build time (the built-in stages take it from their
    /// crate's build script). It enters every fingerprint, so a result is
    /// never served to code that did not produce it.
    const IMPLEMENTATION: &'static str;
    /// One line describing the stage.
    const ABOUT: &'static str;
    /// The outputs; the first is the default when a reference names no output.
    const OUTPUTS: &'static [OutputDecl];

    /// Declare inputs, files and environment; check what can be checked
    /// before running (files exist, values agree).
    fn spec(config: &Self::Config, root: &Path) -> Result<StageSpec, Vec<ConfigIssue>>;

    /// Do the work.
    fn run(config: &Self::Config, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError>;

    /// Print a human-readable view of one of this stage's outputs; return
    /// `false` to let the engine print a generic listing.
    fn show(_output: &OutputDecl, _dir: &Path, _w: &mut dyn Write, _limit: usize) -> io::Result<bool> {
        Ok(false)
    }

    /// An HTML fragment for `tailor report` about one of this stage's
    /// outputs (tables, inline SVG plots), or `None` for none.
    fn report(_output: &OutputDecl, _dir: &Path) -> Option<String> {
        None
    }

    /// Lines `tailor plan` prints under the stage (what a run will need, say).
    /// `inputs` holds the directories of upstream artifacts that already exist.
    fn notes(_config: &Self::Config, _root: &Path, _inputs: &BTreeMap<String, PathBuf>) -> Vec<String> {
        Vec::new()
    }
}

/// A configured stage, ready to run.
pub trait PreparedStage: Send + Sync {
    /// What it reads.
    fn spec(&self) -> &StageSpec;
    /// Run it.
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError>;
    /// Plan notes.
    fn notes(&self, root: &Path, inputs: &BTreeMap<String, PathBuf>) -> Vec<String>;
}

/// A stage kind with its config type erased.
pub trait DynStage: Send + Sync {
    /// `kind:` name.
    fn kind(&self) -> &'static str;
    /// Implementation version.
    fn version(&self) -> u32;
    /// Implementation identity: the manual version and the code digest.
    fn implementation(&self) -> String;
    /// One-line description.
    fn about(&self) -> &'static str;
    /// Declared outputs.
    fn outputs(&self) -> &'static [OutputDecl];
    /// The config's JSON Schema (without the `kind` property).
    fn schema(&self) -> Value;
    /// Deserialize and check a config.
    fn prepare(&self, config: &Value, root: &Path) -> Result<Box<dyn PreparedStage>, Vec<ConfigIssue>>;
    /// Render an output for `tailor show`.
    fn show(&self, output: &OutputDecl, dir: &Path, w: &mut dyn Write, limit: usize) -> io::Result<bool>;
    /// An HTML fragment about an output for `tailor report`.
    fn report(&self, output: &OutputDecl, dir: &Path) -> Option<String>;
}

struct Kind<S>(std::marker::PhantomData<fn() -> S>);

struct Prepared<S: Stage> {
    config: S::Config,
    spec: StageSpec,
}

impl<S: Stage> PreparedStage for Prepared<S> {
    fn spec(&self) -> &StageSpec {
        &self.spec
    }
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutcome, StageError> {
        S::run(&self.config, ctx)
    }
    fn notes(&self, root: &Path, inputs: &BTreeMap<String, PathBuf>) -> Vec<String> {
        S::notes(&self.config, root, inputs)
    }
}

impl<S: Stage> DynStage for Kind<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn implementation(&self) -> String {
        format!("v{}+{}", S::VERSION, S::IMPLEMENTATION)
    }
    fn about(&self) -> &'static str {
        S::ABOUT
    }
    fn outputs(&self) -> &'static [OutputDecl] {
        S::OUTPUTS
    }
    fn schema(&self) -> Value {
        crate::schema::schema_for::<S::Config>()
    }
    fn prepare(&self, config: &Value, root: &Path) -> Result<Box<dyn PreparedStage>, Vec<ConfigIssue>> {
        let config: S::Config = serde_json::from_value(config.clone()).map_err(|e| vec![ConfigIssue::new("", format!("invalid `{}` config: {e}", S::KIND))])?;
        let spec = S::spec(&config, root)?;
        Ok(Box::new(Prepared::<S> { config, spec }))
    }
    fn show(&self, output: &OutputDecl, dir: &Path, w: &mut dyn Write, limit: usize) -> io::Result<bool> {
        S::show(output, dir, w, limit)
    }
    fn report(&self, output: &OutputDecl, dir: &Path) -> Option<String> {
        S::report(output, dir)
    }
}

/// All stage kinds known to a binary.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn DynStage>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a stage kind.
    pub fn register<S: Stage>(&mut self) -> &mut Self {
        self.kinds.insert(S::KIND, Box::new(Kind::<S>(std::marker::PhantomData)));
        self
    }

    /// Look a kind up.
    pub fn get(&self, kind: &str) -> Option<&dyn DynStage> {
        self.kinds.get(kind).map(|b| b.as_ref())
    }

    /// All kinds, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn DynStage> {
        self.kinds.values().map(|b| b.as_ref())
    }

    /// Kind names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}
