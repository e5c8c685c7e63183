//! ggml tensor types and their dequantization to `f32`.
//!
//! A ggml tensor row is a run of fixed-size *blocks*: `block_size` values
//! stored in `type_size` bytes (one value per "block" for F32/F16/BF16).
//! Every row starts on a block boundary, so rows dequantize independently —
//! which lets the importer stream a tensor row by row and reorder rows
//! (llama.cpp's Q/K permutation) without a second full-size buffer.
//!
//! The arithmetic follows llama.cpp's reference `dequantize_row_*` functions
//! in `ggml-quants.c` operation by operation, in `f32`, with scales
//! converted from `f16` exactly (`f16_to_f32`), so results are bit-identical
//! to llama.cpp's reference path and to gguf-py's `quants.dequantize`. The
//! 256-value "k-quants" live in [`super::kquants`].

use super::kquants;

/// The ggml tensor types this importer can dequantize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16 (the top half of an `f32`).
    Bf16,
    /// 32 values: f16 scale `d`, 32 × int8; `x = d·q`.
    Q8_0,
    /// 32 values: f16 `d`, 16 bytes of nibbles; `x = d·(q − 8)`.
    Q4_0,
    /// 32 values: f16 `d`, f16 `m`, 16 bytes of nibbles; `x = d·q + m`.
    Q4_1,
    /// 32 values: f16 `d`, 32 high bits, 16 bytes of nibbles; `x = d·(q − 16)`.
    Q5_0,
    /// 32 values: f16 `d`, f16 `m`, 32 high bits, nibbles; `x = d·q + m`.
    Q5_1,
    /// 256 values in 8 sub-blocks of 32, 6-bit scales and mins, 4-bit values.
    Q4K,
    /// 256 values in 8 sub-blocks of 32, 6-bit scales and mins, 5-bit values.
    Q5K,
    /// 256 values in 16 sub-blocks of 16, int8 scales, 6-bit values.
    Q6K,
}

/// Every supported type, in ggml id order.
pub const SUPPORTED: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Bf16,
];

impl GgmlType {
    /// The type with ggml id `id` (`enum ggml_type`), if this importer supports it.
    pub fn from_id(id: u32) -> Option<Self> {
        SUPPORTED.into_iter().find(|t| t.id() == id)
    }

    /// The ggml id (`enum ggml_type` in `ggml.h`).
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Bf16 => 30,
        }
    }

    /// ggml's name for the type (`F32`, `Q4_K`, …).
    pub fn name(self) -> &'static str {
        type_name(self.id()).unwrap_or("?")
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::Bf16 => 1,
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => kquants::QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::Q8_0 => 34,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q4K => kquants::Q4_K_BYTES,
            Self::Q5K => kquants::Q5_K_BYTES,
            Self::Q6K => kquants::Q6_K_BYTES,
        }
    }

    /// Bytes that `n` values take, or `None` when `n` is not a whole number
    /// of blocks (or the size overflows).
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.type_size() as u64)
    }
}

/// ggml's name for a type id, including types this importer cannot
/// dequantize (for error messages); `None` for ids ggml does not define.
pub fn type_name(id: u32) -> Option<&'static str> {
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
    ];
    NAMES.get(id as usize).copied()
}

/// A readable description of a type id: `Q2_K (type 10)` or `type 99`.
pub fn describe_type(id: u32) -> String {
    match type_name(id) {
        Some(name) => format!("{name} (type {id})"),
        None => format!("type {id}"),
    }
}

/// The names of the supported types, comma-separated (for error messages).
pub fn supported_names() -> String {
    SUPPORTED.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// Exact conversion of an IEEE half-precision value to `f32` (subnormals,
/// infinities and NaN payloads included), as `GGML_FP16_TO_FP32` does.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m·2⁻²⁴. Shift the leading one up to bit 10.
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((m << shift) & 0x03ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Exact conversion of a bfloat16 value to `f32`.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Little-endian `u16` at `at` of a block whose length the caller fixed.
pub(super) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// `f16` at byte `at` of a block, as `f32`.
pub(super) fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(le16(b, at))
}

/// Dequantize `src` (whole blocks of type `ty`) into `dst`.
///
/// `src` must hold exactly `dst.len()` values; otherwise (or when
/// `dst.len()` is not a whole number of blocks) an error says so.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> crate::error::Result<()> {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if !dst.len().is_multiple_of(bs) || src.len() != dst.len() / bs * ts {
        return Err(crate::ModelError::Invalid(format!(
            "{} data of {} bytes cannot hold {} values ({} values per {}-byte block)",
            ty.name(),
            src.len(),
            dst.len(),
            bs,
            ts
        )));
    }
    let blocks = src.chunks_exact(ts).zip(dst.chunks_exact_mut(bs));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = half(b, 0)),
        GgmlType::Bf16 => blocks.for_each(|(b, y)| y[0] = bf16_to_f32(le16(b, 0))),
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| q8_0(b, y)),
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| q4_0(b, y)),
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| q4_1(b, y)),
        GgmlType::Q5_0 => blocks.for_each(|(b, y)| q5_0(b, y)),
        GgmlType::Q5_1 => blocks.for_each(|(b, y)| q5_1(b, y)),
        GgmlType::Q4K => blocks.for_each(|(b, y)| kquants::q4_k(b, y)),
        GgmlType::Q5K => blocks.for_each(|(b, y)| kquants::q5_k(b, y)),
        GgmlType::Q6K => blocks.for_each(|(b, y)| kquants::q6_k(b, y)),
    }
    Ok(())
}

