//! `import`: a GGUF file → a Hugging Face `LlamaForCausalLM` directory
//! (`config.json`, float32 `model.safetensors`, `tokenizer.json`,
//! `tokenizer_config.json`, `special_tokens_map.json`,
//! `generation_config.json`).
//!
//! Everything that can be checked is checked before the long part starts:
//! architecture, hyperparameters, tokenizer (converted and loaded), every
//! tensor's name, type and dims, and that no required tensor is missing.
//! Then tensors stream one at a time: read the quantized bytes by seeking,
//! dequantize a row at a time (in the HF row order, which undoes the Q/K
//! permutation for free) and append to the safetensors file, whose header
//! was written first. Peak memory is about one quantized tensor plus one
//! row, whatever the model size. The small JSON files are written last, so
//! a directory with a `config.json` is a complete import.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use super::ggml::{GgmlType, dequantize, describe_type, supported_names};
use super::gguf::{Gguf, TensorInfo};
use super::gguf_tokenizer::{self, SpecialIds};
use super::llama::{LlamaParams, Permute};
use super::safetensors_out::{Planned, SafetensorsWriter};
use crate::error::{ModelError, Result};

/// What an import produced.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// `general.name` of the GGUF, if set.
    pub name: Option<String>,
    /// Number of parameters written (tied embeddings counted once).
    pub parameters: u64,
    /// Transformer blocks.
    pub layers: u64,
    /// Hidden size.
    pub hidden: u64,
    /// Attention heads.
    pub heads: u64,
    /// Key/value heads.
    pub kv_heads: u64,
    /// Embedding rows.
    pub vocab: u64,
    /// Whether the LM head is the embedding.
    pub tied: bool,
    /// How many GGUF tensors had each ggml type (`{"Q4_1": 210, …}`).
    pub tensor_types: BTreeMap<String, usize>,
}

/// One tensor to convert.
struct Job<'a> {
    info: &'a TensorInfo,
    ty: GgmlType,
    hf: String,
    perm: Permute,
}

/// The `config.json` the GGUF at `gguf` imports to (reads only metadata).
pub fn config_json(gguf: &Path) -> Result<serde_json::Value> {
    let g = Gguf::open(gguf)?;
    let params = LlamaParams::of(&g)?;
    let ids = SpecialIds::of(&g)?;
    Ok(params.config(ids.bos, ids.eos, ids.pad))
}

/// The tokenizer files the GGUF at `gguf` imports to (reads only metadata);
/// `tokenizer_json` is byte-identical to the imported `tokenizer.json`.
pub fn tokenizer_files(gguf: &Path) -> Result<gguf_tokenizer::HfTokenizer> {
    let g = Gguf::open(gguf)?;
    let params = LlamaParams::of(&g)?;
    gguf_tokenizer::convert(&g, params.context)
}

/// Import the GGUF at `gguf` into the directory `out` (created if needed;
/// files there with the same names are replaced).
pub fn import(gguf: &Path, out: &Path) -> Result<ImportSummary> {
    let g = Gguf::open(gguf)?;
    let params = LlamaParams::of(&g)?;
    let jobs = plan(&g, &params)?;
    let tok = gguf_tokenizer::convert(&g, params.context)?;
    if tok.tokenizer.get_vocab_size(false) as u64 > params.vocab {
        return Err(ModelError::malformed(
            gguf,
            format!("the tokenizer has {} tokens but token_embd.weight only {} rows", tok.tokenizer.get_vocab_size(false), params.vocab),
        ));
    }
    std::fs::create_dir_all(out).map_err(ModelError::io(out))?;
    let parameters = write_weights(&g, &jobs, &out.join("model.safetensors"))?;
    let ids = SpecialIds::of(&g)?;
    write_file(&out.join("tokenizer.json"), tok.tokenizer_json.as_bytes())?;
    write_json(&out.join("tokenizer_config.json"), &tok.tokenizer_config)?;
    write_json(&out.join("special_tokens_map.json"), &tok.special_tokens_map)?;
    write_json(
        &out.join("generation_config.json"),
        &json!({"_from_model_config": true, "bos_token_id": ids.bos, "eos_token_id": ids.eos, "pad_token_id": ids.pad}),
    )?;
    write_json(&out.join("config.json"), &params.config(ids.bos, ids.eos, ids.pad))?;
    let mut tensor_types = BTreeMap::new();
    for t in &g.tensors {
        let name = t.ty.map(|ty| ty.name().to_string()).unwrap_or_else(|| describe_type(t.type_id));
        *tensor_types.entry(name).or_insert(0) += 1;
    }
    Ok(ImportSummary {
        name: g.get_str("general.name")?.map(str::to_string),
        parameters,
        layers: params.layers,
        hidden: params.hidden,
        heads: params.heads,
        kv_heads: params.kv_heads,
        vocab: params.vocab,
        tied: params.tied,
        tensor_types,
    })
}

