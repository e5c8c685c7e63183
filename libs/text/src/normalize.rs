//! Unicode and whitespace normalization for training text.
//!
//! Design:
//!
//! * NFKC runs first (when enabled) and only when
//!   `unicode_normalization::is_nfkc_quick` cannot prove the text is already
//!   NFKC, so the common clean-ASCII/clean-Japanese case never allocates for
//!   it. NFKC folds full-width ASCII, half-width katakana, U+3000 and
//!   compatibility characters such as `①`.
//! * Everything else is a single left-to-right pass that classifies each
//!   character as a *line break*, *removable invisible*, *horizontal space* or
//!   *content*. Breaks and spaces are held back in a small pending list and
//!   emitted (collapsed or verbatim) only when the next content character
//!   arrives, which makes trimming and "trailing spaces before a newline"
//!   fall out naturally.
//! * Output goes through [`Out`], which stays a borrowed view of the input for
//!   as long as everything emitted is a verbatim copy of the input at the same
//!   position. The first deviation materializes an owned `String`. So
//!   unchanged input (and input that only needs trimming) returns
//!   `Cow::Borrowed` without a separate "does this need work?" scan whose
//!   rules could drift from the real transform.
//!
//! Collapsing rules (when `collapse_whitespace` is on): any run of horizontal
//! whitespace (space, tab, U+3000, NBSP, ...) becomes one ASCII space,
//! whitespace before a line break is dropped, and more than two consecutive
//! line breaks (lines holding only whitespace count as empty) become two, i.e.
//! at most one blank line survives.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// How line breaks are written in the normalized output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Newline {
    /// Keep each line break as written (`\r\n`, `\r`, `\n`, U+0085, U+2028, U+2029).
    Keep,
    /// Rewrite every line break to a single `\n`.
    #[default]
    Lf,
}

/// Options for [`normalize`]. Every step is enabled by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeOptions {
    /// Apply Unicode NFKC compatibility normalization first.
    pub nfkc: bool,
    /// Collapse horizontal whitespace runs to one space, drop whitespace
    /// before line breaks, and limit consecutive line breaks to two.
    pub collapse_whitespace: bool,
    /// Remove leading and trailing whitespace and line breaks.
    pub trim: bool,
    /// Remove C0/C1 control characters (except tab and line breaks) and
    /// invisible format characters (U+200B, U+200C, U+200D, U+2060, U+FEFF,
    /// U+00AD). A U+200D joiner between two emoji is kept so emoji sequences
    /// such as families and flags stay intact.
    pub strip_control: bool,
    /// How line breaks are written.
    pub newline: Newline,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self { nfkc: true, collapse_whitespace: true, trim: true, strip_control: true, newline: Newline::Lf }
    }
}

/// Normalizes `text` according to `opts`.
///
/// Returns `Cow::Borrowed` (possibly a trimmed sub-slice of `text`) when no
/// character had to change, and `Cow::Owned` otherwise.
pub fn normalize<'a>(text: &'a str, opts: &NormalizeOptions) -> Cow<'a, str> {
    if opts.nfkc && !is_known_nfkc(text) {
        let composed: String = text.nfkc().collect();
        if composed != text {
            return Cow::Owned(clean(&composed, opts).into_owned());
        }
    }
    clean(text, opts)
}

/// Cheap proof that `text` is already NFKC: ASCII always is; otherwise the
/// Unicode quick-check property decides (`Maybe` counts as "not proven").
pub(crate) fn is_known_nfkc(text: &str) -> bool {
    text.is_ascii() || matches!(is_nfkc_quick(text.chars()), IsNormalized::Yes)
}

/// A held-back whitespace item: `at` is its byte offset in the source and
/// `text` what it would be written as verbatim.
#[derive(Clone, Copy)]
struct Pending<'a> {
    at: usize,
    text: &'a str,
    is_break: bool,
}

/// Output builder that stays borrowed while the output is a verbatim copy.
struct Out<'a> {
    src: &'a str,
    start: usize,
    pos: usize,
    begun: bool,
    owned: Option<String>,
}

