//! The `tailor` command line: wires the engine to the built-in stages.

mod cluster;
mod commands;
mod insight;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// The data stages allocate and free millions of small strings and maps on
/// every core; mimalloc's thread-local free lists make that cheaper than
/// glibc's arenas (`bench/README.md`, first run of the no-op benchmark).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (its option enum; the crate's
/// named constants are v2's). Default 1000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory instead of returning it to the OS a second later: the
/// streaming stages free and reallocate their windows all the time, and
/// every purge meant the kernel zeroing the same pages again (~8 % of
/// collect's CPU on the no-op benchmark's first run). The process keeps its
/// peak, which the windows bound; `tailor` is a batch process.
fn keep_freed_memory() {
    // SAFETY: mimalloc options may be set at any time; this one only
    // changes when freed pages are returned to the OS.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

/// Exit codes (also in README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A stage failed (its dependents were skipped).
    pub const STAGE_FAILED: u8 = 1;
    /// The pipeline file is invalid, or the command line is wrong.
    pub const INVALID: u8 = 2;
    /// `tailor verify` found a mismatch; `tailor schema --check` found drift.
    pub const MISMATCH: u8 = 3;
    /// The workspace could not be read or written.
    pub const IO: u8 = 4;
}

/// Declarative, cached pipelines for fine-tuning language models.
#[derive(Debug, Parser)]
#[command(name = "tailor", version, about, long_about = None)]
pub struct Cli {
    /// Pipeline file (default: tailor.yaml, else pipeline.yaml, in the current directory).
    #[arg(short = 'f', long = "file", global = true)]
    pub file: Option<PathBuf>,
    /// Store directory (default: .tailor/ beside the pipeline file).
    #[arg(long, global = true, env = "TAILOR_STORE")]
    pub store: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Parameter and key overrides shared by commands that load a pipeline.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct OverrideArgs {
    /// Set a declared parameter: `-p lr=1e-4` (value read as YAML).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = tailor_engine::config::Overrides::parse_pair)]
    pub params: Vec<(String, String)>,
    /// Set any key: `--set stages.tuned.epochs=3` (value read as YAML).
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = tailor_engine::config::Overrides::parse_pair)]
    pub sets: Vec<(String, String)>,
}

/// `--executor` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExecutorArg {
    /// Processes on this machine.
    Local,
    /// One Slurm job per stage.
    Slurm,
}

