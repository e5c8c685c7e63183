//! chrF (Popović 2015), computed as sacrebleu's `CHRF()` with its defaults.
//!
//! Design: the score is a function of per-order n-gram *statistics*
//! ([`ChrfStats`]: hypothesis, reference and matched n-gram counts for each
//! order 1..=6), so a sentence score and a corpus score are the same formula
//! applied to one sample's statistics or to their sum. The corpus value —
//! what the evaluate stage reports — is computed from summed statistics, as
//! sacrebleu's `corpus_score` does; it is *not* the mean of sentence scores.
//!
//! Exactly as sacrebleu 2.x defaults (`char_order=6, word_order=0, beta=2,
//! lowercase=False, whitespace=False, eps_smoothing=False`):
//!
//! 1. All whitespace is removed (Python's `''.join(s.split())`; Python also
//!    treats U+001C..U+001F as whitespace, and so do we).
//! 2. Character n-grams of orders 1..=6 are counted (over Unicode scalar
//!    values, as Python indexes `str`), matches are clipped counts
//!    `Σ min(hyp, ref)`. When the reference has no n-gram of an order, that
//!    order's hypothesis count is recorded as 0 (sacrebleu does this).
//! 3. Per order with both counts > 0, precision and recall are taken; they
//!    are averaged over those "effective" orders, and the result is
//!    `F_β = (1+β²)·P·R / (β²·P + R)` with β = 2. No effective order, or
//!    `P + R = 0`, gives 0. (sacrebleu's default is this effective-order
//!    averaging; its `eps_smoothing=True` variant, which averages per-order
//!    F-scores with ε = 1e-16, is not what `CHRF()` computes by default and
//!    is not implemented.)
//!
//! Tailor's convention is 0–1; sacrebleu prints the same number × 100.

use std::collections::HashMap;

/// Highest character n-gram order.
pub const CHAR_ORDER: usize = 6;
/// Weight of recall relative to precision.
pub const BETA: f64 = 2.0;

/// Per-order n-gram counts of one (hypothesis, reference) pair, or a sum of
/// them: `[hypothesis n-grams, reference n-grams, matches]` for orders 1..=6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChrfStats {
    /// `orders[n - 1] = [hyp, ref, match]` for n-gram order `n`.
    pub orders: [[u64; 3]; CHAR_ORDER],
}

/// Python's `str.isspace`: Unicode White_Space plus the four C0 separators.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1C}'..='\u{1F}')
}

fn chars_without_space(text: &str) -> Vec<char> {
    text.chars().filter(|c| !is_py_space(*c)).collect()
}

fn ngram_counts(chars: &[char], n: usize) -> HashMap<&[char], u64> {
    let mut counts = HashMap::new();
    for gram in chars.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

impl ChrfStats {
    /// The statistics of one hypothesis against one reference.
    pub fn of(hypothesis: &str, reference: &str) -> Self {
        let hyp = chars_without_space(hypothesis);
        let reference = chars_without_space(reference);
        let mut stats = ChrfStats::default();
        for (i, slot) in stats.orders.iter_mut().enumerate() {
            let n = i + 1;
            let h = ngram_counts(&hyp, n);
            let r = ngram_counts(&reference, n);
            let hyp_total: u64 = h.values().sum();
            let ref_total: u64 = r.values().sum();
            let matches: u64 = h.iter().map(|(g, c)| (*c).min(r.get(g).copied().unwrap_or(0))).sum();
            *slot = [if r.is_empty() { 0 } else { hyp_total }, ref_total, matches];
        }
        stats
    }

    /// Adds another pair's statistics (for a corpus score).
    pub fn add(&mut self, other: &ChrfStats) {
        for (mine, theirs) in self.orders.iter_mut().zip(other.orders.iter()) {
            for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                *a += b;
            }
        }
    }

    /// The chrF of these statistics, 0–1.
    pub fn score(&self) -> f64 {
        let factor = BETA * BETA;
        let (mut avg_prec, mut avg_rec, mut effective) = (0.0, 0.0, 0usize);
        for &[n_hyp, n_ref, n_match] in &self.orders {
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += n_match as f64 / n_hyp as f64;
                avg_rec += n_match as f64 / n_ref as f64;
                effective += 1;
            }
        }
        if effective == 0 {
            return 0.0;
        }
        avg_prec /= effective as f64;
        avg_rec /= effective as f64;
        if avg_prec + avg_rec == 0.0 {
            return 0.0;
        }
        (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec)
    }
}

