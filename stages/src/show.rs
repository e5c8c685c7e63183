//! Human-readable views of data artifacts for `tailor show`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use tailor_engine::OutputDecl;

use tailor_text::record::{Body, Record, Reject};

fn clip(s: &str, n: usize) -> String {
    let one = s.replace('\n', "⏎");
    if one.chars().count() > n { format!("{}…", one.chars().take(n).collect::<String>()) } else { one }
}

/// Print a records or rejects artifact: counts, then the first `limit` items.
pub fn records_or_rejects(output: &OutputDecl, dir: &Path, w: &mut dyn Write, limit: usize) -> io::Result<bool> {
    match output.kind {
        "records" => {
            // One pass: counts over every record, the first ones kept for
            // the profile and the listing (a records file may hold millions).
            let mut recs: Vec<Record> = Vec::new();
            let mut total = 0usize;
            let mut keys: BTreeMap<String, usize> = BTreeMap::new();
            each_line(&dir.join("records.jsonl"), |r: Record| {
                total += 1;
                for k in r.meta.keys() {
                    *keys.entry(k.clone()).or_insert(0) += 1;
                }
                if recs.len() < PROFILED.max(limit) {
                    recs.push(r);
                }
            })?;
            writeln!(w, "{total} records")?;
            for line in profile_lines(&recs) {
                writeln!(w, "  {line}")?;
            }
            if !keys.is_empty() {
                let list: Vec<String> = keys.iter().map(|(k, n)| format!("{k} ({n})")).collect();
                writeln!(w, "meta: {} — the source's own `meta`, fields the body does not use, and the source's constants", list.join(", "))?;
            }
            for r in recs.iter().take(limit) {
                writeln!(w, "\n[{}] {}:{}", r.id, r.source.path, r.source.line)?;
                if !r.meta.is_empty() {
                    writeln!(w, "        meta: {}", clip(&serde_json::Value::Object(r.meta.clone()).to_string(), 100))?;
                }
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
            let mut rejs: Vec<Reject> = Vec::new();
            let mut total = 0usize;
            let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
            each_line(&dir.join("rejects.jsonl"), |r: Reject| {
                total += 1;
                let reason: String = r.reason.split(" (").next().unwrap_or(&r.reason).to_string();
                *by.entry((r.step.clone(), reason)).or_insert(0) += 1;
                if rejs.len() < limit {
                    rejs.push(r);
                }
            })?;
            writeln!(w, "{total} rejected")?;
            for ((step, reason), n) in &by {
                writeln!(w, "  {n:>7}  {step}: {reason}")?;
            }
            for r in &rejs {
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
    writeln!(
        w,
        "{} samples, {} tokens ({} trained), {} truncated, template {}, max {} tokens{}",
        manifest["samples"],
        manifest["tokens"],
        manifest["target_tokens"],
        manifest["truncated"],
        manifest["template"],
        manifest["max_tokens"],
        if manifest["packing"] == true { format!(", packed into {} sequences", manifest["packs"]) } else { String::new() }
    )?;
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(io::Error::other)?;
    // Only the header and the shown samples' bytes are read: the file may
    // hold a billion tokens.
    let st = TensorFile::open(&dir.join("tokens.safetensors"))?;
    let offsets: Vec<usize> =
        st.read("offsets", 0, 8 * (limit + 1))?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as usize).collect();
    let last = offsets.iter().copied().max().unwrap_or(0);
    let ids: Vec<u32> = st.read("input_ids", 0, 4 * last)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4]))).collect();
    let mask = st.read("loss_mask", 0, last)?;
    let mut samples: Vec<serde_json::Value> = Vec::new();
    each_line(&dir.join("samples.jsonl"), |v: serde_json::Value| {
        if samples.len() < limit {
            samples.push(v);
        }
    })?;
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
            if on == 1 {
                out.push_str(&format!("«{text}»"))
            } else {
                out.push_str(&text)
            }
            start = end;
        }
        writeln!(w, "  {}", out.replace('\n', "\n  "))?;
    }
    Ok(true)
}

/// Hand every JSON line of `path` to `f`, in order; a bad line is an error
/// naming `path:line`.
fn each_line<T: serde::de::DeserializeOwned>(path: &Path, mut f: impl FnMut(T)) -> io::Result<()> {
    use std::io::BufRead;
    for (i, line) in io::BufReader::new(std::fs::File::open(path)?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        f(serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), i + 1)))?);
    }
    Ok(())
}

/// A safetensors file read a tensor range at a time.
struct TensorFile {
    file: std::fs::File,
    header: serde_json::Value,
    base: u64,
}