/// DAG output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DagFormat {
    /// Indented text.
    Text,
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz dot.
    Dot,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the pipeline file: schema, references, cycles, files. Runs nothing.
    Validate {
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Show what `run` would do and why, per stage.
    Plan {
        /// Only these stages (and what they need).
        stages: Vec<String>,
        /// Plan as if `--force` were given.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Run the pipeline (or the given stages and what they need).
    Run {
        /// Only these stages (and what they need).
        stages: Vec<String>,
        /// Rerun the selected stages even if cached.
        #[arg(long)]
        force: bool,
        /// Stages to run at the same time (local executor).
        #[arg(short = 'j', long, default_value_t = 2)]
        jobs: usize,
        /// Where stages run: `local` or `slurm` (default: the pipeline's `executor:`, else local).
        #[arg(long, value_enum)]
        executor: Option<ExecutorArg>,
        /// Push what ran to the pipeline's remote cache afterwards.
        #[arg(long)]
        push: bool,
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Upload the results the lock file records (stage records, manifests,
    /// objects) to the pipeline's remote cache.
    Push {
        /// Only these stages (default: every stage in the lock file).
        stages: Vec<String>,
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Download the results the lock file records from the remote cache,
    /// each file verified against its digest.
    Pull {
        /// Only these stages (default: every stage in the lock file).
        stages: Vec<String>,
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Configure the remote cache.
    #[command(subcommand)]
    Remote(RemoteCmd),
    /// Cancel the Slurm jobs of the run in progress on this store (`scancel`).
    Cancel,
    /// Run one stage as a job of a cluster run (what the Slurm executor's
    /// jobs call; its upstream results must be in the store).
    #[command(hide = true)]
    StageJob {
        /// The stage.
        stage: String,
        /// Where to write the stage's outcome (JSON).
        #[arg(long)]
        outcome: PathBuf,
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// One line per stage: up to date or not.
    Status {
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Print the stage graph.
    Dag {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: DagFormat,
    },
    /// Print or export a stage's output (`STAGE` or `STAGE.OUTPUT`), from the lock file.
    Show {
        /// `STAGE` or `STAGE.OUTPUT`.
        target: String,
        /// Items to print.
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// Copy the artifact's files into this directory.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Print only the artifact's directory.
        #[arg(long)]
        path: bool,
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Re-hash the store and check the lock file against it.
    Verify {
        /// Delete corrupt entries so the next run recomputes them.
        #[arg(long)]
        repair: bool,
    },
    /// Rewrite tailor.lock from the results the store holds for the pipeline
    /// as configured (after the lock file was damaged or lost).
    Lock {
        #[command(flatten)]
        ov: OverrideArgs,
    },
    /// Delete store entries the lock file does not reference.
    Gc {
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the pipeline JSON Schema, or write/check the committed schemas.
    Schema {
        /// Write every schema into this directory.
        #[arg(long, conflicts_with = "check")]
        write: Option<PathBuf>,
        /// Fail (exit 3) with a diff summary if this directory's schemas are out of date.
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// List recorded runs (newest last).
    Runs,
    /// Tokenizer tools.
    #[command(subcommand)]
    Tokenizer(TokenizerCmd),
    /// Human review tools.
    #[command(subcommand)]
    Review(ReviewCmd),
    /// Estimate memory, GPUs, time and cost of a fine-tuning run.
    Estimate(EstimateArgs),
    /// Import a llama.cpp GGUF model into a Hugging Face directory (float32).
    Import {
        /// The `.gguf` file.
        file: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write one static HTML report: the DAG, data statistics, loss curves,
    /// evaluation metrics and sample outputs.
    Report {
        /// Output file (default: report.html beside the pipeline).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also compare two results (see `tailor compare`).
        #[arg(long, num_args = 2, value_names = ["A", "B"])]
        compare: Option<Vec<String>>,
    },
    /// Compare two results side by side: lock files, git revisions
    /// (HEAD~1), recorded runs (run:1, run:-1) or parameter sets
    /// (params:lr=1e-4), or `current`.
    Compare {
        /// First side.
        a: String,
        /// Second side.
        b: String,
    },
}

/// `tailor estimate …`
#[derive(Debug, clap::Args)]
pub struct EstimateArgs {
    /// Model size in parameters (e.g. 7e9), for a Llama-shaped model.
    #[arg(long, required_unless_present = "model")]
    pub params: Option<f64>,
    /// Or a model directory: its config.json gives the exact shape.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// full, lora or qlora.
    #[arg(long, default_value = "lora")]
    pub method: String,
    /// GPU (t4, l4, a10g, rtx4090, a100-40gb, a100-80gb, h100-80gb, h200); all when omitted.
    #[arg(long)]
    pub gpu: Option<String>,
    /// Sequence length.
    #[arg(long, default_value_t = 2048.0)]
    pub seq: f64,
    /// Micro-batch per GPU.
    #[arg(long, default_value_t = 4.0)]
    pub batch: f64,
    /// Training tokens per epoch.
    #[arg(long, default_value_t = 1e7)]
    pub tokens: f64,
    /// Epochs.
    #[arg(long, default_value_t = 3.0)]
    pub epochs: f64,
    /// LoRA rank.
    #[arg(long, default_value_t = 16.0)]
    pub lora_r: f64,
    /// Linear layers per block with adapters (2 = q,v … 7 = all-linear).
    #[arg(long, default_value_t = 7.0)]
    pub lora_targets: f64,
    /// Model-FLOPs utilisation assumed.
    #[arg(long, default_value_t = 0.35)]
    pub mfu: f64,
    /// Override the GPU's hourly price (USD).
    #[arg(long)]
    pub price: Option<f64>,
}

/// `tailor remote …`
#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Set the pipeline's `remote:` (rewrites that one line of the pipeline file).
    Add {
        /// `s3://BUCKET/PREFIX`, `file:///DIR` or a directory.
        url: String,
        /// S3 endpoint of an S3-compatible server (`http://host:9000`).
        #[arg(long)]
        endpoint: Option<String>,
        /// S3 region.
        #[arg(long)]
        region: Option<String>,
    },
}

/// `tailor review …`
#[derive(Debug, Subcommand)]
pub enum ReviewCmd {
    /// Merge several reviewers' `review.jsonl` files for one evaluation:
    /// agreement (raw, Cohen's and Fleiss' kappa), the cases to adjudicate
    /// (disagreements first), and the agreed records. Writes
    /// OUT/agreed.jsonl (a `collect` source, like one reviewer's file),
    /// OUT/adjudicate.jsonl and OUT/agreement.json.
    Merge {
        /// The reviewers' files; each reviewer is named by the file's name.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `tailor tokenizer …`
#[derive(Debug, Subcommand)]
pub enum TokenizerCmd {
    /// Train a byte-level BPE tokenizer (ChatML special tokens and chat
    /// template) on text files or JSONL records; writes tokenizer.json and
    /// tokenizer_config.json.
    Train {
        /// Input files (JSONL: every string value; other files: lines).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Vocabulary size.
        #[arg(long, default_value_t = 4000)]
        vocab: usize,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    ExitCode::from(commands::dispatch(cli))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // Option 15 is purge_delay exactly when it starts at its documented
        // default (no other mimalloc v3 option defaults to 1000) and takes -1.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert!(std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() || get() == 1000, "option 15 is {}", get());
        super::keep_freed_memory();
        assert!(std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() || get() == -1);
    }
}
