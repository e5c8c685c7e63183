//! Log-likelihood of continuations given contexts — the one primitive
//! multiple-choice benchmarks (per choice: the summed log-probability of
//! its tokens after the question) and rolling perplexity (a long document as
//! windows, each a context plus the tokens it predicts) are built from.
//!
//! Requests are sorted longest first and right-padded into batches under a
//! token budget; causal attention makes right padding invisible to the real
//! positions, so a request scores the same in any batch. Only the positions
//! that predict continuation tokens go through the output head, and the
//! log-softmax is taken in float32.

use tch::{Device, Kind, Tensor};

use crate::model::{Attend, Llama};
use tailor_protocol::job::LoglikRequest;

/// Positions whose logits are computed at once, by default.
pub const HEAD_ROWS: usize = 512;

/// A scored request: summed log-probability, and whether every token was
/// the model's most likely one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Sum of the continuation tokens' log-probabilities (natural log).
    pub logprob: f64,
    /// Greedy decoding would reproduce the continuation.
    pub greedy: bool,
}

/// The model input for one request: the last `window` tokens of
/// context + continuation without its final token, and how many of the
/// input's last positions predict the continuation.
fn input(r: &LoglikRequest, window: usize) -> Result<(Vec<u32>, usize), String> {
    if r.context.is_empty() || r.continuation.is_empty() {
        return Err(format!("request {}: the context and the continuation need at least one token each", r.id));
    }
    let n = r.continuation.len();
    if n > window {
        return Err(format!("request {}: the continuation has {n} tokens, more than the model's window of {window}", r.id));
    }
    let whole: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
    let end = whole.len() - 1;
    let start = end.saturating_sub(window);
    Ok((whole[start..end].to_vec(), n))
}

/// Score every request, in request order. `window` is the longest input
/// the model takes; `budget` bounds padded tokens per batch; `head_rows`
/// positions go through the output head at once.
pub fn score(
    model: &Llama,
    requests: &[LoglikRequest],
    window: usize,
    budget: usize,
    head_rows: usize,
    device: Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Scored>, String> {
    let inputs: Vec<(Vec<u32>, usize)> = requests.iter().map(|r| input(r, window)).collect::<Result<_, _>>()?;
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(inputs[i].0.len()), i));
    let mut out = vec![Scored { logprob: 0.0, greedy: false }; requests.len()];
    let mut at = 0;
    while at < order.len() {
        // Longest first: the first row sets the padded length.
        let len = inputs[order[at]].0.len();
        let rows = (budget / len.max(1)).max(1).min(order.len() - at);
        let chunk = &order[at..at + rows];
        let scored = tch::no_grad(|| batch(model, requests, &inputs, chunk, len, head_rows.max(1) as i64, device))?;
        for (&i, s) in chunk.iter().zip(scored) {
            out[i] = s;
        }
        progress(rows);
        at += rows;
    }
    Ok(out)
}

fn batch(
    model: &Llama,
    requests: &[LoglikRequest],
    inputs: &[(Vec<u32>, usize)],
    rows: &[usize],
    len: usize,
    head_rows: i64,
    device: Device,
) -> Result<Vec<Scored>, String> {
    let b = rows.len();
    let mut ids = vec![0i64; b * len];
    // Flat indices (row * len + position) of the predicting positions, and
    // the tokens they predict.
    let (mut at, mut targets) = (Vec::new(), Vec::new());
    for (bi, &r) in rows.iter().enumerate() {
        let (inp, n) = &inputs[r];
        for (k, &t) in inp.iter().enumerate() {
            ids[bi * len + k] = i64::from(t);
        }
        let first = inp.len() - n;
        for (k, &t) in requests[r].continuation.iter().enumerate() {
            at.push((bi * len + first + k) as i64);
            targets.push(i64::from(t));
        }
    }
    let ids = Tensor::from_slice(&ids).view([b as i64, len as i64]).to_device(device);
    let hidden = model.hidden(&ids, None, Attend::Causal, false)?;
    let d = hidden.size()[2];
    let picked = hidden.reshape([-1, d]).index_select(0, &Tensor::from_slice(&at).to_device(device));
    let targets = Tensor::from_slice(&targets).to_device(device);
    // The output head and its log-softmax over the vocabulary, a slice of
    // positions at a time: a full window of a 128k-vocabulary model would
    // otherwise hold gigabytes of float32 logits twice over.
    let (mut token_logp, mut hits): (Vec<f32>, Vec<bool>) = (Vec::with_capacity(at.len()), Vec::with_capacity(at.len()));
    let n = at.len() as i64;
    let mut from = 0;
    while from < n {
        let k = head_rows.min(n - from);
        let logp = model.logits(&picked.narrow(0, from, k), false)?.log_softmax(-1, Kind::Float);
        let tgt = targets.narrow(0, from, k);
        let lp = logp.gather(1, &tgt.unsqueeze(1), false).squeeze_dim(1).to_device(Device::Cpu);
        let hit = logp.argmax(1, false).eq_tensor(&tgt).to_device(Device::Cpu);
        token_logp.extend(Vec::<f32>::try_from(&lp).map_err(|e| e.to_string())?);
        hits.extend(Vec::<bool>::try_from(&hit).map_err(|e| e.to_string())?);
        from += k;
    }
    let mut out = Vec::with_capacity(b);
    let mut k = 0;
    for &r in rows {
        let n = inputs[r].1;
        let logprob = token_logp[k..k + n].iter().map(|&v| f64::from(v)).sum();
        out.push(Scored { logprob, greedy: hits[k..k + n].iter().all(|&h| h) });
        k += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(c: &[u32], x: &[u32]) -> LoglikRequest {
        LoglikRequest { id: "r".into(), context: c.to_vec(), continuation: x.to_vec() }
    }

    #[test]
    fn long_contexts_lose_their_oldest_tokens() {
        assert_eq!(input(&req(&[1, 2, 3], &[4, 5]), 8).unwrap(), (vec![1, 2, 3, 4], 2));
        assert_eq!(input(&req(&[1, 2, 3], &[4, 5]), 3).unwrap(), (vec![2, 3, 4], 2));
        assert_eq!(input(&req(&[1, 2, 3], &[4, 5]), 2).unwrap(), (vec![3, 4], 2));
        assert!(input(&req(&[1, 2, 3], &[4, 5]), 1).unwrap_err().contains("window of 1"));
        assert!(input(&req(&[], &[4]), 8).unwrap_err().contains("at least one token"));
        assert!(input(&req(&[1], &[]), 8).unwrap_err().contains("at least one token"));
    }
}
