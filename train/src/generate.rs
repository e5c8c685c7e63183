//! Text generation with a key-value cache: prompts of different lengths are
//! left-padded into one batch (padded key slots are masked out, positions
//! count real tokens only), the prompt is read in one forward pass, then
//! one token per step reuses the cached keys and values. Decoding is greedy
//! (temperature 0) or sampled with temperature and nucleus (top-p)
//! filtering, from a generator seeded per prompt, so a prompt's output does
//! not depend on which other prompts share its batch. A row stops at an EOS
//! token, at a stop string, or after `max_new_tokens`.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::Rng;
use crate::model::{Attend, KvCache, Llama};

pub use tailor_protocol::settings::Decoding;

/// One generated continuation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Generated {
    /// Generated token ids (without the EOS that ended them).
    pub ids: Vec<u32>,
    /// Decoded text, cut at a stop string.
    pub text: String,
    /// `eos`, `stop` or `length`.
    pub finish: String,
}

/// Pick the next token from one row of logits.
fn pick(logits: &[f32], d: &Decoding, rng: &mut Rng) -> u32 {
    let argmax = || logits.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32;
    if d.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(usize, f64)> = logits.iter().enumerate().map(|(i, &v)| (i, ((v as f64 - max) / d.temperature).exp())).collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0.0;
    let mut cut = probs.len();
    for (k, p) in probs.iter().enumerate() {
        kept += p.1 / total;
        if kept >= d.top_p {
            cut = k + 1;
            break;
        }
    }
    let mass: f64 = probs[..cut].iter().map(|p| p.1).sum();
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * mass;
    let mut acc = 0.0;
    for p in &probs[..cut] {
        acc += p.1;
        if u < acc {
            return p.0 as u32;
        }
    }
    probs[cut - 1].0 as u32
}

/// Generate a continuation of every prompt (token ids), in prompt order.
/// `decode` turns generated ids into text (for stop strings and output).
pub fn generate(
    model: &Llama,
    prompts: &[Vec<u32>],
    eos: &[u32],
    d: &Decoding,
    device: Device,
    decode: &dyn Fn(&[u32]) -> String,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Generated>, String> {
    // Similar lengths share a batch (less padding); results go back in order.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].len(), i));
    let mut out: Vec<Option<Generated>> = vec![None; prompts.len()];
    for chunk in order.chunks(d.batch_size.max(1)) {
        let results = tch::no_grad(|| batch(model, prompts, chunk, eos, d, device, decode))?;
        for (i, g) in chunk.iter().zip(results) {
            out[*i] = Some(g);
        }
        progress(chunk.len());
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

impl Default for Generated {
    fn default() -> Self {
        Generated { ids: vec![], text: String::new(), finish: "length".into() }
    }
}

fn batch(
    model: &Llama,
    prompts: &[Vec<u32>],
    rows: &[usize],
    eos: &[u32],
    d: &Decoding,
    device: Device,
    decode: &dyn Fn(&[u32]) -> String,
) -> Result<Vec<Generated>, String> {
    let b = rows.len();
    let len = rows.iter().map(|&r| prompts[r].len()).max().unwrap_or(0).max(1);
    let mut ids = vec![0i64; b * len];
    let mut valid = vec![false; b * len];
    for (bi, &r) in rows.iter().enumerate() {
        let p = &prompts[r];
        let pad = len - p.len();
        for (k, &t) in p.iter().enumerate() {
            ids[bi * len + pad + k] = i64::from(t);
            valid[bi * len + pad + k] = true;
        }
    }
    let shape = [b as i64, len as i64];
    let ids = Tensor::from_slice(&ids).view(shape).to_device(device);
    let mut valid = Tensor::from_slice(&valid).view(shape).to_device(device);
    let mut positions = (valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0);
    let mut cache = KvCache::default();
    let x = model.hidden(&ids, Some(&positions), Attend::Cached { cache: &mut cache, valid: &valid }, false)?;
    let mut logits = model.logits(&x.narrow(1, len as i64 - 1, 1), false)?.squeeze_dim(1);
    let mut rngs: Vec<Rng> = rows.iter().map(|&r| Rng::new(d.seed ^ (r as u64).wrapping_mul(0xA24B_AED4_963E_E407))).collect();
    let mut outs: Vec<Generated> = vec![Generated::default(); b];
    // Rows still generating, as indices into `gen` (and rows of the tensors).
    let mut active: Vec<usize> = (0..b).collect();
    for _ in 0..d.max_new_tokens {
        let mut next = Vec::with_capacity(active.len());
        let mut still = Vec::with_capacity(active.len());
        // Greedy: libtorch's argmax (the first maximum, as `pick`), so no
        // vocabulary-wide row is copied out per token.
        let greedy: Option<Vec<i64>> =
            if d.temperature <= 0.0 { Some(Vec::<i64>::try_from(logits.argmax(-1, false)).map_err(|e| e.to_string())?) } else { None };
        for (k, &g) in active.iter().enumerate() {
            let tok = match &greedy {
                Some(ids) => ids[k] as u32,
                None => pick(&Vec::<f32>::try_from(logits.get(k as i64)).map_err(|e| e.to_string())?, d, &mut rngs[g]),
            };
            next.push(i64::from(tok));
            if eos.contains(&tok) {
                outs[g].finish = "eos".into();
                continue;
            }
            outs[g].ids.push(tok);
            if !d.stop.is_empty() {
                let text = decode(&outs[g].ids);
                if let Some(at) = d.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                    outs[g].text = text[..at].to_string();
                    outs[g].finish = "stop".into();
                    continue;
                }
            }
            still.push(k);
        }
        if still.is_empty() {
            active.clear();
            break;
        }
        if still.len() < active.len() {
            let keep = Tensor::from_slice(&still.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(device);
            cache.select_rows(&keep);
            valid = valid.index_select(0, &keep);
            positions = positions.index_select(0, &keep);
            next = still.iter().map(|&k| next[k]).collect();
            active = still.iter().map(|&k| active[k]).collect();
        }
        let n = active.len() as i64;
        let step_ids = Tensor::from_slice(&next).view([n, 1]).to_device(device);
        positions = positions.narrow(1, positions.size()[1] - 1, 1) + 1;
        valid = Tensor::cat(&[valid, Tensor::ones([n, 1], (Kind::Bool, device))], 1);
        let x = model.hidden(&step_ids, Some(&positions), Attend::Cached { cache: &mut cache, valid: &valid }, false)?;
        logits = model.logits(&x, false)?.squeeze_dim(1);
    }
    for g in &mut outs {
        if g.finish != "stop" {
            g.text = decode(&g.ids);
        }
    }
    Ok(outs)
}