/// `dequantize_row_q8_0`: `y = q·d`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = f32::from(q as i8) * d;
    }
}

/// `dequantize_row_q4_0`: low nibbles are values 0‥15, high nibbles 16‥31.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[2..18].iter().enumerate() {
        lo[j] = f32::from((q & 0x0f) as i8 - 8) * d;
        hi[j] = f32::from((q >> 4) as i8 - 8) * d;
    }
}

/// `dequantize_row_q4_1`: `y = q·d + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let (lo, hi) = y.split_at_mut(16);
    for (j, &q) in b[4..20].iter().enumerate() {
        lo[j] = f32::from(q & 0x0f) * d + m;
        hi[j] = f32::from(q >> 4) * d + m;
    }
}

/// The 5-bit values of a Q5 block: nibbles plus bit `j` of `qh` as bit 4.
fn q5_values(qh: u32, qs: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (j, &byte) in qs.iter().enumerate().take(16) {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        q[j] = (byte & 0x0f) | h0;
        q[j + 16] = (byte >> 4) | h1;
    }
    q
}

/// `dequantize_row_q5_0`: `y = (q − 16)·d`.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (y, q) in y.iter_mut().zip(q5_values(qh, &b[6..22])) {
        *y = f32::from(q as i8 - 16) * d;
    }
}

/// `dequantize_row_q5_1`: `y = q·d + m`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (y, q) in y.iter_mut().zip(q5_values(qh, &b[8..24])) {
        *y = f32::from(q) * d + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of a half-precision bit pattern, computed independently in f64.
    fn f16_reference(h: u16) -> f64 {
        let s = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let e = i32::from((h >> 10) & 0x1f);
        let m = f64::from(h & 0x3ff);
        match e {
            0 => s * m * 2f64.powi(-24),
            31 if m == 0.0 => s * f64::INFINITY,
            31 => f64::NAN,
            _ => s * (1.0 + m / 1024.0) * 2f64.powi(e - 15),
        }
    }

    #[test]
    fn f16_conversion_is_exact_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let (got, want) = (f16_to_f32(h), f16_reference(h));
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
                assert_eq!(got.to_bits() & 0x007f_ffff, u32::from(h & 0x3ff) << 13, "{h:#06x} payload");
            } else {
                assert_eq!(f64::from(got), want, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), h & 0x8000 != 0, "{h:#06x} sign");
            }
        }
    }

    #[test]
    fn bf16_is_the_top_half_of_f32() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    #[test]
    fn q4_1_is_d_times_q_plus_m() {
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&0x3800u16.to_le_bytes()); // d = 0.5
        b[2..4].copy_from_slice(&0xbc00u16.to_le_bytes()); // m = -1
        b[4] = 0xf3; // value 0 = 3, value 16 = 15
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q4_1, &b, &mut y).unwrap();
        assert_eq!((y[0], y[16], y[1]), (0.5, 6.5, -1.0));
    }

    #[test]
    fn q5_0_high_bits_come_from_qh() {
        let mut b = vec![0u8; 22];
        b[0..2].copy_from_slice(&0x3c00u16.to_le_bytes()); // d = 1
        b[2..6].copy_from_slice(&((1u32 << 0) | (1u32 << 17)).to_le_bytes());
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q5_0, &b, &mut y).unwrap();
        assert_eq!((y[0], y[1], y[16], y[17]), (0.0, -16.0, -16.0, 0.0));
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        let mut y = [0f32; 32];
        let e = dequantize(GgmlType::Q8_0, &[0u8; 33], &mut y).unwrap_err();
        assert!(e.to_string().contains("Q8_0 data of 33 bytes cannot hold 32 values"), "{e}");
        let mut y = [0f32; 31];
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 18], &mut y).is_err());
    }

    #[test]
    fn ids_and_names_round_trip() {
        for t in SUPPORTED {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        assert_eq!(GgmlType::Q4K.name(), "Q4_K");
        assert_eq!(GgmlType::Bf16.name(), "BF16");
        assert_eq!(describe_type(10), "Q2_K (type 10)");
        assert_eq!(describe_type(99), "type 99");
        assert_eq!(GgmlType::Q4_0.bytes_for(64), Some(36));
        assert_eq!(GgmlType::Q4_0.bytes_for(65), None);
    }
}
