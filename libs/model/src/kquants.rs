//! The 256-value "k-quant" block formats (what `Q4_K_M`, `Q5_K_M` and
//! `Q6_K` files are made of) and their dequantization.
//!
//! Layouts (`block_q4_K` etc. in `ggml-common.h`, `QK_K = 256`):
//!
//! * Q4_K, 144 bytes: f16 `d`, f16 `dmin`, 12 bytes of packed 6-bit scales
//!   and mins for 8 sub-blocks of 32, 128 bytes of nibbles.
//! * Q5_K, 176 bytes: as Q4_K plus 32 bytes `qh` holding each value's 5th bit.
//! * Q6_K, 210 bytes: 128 bytes low nibbles `ql`, 64 bytes 2-bit highs `qh`,
//!   16 int8 scales (one per 16 values), f16 `d` last.
//!
//! Each function mirrors llama.cpp's `dequantize_row_q*_K` (reference C
//! path) operation by operation: scales become `f32` products first
//! (`d1 = d·sc`, `m1 = dmin·m`), then `y = d1·q − m1` (Q6_K: `y = d·sc·q`,
//! evaluated left to right), so the results are bit-identical.

use super::ggml::half;

/// Values per k-quant block.
pub const QK_K: usize = 256;
/// Bytes per Q4_K block.
pub const Q4_K_BYTES: usize = 144;
/// Bytes per Q5_K block.
pub const Q5_K_BYTES: usize = 176;
/// Bytes per Q6_K block.
pub const Q6_K_BYTES: usize = 210;

/// `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0‥7) from
/// the 12 packed bytes.
fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 { (q[j] & 63, q[j + 4] & 63) } else { ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)) }
}

/// The `(d·sc, dmin·m)` pairs of the 8 sub-blocks of a Q4_K / Q5_K block.
fn sub_scales(b: &[u8]) -> [(f32, f32); 8] {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let scales = &b[4..16];
    let mut out = [(0f32, 0f32); 8];
    for (j, o) in out.iter_mut().enumerate() {
        let (sc, m) = scale_min(j, scales);
        *o = (d * f32::from(sc), dmin * f32::from(m));
    }
    out
}

/// `dequantize_row_q4_K` for one 144-byte block into 256 values.
pub(super) fn q4_k(b: &[u8], y: &mut [f32]) {
    let s = sub_scales(b);
    let qs = &b[16..144];
    // 4 groups of 64 values share 32 bytes: low nibbles first, then high.
    for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let ((d1, m1), (d2, m2)) = (s[2 * g], s[2 * g + 1]);
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            lo[l] = d1 * f32::from(q[l] & 0x0f) - m1;
            hi[l] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// `dequantize_row_q5_K` for one 176-byte block into 256 values.
pub(super) fn q5_k(b: &[u8], y: &mut [f32]) {
    let s = sub_scales(b);
    let qh = &b[16..48];
    let ql = &b[48..176];
    for (g, (q, y)) in ql.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let ((d1, m1), (d2, m2)) = (s[2 * g], s[2 * g + 1]);
        let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            lo[l] = d1 * f32::from((q[l] & 0x0f) + h1) - m1;
            hi[l] = d2 * f32::from((q[l] >> 4) + h2) - m2;
        }
    }
}

/// `dequantize_row_q6_K` for one 210-byte block into 256 values.
pub(super) fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = half(b, 208);
    // Two halves of 128 values: 64 bytes of `ql`, 32 of `qh`, 8 scales each.
    for (n, y) in y.chunks_exact_mut(128).enumerate() {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_unpacks_the_high_bits() {
        // Sub-block 4: scale = low nibble of byte 8 | top 2 bits of byte 0 << 4.
        let mut q = [0u8; 12];
        q[0] = 0b1100_0001;
        q[4] = 0b0100_0010;
        q[8] = 0x5a;
        assert_eq!(scale_min(0, &q), (1, 2));
        assert_eq!(scale_min(4, &q), (0x0a | (3 << 4), 0x05 | (1 << 4)));
    }

    #[test]
    fn q6_k_of_constant_bits() {
        // All ql/qh bits zero → q = −32 everywhere; scales 1, d = 0.5.
        let mut b = vec![0u8; Q6_K_BYTES];
        b[192..208].fill(1);
        b[208..210].copy_from_slice(&0x3800u16.to_le_bytes());
        let mut y = vec![0f32; QK_K];
        q6_k(&b, &mut y);
        assert!(y.iter().all(|&v| v == -16.0));
    }
}
