//! A Llama-family decoder on libtorch: RMSNorm, RoPE (with `rope_theta` and
//! Llama-3 scaling), grouped-query attention, SwiGLU MLP, tied or untied
//! embeddings, causal mask. Weights are taken by the checkpoint's own names
//! (`model.layers.0.self_attn.q_proj.weight`), so a Hugging Face directory
//! loads as is and parity with `transformers` can be tested on the same file.
//!
//! Attention goes through libtorch's fused `scaled_dot_product_attention`
//! (grouped-query heads natively). Which keys a query may see is an
//! [`Attend`]: plain causal (the fast path), block-diagonal per packed
//! segment (positions restart at each segment, so packed samples never see
//! each other), or causal over a key-value cache with padded keys masked out
//! (batched generation of prompts of different lengths).

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;
use crate::linear::Linear;
use crate::nf4::Nf4;

/// Hugging Face tensor names, in one place.
pub mod names {
    /// Token embeddings `[vocab, hidden]`.
    pub const EMBED: &str = "model.embed_tokens.weight";
    /// Final RMSNorm.
    pub const NORM: &str = "model.norm.weight";
    /// Untied output head.
    pub const LM_HEAD: &str = "lm_head.weight";
    /// Pre-attention RMSNorm, under a layer prefix.
    pub const INPUT_NORM: &str = "input_layernorm.weight";
    /// Pre-MLP RMSNorm, under a layer prefix.
    pub const POST_NORM: &str = "post_attention_layernorm.weight";
    /// The linear modules of a layer, in [`super::Block::linears`] order.
    pub const LINEARS: [&str; 7] =
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

    /// `model.layers.{l}`.
    pub fn layer(l: usize) -> String {
        format!("model.layers.{l}")
    }

    /// The last part of a module name (`q_proj`), what LoRA targets name.
    pub fn leaf(module: &str) -> &str {
        module.rsplit('.').next().unwrap_or(module)
    }
}

/// Grouped-query self-attention.
pub struct Attention {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
}

/// SwiGLU feed-forward.
pub struct Mlp {
    /// Gate projection (SiLU).
    pub gate: Linear,
    /// Up projection.
    pub up: Linear,
    /// Down projection.
    pub down: Linear,
}

/// One decoder layer: pre-norm attention, then pre-norm MLP.
pub struct Block {
    /// Pre-attention RMSNorm weight.
    pub input_norm: Tensor,
    /// Attention.
    pub attn: Attention,
    /// Pre-MLP RMSNorm weight.
    pub post_norm: Tensor,
    /// Feed-forward.
    pub mlp: Mlp,
}

impl Block {
    /// The linear layers in [`names::LINEARS`] order.
    pub fn linears(&self) -> [&Linear; 7] {
        let (a, m) = (&self.attn, &self.mlp);
        [&a.q, &a.k, &a.v, &a.o, &m.gate, &m.up, &m.down]
    }

    /// The linear layers in [`names::LINEARS`] order, mutably.
    pub fn linears_mut(&mut self) -> [&mut Linear; 7] {
        let (a, m) = (&mut self.attn, &mut self.mlp);
        [&mut a.q, &mut a.k, &mut a.v, &mut a.o, &mut m.gate, &mut m.up, &mut m.down]
    }

