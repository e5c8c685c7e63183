//! Reading and writing Hugging Face model directories: `config.json`,
//! `model.safetensors` or sharded `model-0000x-of-0000y.safetensors` with
//! `model.safetensors.index.json`, and the tokenizer files beside them.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;

/// Read `config.json`.
pub fn config(dir: &Path) -> Result<LlamaConfig, String> {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut cfg: LlamaConfig = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    cfg.normalize()?;
    Ok(cfg)
}

/// The safetensors files of a model directory.
pub fn weight_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| format!("{} has neither model.safetensors nor model.safetensors.index.json", dir.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let mut files: Vec<String> = v["weight_map"].as_object().map(|m| m.values().filter_map(|f| f.as_str().map(str::to_string)).collect()).unwrap_or_default();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Tensor names and shapes from the safetensors headers, without loading
/// any weight (for pre-flight checks).
pub fn shapes(dir: &Path) -> Result<HashMap<String, Vec<usize>>, String> {
    let mut out = HashMap::new();
    for f in weight_files(dir)? {
        let file = std::fs::File::open(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut len = [0u8; 8];
        std::io::Read::read_exact(&mut &file, &mut len).map_err(|e| format!("{}: {e}", f.display()))?;
        let n = u64::from_le_bytes(len) as usize;
        if n > 100 << 20 {
            return Err(format!("{}: implausible safetensors header of {n} bytes", f.display()));
        }
        let mut header = vec![0u8; n];
        std::io::Read::read_exact(&mut &file, &mut header).map_err(|e| format!("{}: {e}", f.display()))?;
        let v: serde_json::Value = serde_json::from_slice(&header).map_err(|e| format!("{}: bad header: {e}", f.display()))?;
        for (k, t) in v.as_object().into_iter().flatten().filter(|(k, _)| *k != "__metadata__") {
            let shape = t["shape"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as usize)).collect()).unwrap_or_default();
            out.insert(k.clone(), shape);
        }
    }
    Ok(out)
}

/// Load every tensor, converted to `kind`, on `device`.
pub fn weights(dir: &Path, kind: Kind, device: Device) -> Result<HashMap<String, Tensor>, String> {
    let mut out = HashMap::new();
    for f in weight_files(dir)? {
        for (name, t) in Tensor::read_safetensors(&f).map_err(|e| format!("{}: {e}", f.display()))? {
            out.insert(name, t.to_kind(kind).to_device(device));
        }
    }
    Ok(out)
}

/// Write a model directory: `config.json` and `model.safetensors` (float32).
pub fn save(dir: &Path, cfg: &LlamaConfig, tensors: &[(String, Tensor)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut cfg = cfg.clone();
    cfg.torch_dtype = Some("float32".into());
    if cfg.architectures.is_empty() {
        cfg.architectures = vec!["LlamaForCausalLM".into()];
        cfg.model_type = Some("llama".into());
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap_or_default()).map_err(|e| e.to_string())?;
    let owned: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.detach().to_kind(Kind::Float).to_device(Device::Cpu).contiguous())).collect();
    let refs: Vec<(&str, &Tensor)> = owned.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, dir.join("model.safetensors")).map_err(|e| format!("writing model.safetensors: {e}"))
}

/// Copy the tokenizer files (those that exist) from one directory to another.
pub fn copy_tokenizer(from: &Path, to: &Path) -> Result<(), String> {
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).map_err(|e| format!("copying {f}: {e}"))?;
        }
    }
    Ok(())
}
