//! Length measurements and the order statistics used to summarize them.
//!
//! Design: lengths are measured per sample ([`Lengths`]) and summarized per
//! corpus ([`summarize`]) so the evaluate stage can show both. Definitions:
//!
//! * characters are Unicode scalar values of the output as generated (not
//!   trimmed, not normalized); tokens are whitespace-separated runs
//!   (`str::split_whitespace`), so a Japanese sentence without spaces is one
//!   token — use the character counts for Japanese;
//! * the per-sample ratio is output characters / reference characters, absent
//!   when there is no reference or it is empty; the corpus ratio is
//!   Σ output characters / Σ reference characters over the samples that have
//!   a reference, which is robust to single short references (a mean of
//!   ratios is not);
//! * percentiles interpolate linearly between the closest ranks (NumPy's
//!   default, "type 7"): `p` of `n` sorted values lies at rank `p·(n−1)`.
//!   The median is the 50th percentile.

/// Mean, median, 90th percentile and maximum of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Arithmetic mean.
    pub mean: f64,
    /// 50th percentile.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest value.
    pub max: f64,
}

/// The arithmetic mean; `None` for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() { None } else { Some(values.iter().sum::<f64>() / values.len() as f64) }
}

/// The `p`-th quantile (`p` in 0..=1, clamped) of values sorted ascending,
/// interpolating linearly; `None` for no values.
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p.clamp(0.0, 1.0) * last as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let (a, b) = (*sorted.get(lo)?, *sorted.get(hi)?);
    Some(a + (b - a) * (rank - lo as f64))
}

/// Mean, median, p90 and max of `values` (any order); `None` for no values.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary { mean: mean(&sorted)?, median: quantile(&sorted, 0.5)?, p90: quantile(&sorted, 0.9)?, max: *sorted.last()? })
}

/// The lengths of one output (and of its reference, when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lengths {
    /// Characters of the output.
    pub chars: usize,
    /// Whitespace-separated tokens of the output.
    pub tokens: usize,
    /// Characters of the reference, when given.
    pub reference_chars: Option<usize>,
}

impl Lengths {
    /// Measures `output` and, if given, `reference`.
    pub fn of(output: &str, reference: Option<&str>) -> Self {
        Lengths { chars: output.chars().count(), tokens: output.split_whitespace().count(), reference_chars: reference.map(|r| r.chars().count()) }
    }

    /// Output characters / reference characters; `None` without a reference
    /// or with an empty one.
    pub fn ratio(&self) -> Option<f64> {
        match self.reference_chars {
            Some(r) if r > 0 => Some(self.chars as f64 / r as f64),
            _ => None,
        }
    }
}

/// Σ output characters / Σ reference characters over the samples with a
/// reference; `None` when that reference total is 0.
pub fn corpus_ratio<'a>(lengths: impl IntoIterator<Item = &'a Lengths>) -> Option<f64> {
    let (mut out, mut reference) = (0usize, 0usize);
    for l in lengths {
        if let Some(r) = l.reference_chars {
            out += l.chars;
            reference += r;
        }
    }
    (reference > 0).then(|| out as f64 / reference as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_table() {
        // Values 1..=10: mean 5.5; median at rank 4.5 → 5.5;
        // p90 at rank 0.9·9 = 8.1 → 9 + 0.1·(10 − 9) = 9.1; max 10.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let cases: &[(&[f64], Option<(f64, f64, f64, f64)>)] =
            &[(&ten, Some((5.5, 5.5, 9.1, 10.0))), (&[3.0, 1.0, 2.0], Some((2.0, 2.0, 2.8, 3.0))), (&[7.0], Some((7.0, 7.0, 7.0, 7.0))), (&[], None)];
        for (values, expected) in cases {
            let got = summarize(values).map(|s| (s.mean, s.median, s.p90, s.max));
            match (got, expected) {
                (None, None) => {}
                (Some(g), Some(e)) => {
                    let ok = [(g.0, e.0), (g.1, e.1), (g.2, e.2), (g.3, e.3)].iter().all(|(a, b)| (a - b).abs() < 1e-12);
                    assert!(ok, "{values:?}: {g:?} != {e:?}");
                }
                _ => panic!("{values:?}: {got:?} != {expected:?}"),
            }
        }
    }

    #[test]
    fn lengths_table() {
        // (output, reference, chars, tokens, ratio)
        let cases: &[(&str, Option<&str>, usize, usize, Option<f64>)] = &[
            ("hello world", Some("hi"), 11, 2, Some(5.5)),
            ("今日は晴れです", Some("晴れ"), 7, 1, Some(3.5)),
            ("  a  b  ", None, 8, 2, None),
            ("", Some(""), 0, 0, None),
            ("x", Some(""), 1, 1, None),
        ];
        for (out, reference, chars, tokens, ratio) in cases {
            let l = Lengths::of(out, *reference);
            assert_eq!((l.chars, l.tokens, l.ratio()), (*chars, *tokens, *ratio), "{out:?}");
        }
    }

    #[test]
    fn corpus_ratio_sums() {
        // The reference-less sample is left out: (10 + 6) / (5 + 3) = 2.
        let ls = [
            Lengths { chars: 10, tokens: 1, reference_chars: Some(5) },
            Lengths { chars: 4, tokens: 1, reference_chars: None },
            Lengths { chars: 6, tokens: 1, reference_chars: Some(3) },
        ];
        assert_eq!(corpus_ratio(&ls), Some(2.0));
        assert_eq!(corpus_ratio(&ls[1..2]), None);
    }
}
