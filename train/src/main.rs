//! `tailor-train`: the half of Tailor that links libtorch. The `train` and
//! `evaluate` stages run it with a job file; progress and results are JSON
//! lines on stdout; an error is one line on stderr and exit code 1 (a libtorch
//! error that surfaces as a panic is caught and reported the same way).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tailor_train::bench::Bench;
use tailor_train::tiny::TinySpec;

/// Training and inference on libtorch for Tailor's stages.
#[derive(Debug, Parser)]
#[command(name = "tailor-train", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a training job file (written by the `train` stage).
    Run {
        /// The job (JSON).
        job: PathBuf,
    },
    /// Run an inference job file (written by the `evaluate` stage).
    Infer {
        /// The job (JSON).
        job: PathBuf,
    },
    /// Make a tiny seeded random Llama in Hugging Face layout for a tokenizer.
    Tiny {
        /// Directory with tokenizer.json (and tokenizer_config.json).
        #[arg(long)]
        tokenizer: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 64)]
        hidden: usize,
        #[arg(long, default_value_t = 2)]
        layers: usize,
        #[arg(long, default_value_t = 4)]
        heads: usize,
        #[arg(long, default_value_t = 2)]
        kv_heads: usize,
        #[arg(long, default_value_t = 176)]
        ffn: usize,
        /// Untied output head.
        #[arg(long)]
        untied: bool,
        #[arg(long, default_value_t = 0)]
        seed: i64,
    },
    /// What this build of libtorch can use: CUDA built in, devices seen, threads.
    Info,
    /// Logits of a model on a device and dtype against CPU float32 (same ids).
    Logits {
        /// Model directory.
        #[arg(long)]
        model: PathBuf,
        /// cpu, cuda or auto.
        #[arg(long, default_value = "auto")]
        device: String,
        /// float32, bfloat16, float16 or auto.
        #[arg(long, default_value = "bfloat16")]
        dtype: String,
        #[arg(long, default_value_t = 128)]
        seq: usize,
        #[arg(long, default_value_t = 2)]
        batch: usize,
    },
    /// Time training steps on a fixed workload (compare with PyTorch + PEFT).
    Bench {
        /// Model directory.
        #[arg(long)]
        model: PathBuf,
        /// full, lora or qlora.
        #[arg(long, default_value = "lora")]
        method: String,
        #[arg(long, default_value_t = 128)]
        seq: usize,
        #[arg(long, default_value_t = 4)]
        batch: usize,
        #[arg(long, default_value_t = 12)]
        steps: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 8)]
        r: i64,
        #[arg(long, default_value_t = 16.0)]
        alpha: f64,
        /// Comma-separated LoRA targets.
        #[arg(long, default_value = "q_proj,v_proj")]
        targets: String,
        /// Activation checkpointing (recompute each layer in the backward pass).
        #[arg(long)]
        checkpointing: bool,
        /// cpu, cuda or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// float32, bfloat16, float16 or auto.
        #[arg(long, default_value = "float32")]
        dtype: String,
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 16)]
        pool: usize,
        /// Token stream, u32 little-endian (the peer's `--dump-data`).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// A setting as the pipeline file spells it (`cuda`, `bfloat16`).
fn parse_setting<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| format!("`{text}`: {e}"))
}

fn read_job<T: serde::de::DeserializeOwned>(path: &PathBuf) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn dispatch(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Run { job: file } => tailor_train::launch::run(&read_job(&file)?, &file),
        Cmd::Info => {
            let info = serde_json::json!({
                "cuda_built": tailor_train::CUDA_BUILT,
                "cuda_available": tch::Cuda::is_available(),
                "cuda_devices": tch::Cuda::device_count(),
                "cudnn_available": tch::Cuda::cudnn_is_available(),
                "threads": tch::get_num_threads(),
            });
            println!("{info}");
            Ok(())
        }
        Cmd::Infer { job } => tailor_train::infer::run(&read_job(&job)?),
        Cmd::Tiny { tokenizer, out, hidden, layers, heads, kv_heads, ffn, untied, seed } => {
            let spec = TinySpec { hidden, layers, heads, kv_heads, ffn, tied: !untied, seed };
            let cfg = tailor_train::tiny::make(&spec, &tokenizer, &out)?;
            eprintln!("wrote {}: {} parameters", out.display(), cfg.parameters());
            Ok(())
        }
        Cmd::Logits { model, device, dtype, seq, batch } => {
            println!("{}", tailor_train::bench::logits_parity(&model, parse_setting(&device)?, parse_setting(&dtype)?, seq, batch)?);
            Ok(())
        }
        Cmd::Bench { model, method: m, seq, batch, steps, warmup, threads, r, alpha, targets, checkpointing, device, dtype, lr, seed, pool, data } => {
            let b = Bench {
                model,
                method: m.parse()?,
                seq,
                batch,
                steps,
                warmup,
                threads,
                r,
                alpha,
                targets: targets.split(',').map(str::to_string).collect(),
                checkpointing,
                device: parse_setting(&device)?,
                dtype: parse_setting(&dtype)?,
                lr,
                seed,
                pool,
                data,
            };
            println!("{}", tailor_train::bench::run(&b)?);
            Ok(())
        }
    }
}

/// One line for a caught panic: libtorch's own errors (tch raises them as
/// panics carrying `Torch(...)`/c10 text) are reported as such; anything
/// else is a bug in `tailor-train` and is labelled that way.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string())).unwrap_or_else(|| "no message".into());
    let first = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
    if msg.contains("Torch(") || msg.contains("c10::") || msg.contains("libtorch") {
        format!("libtorch failed: {first}")
    } else {
        format!("tailor-train panicked (a bug; please report it with the stage's job.json): {first}")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // libtorch errors raised through tch's panicking API end here as one
    // line; any other panic is a bug in the trainer and says so.
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| dispatch(cli.command)).unwrap_or_else(|p| Err(panic_message(p.as_ref())));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