/// Sentence-level chrF of one hypothesis against one reference, 0–1
/// (sacrebleu's `sentence_chrf(h, [r]).score / 100`).
pub fn sentence_chrf(hypothesis: &str, reference: &str) -> f64 {
    ChrfStats::of(hypothesis, reference).score()
}

/// Corpus-level chrF over (hypothesis, reference) pairs from summed
/// statistics, 0–1 (sacrebleu's `corpus_chrf(hyps, [refs]).score / 100`).
pub fn corpus_chrf<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let mut total = ChrfStats::default();
    for (h, r) in pairs {
        total.add(&ChrfStats::of(h, r));
    }
    total.score()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Hand-computed values (β² = 4, F = 5PR / (4P + R)).
    ///
    /// `abc` vs `abd`:
    ///   n=1: hyp {a,b,c}=3, ref {a,b,d}=3, match 2 → P=2/3, R=2/3
    ///   n=2: hyp {ab,bc}=2, ref {ab,bd}=2, match 1 → P=1/2, R=1/2
    ///   n=3: hyp {abc}=1,   ref {abd}=1,   match 0 → P=0,   R=0 (still effective)
    ///   n=4..6: no n-grams on either side → not effective
    ///   avg P = avg R = (2/3 + 1/2 + 0) / 3 = 7/18; F = 5·(7/18)² / (5·7/18) = 7/18
    ///
    /// `ab` vs `abc`:
    ///   n=1: hyp 2, ref 3, match 2 → P=1, R=2/3
    ///   n=2: hyp 1, ref 2, match 1 → P=1, R=1/2
    ///   n=3: hyp 0 (ref has {abc}) → not effective
    ///   avg P = 1, avg R = 7/12; F = 5·(7/12) / (4 + 7/12) = 35/55 = 7/11
    ///
    /// `猫が好き` vs `猫が好きだ`: P = 1 at n=1..4 (n=5: no hypothesis n-gram),
    ///   R = 4/5, 3/4, 2/3, 1/2 → avg R = (163/60)/4 = 163/240;
    ///   F = 5·(163/240) / (4 + 163/240) = 815/1123
    #[test]
    fn sentence_table() {
        let cases: &[(&str, &str, f64)] = &[
            ("abc", "abd", 7.0 / 18.0),
            ("ab", "abc", 7.0 / 11.0),
            ("a b c", "abd", 7.0 / 18.0),
            ("猫が好き", "猫が好きだ", 815.0 / 1123.0),
            ("猫が\u{3000}好き", "猫が好きだ", 815.0 / 1123.0),
            ("same text", "same text", 1.0),
            ("今日は晴れです", "今日は晴れです", 1.0),
            ("xyz", "abc", 0.0),
            ("", "abc", 0.0),
            ("abc", "", 0.0),
            ("", "", 0.0),
        ];
        for (h, r, expected) in cases {
            let got = sentence_chrf(h, r);
            assert!(close(got, *expected), "chrF({h:?}, {r:?}) = {got}, expected {expected}");
        }
    }

    /// Clipped matches: `aaa` vs `a`: n=1 hyp 3, ref 1, match min(3,1) = 1 →
    /// P=1/3, R=1; n=2,3: reference has no n-grams → hyp recorded 0, not
    /// effective. F = 5·(1/3)·1 / (4/3 + 1) = (5/3)/(7/3) = 5/7.
    #[test]
    fn clipped_counts() {
        let s = ChrfStats::of("aaa", "a");
        assert_eq!(s.orders[0], [3, 1, 1]);
        assert_eq!(s.orders[1], [0, 0, 0]);
        assert!(close(s.score(), 5.0 / 7.0));
    }

    /// Corpus of (`abc`,`abd`) and (`ab`,`abc`), statistics summed:
    ///   n=1: hyp 5, ref 6, match 4 → P=4/5, R=2/3
    ///   n=2: hyp 3, ref 4, match 2 → P=2/3, R=1/2
    ///   n=3: hyp 1, ref 2, match 0 → P=0,   R=0
    ///   avg P = 22/45, avg R = 7/18;
    ///   F = 5·(22/45)(7/18) / (4·22/45 + 7/18) = (77/81) / (211/90) = 770/1899
    /// (the mean of the two sentence scores would be (7/18 + 7/11)/2 ≈ 0.513).
    #[test]
    fn corpus_sums_statistics() {
        let got = corpus_chrf([("abc", "abd"), ("ab", "abc")]);
        assert!(close(got, 770.0 / 1899.0), "{got}");
        assert!(close(corpus_chrf([("abc", "abd")]), sentence_chrf("abc", "abd")));
        assert_eq!(corpus_chrf(std::iter::empty()), 0.0);
    }
}
