//! ROUGE-L (longest common subsequence) F-measure.
//!
//! Design: one LCS over a token sequence, with the tokenization chosen per
//! pair by the *reference*:
//!
//! * **Word mode** (the reference is not mostly CJK): exactly Google's
//!   `rouge-score` `RougeScorer(["rougeL"], use_stemmer=False)` — lowercase,
//!   every run of characters other than `[a-z0-9]` becomes a separator, and
//!   the remaining `[a-z0-9]+` runs are the tokens. Accented and non-Latin
//!   letters are therefore dropped, as in rouge-score.
//! * **Character mode** (Tailor's variant, for text without spaces): when
//!   more than [`CJK_SHARE`] of the reference's non-whitespace characters
//!   are Han, hiragana, katakana or Hangul, the tokens are single
//!   characters: NFKC, lowercase, then every alphanumeric character (Han and
//!   kana count as letters; whitespace, punctuation such as 。、 and symbols
//!   are dropped). rouge-score has no such mode; on Japanese it returns 0
//!   because its tokenizer keeps nothing.
//!
//! The reference decides so that both sides are always tokenized the same
//! way and a Japanese task is scored on characters even when a model
//! answers in English (which then scores low, as it should).
//!
//! `P = LCS / |output|`, `R = LCS / |reference|`, `F = 2PR / (P + R)`; an
//! empty token sequence on either side gives 0 (rouge-score does the same).
//! Values are 0–1. The LCS is the classic O(n·m) dynamic programme kept in
//! two rows, so memory is O(m).

use unicode_normalization::UnicodeNormalization;

/// Share of CJK characters (among non-whitespace ones) above which a
/// reference is scored on characters instead of words.
pub const CJK_SHARE: f64 = 0.3;

/// Precision, recall and F-measure of ROUGE-L, each 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeL {
    /// LCS length over the output's token count.
    pub precision: f64,
    /// LCS length over the reference's token count.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub fmeasure: f64,
}

/// Whether `c` is Han, hiragana, katakana (full or half width) or Hangul.
pub fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3041}'..='\u{309F}' // hiragana
        | '\u{30A0}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9D}' // katakana
        | '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2FA1F}' // Han
        | '\u{3005}' | '\u{3006}' // 々 〆
        | '\u{AC00}'..='\u{D7AF}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}' // Hangul
    )
}

/// Whether more than [`CJK_SHARE`] of the non-whitespace characters of
/// `text` are CJK ([`is_cjk`]). Empty or all-whitespace text is not.
pub fn is_mostly_cjk(text: &str) -> bool {
    let (mut cjk, mut total) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        total += 1;
        cjk += usize::from(is_cjk(c));
    }
    total > 0 && cjk as f64 > CJK_SHARE * total as f64
}

/// rouge-score's default tokenizer: lowercase, keep `[a-z0-9]+` runs.
pub fn word_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit())).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// Tailor's character tokens: NFKC, lowercase, alphanumeric characters only.
pub fn char_tokens(text: &str) -> Vec<char> {
    let nfkc: String = text.nfkc().collect();
    nfkc.chars().flat_map(char::to_lowercase).filter(|c| c.is_alphanumeric()).collect()
}

/// Length of the longest common subsequence of `a` and `b`.
pub fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn from_lengths(lcs: usize, output_len: usize, reference_len: usize) -> RougeL {
    if output_len == 0 || reference_len == 0 {
        return RougeL::default();
    }
    let precision = lcs as f64 / output_len as f64;
    let recall = lcs as f64 / reference_len as f64;
    let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    RougeL { precision, recall, fmeasure }
}

/// ROUGE-L of `output` against `reference`, in word or character mode as
/// the reference decides (see the module notes).
pub fn rouge_l(output: &str, reference: &str) -> RougeL {
    if is_mostly_cjk(reference) {
        let (o, r) = (char_tokens(output), char_tokens(reference));
        from_lengths(lcs_len(&r, &o), o.len(), r.len())
    } else {
        let (o, r) = (word_tokens(output), word_tokens(reference));
        from_lengths(lcs_len(&r, &o), o.len(), r.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Hand-computed values.
    ///
    /// English, `the cat sat on the mat` vs `the cat is on the mat`:
    ///   6 and 6 tokens, LCS = the cat on the mat = 5 → P = R = F = 5/6.
    /// English, `The cat!` vs `the cat sat`: tokens [the, cat] and
    ///   [the, cat, sat], LCS 2 → P = 1, R = 2/3, F = 2·(2/3)/(5/3) = 4/5.
    /// Japanese (character mode), `猫がマットに座った` (9 characters) vs
    ///   `猫はマットの上に座った` (11): LCS = 猫マットに座った = 8 →
    ///   P = 8/9, R = 8/11, F = 2·(64/99) / (160/99) = 128/160 = 4/5.
    #[test]
    fn rouge_table() {
        // (output, reference, P, R, F)
        let cases: &[(&str, &str, f64, f64, f64)] = &[
            ("the cat sat on the mat", "the cat is on the mat", 5.0 / 6.0, 5.0 / 6.0, 5.0 / 6.0),
            ("The cat!", "the cat sat", 1.0, 2.0 / 3.0, 0.8),
            ("猫がマットに座った", "猫はマットの上に座った", 8.0 / 9.0, 8.0 / 11.0, 0.8),
            ("猫がマットに座った。", "猫は マットの上に 座った", 8.0 / 9.0, 8.0 / 11.0, 0.8),
            ("ＡＢＣです", "abcです", 1.0, 1.0, 1.0),
            ("same words here", "Same words, here.", 1.0, 1.0, 1.0),
            ("", "the cat", 0.0, 0.0, 0.0),
            ("the cat", "", 0.0, 0.0, 0.0),
            ("dog", "cat", 0.0, 0.0, 0.0),
            ("The cat sat", "猫が座った", 0.0, 0.0, 0.0),
            ("東京タワー", "東京タワー", 1.0, 1.0, 1.0),
        ];
        for (out, reference, p, r, f) in cases {
            let got = rouge_l(out, reference);
            assert!(close(got.precision, *p) && close(got.recall, *r) && close(got.fmeasure, *f), "{out:?} vs {reference:?}: {got:?}");
        }
    }

    #[test]
    fn tokenizers() {
        assert_eq!(word_tokens("Hello, World! It's 2024."), ["hello", "world", "it", "s", "2024"]);
        assert_eq!(word_tokens("café naïve"), ["caf", "na", "ve"]);
        assert!(word_tokens("日本語です").is_empty());
        assert_eq!(char_tokens("ラーメン、ｶﾚｰ！"), ['ラ', 'ー', 'メ', 'ン', 'カ', 'レ', 'ー']);
    }

    #[test]
    fn cjk_rule() {
        let cases: &[(&str, bool)] = &[
            ("今日は晴れです", true),
            ("Tailor は日本語の文章を扱う", true),
            ("Tailor は fine-tuning の道具", false),
            ("The word 東京 means eastern capital", false),
            ("안녕하세요", true),
            ("", false),
            ("   ", false),
            ("12345", false),
        ];
        for (text, expected) in cases {
            assert_eq!(is_mostly_cjk(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn lcs_table() {
        let cases: &[(&str, &str, usize)] = &[("abcbdab", "bdcaba", 4), ("", "abc", 0), ("abc", "abc", 3), ("abc", "def", 0)];
        for (a, b, n) in cases {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            assert_eq!(lcs_len(&a, &b), *n);
            assert_eq!(lcs_len(&b, &a), *n);
        }
    }
}
