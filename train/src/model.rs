//! A Llama-family decoder on libtorch: RMSNorm, RoPE (with `rope_theta` and
//! Llama-3 scaling), grouped-query attention, SwiGLU MLP, tied or untied
//! embeddings, causal mask. Weights are taken by the checkpoint's own names
//! (`model.layers.0.self_attn.q_proj.weight`), so a Hugging Face directory
//! loads as is and parity with `transformers` can be tested on the same file.
//!
//! Packed batches pass segment ids: attention is block-diagonal per segment
//! and positions restart at each segment, so samples never see each other.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;
use crate::linear::Linear;

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
    inv_freq: Tensor,
}

/// The module names LoRA can target, per layer.
pub const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

fn take(w: &mut HashMap<String, Tensor>, name: &str, shape: &[i64]) -> Result<Tensor, String> {
    let t = w.remove(name).ok_or_else(|| format!("the checkpoint has no tensor `{name}`"))?;
    if t.size() != shape {
        return Err(format!("tensor `{name}` has shape {:?}, the config implies {:?}", t.size(), shape));
    }
    Ok(t)
}

fn linear(w: &mut HashMap<String, Tensor>, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear, String> {
    let weight = take(w, &format!("{name}.weight"), &[out as i64, inp as i64])?;
    let b = if bias { Some(take(w, &format!("{name}.bias"), &[out as i64])?) } else { w.remove(&format!("{name}.bias")) };
    Ok(Linear::new(weight, b))
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
    /// Build from named tensors (Hugging Face names). Every tensor must be
    /// used and have the shape the config implies.
    pub fn from_tensors(cfg: LlamaConfig, mut w: HashMap<String, Tensor>, device: Device) -> Result<Self, String> {
        cfg.check()?;
        let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let d = cfg.head_dim();
        let (nq, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let embed = take(&mut w, "model.embed_tokens.weight", &[v as i64, h as i64])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let bias = cfg.attention_bias || cfg.model_type.as_deref() == Some("qwen2");
            layers.push(Layer {
                input_norm: take(&mut w, &format!("{p}.input_layernorm.weight"), &[h as i64])?,
                q: linear(&mut w, &format!("{p}.self_attn.q_proj"), nq * d, h, bias)?,
                k: linear(&mut w, &format!("{p}.self_attn.k_proj"), nkv * d, h, bias)?,
                v: linear(&mut w, &format!("{p}.self_attn.v_proj"), nkv * d, h, bias)?,
                o: linear(&mut w, &format!("{p}.self_attn.o_proj"), h, nq * d, false)?,
                post_norm: take(&mut w, &format!("{p}.post_attention_layernorm.weight"), &[h as i64])?,
                gate: linear(&mut w, &format!("{p}.mlp.gate_proj"), i, h, false)?,
                up: linear(&mut w, &format!("{p}.mlp.up_proj"), i, h, false)?,
                down: linear(&mut w, &format!("{p}.mlp.down_proj"), h, i, false)?,
            });
        }
        let norm = take(&mut w, "model.norm.weight", &[h as i64])?;
        let lm_head = match w.remove("lm_head.weight") {
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
        w.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
        if let Some(extra) = w.keys().next() {
            return Err(format!("the checkpoint has {} tensors this architecture does not use, e.g. `{extra}`", w.len()));
        }
        let inv = Tensor::from_slice(&inv_freq(&cfg)).to_kind(Kind::Float).to_device(device);
        Ok(Llama { cfg, embed, layers, norm, lm_head, inv_freq: inv })
    }

    /// Logits `[B, T, vocab]` (float32) for token ids `[B, T]`. `positions`
    /// default to 0..T; `segments` (same shape) restrict attention to tokens
    /// of the same segment.
    pub fn forward(&self, ids: &Tensor, positions: Option<&Tensor>, segments: Option<&Tensor>, train: bool) -> Tensor {
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let device = ids.device();
        let kind = self.embed.kind();
        let pos = match positions {
            Some(p) => p.shallow_clone(),
            None => Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0).expand([b, t], true),
        };
        // RoPE tables for these positions: [B, 1, T, D].
        let freqs = pos.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (emb.cos().unsqueeze(1).to_kind(kind), emb.sin().unsqueeze(1).to_kind(kind));
        // Additive mask [B, 1, T, T]: causal, and block-diagonal by segment.
        let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
        let mut allowed = causal.unsqueeze(0).expand([b, t, t], true);
        if let Some(s) = segments {
            allowed = allowed.logical_and(&s.unsqueeze(2).eq_tensor(&s.unsqueeze(1)));
        }
        let mask = Tensor::zeros([b, 1, t, t], (kind, device)).masked_fill(&allowed.logical_not().unsqueeze(1), f64::NEG_INFINITY);
        let mut x = self.embed.index_select(0, &ids.flatten(0, -1)).view([b, t, -1]);
        let d = self.cfg.head_dim() as i64;
        let (nq, nkv) = (self.cfg.num_attention_heads as i64, self.cfg.kv_heads() as i64);
        let eps = self.cfg.rms_norm_eps;
        for layer in &self.layers {
            let h = rms_norm(&x, &layer.input_norm, eps);
            let q = layer.q.forward(&h, train).view([b, t, nq, d]).transpose(1, 2);
            let k = layer.k.forward(&h, train).view([b, t, nkv, d]).transpose(1, 2);
            let v = layer.v.forward(&h, train).view([b, t, nkv, d]).transpose(1, 2);
            let q = &q * &cos + rotate_half(&q) * &sin;
            let k = &k * &cos + rotate_half(&k) * &sin;
            let rep = nq / nkv;
            let (k, v) = if rep > 1 {
                (k.unsqueeze(2).expand([b, nkv, rep, t, d], true).reshape([b, nq, t, d]), v.unsqueeze(2).expand([b, nkv, rep, t, d], true).reshape([b, nq, t, d]))
            } else {
                (k, v)
            };
            let scores = q.matmul(&k.transpose(-2, -1)) / (d as f64).sqrt() + &mask;
            let probs = scores.softmax(-1, Kind::Float).to_kind(kind);
            let attn = probs.matmul(&v).transpose(1, 2).reshape([b, t, nq * d]);
            x = x + layer.o.forward(&attn, train);
            let h = rms_norm(&x, &layer.post_norm, eps);
            let mlp = layer.down.forward(&(layer.gate.forward(&h, train).silu() * layer.up.forward(&h, train)), train);
            x = x + mlp;
        }
        let x = rms_norm(&x, &self.norm, eps);
        let logits = match &self.lm_head {
            Some(head) => head.forward(&x, train),
            None => x.matmul(&self.embed.tr()),
        };
        logits.to_kind(Kind::Float)
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

    /// Every weight with its Hugging Face name (for saving a merged or fully
    /// fine-tuned model); adapters are folded in.
    pub fn named_weights(&mut self) -> Vec<(String, Tensor)> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.shallow_clone())];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), layer.input_norm.shallow_clone()));
            out.push((format!("{p}.post_attention_layernorm.weight"), layer.post_norm.shallow_clone()));
        }
        for (name, lin) in self.linears_mut() {
            out.push((format!("{name}.weight"), lin.merged_weight()));
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.shallow_clone()));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), h.merged_weight()));
        }
        out
    }
}
