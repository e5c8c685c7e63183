//! Evaluation cases from a tokenized split: for each sample, the prompt the
//! model sees (every token before the first trained one — the template's
//! own rendering up to the reply, so evaluation prompts are exactly the
//! training format) and the reference answer (the record's answer that the
//! `format` stage kept in `samples.jsonl`, or the trained tokens decoded).

use std::path::Path;

use serde_json::Value;

/// One case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Sample id (the record's).
    pub id: String,
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// The question as the record had it (for review files).
    pub prompt: String,
    /// The expected answer.
    pub reference: String,
}

fn le<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    b.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// Read the cases of a split directory (`tokens.safetensors`,
/// `samples.jsonl`, `tokenizer.json`), at most `limit` of them.
pub fn read(dir: &Path, limit: Option<usize>) -> Result<Vec<Case>, String> {
    let bytes = std::fs::read(dir.join("tokens.safetensors")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("tokens.safetensors: {e}"))?;
    let get = |n: &str| st.tensor(n).map(|t| t.data().to_vec()).map_err(|e| format!("tokens.safetensors: {n}: {e}"));
    let ids: Vec<u32> = le::<4>(&get("input_ids")?).map(u32::from_le_bytes).collect();
    let mask = get("loss_mask")?;
    let offsets: Vec<usize> = le::<8>(&get("offsets")?).map(|b| u64::from_le_bytes(b) as usize).collect();
    if ids.len() != mask.len() || offsets.last().copied() != Some(ids.len()) {
        return Err(format!("{}/tokens.safetensors is inconsistent (ids, mask and offsets disagree)", dir.display()));
    }
    let samples: Vec<Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .map_err(|e| format!("{}/samples.jsonl: {e}", dir.display()))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if samples.len() + 1 != offsets.len() {
        return Err(format!("{}: samples.jsonl has {} lines for {} samples", dir.display(), samples.len(), offsets.len().saturating_sub(1)));
    }
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| format!("{}/tokenizer.json: {e}", dir.display()))?;
    let mut out = Vec::new();
    for (s, meta) in samples.iter().enumerate().take(limit.unwrap_or(usize::MAX)) {
        let (a, b) = (offsets[s], offsets[s + 1]);
        let (sid, smask) = (&ids[a..b], &mask[a..b]);
        let Some(first) = smask.iter().position(|&m| m == 1) else { continue };
        let run = smask[first..].iter().position(|&m| m == 0).map_or(smask.len(), |k| first + k);
        let reference = match meta["reference"].as_str() {
            Some(r) => r.to_string(),
            None => tok.decode(&sid[first..run], true).map_err(|e| e.to_string())?,
        };
        out.push(Case {
            id: meta["id"].as_str().unwrap_or_default().to_string(),
            prompt_ids: sid[..first].to_vec(),
            prompt: meta["prompt"].as_str().map_or_else(|| tok.decode(&sid[..first], false).unwrap_or_default(), str::to_string),
            reference,
        });
    }
    Ok(out)
}
