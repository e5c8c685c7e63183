//! Llama 3.1-style rope scaling, recovered from `rope_freqs.weight`.
//!
//! Hugging Face describes it with four numbers (`rope_type: "llama3"`,
//! `factor`, `low_freq_factor`, `high_freq_factor`,
//! `original_max_position_embeddings`). llama.cpp's converter instead
//! stores the per-frequency divisors they produce, as the F32 tensor
//! `rope_freqs.weight` (`head_dim / 2` values). The divisors of the
//! lowest frequencies equal `factor`; the other three parameters are found
//! by trying the values every released model uses (Llama 3.1: 8, 1, 4, 8192;
//! Llama 3.2: 32, 1, 4, 8192) and a small grid around them, and accepting
//! only a set that reproduces every divisor. A tensor nothing reproduces is
//! an error, never a guess.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `rope_scaling` as a Hugging Face `config.json` writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RopeScaling {
    /// `llama3`, `linear`, or `default`.
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Scale factor.
    #[serde(default = "one")]
    pub factor: f64,
    /// llama3: low-frequency factor.
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    /// llama3: high-frequency factor.
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    /// llama3: the context length the base model was trained on.
    #[serde(default = "ctx8k")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn ctx8k() -> usize {
    8192
}

/// The rotary embedding a model uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rope {
    /// Plain RoPE.
    Default,
    /// Every frequency divided by `factor` (position interpolation).
    Linear {
        /// Divisor.
        factor: f64,
    },
    /// Llama 3.1: high frequencies kept, low ones divided by `factor`,
    /// a smooth blend between.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original / low` are divided by `factor`.
        low: f64,
        /// Wavelengths below `original / high` are kept.
        high: f64,
        /// The context length the base model was trained on.
        original: f64,
    },
}

impl RopeScaling {
    /// The rotary embedding this names; an error for the kinds Tailor does
    /// not implement (a model would run, silently wrong).
    pub fn rope(&self) -> crate::error::Result<Rope> {
        match self.rope_type.as_str() {
            "default" => Ok(Rope::Default),
            "linear" => Ok(Rope::Linear { factor: self.factor }),
            "llama3" => Ok(Rope::Llama3 {
                factor: self.factor,
                low: self.low_freq_factor,
                high: self.high_freq_factor,
                original: self.original_max_position_embeddings as f64,
            }),
            other => Err(crate::ModelError::Invalid(format!("rope_scaling type `{other}` is not supported (default, linear, llama3)"))),
        }
    }
}

impl Rope {
    /// How much a frequency is multiplied by (Llama 3: by its wavelength).
    pub fn scale(self, freq: f64) -> f64 {
        match self {
            Rope::Default => 1.0,
            Rope::Linear { factor } => 1.0 / factor,
            Rope::Llama3 { factor, low, high, original } => {
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < original / high {
                    1.0
                } else if wavelen > original / low {
                    1.0 / factor
                } else {
                    let smooth = (original / wavelen - low) / (high - low);
                    (1.0 - smooth) / factor + smooth
                }
            }
        }
    }

    /// Inverse frequencies of a head of `head_dim` with base `theta`.
    pub fn inv_freq(self, theta: f64, head_dim: usize) -> Vec<f64> {
        (0..head_dim / 2)
            .map(|i| {
                let f = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
                f * self.scale(f)
            })
            .collect()
    }
}

/// The divisors llama.cpp's converter writes for these parameters.
pub fn llama3_factors(theta: f64, head_dim: u64, factor: f64, low: f64, high: f64, original: f64) -> Vec<f64> {
    let rope = Rope::Llama3 { factor, low, high, original };
    (0..head_dim / 2).map(|i| 1.0 / rope.scale(1.0 / theta.powf((2 * i) as f64 / head_dim as f64))).collect()
}

/// HF `rope_scaling` for the divisors in `rope_freqs`, or `None` when no
/// Llama 3 parameter set reproduces them (relative error under 1e-4).
pub fn llama3_scaling(rope_freqs: &[f32], theta: f64, head_dim: u64) -> Option<Value> {
    if rope_freqs.len() as u64 != head_dim / 2 || rope_freqs.is_empty() {
        return None;
    }
    let factor = rope_freqs.iter().copied().fold(f32::MIN, f32::max) as f64;
    let close = |want: &[f64]| want.iter().zip(rope_freqs).all(|(w, &g)| ((g as f64) - w).abs() <= 1e-4 * w.abs().max(1.0));
    for original in [8192.0, 4096.0, 16384.0, 32768.0, 2048.0] {
        for (low, high) in [(1.0, 4.0), (1.0, 2.0), (1.0, 8.0), (2.0, 4.0), (2.0, 8.0)] {
            if close(&llama3_factors(theta, head_dim, factor, low, high, original)) {
                return Some(json!({
                    "rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                    "high_freq_factor": high, "original_max_position_embeddings": original as u64,
                }));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_kinds() {
        let base = Rope::Default.inv_freq(10000.0, 8);
        assert_eq!(base.len(), 4);
        let lin = Rope::Linear { factor: 2.0 }.inv_freq(10000.0, 8);
        assert!(base.iter().zip(&lin).all(|(b, l)| (b / 2.0 - l).abs() < 1e-15));
        let l3 = Rope::Llama3 { factor: 8.0, low: 1.0, high: 4.0, original: 8192.0 };
        // Highest frequency kept; lowest divided by the factor.
        assert_eq!(l3.scale(1.0), 1.0);
        assert_eq!(l3.scale(1e-6), 1.0 / 8.0);
        let raw =
            |t: &str| RopeScaling { rope_type: t.into(), factor: 2.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };
        assert_eq!(raw("linear").rope().unwrap(), Rope::Linear { factor: 2.0 });
        assert!(raw("yarn").rope().unwrap_err().to_string().contains("`yarn` is not supported"));
    }

    #[test]
    fn recovers_its_own_parameters() {
        let f: Vec<f32> = llama3_factors(500000.0, 64, 32.0, 1.0, 4.0, 8192.0).iter().map(|&v| v as f32).collect();
        let s = llama3_scaling(&f, 500000.0, 64).unwrap();
        assert_eq!((s["factor"].as_f64(), s["original_max_position_embeddings"].as_u64()), (Some(32.0), Some(8192)));
        let mut bent = f.clone();
        bent[20] *= 1.01;
        assert_eq!(llama3_scaling(&bent, 500000.0, 64), None);
        assert_eq!(llama3_scaling(&f[..10], 500000.0, 64), None);
    }
}