impl<'a> Out<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, start: 0, pos: 0, begun: false, owned: None }
    }

    /// Appends `s`, which the caller produced for the source position `at`.
    fn push(&mut self, s: &str, at: usize) {
        if let Some(buf) = self.owned.as_mut() {
            buf.push_str(s);
            return;
        }
        if !self.begun {
            self.begun = true;
            self.start = at;
            self.pos = at;
        }
        let verbatim = at == self.pos && self.src.get(at..).is_some_and(|rest| rest.starts_with(s));
        if verbatim {
            self.pos += s.len();
            return;
        }
        let mut buf = String::with_capacity(self.src.len());
        buf.push_str(self.src.get(self.start..self.pos).unwrap_or(""));
        buf.push_str(s);
        self.owned = Some(buf);
    }

    fn finish(self) -> Cow<'a, str> {
        match self.owned {
            Some(buf) => Cow::Owned(buf),
            None if !self.begun => Cow::Borrowed(""),
            None => Cow::Borrowed(self.src.get(self.start..self.pos).unwrap_or("")),
        }
    }
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_pictograph(c: char) -> bool {
    matches!(u32::from(c), 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE0F)
}

/// Whether `c` is removed by `strip_control`, given its neighbours.
fn is_invisible(c: char, prev: Option<char>, next: Option<char>) -> bool {
    match c {
        '\t' => false,
        '\u{200B}' | '\u{200C}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => true,
        '\u{200D}' => !(prev.is_some_and(is_pictograph) && next.is_some_and(is_pictograph)),
        _ => c.is_control(),
    }
}

