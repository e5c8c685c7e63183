//! 4-bit NormalFloat (NF4) weights, as QLoRA defines them and bitsandbytes
//! stores them: the weight is cut into blocks of 64 consecutive values, each
//! block is scaled by its largest magnitude (absmax) into [-1, 1], and each
//! value becomes the index of the nearest of 16 levels spaced as quantiles of
//! a normal distribution — two indices per byte, the first in the high
//! nibble. With double quantization the absmax values themselves are stored
//! in 8 bits: their mean is subtracted, and they are quantized in blocks of
//! 256 against the signed "dynamic" 8-bit code (exponent + fraction), which
//! brings the cost of the scales from 0.5 to about 0.127 bits per weight.
//!
//! Quantization runs once, on the CPU, when the base model loads; the
//! forward pass dequantizes on the fly inside [`crate::native::nf4_linear`],
//! so no float copy of a quantized weight outlives one matrix product.

use tch::{Device, Kind, Tensor};

use crate::native;

/// The 16 NF4 levels (QLoRA, appendix E; bitsandbytes' table).
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// Values per NF4 block.
pub const BLOCK: usize = 64;
/// Absmax values per block of the double quantization.
pub const BLOCK2: usize = 256;

/// The signed dynamic 8-bit code (Dettmers, "8-bit approximations"): for
/// each decimal exponent 10^-6 … 10^0, 2^i evenly spaced fractions in
/// [0.1, 1] (midpoints of a linspace), both signs, plus 0 and 1; sorted.
pub fn dynamic_code() -> [f32; 256] {
    let mut v: Vec<f32> = Vec::with_capacity(256);
    for i in 0..7i32 {
        let items = (1usize << i) + 1;
        // float32 linspace, filled from both ends with fused multiply-adds
        // as torch's kernel does (so the table is bit-identical to theirs).
        let step = (1.0f32 - 0.1) / (items - 1) as f32;
        let bounds: Vec<f32> =
            (0..items).map(|k| if k < items / 2 { step.mul_add(k as f32, 0.1) } else { (-step).mul_add((items - 1 - k) as f32, 1.0) }).collect();
        let scale = 10f64.powi(i - 6) as f32;
        for w in bounds.windows(2) {
            let mean = (w[0] + w[1]) / 2.0;
            v.push(scale * mean);
            v.push(-scale * mean);
        }
    }
    v.push(0.0);
    v.push(1.0);
    v.sort_by(f32::total_cmp);
    let mut out = [0f32; 256];
    out.copy_from_slice(&v[..256]);
    out
}

/// Index of the nearest value in a sorted table, with the intervals split at
/// the float32 midpoints `(lo + hi) / 2`: a value exactly on a midpoint takes
/// the lower level, as bitsandbytes does. (Comparing the two distances in
/// float32 instead rounds some midpoints up.)
fn nearest(table: &[f32], x: f32) -> u8 {
    let mut i = 0;
    while i + 1 < table.len() && x > (table[i] + table[i + 1]) / 2.0 {
        i += 1;
    }
    i as u8
}

/// Block absmax values, as stored.
#[derive(Debug)]
pub enum Absmax {
    /// One float32 per block.
    F32(Tensor),
    /// Double-quantized: 8-bit codes, a float32 scale per 256 codes, and the
    /// mean that was subtracted.
    Double {
        /// `[blocks]` u8 indices into `code`.
        q: Tensor,
        /// The dynamic 8-bit code, `[256]`.
        code: Tensor,
        /// `[ceil(blocks / 256)]` float32.
        scale: Tensor,
        /// Mean of the absmax values.
        offset: f64,
    },
}

/// A weight matrix held in NF4.
#[derive(Debug)]
pub struct Nf4 {
    /// Packed indices, `[ceil(rows·cols / 2)]` u8.
    pub packed: Tensor,
    /// Block scales.
    pub absmax: Absmax,
    /// The 16 levels, float32.
    pub code: Tensor,
    /// Rows (output features).
    pub rows: i64,
    /// Columns (input features).
    pub cols: i64,
}

/// Quantize float values into packed NF4 indices and block absmax values.
pub fn quantize_values(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut packed = vec![0u8; x.len().div_ceil(2)];
    let mut absmax = Vec::with_capacity(x.len().div_ceil(BLOCK));
    for (b, block) in x.chunks(BLOCK).enumerate() {
        let m = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        absmax.push(m);
        let inv = if m > 0.0 { 1.0 / m } else { 0.0 };
        for (j, &v) in block.iter().enumerate() {
            let q = nearest(&NF4_CODE, v * inv);
            let i = b * BLOCK + j;
            packed[i / 2] |= if i.is_multiple_of(2) { q << 4 } else { q };
        }
    }
    // An odd count leaves the last byte half empty: bitsandbytes pads with a zero value,
    // whose level (7) fills the low nibble.
    if x.len() % 2 == 1
        && let Some(last) = packed.last_mut()
    {
        *last |= nearest(&NF4_CODE, 0.0);
    }
    (packed, absmax)
}

