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

/// One decoder layer.
pub struct Layer {
    /// Pre-attention RMSNorm weight.
    pub input_norm: Tensor,
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
    /// Pre-MLP RMSNorm weight.
    pub post_norm: Tensor,
    /// SwiGLU gate.
    pub gate: Linear,
    /// SwiGLU up.
    pub up: Linear,
    /// SwiGLU down.
    pub down: Linear,
}

/// The model.
pub struct Llama {
    /// Configuration.
    pub cfg: LlamaConfig,
    /// `[vocab, hidden]`.
    pub embed: Tensor,
    /// Decoder layers.
    pub layers: Vec<Layer>,
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
    /// Causal within packed segments `[B, T]` (padding: any id, e.g. -1).
    Segments(&'a Tensor),
    /// Causal over a cache of earlier keys plus these; `valid` `[B, past+T]`
    /// marks the key slots that hold real (non-padding) tokens.
    Cached {
        /// The cache, extended in place.
        cache: &'a mut KvCache,
        /// Real-token key slots.
        valid: &'a Tensor,
    },
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

/// The module names LoRA can target, per layer.
pub const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

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

/// Inverse RoPE frequencies, with Llama-3 scaling when configured.
fn inv_freq(cfg: &LlamaConfig) -> Vec<f64> {
    let d = cfg.head_dim();
    let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64)).collect();
    match &cfg.rope_scaling {
        Some(s) if s.rope_type == "llama3" => {
            let old = s.original_max_position_embeddings as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / s.factor
                    } else {
                        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                        (1.0 - smooth) * f / s.factor + smooth * f
                    }
                })
                .collect()
        }
        Some(s) if s.rope_type == "linear" => base.into_iter().map(|f| f / s.factor).collect(),
        _ => base,
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
        let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let d = cfg.head_dim();
        let (nq, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let embed = w.take("model.embed_tokens.weight", &[v as i64, h as i64])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        let bias = cfg.attention_bias || cfg.model_type.as_deref() == Some("qwen2");
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            layers.push(Layer {
                input_norm: w.take(&format!("{p}.input_layernorm.weight"), &[h as i64])?,
                q: w.linear(&format!("{p}.self_attn.q_proj"), nq * d, h, bias)?,
                k: w.linear(&format!("{p}.self_attn.k_proj"), nkv * d, h, bias)?,
                v: w.linear(&format!("{p}.self_attn.v_proj"), nkv * d, h, bias)?,
                o: w.linear(&format!("{p}.self_attn.o_proj"), h, nq * d, false)?,
                post_norm: w.take(&format!("{p}.post_attention_layernorm.weight"), &[h as i64])?,
                gate: w.linear(&format!("{p}.mlp.gate_proj"), i, h, false)?,
                up: w.linear(&format!("{p}.mlp.up_proj"), i, h, false)?,
                down: w.linear(&format!("{p}.mlp.down_proj"), h, i, false)?,
            });
        }
        let norm = w.take("model.norm.weight", &[h as i64])?;
        let lm_head = match w.dense.remove("lm_head.weight") {
            Some(t) if !cfg.tie_word_embeddings => {
                if t.size() != [v as i64, h as i64] {
                    return Err(format!("lm_head.weight has shape {:?}, expected [{v}, {h}]", t.size()));
                }
                Some(Linear::new(t, None))
            }
            Some(_) => None,
            None if cfg.tie_word_embeddings => None,
            None => return Err("the checkpoint has no `lm_head.weight` and `tie_word_embeddings` is false".into()),
        };
        // Buffers some exporters include; anything else left over is a mismatch.
        w.dense.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
        if let Some(extra) = w.dense.keys().chain(w.nf4.keys()).next() {
            return Err(format!("the checkpoint has {} tensors this architecture does not use, e.g. `{extra}`", w.dense.len() + w.nf4.len()));
        }
        let inv = Tensor::from_slice(&inv_freq(&cfg)).to_kind(Kind::Float).to_device(device);
        Ok(Llama { cfg, embed, layers, norm, lm_head, compute, inv_freq: inv })
    }

    /// Build from dense named tensors, computing in the embedding's kind.
    pub fn from_tensors(cfg: LlamaConfig, dense: HashMap<String, Tensor>, device: Device) -> Result<Self, String> {
        let kind = dense.get("model.embed_tokens.weight").map_or(Kind::Float, Tensor::kind);
        Self::from_weights(cfg, Weights { dense, nf4: HashMap::new() }, kind, device)
    }

    /// Logits `[B, T, vocab]` (float32) for token ids `[B, T]`. `positions`
    /// default to 0..T (after any cached positions).
    pub fn forward(&self, ids: &Tensor, positions: Option<&Tensor>, attend: Attend<'_>, train: bool) -> Result<Tensor, String> {
        let x = self.hidden(ids, positions, attend, train)?;
        self.logits(&x, train)
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
    pub fn hidden(&self, ids: &Tensor, positions: Option<&Tensor>, mut attend: Attend<'_>, train: bool) -> Result<Tensor, String> {
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let device = ids.device();
        let kind = self.compute;
        let past = match &attend {
            Attend::Cached { cache, .. } => cache.len(),
            _ => 0,
        };
        let pos = match positions {
            Some(p) => p.shallow_clone(),
            None => (Tensor::arange(t, (Kind::Int64, device)) + past).unsqueeze(0).expand([b, t], true),
        };
        // RoPE tables for these positions: [B, 1, T, D].
        let freqs = pos.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (emb.cos().unsqueeze(1).to_kind(kind), emb.sin().unsqueeze(1).to_kind(kind));
        // Boolean mask [B, 1, T, S] (true = may attend), or None for plain causal.
        let mask = match &attend {
            Attend::Causal => None,
            Attend::Segments(s) => {
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
        let is_causal = mask.is_none();
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false).to_kind(kind);
        let d = self.cfg.head_dim() as i64;
        let (nq, nkv) = (self.cfg.num_attention_heads as i64, self.cfg.kv_heads() as i64);
        let eps = self.cfg.rms_norm_eps;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.input_norm, eps);
            let q = layer.q.forward(&h, train)?.view([b, t, nq, d]).transpose(1, 2);
            let k = layer.k.forward(&h, train)?.view([b, t, nkv, d]).transpose(1, 2);
            let v = layer.v.forward(&h, train)?.view([b, t, nkv, d]).transpose(1, 2);
            let q = &q * &cos + rotate_half(&q) * &sin;
            let mut k = &k * &cos + rotate_half(&k) * &sin;
            let mut v = v;
            if let Attend::Cached { cache, .. } = &mut attend {
                if cache.layers.len() <= li {
                    cache.layers.resize_with(li + 1, || None);
                }
                if let Some((pk, pv)) = &cache.layers[li] {
                    k = Tensor::cat(&[pk, &k], 2);
                    v = Tensor::cat(&[pv, &v], 2);
                }
                cache.layers[li] = Some((k.shallow_clone(), v.shallow_clone()));
            }
            let attn = Tensor::f_scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), 0.0, is_causal, None, nq != nkv).map_err(|e| e.to_string())?;
            let attn = attn.transpose(1, 2).reshape([b, t, nq * d]);
            x = x + layer.o.forward(&attn, train)?;
            let h = rms_norm(&x, &layer.post_norm, eps);
            let mlp = layer.down.forward(&(layer.gate.forward(&h, train)?.silu() * layer.up.forward(&h, train)?), train)?;
            x = x + mlp;
        }
        Ok(x)
    }

    /// Every linear layer with its Hugging Face module name.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.self_attn.q_proj"), &mut layer.q));
            out.push((format!("{p}.self_attn.k_proj"), &mut layer.k));
            out.push((format!("{p}.self_attn.v_proj"), &mut layer.v));
            out.push((format!("{p}.self_attn.o_proj"), &mut layer.o));
            out.push((format!("{p}.mlp.gate_proj"), &mut layer.gate));
            out.push((format!("{p}.mlp.up_proj"), &mut layer.up));
            out.push((format!("{p}.mlp.down_proj"), &mut layer.down));
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
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.shallow_clone())];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), layer.input_norm.shallow_clone()));
            out.push((format!("{p}.post_attention_layernorm.weight"), layer.post_norm.shallow_clone()));
        }
        for (name, lin) in self.linears_mut() {
            out.push((format!("{name}.weight"), lin.merged_weight()?));
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.shallow_clone()));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), h.merged_weight()?));
        }
        Ok(out)
    }
}
