//! Training data: the `tokens.safetensors` a `format` stage writes, turned
//! into batches. Samples (or packs of samples) are shuffled per epoch by a
//! seeded generator of our own, so the order is the same on every machine;
//! batches are right-padded, and padding never counts in the loss.

use std::path::Path;

use tch::{Device, Tensor};

/// A tokenized split.
pub struct Dataset {
    ids: Vec<u32>,
    mask: Vec<u8>,
    offsets: Vec<usize>,
    /// Rows: each a list of sample indices (one sample, or one pack).
    rows: Vec<Vec<usize>>,
    /// Sample ids (from `samples.jsonl`), when known.
    pub ids_of_samples: Vec<String>,
}

/// One batch, on a device.
pub struct Batch {
    /// Token ids `[B, T]` (int64).
    pub ids: Tensor,
    /// The next token where the loss counts, else -100 (ignored) `[B, T]`.
    pub targets_ids: Tensor,
    /// Positions `[B, T]`, restarting at each packed sample.
    pub positions: Tensor,
    /// Segment ids `[B, T]` (sample index within the row; padding = -1).
    pub segments: Tensor,
    /// Number of trained target tokens in the batch.
    pub targets: i64,
    /// Total tokens (without padding).
    pub tokens: i64,
    /// Every row is one sample (right-padded): plain causal attention suffices.
    pub simple: bool,
}

fn le_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn le_u64(b: &[u8]) -> Vec<usize> {
    b.chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as usize).collect()
}

/// SplitMix64: small, seedable, identical everywhere.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

impl Dataset {
    /// Read a split directory (`tokens.safetensors` + `manifest.json`).
    pub fn open(dir: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(dir.join("tokens.safetensors")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("tokens.safetensors: {e}"))?;
        let get = |n: &str| st.tensor(n).map(|t| t.data().to_vec()).map_err(|e| format!("tokens.safetensors: {n}: {e}"));
        let ids = le_u32(&get("input_ids")?);
        let mask = get("loss_mask")?;
        let offsets = le_u64(&get("offsets")?);
        let rows = match (st.tensor("pack_offsets"), st.tensor("pack_samples")) {
            (Ok(po), Ok(ps)) => {
                let po = le_u64(po.data());
                let ps = le_u32(ps.data());
                po.windows(2).map(|w| ps[w[0]..w[1]].iter().map(|&s| s as usize).collect()).collect()
            }
            _ => (0..offsets.len().saturating_sub(1)).map(|i| vec![i]).collect(),
        };
        if ids.len() != mask.len() || offsets.last().copied().unwrap_or(0) != ids.len() {
            return Err("tokens.safetensors is inconsistent (ids, mask and offsets disagree)".into());
        }
        // Sample ids, by sample index (a split written without them has none).
        let samples = dir.join("samples.jsonl");
        let ids_of_samples: Vec<String> = match std::fs::read_to_string(&samples) {
            Ok(t) => t
                .lines()
                .enumerate()
                .map(|(i, l)| {
                    let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", samples.display(), i + 1))?;
                    Ok(v["id"].as_str().unwrap_or_default().to_string())
                })
                .collect::<Result<_, String>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", samples.display())),
        };
        Ok(Dataset { ids, mask, offsets, rows, ids_of_samples })
    }

    /// A dataset of fixed-length rows cut from one token stream, every token
    /// a target (the benchmark's data: what `labels = input_ids` trains).
    pub fn from_stream(stream: &[u32], seq: usize, rows: usize) -> Self {
        let mut ids = Vec::with_capacity(seq * rows);
        let mut offsets = vec![0];
        for r in 0..rows {
            let start = (r * seq) % stream.len().max(1);
            ids.extend((0..seq).map(|k| stream[(start + k) % stream.len()]));
            offsets.push(ids.len());
        }
        let mask = vec![1u8; ids.len()];
        Dataset { ids, mask, offsets, rows: (0..rows).map(|i| vec![i]).collect(), ids_of_samples: Vec::new() }
    }

    /// Repeat the rows holding the given sample ids `factor` times in all
    /// (the others once), to focus training on them. Returns how many rows
    /// were repeated.
    pub fn oversample(&mut self, ids: &std::collections::BTreeSet<String>, factor: usize) -> usize {
        if factor <= 1 || ids.is_empty() {
            return 0;
        }
        let hit: Vec<Vec<usize>> =
            self.rows.iter().filter(|r| r.iter().any(|&s| self.ids_of_samples.get(s).is_some_and(|id| ids.contains(id)))).cloned().collect();
        for _ in 1..factor {
            self.rows.extend(hit.iter().cloned());
        }
        hit.len()
    }

