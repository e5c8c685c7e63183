//! The Llama architecture as GGUF describes it and as Hugging Face's
//! `LlamaForCausalLM` expects it: hyperparameters (`llama.*` metadata →
//! `config.json`), tensor names (`blk.N.attn_q.weight` →
//! `model.layers.N.self_attn.q_proj.weight`) and the expected shape of
//! every tensor, so a malformed file is refused before anything is written.
//!
//! llama.cpp's converter permutes the rows of `attn_q` / `attn_k` (HF
//! rotates the two halves of each head, ggml rotates adjacent pairs):
//! `w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)`. [`Permute`]
//! gives, for each HF row, the GGUF row it comes from, so the importer can
//! undo it while streaming rows.

use serde_json::{Value, json};

use super::ggml::dequantize;
use super::gguf::{Gguf, TensorInfo};
use super::rope::llama3_scaling;
use crate::error::{ModelError, Result};

/// Architectures this importer converts.
pub const SUPPORTED_ARCHS: &str = "llama";

/// Llama hyperparameters read from `llama.*` metadata.
#[derive(Debug, Clone)]
pub struct LlamaParams {
    /// `llama.block_count`.
    pub layers: u64,
    /// `llama.embedding_length`.
    pub hidden: u64,
    /// `llama.feed_forward_length`.
    pub intermediate: u64,
    /// `llama.attention.head_count`.
    pub heads: u64,
    /// `llama.attention.head_count_kv` (default: `heads`).
    pub kv_heads: u64,
    /// `llama.attention.key_length` (default: `hidden / heads`).
    pub head_dim: u64,
    /// `llama.context_length`.
    pub context: u64,
    /// `llama.attention.layer_norm_rms_epsilon`, snapped to 1e-5 / 1e-6.
    pub rms_norm_eps: f64,
    /// `llama.rope.freq_base` (default 10000).
    pub rope_theta: f64,
    /// HF `rope_scaling` (null when none).
    pub rope_scaling: Value,
    /// Rows of `token_embd.weight`.
    pub vocab: u64,
    /// No `output.weight`: the LM head is the embedding.
    pub tied: bool,
}

/// How rows of a tensor are reordered on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permute {
    /// Rows stay in place.
    None,
    /// Undo llama.cpp's rotary permutation with this many heads.
    Heads(u64),
}

impl Permute {
    /// The GGUF row that HF row `r` of a `rows`-row tensor comes from.
    pub fn source_row(self, r: u64, rows: u64) -> u64 {
        match self {
            Permute::None => r,
            Permute::Heads(n) => {
                let per_head = rows / n.max(1);
                let half = per_head / 2;
                if half == 0 {
                    return r;
                }
                let (head, within) = (r / per_head, r % per_head);
                head * per_head + 2 * (within % half) + within / half
            }
        }
    }
}

/// RMS epsilon is stored as f32 (1e-5 reads back as 9.9999997e-06);
/// snap it to the round value the original config had.
pub fn snap_eps(v: f64) -> f64 {
    if (v - 1e-5).abs() < 1e-9 {
        1e-5
    } else if (v - 1e-6).abs() < 1e-10 {
        1e-6
    } else {
        v
    }
}

fn rope_scaling(g: &Gguf, context: u64) -> Result<Value> {
    let factor = g.get_f64("llama.rope.scaling.factor")?.or(g.get_f64("llama.rope.scale_linear")?);
    let kind = g.get_str("llama.rope.scaling.type")?.or(factor.map(|_| "linear"));
    let need = || factor.ok_or_else(|| ModelError::malformed(&g.path, "llama.rope.scaling.factor is missing"));
    Ok(match kind {
        None | Some("none") => Value::Null,
        Some("linear") => json!({"type": "linear", "rope_type": "linear", "factor": need()?}),
        Some("yarn") => {
            let orig = g.get_u64("llama.rope.scaling.original_context_length")?.unwrap_or(context);
            json!({"type": "yarn", "rope_type": "yarn", "factor": need()?, "original_max_position_embeddings": orig})
        }
        Some(other) => return Err(ModelError::unsupported(&g.path, format!("llama.rope.scaling.type = {other:?} is not supported (none, linear, yarn)"))),
    })
}

/// Rope scaling given by a `rope_freqs.weight` tensor (Llama 3.1 and later).
fn rope_freqs_scaling(g: &Gguf, theta: f64, head_dim: u64) -> Result<Option<Value>> {
    let Some(t) = g.tensor("rope_freqs.weight") else { return Ok(None) };
    let at = |m: String| ModelError::malformed(&g.path, format!("tensor rope_freqs.weight: {m}"));
    let ty = t.ty.ok_or_else(|| at(format!("type {} cannot be read", t.type_description())))?;
    if t.dims != [head_dim / 2] {
        return Err(at(format!("has dims {:?}, expected [{}]", t.dims, head_dim / 2)));
    }
    let mut v = vec![0f32; t.n_elements as usize];
    dequantize(ty, &g.read_tensor(t)?, &mut v).map_err(|e| at(e.to_string()))?;
    let scaling = llama3_scaling(&v, theta, head_dim);
    scaling.map(Some).ok_or_else(|| at("its values match no Llama 3 rope scaling (factor, low/high frequency factors, original context)".into()))
}

