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

/// Print a tokenized artifact: counts, then samples decoded with the
/// trained part between « and ».
pub fn tokenized(dir: &Path, w: &mut dyn Write, limit: usize) -> io::Result<bool> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?).map_err(io::Error::other)?;
    writeln!(w, "{} samples, {} tokens ({} trained), {} truncated, template {}, max {} tokens{}", manifest["samples"], manifest["tokens"], manifest["target_tokens"], manifest["truncated"], manifest["template"], manifest["max_tokens"], if manifest["packing"] == true { format!(", packed into {} sequences", manifest["packs"]) } else { String::new() })?;
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(io::Error::other)?;
    let bytes = std::fs::read(dir.join("tokens.safetensors"))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(io::Error::other)?;
    let get = |name: &str| st.tensor(name).map(|t| t.data().to_vec()).map_err(io::Error::other);
    let ids: Vec<u32> = get("input_ids")?.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mask = get("loss_mask")?;
    let offsets: Vec<usize> = get("offsets")?.chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as usize).collect();
    let samples: Vec<serde_json::Value> = read_jsonl(&dir.join("samples.jsonl"))?;
    for (i, win) in offsets.windows(2).take(limit).enumerate() {
        let (a, b) = (win[0], win[1]);
        let id = samples.get(i).and_then(|s| s["id"].as_str()).unwrap_or("?");
        let trained = mask[a..b].iter().filter(|&&m| m == 1).count();
        writeln!(w, "\n[{id}] {} tokens, {trained} trained", b - a)?;
        let mut out = String::new();
        let mut start = a;
        while start < b {
            let on = mask[start];
            let mut end = start;
            while end < b && mask[end] == on {
                end += 1;
            }
            let text = tok.decode(&ids[start..end], false).map_err(io::Error::other)?;
            if on == 1 { out.push_str(&format!("«{text}»")) } else { out.push_str(&text) }
            start = end;
        }
        writeln!(w, "  {}", out.replace('\n', "\n  "))?;
    }
    Ok(true)
}
