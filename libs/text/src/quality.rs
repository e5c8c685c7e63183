//! Document quality signals in the spirit of the Gopher and C4 filters.
//!
//! Design: every heuristic is a pure function that *measures* one value and
//! never decides. Thresholds belong to the caller's configuration, so the
//! same numbers can drive filtering, reporting and threshold tuning.
//!
//! All measures count Unicode scalar values (`char`s), not bytes, so a
//! Japanese character weighs the same as an ASCII one. Repetition is measured
//! over *character* n-grams rather than Gopher's word n-grams, because
//! Japanese and Chinese text has no spaces between words. CJK ideographs and
//! kana are letters (`char::is_alphanumeric`), so they never count as
//! symbols.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Number of characters (Unicode scalar values, not bytes).
pub fn char_count(text: &str) -> usize {
    text.chars().count()
}

/// Combining marks that follow a letter are part of it, not symbols.
fn is_combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{3099}'..='\u{309A}' | '\u{FE00}'..='\u{FE0F}')
}

/// Share of characters that are neither letters, digits nor whitespace
/// (punctuation, symbols, emoji, control characters). 0.0 for empty text.
pub fn symbol_ratio(text: &str) -> f64 {
    let (mut total, mut symbols) = (0usize, 0usize);
    for c in text.chars() {
        total += 1;
        if !(c.is_alphanumeric() || c.is_whitespace() || is_combining(c)) {
            symbols += 1;
        }
    }
    ratio(symbols, total)
}

/// Share of non-empty lines (compared after trimming) that repeat an earlier
/// line. 0.0 when there are no non-empty lines.
pub fn duplicate_line_ratio(text: &str) -> f64 {
    let mut seen = HashSet::new();
    let (mut total, mut repeated) = (0usize, 0usize);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        total += 1;
        if !seen.insert(line) {
            repeated += 1;
        }
    }
    ratio(repeated, total)
}

/// Share of non-whitespace characters covered by the occurrences of the most
/// frequent character `n`-gram (Gopher's "top n-gram" repetition signal).
///
/// Whitespace is skipped before forming n-grams. Overlapping occurrences are
/// counted once per covered character, so the value is at most 1.0. Returns
/// 0.0 when `n` is 0, the text is shorter than `n`, or no n-gram occurs more
/// than once. Ties go to the n-gram that occurs first.
pub fn top_ngram_ratio(text: &str, n: usize) -> f64 {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if n == 0 || chars.len() < n {
        return 0.0;
    }
    let mut counts: HashMap<&[char], (usize, usize)> = HashMap::new();
    for (i, gram) in chars.windows(n).enumerate() {
        counts.entry(gram).or_insert((0, i)).0 += 1;
    }
    let best = counts.iter().max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)));
    let Some((&top, &(count, _))) = best else { return 0.0 };
    if count < 2 {
        return 0.0;
    }
    let mut covered = vec![false; chars.len()];
    for (i, gram) in chars.windows(n).enumerate() {
        if gram == top
            && let Some(span) = covered.get_mut(i..i + n)
        {
            span.fill(true);
        }
    }
    ratio(covered.iter().filter(|&&c| c).count(), chars.len())
}

/// Mean length in characters of whitespace-separated words, or `None` when
/// the text holds fewer than two words (e.g. Japanese without spaces).
pub fn mean_word_length(text: &str) -> Option<f64> {
    let (mut words, mut chars) = (0usize, 0usize);
    for word in text.split_whitespace() {
        words += 1;
        chars += word.chars().count();
    }
    (words >= 2).then(|| chars as f64 / words as f64)
}

/// Whether the last non-whitespace character is terminal punctuation
/// (`.` `!` `?` `。` `！` `？` `．` `｡`) or a closing quote or bracket
/// (`"` `'` `”` `’` `」` `』` `)` `）` `]` `】`).
pub fn ends_with_terminal_punct(text: &str) -> bool {
    text.trim_end()
        .chars()
        .next_back()
        .is_some_and(|c| matches!(c, '.' | '!' | '?' | '。' | '！' | '？' | '．' | '｡' | '"' | '\'' | '”' | '’' | '」' | '』' | ')' | '）' | ']' | '】'))
}

