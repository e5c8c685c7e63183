//! Tiny random Llama models, so tests and the quickstart need no download:
//! seeded normal(0, 0.02) weights, unit norms, the given tokenizer.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;
use crate::model::{Block, names};

/// Shape of a tiny model.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct TinySpec {
    /// Residual width.
    pub hidden: usize,
    /// Layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// MLP width.
    pub ffn: usize,
    /// Tie the output head to the embeddings.
    pub tied: bool,
    /// Seed.
    pub seed: i64,
}

/// Make a model directory for `tokenizer_dir`'s vocabulary.
pub fn make(spec: &TinySpec, tokenizer_dir: &Path, out: &Path) -> Result<LlamaConfig, String> {
    let tok = tokenizers::Tokenizer::from_file(tokenizer_dir.join("tokenizer.json")).map_err(|e| format!("tokenizer.json: {e}"))?;
    let vocab = tok.get_vocab_size(true);
    let cfg = LlamaConfig {
        hidden_size: spec.hidden,
        intermediate_size: spec.ffn,
        num_hidden_layers: spec.layers,
        num_attention_heads: spec.heads,
        num_key_value_heads: Some(spec.kv_heads),
        head_dim: None,
        vocab_size: vocab,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        rope_parameters: None,
        max_position_embeddings: Some(2048),
        tie_word_embeddings: spec.tied,
        attention_bias: false,
        bos_token_id: None,
        eos_token_id: tok.token_to_id("<|im_end|>").map(serde_json::Value::from),
        architectures: vec!["LlamaForCausalLM".into()],
        model_type: Some("llama".into()),
        torch_dtype: Some("float32".into()),
    };
    cfg.check()?;
    tch::manual_seed(spec.seed);
    let opts = (Kind::Float, Device::Cpu);
    let normal = |r: i64, c: i64| Tensor::randn([r, c], opts) * 0.02;
    let h = cfg.hidden_size as i64;
    let mut t: Vec<(String, Tensor)> = vec![(names::EMBED.into(), normal(vocab as i64, h))];
    // Drawn in a fixed order (attention, then the MLP), so a seed always
    // makes the same model.
    let shapes = Block::linear_shapes(&cfg);
    for l in 0..cfg.num_hidden_layers {
        let p = names::layer(l);
        t.push((format!("{p}.{}", names::INPUT_NORM), Tensor::ones([h], opts)));
        for (i, (name, (out, inp, _))) in names::LINEARS.iter().zip(shapes).enumerate() {
            if i == 4 {
                t.push((format!("{p}.{}", names::POST_NORM), Tensor::ones([h], opts)));
            }
            t.push((format!("{p}.{name}.weight"), normal(out as i64, inp as i64)));
        }
    }
    t.push((names::NORM.into(), Tensor::ones([h], opts)));
    if !spec.tied {
        t.push((names::LM_HEAD.into(), normal(vocab as i64, h)));
    }
    crate::load::save(out, &cfg, &t)?;
    crate::load::copy_tokenizer(tokenizer_dir, out)?;
    Ok(cfg)
}