/// Double quantization of absmax values: (codes, scales per 256, offset).
pub fn quantize_absmax(absmax: &[f32]) -> (Vec<u8>, Vec<f32>, f32) {
    let code = dynamic_code();
    let offset = (absmax.iter().map(|&a| f64::from(a)).sum::<f64>() / absmax.len().max(1) as f64) as f32;
    let mut q = Vec::with_capacity(absmax.len());
    let mut scales = Vec::with_capacity(absmax.len().div_ceil(BLOCK2));
    for block in absmax.chunks(BLOCK2) {
        let s = block.iter().fold(0f32, |a, v| a.max((v - offset).abs()));
        scales.push(s);
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        q.extend(block.iter().map(|&v| nearest(&code, (v - offset) * inv)));
    }
    (q, scales, offset)
}

impl Nf4 {
    /// Quantize a `[rows, cols]` weight (any float kind, any device); the
    /// result lives on `device`.
    pub fn quantize(w: &Tensor, double: bool, device: Device) -> Result<Self, String> {
        let size = w.size();
        if size.len() != 2 {
            return Err(format!("NF4 quantizes matrices; got shape {size:?}"));
        }
        let flat = w.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view([-1]);
        let values: Vec<f32> = Vec::<f32>::try_from(&flat).map_err(|e| e.to_string())?;
        let (packed, absmax) = quantize_values(&values);
        let absmax = if double {
            let (q, scale, offset) = quantize_absmax(&absmax);
            Absmax::Double {
                q: Tensor::from_slice(&q).to_device(device),
                code: Tensor::from_slice(&dynamic_code()).to_device(device),
                scale: Tensor::from_slice(&scale).to_device(device),
                offset: f64::from(offset),
            }
        } else {
            Absmax::F32(Tensor::from_slice(&absmax).to_device(device))
        };
        Ok(Nf4 {
            packed: Tensor::from_slice(&packed).to_device(device),
            absmax,
            code: Tensor::from_slice(&NF4_CODE).to_device(device),
            rows: size[0],
            cols: size[1],
        })
    }

    /// The absmax values as float32 (for double quantization: decoded).
    pub fn absmax_f32(&self) -> Tensor {
        match &self.absmax {
            Absmax::F32(a) => a.shallow_clone(),
            Absmax::Double { q, code, scale, offset } => {
                let n = q.size()[0];
                let vals = code.index_select(0, &q.to_kind(Kind::Int64));
                let blocks = scale.size()[0];
                let padded = blocks * BLOCK2 as i64;
                let vals = if padded == n { vals } else { Tensor::cat(&[vals, Tensor::zeros([padded - n], (Kind::Float, q.device()))], 0) };
                (vals.view([blocks, BLOCK2 as i64]) * scale.view([blocks, 1])).view([-1]).narrow(0, 0, n) + *offset
            }
        }
    }

    /// The float32 weight.
    pub fn dequantize(&self) -> Result<Tensor, String> {
        native::nf4_dequant(&self.packed, &self.absmax_f32(), &self.code, self.rows, self.cols, BLOCK as i64)
    }

    /// `x · Wᵀ` (differentiable in `x`).
    pub fn linear(&self, x: &Tensor) -> Result<Tensor, String> {
        native::nf4_linear(x, &self.packed, &self.absmax_f32(), &self.code, self.rows, self.cols, BLOCK as i64)
    }

    /// Bytes held by this matrix: packed values and scales (the two code
    /// tables, 1 KiB together, are the same for every matrix).
    pub fn bytes(&self) -> i64 {
        let scales = match &self.absmax {
            Absmax::F32(a) => a.numel() as i64 * 4,
            Absmax::Double { q, scale, .. } => q.numel() as i64 + scale.numel() as i64 * 4 + 8,
        };
        self.packed.numel() as i64 + scales
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_tables_are_sorted_and_complete() {
        assert!(NF4_CODE.windows(2).all(|w| w[0] < w[1]));
        let d = dynamic_code();
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!((d[0], d[127], d[255]), (-0.992_968_75, 0.0, 1.0));
    }

    #[test]
    fn nearest_picks_the_closest_level() {
        assert_eq!(nearest(&NF4_CODE, 0.9), 15);
        assert_eq!(nearest(&NF4_CODE, -2.0), 0);
        assert_eq!(nearest(&NF4_CODE, 0.03), 7);
        assert_eq!(nearest(&NF4_CODE, 0.05), 8);
        // Exactly halfway: the lower level.
        let mid = (NF4_CODE[7] + NF4_CODE[8]) / 2.0;
        assert_eq!(nearest(&NF4_CODE, mid), 7);
        assert_eq!(nearest(&NF4_CODE, f32::from_bits(mid.to_bits() + 1)), 8);
    }

    #[test]
    fn packing_puts_the_first_value_in_the_high_nibble() {
        let mut x = vec![0f32; 64];
        x[0] = 1.0; // level 15
        x[1] = -1.0; // level 0
        let (p, a) = quantize_values(&x);
        assert_eq!(a, vec![1.0]);
        assert_eq!(p[0], 0xF0);
        assert_eq!(p[1], 0x77);
    }
}
