//! `tailor-train`: runs one training job (`tailor-train run JOB.json`), or
//! makes a tiny random model (`tailor-train tiny …`). Progress and results
//! are JSON lines on stdout; errors are one line on stderr and exit code 1.

use std::path::PathBuf;
use std::process::ExitCode;

use tailor_train::tiny::TinySpec;
use tailor_train::trainer::{Job, train};

fn usage() -> ExitCode {
    eprintln!("usage: tailor-train run JOB.json\n       tailor-train tiny --tokenizer DIR --out DIR [--hidden 64 --layers 2 --heads 4 --kv-heads 2 --ffn 176 --untied --seed 0]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") if args.len() == 2 => std::fs::read(&args[1])
            .map_err(|e| format!("{}: {e}", args[1]))
            .and_then(|b| serde_json::from_slice::<Job>(&b).map_err(|e| format!("{}: {e}", args[1])))
            .and_then(|job| train(&job).map(|_| ())),
        Some("tiny") => {
            let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
            let num = |flag: &str, d: usize| get(flag).and_then(|v| v.parse().ok()).unwrap_or(d);
            let (Some(tok), Some(out)) = (get("--tokenizer"), get("--out")) else { return usage() };
            let spec = TinySpec {
                hidden: num("--hidden", 64),
                layers: num("--layers", 2),
                heads: num("--heads", 4),
                kv_heads: num("--kv-heads", 2),
                ffn: num("--ffn", 176),
                tied: !args.iter().any(|a| a == "--untied"),
                seed: num("--seed", 0) as i64,
            };
            tailor_train::tiny::make(&spec, &PathBuf::from(tok), &PathBuf::from(&out)).map(|cfg| eprintln!("wrote {out}: {} parameters", cfg.parameters()))
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
