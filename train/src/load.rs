//! Reading and writing Hugging Face model directories: `config.json`,
//! `model.safetensors` or sharded `model-0000x-of-0000y.safetensors` with
//! `model.safetensors.index.json`, and the tokenizer files beside them.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;
use crate::model::Weights;
use crate::nf4::Nf4;

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
    let map = v["weight_map"].as_object().ok_or_else(|| format!("{} has no `weight_map` object", index.display()))?;
    let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// A tensor's shape in a safetensors header (non-negative integers).
fn header_shape(t: &serde_json::Value, file: &Path, name: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("{}: tensor `{name}` has no valid shape", file.display());
    t["shape"].as_array().ok_or_else(bad)?.iter().map(|x| x.as_u64().ok_or_else(bad)).collect()
}

/// Tensor names and shapes from the safetensors headers, without loading
/// any weight (for pre-flight checks).
pub fn shapes(dir: &Path) -> Result<HashMap<String, Vec<usize>>, String> {
    let mut out = HashMap::new();
    for f in weight_files(dir)? {
        let mut file = std::fs::File::open(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let (v, _) = read_header(&mut file, &f)?;
        for (k, t) in v.as_object().into_iter().flatten().filter(|(k, _)| *k != "__metadata__") {
            let shape = header_shape(t, &f, k)?.into_iter().map(|x| x as usize).collect();
            out.insert(k.clone(), shape);
        }
    }
    Ok(out)
}

/// How to load a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Kind of floating-point tensors (integer tensors keep theirs).
    pub kind: Kind,
    /// Where the tensors go.
    pub device: Device,
    /// Quantize the decoder's linear weights to NF4 (`Some(double_quant)`).
    pub nf4: Option<bool>,
}

fn kind_of(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "F64" => Kind::Double,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

/// Whether a tensor is a decoder linear weight (what QLoRA quantizes; the
/// embeddings, norms and output head stay in the model's dtype).
pub fn is_decoder_linear(name: &str) -> bool {
    name.starts_with("model.layers.") && crate::model::names::LINEARS.iter().any(|n| name.ends_with(&format!(".{n}.weight")))
}

/// Read a checkpoint one tensor at a time, so that peak memory is the
/// loaded model plus one tensor (in particular, a QLoRA base never exists
/// in float all at once).
pub fn weights(dir: &Path, opts: LoadOptions) -> Result<Weights, String> {
    let mut out = Weights::default();
    for f in weight_files(dir)? {
        let mut file = std::fs::File::open(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let (header, data_start) = read_header(&mut file, &f)?;
        let mut entries: Vec<(String, String, Vec<i64>, u64, u64)> = Vec::new();
        for (name, t) in header.as_object().into_iter().flatten().filter(|(k, _)| *k != "__metadata__") {
            let dtype = t["dtype"].as_str().ok_or_else(|| format!("{}: tensor `{name}` has no dtype", f.display()))?.to_string();
            let shape: Vec<i64> = header_shape(t, &f, name)?.into_iter().map(|x| x as i64).collect();
            let (a, b) = (t["data_offsets"][0].as_u64(), t["data_offsets"][1].as_u64());
            let (Some(a), Some(b)) = (a, b) else { return Err(format!("{}: tensor `{name}` has no data_offsets", f.display())) };
            entries.push((name.clone(), dtype, shape, a, b));
        }
        entries.sort_by_key(|e| e.3);
        let mut buf = Vec::new();
        for (name, dtype, shape, a, b) in entries {
            let kind = kind_of(&dtype).ok_or_else(|| format!("{}: tensor `{name}` has unsupported dtype {dtype}", f.display()))?;
            let n: i64 = shape.iter().product();
            if b < a || (b - a) as i64 != n * kind.elt_size_in_bytes() as i64 {
                return Err(format!("{}: tensor `{name}` has {} bytes for shape {shape:?} of {dtype}", f.display(), b.saturating_sub(a)));
            }
            buf.resize((b - a) as usize, 0);
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(data_start + a)).map_err(|e| format!("{}: {e}", f.display()))?;
            std::io::Read::read_exact(&mut file, &mut buf).map_err(|e| format!("{}: {name}: {e}", f.display()))?;
            let t = Tensor::f_from_data_size(&buf, &shape, kind).map_err(|e| format!("{}: {name}: {e}", f.display()))?;
            if let (Some(double), true) = (opts.nf4, is_decoder_linear(&name)) {
                out.nf4.insert(name, Nf4::quantize(&t, double, opts.device)?);
                continue;
            }
            let t = if t.is_floating_point() { t.to_kind(opts.kind) } else { t };
            out.dense.insert(name, t.to_device(opts.device));
        }
    }
    Ok(out)
}

fn read_header(file: &mut std::fs::File, f: &Path) -> Result<(serde_json::Value, u64), String> {
    let mut len = [0u8; 8];
    std::io::Read::read_exact(file, &mut len).map_err(|e| format!("{}: {e}", f.display()))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        return Err(format!("{}: implausible safetensors header of {n} bytes", f.display()));
    }
    let mut header = vec![0u8; n as usize];
    std::io::Read::read_exact(file, &mut header).map_err(|e| format!("{}: {e}", f.display()))?;
    let v = serde_json::from_slice(&header).map_err(|e| format!("{}: bad header: {e}", f.display()))?;
    Ok((v, 8 + n))
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
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| format!("serialising config.json: {e}"))?;
    std::fs::write(dir.join("config.json"), text).map_err(|e| format!("{}: {e}", dir.join("config.json").display()))?;
    let owned: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.detach().to_kind(Kind::Float).to_device(Device::Cpu).contiguous())).collect();
    let refs: Vec<(&str, &Tensor)> = owned.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, dir.join("model.safetensors")).map_err(|e| format!("writing model.safetensors: {e}"))
}

/// Copy the tokenizer files (those that exist) from one directory to another.
pub fn copy_tokenizer(from: &Path, to: &Path) -> Result<(), String> {
    // Copying a file onto itself would truncate it.
    if from.canonicalize().ok() == to.canonicalize().ok() {
        return Ok(());
    }
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).map_err(|e| format!("copying {f}: {e}"))?;
        }
    }
    Ok(())
}