/// Emits the pending whitespace run, collapsed or verbatim.
fn flush(pending: &[Pending<'_>], collapse: bool, out: &mut Out<'_>) {
    if !collapse {
        for p in pending {
            out.push(p.text, p.at);
        }
        return;
    }
    let last_break = pending.iter().rposition(|p| p.is_break);
    match last_break {
        None => {
            if let Some(first) = pending.first() {
                out.push(" ", first.at);
            }
        }
        Some(last) => {
            for p in pending.iter().filter(|p| p.is_break).take(2) {
                out.push(p.text, p.at);
            }
            if let Some(space) = pending.get(last + 1..).and_then(|rest| rest.first()) {
                out.push(" ", space.at);
            }
        }
    }
}

/// Everything except NFKC, in one pass over `src`.
fn clean<'a>(src: &'a str, opts: &NormalizeOptions) -> Cow<'a, str> {
    let mut out = Out::new(src);
    let mut pending: Vec<Pending<'a>> = Vec::new();
    let mut last: Option<char> = None;
    let mut chars = src.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let len = c.len_utf8();
        if is_break(c) {
            let mut original = src.get(at..at + len).unwrap_or("\n");
            if c == '\r' && matches!(chars.peek(), Some(&(_, '\n'))) {
                chars.next();
                original = src.get(at..at + 2).unwrap_or("\n");
            }
            let text = match opts.newline {
                Newline::Keep => original,
                Newline::Lf => "\n",
            };
            pending.push(Pending { at, text, is_break: true });
            continue;
        }
        if opts.strip_control && is_invisible(c, last, chars.peek().map(|&(_, n)| n)) {
            continue;
        }
        if c.is_whitespace() {
            let text = src.get(at..at + len).unwrap_or(" ");
            pending.push(Pending { at, text, is_break: false });
            continue;
        }
        if !pending.is_empty() {
            let leading = !out.begun;
            if !(opts.trim && leading) {
                flush(&pending, opts.collapse_whitespace, &mut out);
            }
            pending.clear();
        }
        out.push(src.get(at..at + len).unwrap_or(""), at);
        last = Some(c);
    }
    if !opts.trim && !pending.is_empty() {
        flush(&pending, opts.collapse_whitespace, &mut out);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_off() -> NormalizeOptions {
        NormalizeOptions { nfkc: false, collapse_whitespace: false, trim: false, strip_control: false, newline: Newline::Keep }
    }

    #[test]
    fn default_table() {
        let d = NormalizeOptions::default();
        // (input, expected, expect borrowed)
        let cases: &[(&str, &str, bool)] = &[
            ("hello world", "hello world", true),
            ("", "", true),
            ("  hello  ", "hello", true),
            ("\n\n  \n", "", true),
            ("日本語のテキストです。\n\n次の段落。", "日本語のテキストです。\n\n次の段落。", true),
            ("ＡＢＣ１２３", "ABC123", false),
            ("ｶﾀｶﾅ", "カタカナ", false),
            ("①番", "1番", false),
            ("a\u{3000}\u{3000}b", "a b", false),
            ("a \t b", "a b", false),
            ("a\tb", "a b", false),
            ("a\r\nb", "a\nb", false),
            ("a\rb", "a\nb", false),
            ("a\n\n\n\nb", "a\n\nb", false),
            ("a\n \n \n \nb", "a\n\nb", false),
            ("a  \n  b", "a\n b", false),
            ("x\u{200B}y\u{FEFF}", "xy", false),
            ("\u{FEFF}title", "title", true),
            ("a\u{0007}b\u{0085}c", "ab\nc", false),
            ("a\u{9F}b", "ab", false),
            ("👨\u{200D}👩\u{200D}👧", "👨\u{200D}👩\u{200D}👧", true),
            ("a\u{200D}b", "ab", false),
            ("文\u{3000}字", "文 字", false),
            ("  \u{200B} lead", "lead", true),
        ];
        for (input, expected, borrowed) in cases {
            let got = normalize(input, &d);
            assert_eq!(got, *expected, "input {input:?}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), *borrowed, "borrow for {input:?}");
        }
    }

    #[test]
    fn options_table() {
        let keep_nl = NormalizeOptions { newline: Newline::Keep, ..NormalizeOptions::default() };
        let no_trim = NormalizeOptions { trim: false, ..NormalizeOptions::default() };
        let no_collapse = NormalizeOptions { collapse_whitespace: false, ..NormalizeOptions::default() };
        let no_nfkc = NormalizeOptions { nfkc: false, ..NormalizeOptions::default() };
        let no_strip = NormalizeOptions { strip_control: false, ..NormalizeOptions::default() };
        let cases: &[(&NormalizeOptions, &str, &str)] = &[
            (&keep_nl, "a\r\nb", "a\r\nb"),
            (&keep_nl, "a\r\n\r\n\r\nb", "a\r\n\r\nb"),
            (&no_trim, "  a  ", " a "),
            (&no_trim, "\n\n\na", "\n\na"),
            (&no_collapse, "  a  b  ", "a  b"),
            (&no_collapse, "a \n\n\n b", "a \n\n\n b"),
            (&no_nfkc, "ＡＢＣ", "ＡＢＣ"),
            (&no_nfkc, "a\u{3000}\u{3000}b", "a b"),
            (&no_strip, "a\u{200B}b", "a\u{200B}b"),
            (&all_off(), " a\u{0}\r\n\t ", " a\u{0}\r\n\t "),
        ];
        for (opts, input, expected) in cases {
            assert_eq!(normalize(input, opts), *expected, "input {input:?} opts {opts:?}");
        }
    }

    #[test]
    fn unchanged_text_borrows_whole_input() {
        let text = "Plain text.\nSecond line with 日本語 and ascii.";
        match normalize(text, &NormalizeOptions::default()) {
            Cow::Borrowed(s) => assert!(std::ptr::eq(s, text)),
            Cow::Owned(_) => panic!("expected borrowed"),
        }
    }

    #[test]
    fn idempotent_on_messy_input() {
        let d = NormalizeOptions::default();
        let inputs = [" \u{FEFF}ＴＥＳＴ\t\t text\r\n\r\n\r\n\u{3000}次　の　行 \u{200B}\n", "\u{85}\u{2028}a\u{2029}b", "ｱｲｳ ① ㍻ \u{7}"];
        for input in inputs {
            let once = normalize(input, &d).into_owned();
            let twice = normalize(&once, &d);
            assert_eq!(twice, once.as_str(), "input {input:?}");
            assert!(matches!(twice, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn serde_roundtrip_with_defaults() {
        let opts: NormalizeOptions = serde_json::from_str(r#"{"nfkc": false, "newline": "keep"}"#).unwrap_or_default();
        assert!(!opts.nfkc);
        assert!(opts.trim);
        assert_eq!(opts.newline, Newline::Keep);
    }
}
