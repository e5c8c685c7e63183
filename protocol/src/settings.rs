//! Settings that a pipeline writes and the trainer reads, with the schema
//! text users see in `tailor schema` and their editor.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Training method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// All weights train (float32 master weights).
    Full,
    /// Low-rank adapters; the base is frozen.
    #[default]
    Lora,
    /// Low-rank adapters over a base quantized to 4-bit NormalFloat.
    Qlora,
}

impl Method {
    /// Every method, in the order the docs list them.
    pub const ALL: [Method; 3] = [Method::Full, Method::Lora, Method::Qlora];

    /// The name a pipeline writes.
    pub fn name(self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Lora => "lora",
            Method::Qlora => "qlora",
        }
    }

    /// Whether the result is an adapter over a frozen base.
    pub fn is_adapter(self) -> bool {
        self != Method::Full
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| format!("unknown method `{s}` (full, lora, qlora)"))
    }
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Flat after warm-up.
    Constant,
    /// Linear decay to zero.
    Linear,
    /// Cosine decay to zero.
    #[default]
    Cosine,
}

/// Floating-point kind of the frozen weights and of the computation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// float32 on CPU, bfloat16 on CUDA.
    #[default]
    Auto,
    /// 32-bit floats.
    Float32,
    /// bfloat16.
    Bfloat16,
    /// float16.
    Float16,
}

/// Where to train.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// CUDA when libtorch sees a GPU, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (an error when there is none).
    Cuda,
}

/// LoRA settings, as PEFT names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraSpec {
    /// Rank.
    #[serde(default = "eight")]
    #[schemars(range(min = 1))]
    pub r: i64,
    /// Alpha; the adapter's output is scaled by alpha / r.
    #[serde(default = "sixteen")]
    pub alpha: f64,
    /// Dropout on the adapter input.
    #[serde(default)]
    pub dropout: f64,
    /// Module names (`q_proj`, `v_proj`, …) or `all-linear`.
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// rsLoRA: scale by alpha / sqrt(r).
    #[serde(default)]
    pub rslora: bool,
}

fn eight() -> i64 {
    8
}
fn sixteen() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl Default for LoraSpec {
    fn default() -> Self {
        LoraSpec { r: 8, alpha: 16.0, dropout: 0.0, targets: default_targets(), rslora: false }
    }
}

impl LoraSpec {
    /// The scale applied to the adapter's output.
    pub fn scale(&self) -> f64 {
        if self.rslora { self.alpha / (self.r as f64).sqrt() } else { self.alpha / self.r as f64 }
    }

    /// Whether a module (`model.layers.0.self_attn.q_proj`) is targeted.
    pub fn targets(&self, module: &str) -> bool {
        let leaf = module.rsplit('.').next().unwrap_or(module);
        self.targets.iter().any(|t| t == "all-linear" || t == leaf || t == module)
    }
}

/// Decoding settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decoding {
    /// Most tokens generated per reply.
    #[serde(default = "default_new_tokens")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_new_tokens: usize,
    /// 0 = greedy; higher samples more freely.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 5.0))]
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens with this much probability.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: f64,
    /// Seed of the sampling.
    #[serde(default)]
    pub seed: u64,
    /// Stop a reply at any of these strings (they are cut off).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Prompts decoded together.
    #[serde(default = "eight_usize")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
}

fn default_new_tokens() -> usize {
    128
}
fn one() -> f64 {
    1.0
}
fn eight_usize() -> usize {
    8
}

impl Default for Decoding {
    fn default() -> Self {
        Decoding { max_new_tokens: 128, temperature: 0.0, top_p: 1.0, seed: 0, stop: vec![], batch_size: 8 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for m in Method::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(m.name()));
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert!("adapter".parse::<Method>().unwrap_err().contains("full, lora, qlora"));
    }

    #[test]
    fn lora_scale_and_targets() {
        let l = LoraSpec { r: 4, alpha: 8.0, rslora: false, ..LoraSpec::default() };
        assert_eq!(l.scale(), 2.0);
        assert_eq!(LoraSpec { rslora: true, ..l.clone() }.scale(), 4.0);
        assert!(l.targets("model.layers.0.self_attn.q_proj") && !l.targets("model.layers.0.mlp.up_proj"));
        let all = LoraSpec { targets: vec!["all-linear".into()], ..l };
        assert!(all.targets("model.layers.3.mlp.down_proj"));
    }
}
