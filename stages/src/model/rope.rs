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

use serde_json::{Value, json};

/// The divisors llama.cpp's converter writes for these parameters.
pub fn llama3_factors(theta: f64, head_dim: u64, factor: f64, low: f64, high: f64, original: f64) -> Vec<f64> {
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
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