    /// Shapes `[out, in]` and whether a bias is expected, in
    /// [`names::LINEARS`] order.
    pub fn linear_shapes(cfg: &LlamaConfig) -> [(usize, usize, bool); 7] {
        let (h, i, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
        let (nq, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let bias = cfg.attention_bias || cfg.model_type.as_deref() == Some("qwen2");
        [(nq * d, h, bias), (nkv * d, h, bias), (nkv * d, h, bias), (h, nq * d, false), (i, h, false), (i, h, false), (h, i, false)]
    }

    fn load(w: &mut Weights, cfg: &LlamaConfig, l: usize) -> Result<Block, String> {
        let p = names::layer(l);
        let h = cfg.hidden_size as i64;
        let shapes = Block::linear_shapes(cfg);
        let mut lin = |i: usize| w.linear(&format!("{p}.{}", names::LINEARS[i]), shapes[i].0, shapes[i].1, shapes[i].2);
        let (q, k, v, o, gate, up, down) = (lin(0)?, lin(1)?, lin(2)?, lin(3)?, lin(4)?, lin(5)?, lin(6)?);
        Ok(Block {
            input_norm: w.take(&format!("{p}.{}", names::INPUT_NORM), &[h])?,
            attn: Attention { q, k, v, o },
            post_norm: w.take(&format!("{p}.{}", names::POST_NORM), &[h])?,
            mlp: Mlp { gate, up, down },
        })
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, String> {
        self.down.forward(&(self.gate.forward(x, train)?.silu() * self.up.forward(x, train)?), train)
    }
}

/// The model.
pub struct Llama {
    /// Configuration.
    pub cfg: LlamaConfig,
    /// `[vocab, hidden]`.
    pub embed: Tensor,
    /// Decoder layers.
    pub layers: Vec<Block>,
    /// Final RMSNorm weight.
    pub norm: Tensor,
    /// Untied output head (`None`: tied to `embed`).
    pub lm_head: Option<Linear>,
    /// Kind activations are computed in.
    pub compute: Kind,
    inv_freq: Tensor,
}

/// Which keys each query attends to.
pub enum Attend<'a> {
    /// Causal over the sequence.
    Causal,
    /// Causal within segments `[B, T]` (packed samples, or one sample per
    /// row; padding: -1). The decoder runs on the real tokens alone, as one
    /// flat sequence (padding never reaches a linear layer); attention runs
    /// per segment: the segments' queries, keys and values are gathered into
    /// a `[segments, longest]` batch for the fused causal kernel and the
    /// outputs scattered back, so no dense mask is built. Logits come back
    /// as `[B, T, vocab]`, zero at padding.
    Segments(&'a Tensor),
    /// The same as [`Attend::Segments`] through a dense block-diagonal mask
    /// over each packed row (slower: libtorch's masked kernel; the oracle
    /// for tests).
    SegmentsMasked(&'a Tensor),
    /// Causal over a cache of earlier keys plus these; `valid` `[B, past+T]`
    /// marks the key slots that hold real (non-padding) tokens.
    Cached {
        /// The cache, extended in place.
        cache: &'a mut KvCache,
        /// Real-token key slots.
        valid: &'a Tensor,
    },
}

/// What the decoder layers of one forward pass share.
struct Prepared {
    b: i64,
    t: i64,
    cos: Tensor,
    sin: Tensor,
    mask: Option<Tensor>,
    unpack: Option<Unpack>,
    keep: Option<Keep>,
}

/// The real tokens' positions in the flattened `[B·T]` batch (the decoder
/// then runs on `[1, N]`), and the batch's shape to restore.
struct Keep {
    index: Tensor,
    b: i64,
    t: i64,
}

impl Keep {
    /// `[1, N, X]` back to `[B, T, X]`, zeros at padding.
    fn restore(&self, x: &Tensor) -> Tensor {
        let n = x.size()[2];
        Tensor::zeros([self.b * self.t, n], (x.kind(), x.device())).index_copy(0, &self.index, &x.squeeze_dim(0)).view([self.b, self.t, n])
    }
}

fn restore(x: Tensor, keep: Option<&Keep>) -> Tensor {
    match keep {
        Some(k) => k.restore(&x),
        None => x,
    }
}

/// Where each segment's tokens sit among the `N` real tokens: `gather`
/// picks, for every slot of a `[segments, longest]` batch, one of the
/// tokens (slots past a segment's end repeat its last token: causal
/// attention never lets a real query see them, and their outputs are
/// dropped); `scatter` picks, for every token, its slot.
struct Unpack {
    gather: Tensor,
    scatter: Tensor,
    segments: i64,
    longest: i64,
}

impl Unpack {
    /// The segments of `[B, T]` ids (padding -1), and the real tokens.
    fn new(segments: &Tensor) -> (Self, Keep) {
        let (b, t) = (segments.size()[0], segments.size()[1]);
        let ids: Vec<i64> = Vec::try_from(segments.to_device(Device::Cpu).to_kind(Kind::Int64).reshape([-1])).unwrap_or_default();
        let mut keep: Vec<i64> = Vec::with_capacity(ids.len());
        // (start, length) of every run of one segment id, among the real tokens.
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for row in 0..b {
            for col in 0..t {
                let at = row * t + col;
                let id = ids[at as usize];
                if id < 0 {
                    continue;
                }
                let k = keep.len() as i64;
                keep.push(at);
                match runs.last_mut() {
                    Some((start, len)) if col > 0 && ids[(at - 1) as usize] == id && *start + *len == k => *len += 1,
                    _ => runs.push((k, 1)),
                }
            }
        }
        if keep.is_empty() {
            // Nothing but padding: keep one token so every shape stays valid.
            keep.push(0);
            runs.push((0, 1));
        }
        let longest = runs.iter().map(|r| r.1).max().unwrap_or(1);
        let mut gather = Vec::with_capacity(runs.len() * longest as usize);
        let mut scatter = vec![0i64; keep.len()];
        for (si, &(start, len)) in runs.iter().enumerate() {
            for j in 0..longest {
                gather.push(start + j.min(len - 1));
                if j < len {
                    scatter[(start + j) as usize] = si as i64 * longest + j;
                }
            }
        }
        let device = segments.device();
        let unpack = Unpack {
            gather: Tensor::from_slice(&gather).to_device(device),
            scatter: Tensor::from_slice(&scatter).to_device(device),
            segments: runs.len() as i64,
            longest,
        };
        (unpack, Keep { index: Tensor::from_slice(&keep).to_device(device), b, t })
    }
}

/// Keys and values of earlier positions, per layer (`[B, kv_heads, S, D]`).
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Cached positions.
    pub fn len(&self) -> i64 {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.size()[2])
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep only the given batch rows (finished rows leave the batch).
    pub fn select_rows(&mut self, rows: &Tensor) {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(0, rows);
            *v = v.index_select(0, rows);
        }
    }
}

/// Named weights to build a model from: dense tensors, and linear weights
/// already quantized to NF4 while loading.
#[derive(Default)]
pub struct Weights {
    /// By Hugging Face name.
    pub dense: HashMap<String, Tensor>,
    /// By Hugging Face name (`….q_proj.weight`).
    pub nf4: HashMap<String, Nf4>,
}

impl Weights {
    fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, String> {
        let t = self.dense.remove(name).ok_or_else(|| format!("the checkpoint has no tensor `{name}`"))?;
        if t.size() != shape {
            return Err(format!("tensor `{name}` has shape {:?}, the config implies {:?}", t.size(), shape));
        }
        Ok(t)
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear, String> {
        let wname = format!("{name}.weight");
        let mut lin = match self.nf4.remove(&wname) {
            Some(q) if q.rows == out as i64 && q.cols == inp as i64 => Linear { weight: crate::linear::Weight::Nf4(q), bias: None, lora: None },
            Some(q) => return Err(format!("tensor `{wname}` has shape [{}, {}], the config implies [{out}, {inp}]", q.rows, q.cols)),
            None => Linear::new(self.take(&wname, &[out as i64, inp as i64])?, None),
        };
        let bname = format!("{name}.bias");
        lin.bias = if bias { Some(self.take(&bname, &[out as i64])?) } else { self.dense.remove(&bname) };
        Ok(lin)
    }
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let xf = x.to_kind(Kind::Float);
    let var = xf.pow_tensor_scalar(2).mean_dim(Some([-1i64].as_slice()), true, Kind::Float);
    let normed = (xf * (var + eps).rsqrt()).to_kind(x.kind());
    normed * w.to_kind(x.kind())
}

fn rotate_half(x: &Tensor) -> Tensor {
    let d = x.size()[3];
    let x1 = x.narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d / 2);
    Tensor::cat(&[x2.neg(), x1], 3)
}

impl Llama {
    /// Build from named weights (Hugging Face names). Every tensor must be
    /// used and have the shape the config implies. Activations are computed
    /// in `compute`.
    pub fn from_weights(cfg: LlamaConfig, mut w: Weights, compute: Kind, device: Device) -> Result<Self, String> {
        cfg.check()?;
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let embed = w.take(names::EMBED, &[v as i64, h as i64])?;
        let layers = (0..cfg.num_hidden_layers).map(|l| Block::load(&mut w, &cfg, l)).collect::<Result<Vec<_>, _>>()?;
        let norm = w.take(names::NORM, &[h as i64])?;
        let lm_head = match w.dense.remove(names::LM_HEAD) {
            Some(t) if !cfg.tie_word_embeddings => {
                if t.size() != [v as i64, h as i64] {
                    return Err(format!("{} has shape {:?}, expected [{v}, {h}]", names::LM_HEAD, t.size()));
                }
                Some(Linear::new(t, None))
            }
            Some(_) => None,
            None if cfg.tie_word_embeddings => None,
            None => return Err(format!("the checkpoint has no `{}` and `tie_word_embeddings` is false", names::LM_HEAD)),
        };
        // Buffers some exporters include; anything else left over is a mismatch.
        w.dense.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
        if let Some(extra) = w.dense.keys().chain(w.nf4.keys()).next() {
            return Err(format!("the checkpoint has {} tensors this architecture does not use, e.g. `{extra}`", w.dense.len() + w.nf4.len()));
        }
        let inv = Tensor::from_slice(&cfg.rope()?.inv_freq(cfg.rope_theta, cfg.head_dim())).to_kind(Kind::Float).to_device(device);
        Ok(Llama { cfg, embed, layers, norm, lm_head, compute, inv_freq: inv })
    }

    /// Build from dense named tensors, computing in the embedding's kind.
    pub fn from_tensors(cfg: LlamaConfig, dense: HashMap<String, Tensor>, device: Device) -> Result<Self, String> {
        let kind = dense.get(names::EMBED).map_or(Kind::Float, Tensor::kind);
        Self::from_weights(cfg, Weights { dense, nf4: HashMap::new() }, kind, device)
    }

    /// Logits `[B, T, vocab]` (float32) for token ids `[B, T]`. `positions`
    /// default to 0..T (after any cached positions).
    pub fn forward(&self, ids: &Tensor, positions: Option<&Tensor>, attend: Attend<'_>, train: bool) -> Result<Tensor, String> {
        let (x, keep) = self.decode(ids, positions, attend, train)?;
        Ok(restore(self.logits(&x, train)?, keep.as_ref()))
    }

    /// Output logits (float32) from final hidden states.
    pub fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor, String> {
        let x = rms_norm(x, &self.norm, self.cfg.rms_norm_eps);
        let logits = match &self.lm_head {
            Some(head) => head.forward(&x, train)?,
            None => x.linear::<Tensor>(&self.embed.to_kind(x.kind()), None),
        };
        Ok(logits.to_kind(Kind::Float))
    }

    /// Hidden states after the last decoder layer (before the final norm).
    pub fn hidden(&self, ids: &Tensor, positions: Option<&Tensor>, attend: Attend<'_>, train: bool) -> Result<Tensor, String> {
        let (x, keep) = self.decode(ids, positions, attend, train)?;
        Ok(restore(x, keep.as_ref()))
    }

    /// The decoder layers, in the layout of [`Prepared`] (`[1, N]` real
    /// tokens for [`Attend::Segments`]), and what restores `[B, T]`.
    fn decode(&self, ids: &Tensor, positions: Option<&Tensor>, mut attend: Attend<'_>, train: bool) -> Result<(Tensor, Option<Keep>), String> {
        let mut prep = self.prepare(ids, positions, &attend);
        let mut x = self.embed_in(ids, &prep);
        for li in 0..self.layers.len() {
            let cache = match &mut attend {
                Attend::Cached { cache, .. } => Some(&mut **cache),
                _ => None,
            };
            x = self.block(li, &x, &prep, cache, train)?;
        }
        Ok((x, prep.keep.take()))
    }

    /// Token embeddings in the compute kind.
    fn embed_tokens(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed, ids, -1, false, false).to_kind(self.compute)
    }

    /// Embeddings in the layout the layers run in.
    fn embed_in(&self, ids: &Tensor, prep: &Prepared) -> Tensor {
        match &prep.keep {
            Some(k) => self.embed_tokens(&ids.reshape([-1]).index_select(0, &k.index).unsqueeze(0)),
            None => self.embed_tokens(ids),
        }
    }

    /// What every decoder layer of one forward pass shares: RoPE tables and the attention mask.
    fn prepare(&self, ids: &Tensor, positions: Option<&Tensor>, attend: &Attend<'_>) -> Prepared {
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let device = ids.device();
        let kind = self.compute;
        let past = match attend {
            Attend::Cached { cache, .. } => cache.len(),
            _ => 0,
        };
        let pos = match positions {
            Some(p) => p.shallow_clone(),
            None => (Tensor::arange(t, (Kind::Int64, device)) + past).unsqueeze(0).expand([b, t], true),
        };
        let (unpack, keep) = match attend {
            Attend::Segments(s) => {
                let (u, k) = Unpack::new(s);
                (Some(u), Some(k))
            }
            _ => (None, None),
        };
        // The real tokens as one row: [1, N].
        let (b, t, pos) = match &keep {
            Some(k) => (1, k.index.size()[0], pos.reshape([-1]).index_select(0, &k.index).unsqueeze(0)),
            None => (b, t, pos),
        };
        // RoPE tables for these positions: [B, 1, T, D].
        let freqs = pos.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (emb.cos().unsqueeze(1).to_kind(kind), emb.sin().unsqueeze(1).to_kind(kind));
        // Boolean mask [B, 1, T, S] (true = may attend), or None for plain causal.
        let mask = match attend {
            Attend::Causal | Attend::Segments(_) => None,
            Attend::SegmentsMasked(s) => {
                let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
                Some(causal.unsqueeze(0).logical_and(&s.unsqueeze(2).eq_tensor(&s.unsqueeze(1))).unsqueeze(1))
            }
            Attend::Cached { valid, .. } => {
                let s = past + t;
                // Query i sits at key slot past+i: it sees slots <= past+i that hold real tokens,
                // and always itself, so a padding query never has an empty row (which would be NaN).
                let causal = Tensor::ones([t, s], (Kind::Bool, device)).tril(past);
                let own = Tensor::eye_m(t, s, (Kind::Int64, device)).roll([past], [1]).to_kind(Kind::Bool);
                let m = causal.unsqueeze(0).logical_and(&valid.unsqueeze(1)).logical_or(&own.unsqueeze(0));
                Some(m.unsqueeze(1))
            }
        };
        Prepared { b, t, cos, sin, mask, unpack, keep }
    }

    /// One decoder layer.
    fn block(&self, li: usize, x: &Tensor, p: &Prepared, cache: Option<&mut KvCache>, train: bool) -> Result<Tensor, String> {
        let (b, t) = (p.b, p.t);
        let d = self.cfg.head_dim() as i64;
        let (nq, nkv) = (self.cfg.num_attention_heads as i64, self.cfg.kv_heads() as i64);
        let eps = self.cfg.rms_norm_eps;
        let layer = &self.layers[li];
        let h = rms_norm(x, &layer.input_norm, eps);
        let a = &layer.attn;
        let q = a.q.forward(&h, train)?.view([b, t, nq, d]).transpose(1, 2);
        let k = a.k.forward(&h, train)?.view([b, t, nkv, d]).transpose(1, 2);
        let v = a.v.forward(&h, train)?.view([b, t, nkv, d]).transpose(1, 2);
        let q = &q * &p.cos + rotate_half(&q) * &p.sin;
        let mut k = &k * &p.cos + rotate_half(&k) * &p.sin;
        let mut v = v;
        if let Some(cache) = cache {
            if cache.layers.len() <= li {
                cache.layers.resize_with(li + 1, || None);
            }
            if let Some((pk, pv)) = &cache.layers[li] {
                k = Tensor::cat(&[pk, &k], 2);
                v = Tensor::cat(&[pv, &v], 2);
            }
            cache.layers[li] = Some((k.shallow_clone(), v.shallow_clone()));
        }
        let attn = match &p.unpack {
            Some(u) => {
                // [B, heads, T, D] → the segments' [segments, heads, longest, D].
                let pick = |x: &Tensor, heads: i64| {
                    x.transpose(1, 2).reshape([b * t, heads, d]).index_select(0, &u.gather).view([u.segments, u.longest, heads, d]).transpose(1, 2)
                };
                let o = Tensor::f_scaled_dot_product_attention(&pick(&q, nq), &pick(&k, nkv), &pick(&v, nkv), None::<&Tensor>, 0.0, true, None, nq != nkv)
                    .map_err(|e| e.to_string())?;
                o.transpose(1, 2).reshape([u.segments * u.longest, nq * d]).index_select(0, &u.scatter).view([b, t, nq * d])
            }
            None => Tensor::f_scaled_dot_product_attention(&q, &k, &v, p.mask.as_ref(), 0.0, p.mask.is_none(), None, nq != nkv)
                .map_err(|e| e.to_string())?
                .transpose(1, 2)
                .reshape([b, t, nq * d]),
        };
        let x = x + a.o.forward(&attn, train)?;
        let h = rms_norm(&x, &layer.post_norm, eps);
        Ok(&x + layer.mlp.forward(&h, train)?)
    }

    /// Forward and backward with activation checkpointing: the forward pass
    /// keeps only each decoder layer's input (`[B, T, hidden]` per layer)
    /// instead of every intermediate activation; the backward pass then
    /// recomputes one layer at a time, from the last to the first, and
    /// pushes the gradient through it. Gradients accumulate into the
    /// parameters exactly as `loss_of(logits).backward()` would leave them
    /// (the same operations in the same order; equal within float rounding
    /// of the recomputation, which is bit-identical on CPU). Adapter dropout
    /// replays the same masks: each layer is seeded from one draw of the
    /// step's random stream, in both passes. Returns the loss.
    pub fn backward_checkpointed(
        &self,
        ids: &Tensor,
        positions: Option<&Tensor>,
        attend: Attend<'_>,
        train: bool,
        loss_of: impl Fn(&Tensor) -> Tensor,
    ) -> Result<f64, String> {
        if matches!(attend, Attend::Cached { .. }) {
            return Err("activation checkpointing is for training, not for cached generation".into());
        }
        let prep = self.prepare(ids, positions, &attend);
        let keep = prep.keep.as_ref();
        let base = Tensor::randint(1 << 40, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
        let seeded = |li: usize| tch::manual_seed(base + li as i64);
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut x = tch::no_grad(|| self.embed_in(ids, &prep));
        for li in 0..self.layers.len() {
            seeded(li);
            let next = tch::no_grad(|| self.block(li, &x, &prep, None, train))?;
            inputs.push(std::mem::replace(&mut x, next));
        }
        let last = x.detach().set_requires_grad(true);
        let loss = loss_of(&restore(self.logits(&last, train)?, keep));
        loss.f_backward().map_err(|e| e.to_string())?;
        let value = loss.double_value(&[]);
        let mut g = last.grad();
        for li in (0..self.layers.len()).rev() {
            let xi = inputs[li].detach().set_requires_grad(true);
            seeded(li);
            let out = self.block(li, &xi, &prep, None, train)?;
            // The vector-Jacobian product with `g`: backward of sum(out ⊙ g) gives exactly g · ∂out.
            (out * &g).sum(Kind::Float).f_backward().map_err(|e| e.to_string())?;
            g = xi.grad();
            inputs[li] = Tensor::new();
        }
        if self.embed.requires_grad() {
            (self.embed_in(ids, &prep) * &g).sum(Kind::Float).f_backward().map_err(|e| e.to_string())?;
        }
        Ok(value)
    }

    /// Every linear layer with its Hugging Face module name.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let p = names::layer(l);
            out.extend(names::LINEARS.iter().zip(layer.linears_mut()).map(|(n, lin)| (format!("{p}.{n}"), lin)));
        }
        out
    }