impl TensorFile {
    fn open(path: &Path) -> io::Result<Self> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut n = [0u8; 8];
        file.read_exact(&mut n)?;
        let n = u64::from_le_bytes(n);
        if n > 100 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: header of {n} bytes", path.display())));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)?;
        let header = serde_json::from_slice(&header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
        Ok(Self { file, header, base: 8 + n })
    }

    /// Up to `len` bytes of tensor `name` from byte `from` of its data.
    fn read(&self, name: &str, from: usize, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let range = &self.header[name]["data_offsets"];
        let (start, end) = (range[0].as_u64(), range[1].as_u64());
        let (Some(start), Some(end)) = (start, end) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("no tensor `{name}` in tokens.safetensors")));
        };
        let at = (start + from as u64).min(end);
        let mut buf = vec![0u8; (len as u64).min(end - at) as usize];
        self.file.read_exact_at(&mut buf, self.base + at)?;
        Ok(buf)
    }
}

fn json_file(p: &Path) -> serde_json::Value {
    std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Print a model artifact: what was trained and how it went, then its
/// lineage — the chain of stages and files it came from.
pub fn model(dir: &Path, w: &mut dyn Write) -> io::Result<bool> {
    let train = json_file(&dir.join("train.json"));
    let metrics = json_file(&dir.join("metrics.json"));
    let base = json_file(&dir.join("base.json"));
    let what = if dir.join("adapter").exists() { "adapter (PEFT layout) in adapter/" } else { "model (Hugging Face layout) in model/" };
    writeln!(w, "{what}{}", if dir.join("merged").exists() { ", merged model in merged/" } else { "" })?;
    writeln!(w, "method: {}  base: {}", train["method"]["method"].as_str().unwrap_or("?"), base["path"].as_str().unwrap_or("?"))?;
    let num = |k: &str| metrics[k].as_f64().map_or("-".to_string(), |v| if v.fract() == 0.0 { format!("{v}") } else { format!("{v:.4}") });
    writeln!(
        w,
        "steps {}  tokens {}  trainable parameters {}  train loss {}  validation loss {}",
        num("steps"),
        num("tokens"),
        num("trainable_parameters"),
        num("train_loss"),
        num("val_loss")
    )?;
    let lineage = json_file(&dir.join("lineage.json"));
    if !lineage.is_null() {
        writeln!(w, "\nlineage (newest first):")?;
        lineage_lines(&lineage, 0, "model", w)?;
    }
    Ok(true)
}

/// Print one lineage node and its inputs, indented by depth.
pub fn lineage_lines(node: &serde_json::Value, depth: usize, role: &str, w: &mut dyn Write) -> io::Result<()> {
    let pad = "  ".repeat(depth + 1);
    let fp = node["fingerprint"].as_str().map_or(String::new(), |f| f.chars().take(12).collect());
    writeln!(w, "{pad}{role} ← {} [{fp}]", node["kind"].as_str().unwrap_or("?"))?;
    for (path, digest) in node["files"].as_object().into_iter().flatten() {
        writeln!(w, "{pad}    file {path} @ {}", digest.as_str().map_or(String::new(), |d| d.chars().take(12).collect()))?;
    }
    for (r, input) in node["inputs"].as_object().into_iter().flatten() {
        if input["from"].is_object() {
            lineage_lines(&input["from"], depth + 1, &format!("{r} ({})", input["output"].as_str().unwrap_or("")), w)?;
        }
    }
    Ok(())
}

/// The metrics of each variant of a `metrics.json` (`variants`, `compared`)
/// as a table: tuned, the compared model, and the change.
fn variants_table(m: &serde_json::Value, w: &mut dyn Write) -> io::Result<()> {
    let variants = m["variants"].as_object().cloned().unwrap_or_default();
    let tuned = variants.get("tuned").cloned().unwrap_or_default();
    let other = m["compared"].as_str().unwrap_or("base").to_string();
    let base = variants.get(&other);
    let width = tuned.as_object().into_iter().flatten().map(|(k, _)| k.chars().count()).max().unwrap_or(6).max(6);
    let num = |v: f64| if v.fract() == 0.0 && v.abs() < 1e12 { format!("{v:.0}") } else { format!("{v:.4}") };
    writeln!(w, "{:<width$} {:>10}{}", "metric", "tuned", if base.is_some() { format!(" {:>10} {:>10}", other, "change") } else { String::new() })?;
    for (k, v) in tuned.as_object().into_iter().flatten() {
        let t = v.as_f64().unwrap_or(f64::NAN);
        match base.and_then(|b| b[k].as_f64()) {
            Some(b) => writeln!(w, "{k:<width$} {:>10} {:>10} {:>10}", num(t), num(b), if t == b { "=".to_string() } else { format!("{:+.4}", t - b) })?,
            None => writeln!(w, "{k:<width$} {:>10}", num(t))?,
        }
    }
    Ok(())
}

/// Print a benchmark artifact: metrics per variant, then per task the
/// items where the tuned model and the compared one pick differently.
pub fn benchmark(dir: &Path, w: &mut dyn Write, limit: usize) -> io::Result<bool> {
    let m = json_file(&dir.join("metrics.json"));
    let counts = |k: &str| m[k].as_object().map(|o| o.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    writeln!(w, "items: {}; documents: {}", counts("items"), counts("documents"))?;
    variants_table(&m, w)?;
    let Some(other) = m["compared"].as_str() else { return Ok(true) };
    let text = std::fs::read_to_string(dir.join("items.jsonl")).unwrap_or_default();
    let rows: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let key = |r: &serde_json::Value| (r["task"].to_string(), r["id"].to_string());
    let before: BTreeMap<_, &serde_json::Value> = rows.iter().filter(|r| r["variant"] == other).map(|r| (key(r), r)).collect();
    let changed: Vec<(&serde_json::Value, &serde_json::Value)> =
        rows.iter().filter(|r| r["variant"] == "tuned").filter_map(|r| before.get(&key(r)).map(|b| (*b, r))).filter(|(b, t)| b["pick"] != t["pick"]).collect();
    let lost = changed.iter().filter(|(b, _)| b["correct"] == true).count();
    writeln!(w, "\n{} items picked differently from {other}: {lost} right before and wrong now, {} the other way", changed.len(), changed.len() - lost)?;
    for (b, t) in changed.iter().take(limit) {
        writeln!(
            w,
            "  {} {}: gold {}, {other} {}, tuned {}",
            t["task"].as_str().unwrap_or(""),
            t["id"].as_str().unwrap_or(""),
            t["gold"],
            b["pick"],
            t["pick"]
        )?;
    }
    Ok(true)
}

/// Print an evaluation artifact: corpus metrics per variant (with the
/// change from base to tuned), then the worst cases.
pub fn evaluation(dir: &Path, w: &mut dyn Write, limit: usize) -> io::Result<bool> {
    let m = json_file(&dir.join("metrics.json"));
    writeln!(w, "{} samples", m["samples"])?;
    variants_table(&m, w)?;
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap_or_default();
    let all: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let other = m["compared"].as_str();
    let before: BTreeMap<String, &serde_json::Value> =
        all.iter().filter(|v| other.is_some() && v["variant"].as_str() == other).map(|v| (v["id"].to_string(), v)).collect();
    let mut rows: Vec<&serde_json::Value> = all.iter().filter(|v| v["variant"] == "tuned").collect();
    rows.sort_by_key(|r| r["pass"].as_bool().unwrap_or(false));
    writeln!(w, "\nworst cases (see review.html to mark and fix them):")?;
    for r in rows.iter().take(limit) {
        writeln!(w, "\n[{}] {}", r["id"].as_str().unwrap_or(""), if r["pass"] == true { "pass" } else { "FAIL" })?;
        writeln!(w, "     prompt: {}", clip(r["prompt"].as_str().unwrap_or(""), 100))?;
        writeln!(w, "  reference: {}", clip(r["reference"].as_str().unwrap_or(""), 100))?;
        writeln!(w, "     output: {}", clip(r["output"].as_str().unwrap_or(""), 100))?;
        if let (Some(o), Some(b)) = (other, before.get(&r["id"].to_string())) {
            writeln!(w, "{:>11}: {}", o, clip(b["output"].as_str().unwrap_or(""), 100))?;
        }
    }
    Ok(true)
}

/// Records profiled by `tailor show` and the report (the first ones).
const PROFILED: usize = 50_000;

/// The dataset profile of `recs` (the first [`PROFILED`]) as lines.
pub fn profile_lines(recs: &[Record]) -> Vec<String> {
    let head = &recs[..recs.len().min(PROFILED)];
    let replies: Vec<&str> = head.iter().map(|r| r.body.target()).collect();
    let joined: Vec<String> = head.iter().map(|r| r.body.joined()).collect();
    let texts: Vec<&str> = joined.iter().map(String::as_str).collect();
    let mut lines = tailor_text::profile::profile(&replies, &texts).lines();
    if head.len() < recs.len() {
        lines.insert(0, format!("profile of the first {} records", head.len()));
    }
    lines
}