/// All signals of this module for one text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// See [`char_count`].
    pub char_count: usize,
    /// See [`symbol_ratio`].
    pub symbol_ratio: f64,
    /// See [`duplicate_line_ratio`].
    pub duplicate_line_ratio: f64,
    /// See [`top_ngram_ratio`], for the `ngram` passed to [`measure`].
    pub top_ngram_ratio: f64,
    /// See [`mean_word_length`].
    pub mean_word_length: Option<f64>,
    /// See [`ends_with_terminal_punct`].
    pub ends_with_terminal_punct: bool,
}

/// Computes every signal; `ngram` is passed to [`top_ngram_ratio`].
pub fn measure(text: &str, ngram: usize) -> QualityReport {
    QualityReport {
        char_count: char_count(text),
        symbol_ratio: symbol_ratio(text),
        duplicate_line_ratio: duplicate_line_ratio(text),
        top_ngram_ratio: top_ngram_ratio(text, ngram),
        mean_word_length: mean_word_length(text),
        ends_with_terminal_punct: ends_with_terminal_punct(text),
    }
}

fn ratio(part: usize, total: usize) -> f64 {
    if total == 0 { 0.0 } else { part as f64 / total as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn char_count_table() {
        for (text, n) in [("", 0), ("abc", 3), ("日本語", 3), ("👨\u{200D}👩", 3), ("a b\n", 4)] {
            assert_eq!(char_count(text), n, "{text:?}");
        }
    }

    #[test]
    fn symbol_ratio_table() {
        let cases = [
            ("", 0.0),
            ("hello world", 0.0),
            ("日本語のテキスト", 0.0),
            ("a!", 0.5),
            ("!!!!", 1.0),
            ("です。", 1.0 / 3.0),
            ("ab😊😊", 0.5),
            ("ガ", 0.0),
            ("か\u{3099}", 0.0),
        ];
        for (text, want) in cases {
            assert!(close(symbol_ratio(text), want), "{text:?}: {}", symbol_ratio(text));
        }
    }

    #[test]
    fn duplicate_line_ratio_table() {
        let cases = [("", 0.0), ("a\nb\nc", 0.0), ("a\na\na\nb", 0.5), ("x\n\n  x  \n\n", 0.5), ("同じ行\n同じ行", 0.5)];
        for (text, want) in cases {
            assert!(close(duplicate_line_ratio(text), want), "{text:?}");
        }
    }

    #[test]
    fn top_ngram_ratio_table() {
        let cases = [
            ("", 3, 0.0),
            ("abc", 0, 0.0),
            ("ab", 3, 0.0),
            ("abcdefg", 2, 0.0),
            ("abab", 2, 1.0),
            ("aaaaaa", 2, 1.0),
            ("abcabcxyz", 3, 6.0 / 9.0),
            ("ab cd ab", 2, 4.0 / 6.0),
            ("ですですです。", 2, 6.0 / 7.0),
        ];
        for (text, n, want) in cases {
            assert!(close(top_ngram_ratio(text, n), want), "{text:?} n={n}: {}", top_ngram_ratio(text, n));
        }
    }

    #[test]
    fn mean_word_length_table() {
        assert_eq!(mean_word_length(""), None);
        assert_eq!(mean_word_length("日本語の文章です。"), None);
        assert_eq!(mean_word_length("  word  "), None);
        assert_eq!(mean_word_length("ab abcd"), Some(3.0));
        assert_eq!(mean_word_length("東京 大阪"), Some(2.0));
    }

    #[test]
    fn terminal_punct_table() {
        let cases = [
            ("Done.", true),
            ("Really?  \n", true),
            ("終わりです。", true),
            ("すごい！", true),
            ("「はい」", true),
            ("(see above)", true),
            ("He said \"yes\"", true),
            ("no punctuation", false),
            ("読点で終わる、", false),
            ("", false),
            ("emoji 😊", false),
        ];
        for (text, want) in cases {
            assert_eq!(ends_with_terminal_punct(text), want, "{text:?}");
        }
    }

    #[test]
    fn measure_combines_all() {
        let r = measure("Hello there.\nHello there.", 5);
        assert_eq!(r.char_count, 25);
        assert!(close(r.duplicate_line_ratio, 0.5));
        assert!(r.ends_with_terminal_punct);
        assert!(close(r.top_ngram_ratio, 10.0 / 22.0));
        assert_eq!(r.mean_word_length, Some(5.5));
    }
}
