//! Adapters in PEFT's layout: `adapter_config.json` and
//! `adapter_model.safetensors` with names like
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, so
//! `peft.PeftModel.from_pretrained`, vLLM and transformers load them.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::linear::Lora;
use crate::model::Llama;

pub use tailor_protocol::settings::LoraSpec;

/// Attach fresh adapters (A Kaiming-uniform from libtorch's generator, B
/// zero) to targeted layers. Returns the adapter variables by their PEFT
/// name (`base_model.model.….lora_A.weight`), in module order.
pub fn attach(model: &mut Llama, spec: &LoraSpec) -> Vec<(String, Tensor)> {
    let mut params = Vec::new();
    for (name, lin) in model.linears_mut() {
        if !spec.targets(&name) {
            continue;
        }
        let (out, inp) = (lin.out_features(), lin.in_features());
        let device = match &lin.weight {
            crate::linear::Weight::Dense(w) => w.device(),
            crate::linear::Weight::Nf4(q) => q.packed.device(),
        };
        // Kaiming-uniform with a = sqrt(5), as torch.nn.Linear and PEFT do:
        // bound = 1 / sqrt(fan_in).
        let bound = 1.0 / (inp as f64).sqrt();
        let a = Tensor::empty([spec.r, inp], (Kind::Float, device)).uniform_(-bound, bound).set_requires_grad(true);
        let b = Tensor::zeros([out, spec.r], (Kind::Float, device)).set_requires_grad(true);
        params.push((format!("base_model.model.{name}.lora_A.weight"), a.shallow_clone()));
        params.push((format!("base_model.model.{name}.lora_B.weight"), b.shallow_clone()));
        lin.lora = Some(Lora { a, b, scale: spec.scale(), dropout: spec.dropout });
    }
    params
}

/// Write `adapter_config.json` + `adapter_model.safetensors`.
pub fn save(model: &mut Llama, spec: &LoraSpec, base: &str, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut modules = std::collections::BTreeSet::new();
    for (name, lin) in model.linears_mut() {
        if let Some(l) = &lin.lora {
            modules.insert(name.rsplit('.').next().unwrap_or(&name).to_string());
            tensors.push((format!("base_model.model.{name}.lora_A.weight"), l.a.detach().to_kind(Kind::Float).contiguous()));
            tensors.push((format!("base_model.model.{name}.lora_B.weight"), l.b.detach().to_kind(Kind::Float).contiguous()));
        }
    }
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, dir.join("adapter_model.safetensors")).map_err(|e| format!("writing adapter_model.safetensors: {e}"))?;
    // Keys every PEFT version since 0.6 accepts.
    let cfg = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": spec.r,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": modules.into_iter().collect::<Vec<_>>(),
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": spec.rslora,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "revision": null,
    });
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| format!("serialising adapter_config.json: {e}"))?;
    std::fs::write(dir.join("adapter_config.json"), text).map_err(|e| format!("{}: {e}", dir.join("adapter_config.json").display()))
}

/// Read a PEFT adapter directory: its settings and tensors by name.
pub fn read(dir: &Path) -> Result<(LoraSpec, HashMap<String, Tensor>), String> {
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).map_err(|e| format!("{}: {e}", dir.display()))?)
        .map_err(|e| format!("{}/adapter_config.json: {e}", dir.display()))?;
    let r = cfg["r"].as_i64().ok_or("adapter_config.json has no `r`")?;
    let alpha = cfg["lora_alpha"].as_f64().unwrap_or(r as f64);
    let spec = LoraSpec {
        r,
        alpha,
        dropout: cfg["lora_dropout"].as_f64().unwrap_or(0.0),
        targets: match &cfg["target_modules"] {
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            // PEFT writes a single string (a regex or `all-linear`) as is.
            serde_json::Value::String(s) => vec![s.clone()],
            _ => return Err(format!("{}/adapter_config.json has no `target_modules`", dir.display())),
        },
        rslora: cfg["use_rslora"].as_bool().unwrap_or(false),
    };
    let tensors = Tensor::read_safetensors(dir.join("adapter_model.safetensors"))
        .map_err(|e| format!("{}/adapter_model.safetensors: {e}", dir.display()))?
        .into_iter()
        .collect();
    Ok((spec, tensors))
}

/// Load a PEFT adapter directory onto a model (frozen, for evaluation).
pub fn load(model: &mut Llama, dir: &Path, device: Device) -> Result<LoraSpec, String> {
    let (spec, tensors) = read(dir)?;
    let r = spec.r;
    let mut used = 0;
    for (name, lin) in model.linears_mut() {
        let a = tensors.get(&format!("base_model.model.{name}.lora_A.weight"));
        let b = tensors.get(&format!("base_model.model.{name}.lora_B.weight"));
        if let (Some(a), Some(b)) = (a, b) {
            if a.size() != [r, lin.in_features()] || b.size() != [lin.out_features(), r] {
                return Err(format!(
                    "adapter for {name} has shapes {:?}/{:?}, expected [{r}, {}]/[{}, {r}]",
                    a.size(),
                    b.size(),
                    lin.in_features(),
                    lin.out_features()
                ));
            }
            lin.lora = Some(Lora { a: a.to_device(device), b: b.to_device(device), scale: spec.scale(), dropout: 0.0 });
            used += 2;
        }
    }
    if used != tensors.len() {
        return Err(format!("{} of the adapter's {} tensors match no module of the model", tensors.len() - used, tensors.len()));
    }
    Ok(spec)
}