/// Check every tensor and list the conversions, in file order.
fn plan<'a>(g: &'a Gguf, params: &LlamaParams) -> Result<Vec<Job<'a>>> {
    let mut jobs = Vec::with_capacity(g.tensors.len());
    for info in &g.tensors {
        let Some((hf, perm)) = params.check(g, info)? else { continue };
        let ty = info.ty.ok_or_else(|| {
            ModelError::unsupported(
                &g.path,
                format!("tensor {} has type {}, which this importer cannot dequantize (supported: {})", info.name, info.type_description(), supported_names()),
            )
        })?;
        jobs.push(Job { info, ty, hf, perm });
    }
    if let Some(missing) = params.required().into_iter().find(|n| g.tensor(n).is_none()) {
        return Err(ModelError::malformed(&g.path, format!("tensor {missing} is missing")));
    }
    Ok(jobs)
}

/// Stream every tensor into `path`; returns the number of values written.
fn write_weights(g: &Gguf, jobs: &[Job], path: &Path) -> Result<u64> {
    let planned = jobs.iter().map(|j| Planned { name: j.hf.clone(), shape: j.info.shape() }).collect();
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut w = SafetensorsWriter::create(path, planned, &meta)?;
    let mut total = 0u64;
    for job in jobs {
        let data = g.read_tensor(job.info)?;
        write_rows(job, &data, &mut w).map_err(|e| match e {
            ModelError::Invalid(m) => ModelError::malformed(&g.path, format!("tensor {}: {m}", job.info.name)),
            other => other,
        })?;
        total += job.info.n_elements;
        tracing::debug!(tensor = %job.info.name, ty = job.ty.name(), "converted");
    }
    w.finish()?;
    Ok(total)
}

/// Dequantize `data` row by row, in HF row order, into the writer.
fn write_rows(job: &Job, data: &[u8], w: &mut SafetensorsWriter) -> Result<()> {
    let row_len = job.info.dims.first().copied().unwrap_or(0);
    if row_len == 0 {
        return Ok(());
    }
    let rows = job.info.n_elements / row_len;
    let row_bytes = job.ty.bytes_for(row_len).ok_or_else(|| ModelError::Invalid("row is not a whole number of blocks".into()))? as usize;
    let mut row = vec![0f32; row_len as usize];
    for r in 0..rows {
        let src = job.perm.source_row(r, rows) as usize;
        let bytes = src
            .checked_mul(row_bytes)
            .and_then(|s| data.get(s..s + row_bytes))
            .ok_or_else(|| ModelError::Invalid("data is shorter than its dims say".into()))?;
        dequantize(job.ty, bytes, &mut row)?;
        w.write(&row)?;
    }
    Ok(())
}

/// Write `bytes` to `path` through a temporary file and a rename.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(ModelError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ModelError::io(path))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| ModelError::Invalid(format!("serialising {}: {e}", path.display())))?;
    write_file(path, text.as_bytes())
}