    /// Bytes held by the weights (NF4 matrices at their packed size).
    pub fn weight_bytes(&mut self) -> i64 {
        let dense = |t: &Tensor| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        let mut n = dense(&self.embed) + dense(&self.norm);
        for layer in &self.layers {
            n += dense(&layer.input_norm) + dense(&layer.post_norm);
        }
        if let Some(h) = &self.lm_head {
            n += h.weight_bytes();
        }
        n + self.linears_mut().iter().map(|(_, l)| l.weight_bytes() + l.bias.as_ref().map_or(0, dense)).sum::<i64>()
    }

    /// Every weight with its Hugging Face name (for saving a merged or fully
    /// fine-tuned model), in float32; adapters are folded in.
    pub fn named_weights(&mut self) -> Result<Vec<(String, Tensor)>, String> {
        let mut out = vec![(names::EMBED.to_string(), self.embed.shallow_clone())];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = names::layer(l);
            out.push((format!("{p}.{}", names::INPUT_NORM), layer.input_norm.shallow_clone()));
            out.push((format!("{p}.{}", names::POST_NORM), layer.post_norm.shallow_clone()));
        }
        for (name, lin) in self.linears_mut() {
            out.push((format!("{name}.weight"), lin.merged_weight()?));
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        }
        out.push((names::NORM.to_string(), self.norm.shallow_clone()));
        if let Some(h) = &self.lm_head {
            out.push((names::LM_HEAD.to_string(), h.merged_weight()?));
        }
        Ok(out)
    }
}
