//! The Llama-family `config.json` (Llama 2/3, Mistral, Qwen2, SmolLM), as
//! Hugging Face writes it, and the clean internal view the model uses.

use serde::{Deserialize, Serialize};

pub use tailor_model::rope::RopeScaling;

fn theta() -> f64 {
    10000.0
}
fn eps() -> f64 {
    1e-6
}

/// `config.json` of a Llama-family causal LM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LlamaConfig {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to hidden / heads.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    #[serde(default = "eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "theta")]
    pub rope_theta: f64,
    /// RoPE scaling, if any.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers 5 writes `rope_theta` and the scaling here instead.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Longest position.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Whether `lm_head` shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Qwen2 puts biases on q/k/v.
    #[serde(default)]
    pub attention_bias: bool,
    /// BOS id.
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    /// EOS id(s).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// `LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`, …
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `llama`, `mistral`, `qwen2`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Stored dtype.
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

impl LlamaConfig {
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Fold transformers 5's `rope_parameters` into `rope_theta` and
    /// `rope_scaling`, so both config generations read the same.
    pub fn normalize(&mut self) -> Result<(), String> {
        if let Some(p) = self.rope_parameters.take() {
            if let Some(t) = p.get("rope_theta").and_then(serde_json::Value::as_f64) {
                self.rope_theta = t;
            }
            let kind = p.get("rope_type").and_then(serde_json::Value::as_str).unwrap_or("default");
            if kind != "default" && self.rope_scaling.is_none() {
                self.rope_scaling = Some(serde_json::from_value(p).map_err(|e| format!("rope_parameters: {e}"))?);
            }
        }
        Ok(())
    }

    /// Check the architecture is one this model implements.
    pub fn check(&self) -> Result<(), String> {
        self.rope()?;
        let ok = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];
        if let Some(a) = self.architectures.first()
            && !ok.contains(&a.as_str())
        {
            return Err(format!("architecture `{a}` is not supported (supported: {})", ok.join(", ")));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!("{} attention heads are not a multiple of {} key/value heads", self.num_attention_heads, self.kv_heads()));
        }
        Ok(())
    }

    /// The rotary embedding (`rope_scaling`, or plain RoPE).
    pub fn rope(&self) -> Result<tailor_model::rope::Rope, String> {
        self.rope_scaling.as_ref().map_or(Ok(tailor_model::rope::Rope::Default), |s| s.rope().map_err(String::from))
    }

    /// Parameter count (weights only).
    pub fn parameters(&self) -> u64 {
        let (h, i, l, v) = (self.hidden_size as u64, self.intermediate_size as u64, self.num_hidden_layers as u64, self.vocab_size as u64);
        let d = self.head_dim() as u64;
        let q = h * self.num_attention_heads as u64 * d;
        let kv = 2 * h * self.kv_heads() as u64 * d;
        let o = self.num_attention_heads as u64 * d * h;
        let per_layer = q + kv + o + 3 * h * i + 2 * h;
        let emb = v * h;
        emb + if self.tie_word_embeddings { 0 } else { emb } + l * per_layer + h
    }
}