/// `rope_theta` and `rope_scaling`, from metadata or `rope_freqs.weight`.
fn rope(g: &Gguf, context: u64, head_dim: u64) -> Result<(f64, Value)> {
    let theta = g.get_f64("llama.rope.freq_base")?.unwrap_or(10000.0);
    let from_metadata = rope_scaling(g, context)?;
    match rope_freqs_scaling(g, theta, head_dim)? {
        None => Ok((theta, from_metadata)),
        Some(s) if from_metadata.is_null() => Ok((theta, s)),
        Some(_) => Err(ModelError::malformed(&g.path, "both llama.rope.scaling.* and rope_freqs.weight describe rope scaling")),
    }
}

impl LlamaParams {
    /// Read and check the hyperparameters of a Llama GGUF.
    pub fn of(g: &Gguf) -> Result<Self> {
        match g.get_str("general.architecture")? {
            Some("llama") => {}
            Some(a) => return Err(ModelError::unsupported(&g.path, format!("architecture {a:?} is not supported (supported: {SUPPORTED_ARCHS})"))),
            None => return Err(ModelError::malformed(&g.path, "general.architecture is missing")),
        }
        if g.get_u64("llama.expert_count")?.unwrap_or(0) > 0 {
            return Err(ModelError::unsupported(&g.path, "mixture-of-experts Llama models are not supported"));
        }
        let heads = g.require_u64("llama.attention.head_count")?;
        let hidden = g.require_u64("llama.embedding_length")?;
        if heads == 0 {
            return Err(ModelError::malformed(&g.path, "llama.attention.head_count is 0"));
        }
        let kv_heads = g.get_u64("llama.attention.head_count_kv")?.unwrap_or(heads);
        let head_dim = g.get_u64("llama.attention.key_length")?.unwrap_or(hidden / heads);
        if kv_heads == 0 || heads % kv_heads != 0 || head_dim == 0 || head_dim % 2 != 0 {
            return Err(ModelError::malformed(&g.path, format!("inconsistent attention shape: {heads} heads, {kv_heads} kv heads, head size {head_dim}")));
        }
        for key in ["llama.attention.value_length", "llama.rope.dimension_count"] {
            if let Some(v) = g.get_u64(key)?.filter(|&v| v != head_dim) {
                return Err(ModelError::unsupported(&g.path, format!("{key} = {v} differs from the head size {head_dim}; not supported")));
            }
        }
        let layers = g.require_u64("llama.block_count")?;
        if layers.saturating_mul(9).saturating_add(2) > g.tensors.len() as u64 {
            return Err(ModelError::malformed(
                &g.path,
                format!("llama.block_count = {layers} but the file has only {} tensors (9 per block, plus 2)", g.tensors.len()),
            ));
        }
        let embd = g.tensor("token_embd.weight").ok_or_else(|| ModelError::malformed(&g.path, "tensor token_embd.weight is missing"))?;
        let vocab = embd.dims.get(1).copied().unwrap_or(0);
        let context = g.require_u64("llama.context_length")?;
        let eps = g
            .get_f64("llama.attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| ModelError::malformed(&g.path, "llama.attention.layer_norm_rms_epsilon is missing"))?;
        let (rope_theta, rope_scaling) = rope(g, context, head_dim)?;
        Ok(LlamaParams {
            layers,
            hidden,
            intermediate: g.require_u64("llama.feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            context,
            rms_norm_eps: snap_eps(eps),
            rope_theta,
            rope_scaling,
            vocab,
            tied: g.tensor("output.weight").is_none(),
        })
    }

    /// The HF name, ggml dims and row permutation of GGUF tensor `name`, or
    /// `None` for a name this importer does not know.
    pub fn map(&self, name: &str) -> Option<(String, Vec<u64>, Permute)> {
        let (h, f, v) = (self.hidden, self.intermediate, self.vocab);
        let (q, kv) = (self.heads.saturating_mul(self.head_dim), self.kv_heads.saturating_mul(self.head_dim));
        match name {
            "token_embd.weight" => return Some(("model.embed_tokens.weight".into(), vec![h, v], Permute::None)),
            "output_norm.weight" => return Some(("model.norm.weight".into(), vec![h], Permute::None)),
            "output.weight" => return Some(("lm_head.weight".into(), vec![h, v], Permute::None)),
            _ => {}
        }
        let rest = name.strip_prefix("blk.")?;
        let (layer, part) = rest.split_once('.')?;
        let n = layer.parse::<u64>().ok().filter(|&n| n < self.layers && layer == n.to_string())?;
        let (hf, dims, perm) = match part {
            "attn_norm.weight" => ("input_layernorm", vec![h], Permute::None),
            "ffn_norm.weight" => ("post_attention_layernorm", vec![h], Permute::None),
            "attn_q.weight" => ("self_attn.q_proj", vec![h, q], Permute::Heads(self.heads)),
            "attn_k.weight" => ("self_attn.k_proj", vec![h, kv], Permute::Heads(self.kv_heads)),
            "attn_v.weight" => ("self_attn.v_proj", vec![h, kv], Permute::None),
            "attn_output.weight" => ("self_attn.o_proj", vec![q, h], Permute::None),
            "ffn_gate.weight" => ("mlp.gate_proj", vec![h, f], Permute::None),
            "ffn_up.weight" => ("mlp.up_proj", vec![h, f], Permute::None),
            "ffn_down.weight" => ("mlp.down_proj", vec![f, h], Permute::None),
            _ => return None,
        };
        Some((format!("model.layers.{n}.{hf}.weight"), dims, perm))
    }

    /// Check one tensor's name and dims; return its HF name and permutation,
    /// or `None` for `rope_freqs.weight`, which goes into `config.json`.
    pub fn check(&self, g: &Gguf, t: &TensorInfo) -> Result<Option<(String, Permute)>> {
        if t.name == "rope_freqs.weight" {
            return Ok(None);
        }
        let Some((hf, dims, perm)) = self.map(&t.name) else {
            return Err(ModelError::unsupported(
                &g.path,
                format!(
                    "tensor {} is not a Llama tensor this importer knows (known: token_embd, output_norm, output, and blk.N.{{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}} for N < {})",
                    t.name, self.layers
                ),
            ));
        };
        if t.dims != dims {
            return Err(ModelError::malformed(
                &g.path,
                format!("tensor {} has dims {:?}, expected {dims:?} (ggml order) for this model's hyperparameters", t.name, t.dims),
            ));
        }
        Ok(Some((hf, perm)))
    }

    /// Every tensor name a complete model has.
    pub fn required(&self) -> Vec<String> {
        let mut names = vec!["token_embd.weight".to_string(), "output_norm.weight".to_string()];
        for n in 0..self.layers {
            for part in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"] {
                names.push(format!("blk.{n}.{part}.weight"));
            }
        }
        names
    }

    /// `config.json` for `LlamaForCausalLM`.
    pub fn config(&self, bos: Option<u64>, eos: Option<u64>, pad: Option<u64>) -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": self.vocab, "hidden_size": self.hidden, "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers, "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim, "hidden_act": "silu", "max_position_embeddings": self.context,
            "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta, "rope_scaling": self.rope_scaling,
            "attention_bias": false, "attention_dropout": 0.0, "mlp_bias": false, "pretraining_tp": 1,
            "initializer_range": 0.02, "tie_word_embeddings": self.tied, "use_cache": true, "torch_dtype": "float32",
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_row_inverts_llama_cpp_permutation() {
        let (rows, n) = (24u64, 3u64);
        let (per_head, half) = (rows / n, rows / n / 2);
        // `reshape(n, 2, half).swapaxes(1, 2)`: GGUF position (h, i, j) holds HF row (h, j, i).
        let mut gguf_rows = vec![0u64; rows as usize];
        for h in 0..n {
            for i in 0..half {
                for j in 0..2 {
                    gguf_rows[(h * per_head + i * 2 + j) as usize] = h * per_head + j * half + i;
                }
            }
        }
        let p = Permute::Heads(n);
        for r in 0..rows {
            assert_eq!(gguf_rows[p.source_row(r, rows) as usize], r);
        }
        assert_eq!(Permute::None.source_row(5, rows), 5);
    }

    #[test]
    fn names_map_to_hf_with_ggml_dims() {
        let p = LlamaParams {
            layers: 2,
            hidden: 8,
            intermediate: 12,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            context: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 1e4,
            rope_scaling: Value::Null,
            vocab: 10,
            tied: false,
        };
        assert_eq!(p.map("output.weight"), Some(("lm_head.weight".into(), vec![8, 10], Permute::None)));
        assert_eq!(p.map("blk.1.attn_k.weight"), Some(("model.layers.1.self_attn.k_proj.weight".into(), vec![8, 4], Permute::Heads(1))));
        assert_eq!(p.map("blk.0.ffn_down.weight"), Some(("model.layers.0.mlp.down_proj.weight".into(), vec![12, 8], Permute::None)));
        for bad in ["blk.2.attn_q.weight", "blk.01.attn_q.weight", "blk.0.attn_q.bias", "blk..attn_q.weight", "rope_freqs.weight"] {
            assert_eq!(p.map(bad), None, "{bad}");
        }
        assert_eq!(p.required().len(), 2 + 2 * 9);
    }

    #[test]
    fn eps_snaps_like_the_reference() {
        assert_eq!(snap_eps(f64::from(1e-5f32)), 1e-5);
        assert_eq!(snap_eps(f64::from(1e-6f32)), 1e-6);
        assert_eq!(snap_eps(f64::from(3e-6f32)), f64::from(3e-6f32));
    }
}
