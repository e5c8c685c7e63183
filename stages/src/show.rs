//! Human-readable views of data artifacts for `tailor show`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use tailor_engine::OutputDecl;

use crate::record::{Body, Record, Reject, read_jsonl};

fn clip(s: &str, n: usize) -> String {
    let one = s.replace('\n', "⏎");
    if one.chars().count() > n { format!("{}…", one.chars().take(n).collect::<String>()) } else { one }
}

/// Print a records or rejects artifact: counts, then the first `limit` items.
pub fn records_or_rejects(output: &OutputDecl, dir: &Path, w: &mut dyn Write, limit: usize) -> io::Result<bool> {
    match output.kind {
        "records" => {
            let recs: Vec<Record> = read_jsonl(&dir.join("records.jsonl"))?;
            writeln!(w, "{} records", recs.len())?;
            for r in recs.iter().take(limit) {
                writeln!(w, "\n[{}] {}:{}", r.id, r.source.path, r.source.line)?;
                match &r.body {
                    Body::Chat { messages } => {
                        for m in messages {
                            writeln!(w, "  {:>9}: {}", m.role, clip(&m.content, 100))?;
                        }
                    }
                    Body::Instruction { instruction, input, output } => {
                        writeln!(w, "  instruction: {}", clip(instruction, 100))?;
                        if !input.is_empty() {
                            writeln!(w, "        input: {}", clip(input, 100))?;
                        }
                        writeln!(w, "       output: {}", clip(output, 100))?;
                    }
                    Body::Completion { prompt, completion } => {
                        writeln!(w, "      prompt: {}", clip(prompt, 100))?;
                        writeln!(w, "  completion: {}", clip(completion, 100))?;
                    }
                    Body::Text { text } => writeln!(w, "  text: {}", clip(text, 200))?,
                }
            }
            Ok(true)
        }
        "rejects" => {
            let rejs: Vec<Reject> = read_jsonl(&dir.join("rejects.jsonl"))?;
            let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
            for r in &rejs {
                let reason: String = r.reason.split(" (").next().unwrap_or(&r.reason).to_string();
                *by.entry((r.step.clone(), reason)).or_insert(0) += 1;
            }
            writeln!(w, "{} rejected", rejs.len())?;
            for ((step, reason), n) in &by {
                writeln!(w, "  {n:>7}  {step}: {reason}")?;
            }
            for r in rejs.iter().take(limit) {
                writeln!(w, "\n[{}] {}: {}", r.id, r.step, clip(&r.reason, 160))?;
                writeln!(w, "  {}", clip(&r.record.to_string(), 160))?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}