    /// The rows of one sample each, with their sample ids (for per-sample
    /// evaluation).
    pub fn sample_id(&self, row: usize) -> Option<&str> {
        self.rows.get(row).and_then(|r| r.first()).and_then(|&s| self.ids_of_samples.get(s)).map(String::as_str)
    }

    /// Token ids and loss mask of one sample.
    pub fn sample(&self, s: usize) -> (&[u32], &[u8]) {
        let (a, b) = (self.offsets[s], self.offsets[s + 1]);
        (&self.ids[a..b], &self.mask[a..b])
    }

    /// Number of samples (not rows).
    pub fn samples(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Rows (samples or packs).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there is nothing to train on.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Largest token id (to check against the model's vocabulary).
    pub fn max_id(&self) -> u32 {
        self.ids.iter().copied().max().unwrap_or(0)
    }

    /// Row order for an epoch.
    pub fn order(&self, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
        let mut o: Vec<usize> = (0..self.rows.len()).collect();
        if shuffle {
            Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(epoch)).shuffle(&mut o);
        }
        o
    }

    /// Tokens in a row.
    pub fn row_len(&self, r: usize) -> usize {
        self.rows[r].iter().map(|&s| self.offsets[s + 1] - self.offsets[s]).sum()
    }

    /// Sort each run of `group` rows of an epoch's order by length, longest
    /// first, so that batches cut from it pad little (Hugging Face's
    /// `group_by_length`); the order between runs stays shuffled.
    pub fn group_by_length(&self, mut order: Vec<usize>, group: usize) -> Vec<usize> {
        for chunk in order.chunks_mut(group.max(1)) {
            chunk.sort_by_key(|&r| std::cmp::Reverse(self.row_len(r)));
        }
        order
    }

    /// Trained targets in a row (what [`Dataset::batch`] counts for it).
    pub fn row_targets(&self, r: usize) -> i64 {
        self.rows[r]
            .iter()
            .map(|&s| {
                let (start, end) = (self.offsets[s], self.offsets[s + 1]);
                self.mask[start..end].iter().skip(1).filter(|&&m| m == 1).count() as i64
            })
            .sum()
    }

    /// Build a batch from row indices. The loss mask is shifted by one: the
    /// value at position t says whether token t+1 is a trained target.
    pub fn batch(&self, rows: &[usize], device: Device) -> Batch {
        let lens: Vec<usize> = rows.iter().map(|&r| self.row_len(r)).collect();
        let t = lens.iter().copied().max().unwrap_or(1).max(1);
        let b = rows.len();
        let mut ids = vec![0i64; b * t];
        let mut tgt = vec![IGNORE; b * t];
        let mut pos = vec![0i64; b * t];
        let mut seg = vec![-1i64; b * t];
        let (mut targets, mut tokens) = (0i64, 0i64);
        for (bi, &r) in rows.iter().enumerate() {
            let mut at = bi * t;
            for (si, &s) in self.rows[r].iter().enumerate() {
                let (start, end) = (self.offsets[s], self.offsets[s + 1]);
                for (k, j) in (start..end).enumerate() {
                    ids[at] = self.ids[j] as i64;
                    pos[at] = k as i64;
                    seg[at] = si as i64;
                    // Target for position `at` is token j+1 of the same sample.
                    if j + 1 < end && self.mask[j + 1] == 1 {
                        tgt[at] = i64::from(self.ids[j + 1]);
                        targets += 1;
                    }
                    at += 1;
                }
                tokens += (end - start) as i64;
            }
        }
        let shape = [b as i64, t as i64];
        // One sample per row: padding only ever follows the real tokens, so
        // plain causal attention is exact for them (padding carries no target).
        let simple = rows.iter().all(|&r| self.rows[r].len() == 1);
        Batch {
            simple,
            ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            targets_ids: Tensor::from_slice(&tgt).view(shape).to_device(device),
            positions: Tensor::from_slice(&pos).view(shape).to_device(device),
            segments: Tensor::from_slice(&seg).view(shape).to_device(device),
            targets,
            tokens,
        }
    }
}

/// Target id that the loss ignores (PyTorch's convention).
pub const IGNORE: i64 = -100;

/// Next-token cross-entropy summed over the trained positions and divided by
/// `denominator` (the number of targets in the whole accumulation window) —
/// one fused `cross_entropy` over the logits, as `transformers` computes it.
pub fn masked_loss(logits: &Tensor, batch: &Batch, denominator: f64) -> Tensor {
    let v = logits.size()[2];
    logits.view([-1, v]).cross_entropy_loss::<Tensor>(&batch.targets_ids.view([-1]), None, tch::Reduction::Sum, IGNORE, 0.0) / denominator.max(1.0)
}
