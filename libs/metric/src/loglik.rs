//! Benchmark arithmetic on log-likelihoods, with lm-evaluation-harness
//! semantics: multiple-choice accuracy (`acc`: the choice with the highest
//! summed log-probability; `acc_norm`: the highest log-probability per
//! character of the choice), and rolling log-likelihood of long documents
//! scored in windows, summarised as token, word and byte perplexity and
//! bits per byte. The model calls live elsewhere; this is the part that can
//! be checked by hand.

/// The index of the largest value (the first of equal ones), or `None`
/// for an empty slice.
fn argmax(v: impl Iterator<Item = f64>) -> Option<usize> {
    v.enumerate()
        .fold(None, |best: Option<(usize, f64)>, (i, x)| match best {
            Some((_, b)) if b >= x => best,
            _ => Some((i, x)),
        })
        .map(|(i, _)| i)
}

/// The choices a model picks: by summed log-probability (`acc`) and by
/// log-probability per character of the choice text (`acc_norm`;
/// lm-evaluation-harness divides by `len(choice)` in code points).
pub fn choose(logprobs: &[f64], choices: &[&str]) -> Option<(usize, usize)> {
    let plain = argmax(logprobs.iter().copied())?;
    let norm = argmax(logprobs.iter().zip(choices).map(|(l, c)| l / c.chars().count().max(1) as f64))?;
    Some((plain, norm))
}

/// A proportion and its standard error (sample standard deviation over
/// √n, as lm-evaluation-harness reports `acc_stderr`).
pub fn mean_stderr(hits: &[bool]) -> (f64, f64) {
    let n = hits.len() as f64;
    if hits.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let p = hits.iter().filter(|&&h| h).count() as f64 / n;
    let se = if hits.len() > 1 { (p * (1.0 - p) * n / (n - 1.0) / n).sqrt() } else { f64::NAN };
    (p, se)
}

/// One scoring window over a document `s` = prefix token + the document's
/// tokens: the request's context is `s[start..first]`, its continuation
/// `s[first..end]` (the tokens this window predicts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First input token.
    pub start: usize,
    /// First predicted token.
    pub first: usize,
    /// One past the last predicted token.
    pub end: usize,
}

/// Windows that predict each of a document's `n` tokens exactly once, none
/// taking more than `window` input tokens; after the first, each predicts
/// up to `stride` new tokens with as much preceding text as fits as its
/// context. `stride == window` is lm-evaluation-harness's rolling
/// log-likelihood (disjoint predictions, the last window filled with
/// context); a smaller stride gives every token more context (slower).
pub fn windows(n: usize, window: usize, stride: usize) -> Vec<Window> {
    let (window, stride) = (window.max(1), stride.clamp(1, window.max(1)));
    let mut out = Vec::new();
    let mut first = 1;
    let last = n + 1;
    while first < last {
        let end = if out.is_empty() { (1 + window).min(last) } else { (first + stride).min(last) };
        out.push(Window { start: (end - 1).saturating_sub(window), first, end });
        first = end;
    }
    out
}

/// Totals of a corpus scored with rolling log-likelihood.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rolling {
    /// Summed log-probability (natural log) of every token.
    pub logprob: f64,
    /// Tokens scored.
    pub tokens: usize,
    /// Words (runs of non-whitespace) in the documents.
    pub words: usize,
    /// UTF-8 bytes of the documents.
    pub bytes: usize,
}

impl Rolling {
    /// Add one document's text and its summed log-probability over `tokens`.
    pub fn add(&mut self, text: &str, logprob: f64, tokens: usize) {
        self.logprob += logprob;
        self.tokens += tokens;
        self.words += text.split_whitespace().count();
        self.bytes += text.len();
    }

    /// `perplexity` (per token — depends on the tokenizer), `word_perplexity`,
    /// `byte_perplexity` and `bits_per_byte` (comparable across tokenizers),
    /// as lm-evaluation-harness defines them.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let per = |n: usize| -self.logprob / n.max(1) as f64;
        vec![
            ("perplexity", per(self.tokens).exp()),
            ("word_perplexity", per(self.words).exp()),
            ("byte_perplexity", per(self.bytes).exp()),
            ("bits_per_byte", per(self.bytes) / std::f64::consts::LN_2),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acc_and_acc_norm_pick_by_sum_and_by_length() {
        // " dog" (4 chars) at -4 vs " elephant" (9 chars) at -6: the sum
        // prefers the short choice, per character the long one.
        assert_eq!(choose(&[-4.0, -6.0], &[" dog", " elephant"]), Some((0, 1)));
        // Ties go to the first choice, as numpy's argmax.
        assert_eq!(choose(&[-1.0, -1.0], &["a", "b"]), Some((0, 0)));
        assert_eq!(choose(&[], &[]), None);
        assert_eq!(choose(&[-2.0, -1.0, -3.0], &["x", "y", "z"]), Some((1, 1)));
    }

    #[test]
    fn stderr_is_the_sample_standard_error() {
        let (p, se) = mean_stderr(&[true, false, true, true]);
        assert_eq!(p, 0.75);
        // sqrt(p(1-p)/(n-1)) = sqrt(0.1875/3) = 0.25
        assert!((se - 0.25).abs() < 1e-12, "{se}");
        assert!(mean_stderr(&[]).0.is_nan());
    }

    #[test]
    fn windows_predict_every_token_once_within_the_window() {
        for n in [0, 1, 2, 5, 8, 9, 17, 100] {
            for (w, stride) in [(1, 1), (4, 4), (4, 2), (8, 8), (8, 3), (128, 128)] {
                let ws = windows(n, w, stride);
                let mut next = 1;
                for x in &ws {
                    assert_eq!(x.first, next, "n {n} w {w} s {stride}: {ws:?}");
                    assert!(x.start < x.first && x.first < x.end, "{x:?}");
                    // The input is s[start..end-1]: at most `w` tokens, and as many as fit.
                    assert!(x.end - 1 - x.start <= w, "{x:?}");
                    assert!(x.start == 0 || x.end - 1 - x.start == w, "{x:?}");
                    next = x.end;
                }
                assert_eq!(next, n + 1, "every token predicted: n {n} w {w}");
            }
        }
        // lm-evaluation-harness's example: 10 tokens, window 4 → predicted
        // [0..4), [4..8), [8..10) with full windows of context.
        let ws = windows(10, 4, 4);
        assert_eq!(ws, vec![Window { start: 0, first: 1, end: 5 }, Window { start: 4, first: 5, end: 9 }, Window { start: 6, first: 9, end: 11 }]);
    }

    #[test]
    fn rolling_metrics_by_hand() {
        let mut r = Rolling::default();
        r.add("two words", -9.0 * std::f64::consts::LN_2, 3);
        let m: std::collections::BTreeMap<_, _> = r.metrics().into_iter().collect();
        assert!((m["bits_per_byte"] - 1.0).abs() < 1e-12);
        assert!((m["byte_perplexity"] - 2.0).abs() < 1e-12);
        assert!((m["perplexity"] - 8.0).abs() < 1e-9);
        assert!((m["word_perplexity"] - 2f64.powf(4.5)).abs() < 1e-9);
    }
}
