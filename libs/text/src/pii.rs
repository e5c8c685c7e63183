//! Detection and redaction of personal data: e-mail addresses, phone
//! numbers, URLs, IPv4 addresses and payment card numbers.
//!
//! Design:
//!
//! * Each kind has one or more regexes compiled once (`LazyLock`). A regex
//!   only proposes candidates; plain Rust code then validates them, because
//!   the `regex` crate has no look-around and because some rules are not
//!   regular (octet ranges, digit counts, the Luhn checksum).
//! * Boundaries are checked by hand instead of with `\b`: Unicode `\b` sees no
//!   boundary between `は` and `1`, so "電話は090-…" would be missed. A number
//!   must not touch another digit (ASCII or full-width), nor a `-`, `.` or
//!   `/` that itself touches a digit; this rejects fragments of longer
//!   numbers, dates and versions.
//! * Phone numbers accept ASCII and full-width digits and the usual dash
//!   look-alikes (`－`, `‐`, `−`, `ー`, ...). Formats: international
//!   (`+81 90-1234-5678`), Japanese domestic (must start with `0`, 10–11
//!   digits), North American (`(555) 123-4567`, `555-123-4567`).
//! * Card numbers are maximal runs of digit groups joined by single spaces or
//!   dashes; the longest group-aligned sub-run with 13–19 digits and a valid
//!   Luhn checksum is reported.
//! * Overlaps between kinds are resolved by earliest start, then longest
//!   match, then kind priority (URL > e-mail > card > IP > phone), so an
//!   address inside a URL is reported once, as a URL.
//! * Nothing here panics: offsets are checked with `str::get`, and a regex
//!   that failed to compile (impossible for the fixed patterns, which the
//!   tests compile) simply yields no matches.

use std::sync::LazyLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A category of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A web address (`http`, `https`, `ftp` or `www.`).
    Url,
    /// An IPv4 address.
    Ip,
    /// A payment card number that passes the Luhn check.
    CreditCard,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 5] = [PiiKind::Email, PiiKind::Phone, PiiKind::Url, PiiKind::Ip, PiiKind::CreditCard];

    /// The text that [`redact`] writes in place of a match of this kind.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Url => "[URL]",
            PiiKind::Ip => "[IP]",
            PiiKind::CreditCard => "[CREDIT_CARD]",
        }
    }

    fn priority(self) -> u8 {
        match self {
            PiiKind::Url => 0,
            PiiKind::Email => 1,
            PiiKind::CreditCard => 2,
            PiiKind::Ip => 3,
            PiiKind::Phone => 4,
        }
    }
}

/// One detected span: `text[start..end]` (byte offsets on char boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiMatch {
    /// What was found.
    pub kind: PiiKind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

const DIGIT: &str = "[0-9０-９]";
const SEP: &str = "[-‐‑‒–—−－ー 　]";

fn compile(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

static EMAIL: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}"));
static URL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(r"(?i:https?|ftp)://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+|(?i:www)\.[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
});
static IPV4: LazyLock<Option<Regex>> = LazyLock::new(|| compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"));
static PHONE_INTL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let d = DIGIT;
    compile(&format!(r"[+＋]{d}{{1,3}}(?:[ \-－.]?[(（]{d}{{1,4}}[)）]|[ \-－.]{d}{{1,4}}){{2,5}}|[+＋]{d}{{9,14}}"))
});
static PHONE_JP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let (d, s) = (DIGIT, SEP);
    compile(&format!(r"(?:[(（][0０]{d}{{1,4}}[)）]{s}?|[0０]{d}{{1,4}}(?:{s}|[(（])){d}{{1,4}}(?:{s}|[)）]){d}{{3,4}}|[0０][5789５７８９][0０]{d}{{8}}"))
});
static PHONE_US: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let d = DIGIT;
    compile(&format!(r"(?:1[-. ]?)?(?:\({d}{{3}}\) ?|{d}{{3}}[-. ]){d}{{3}}[-.]{d}{{4}}"))
});
static DIGIT_RUN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let d = DIGIT;
    compile(&format!(r"{d}+(?:[ \-－]{d}+)*"))
});

/// Numeric value of an ASCII or full-width decimal digit.
fn digit_value(c: char) -> Option<u32> {
    match c {
        '0'..='9' => c.to_digit(10),
        '０'..='９' => Some(u32::from(c) - u32::from('０')),
        _ => None,
    }
}

fn is_digit(c: char) -> bool {
    digit_value(c).is_some()
}

fn is_joiner(c: char) -> bool {
    matches!(c, '-' | '.' | '/' | '－' | '‐' | '−' | '．')
}

/// Whether `text[start..end]` is not glued to surrounding digits (or, with
/// `no_alnum`, to ASCII letters and digits).
fn clean_edges(text: &str, start: usize, end: usize, no_alnum: bool) -> bool {
    let mut before = text.get(..start).unwrap_or("").chars().rev();
    if let Some(c) = before.next() {
        if is_digit(c) || (no_alnum && (c.is_ascii_alphanumeric() || c == '.')) {
            return false;
        }
        if is_joiner(c) && before.next().is_some_and(is_digit) {
            return false;
        }
    }
    let mut after = text.get(end..).unwrap_or("").chars();
    if let Some(c) = after.next() {
        if is_digit(c) || (no_alnum && c.is_ascii_alphanumeric()) {
            return false;
        }
        if is_joiner(c) && after.next().is_some_and(is_digit) {
            return false;
        }
    }
    true
}

fn digit_count(s: &str) -> usize {
    s.chars().filter(|&c| is_digit(c)).count()
}

fn each_match(re: &LazyLock<Option<Regex>>, text: &str, mut f: impl FnMut(usize, usize)) {
    if let Some(re) = re.as_ref() {
        for m in re.find_iter(text) {
            f(m.start(), m.end());
        }
    }
}

/// Drops trailing punctuation that usually ends the sentence, not the URL.
fn url_end(text: &str, start: usize, mut end: usize) -> usize {
    while let Some(s) = text.get(start..end) {
        let Some(last) = s.chars().next_back() else { break };
        let unbalanced = |open: char, close: char| s.matches(close).count() > s.matches(open).count();
        let drop = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' => unbalanced('(', ')'),
            ']' => unbalanced('[', ']'),
            _ => false,
        };
        if !drop {
            break;
        }
        end -= last.len_utf8();
    }
    end
}

fn find_cards(text: &str, out: &mut Vec<PiiMatch>) {
    each_match(&DIGIT_RUN, text, |start, end| {
        let Some(run) = text.get(start..end) else { return };
        if digit_count(run) < 13 || !clean_edges(text, start, end, false) {
            return;
        }
        // (byte start, byte end, digits) of each group in the run.
        let mut groups: Vec<(usize, usize, Vec<u32>)> = Vec::new();
        for (off, c) in run.char_indices() {
            let Some(v) = digit_value(c) else { continue };
            match groups.last_mut() {
                Some(g) if g.1 == start + off => {
                    g.1 += c.len_utf8();
                    g.2.push(v);
                }
                _ => groups.push((start + off, start + off + c.len_utf8(), vec![v])),
            }
        }
        // Longest group-aligned sub-run of at most 19 digits per start, so
        // the scan is linear even for long tables of numbers.
        let mut i = 0;
        while let Some(first) = groups.get(i) {
            let mut digits: Vec<u32> = Vec::with_capacity(19);
            let mut best = None;
            for (j, g) in groups.iter().enumerate().skip(i) {
                if digits.len() + g.2.len() > 19 {
                    break;
                }
                digits.extend_from_slice(&g.2);
                if digits.len() >= 13 && luhn_valid(&digits) {
                    best = Some((j, g.1));
                }
            }
            match best {
                Some((j, end)) => {
                    out.push(PiiMatch { kind: PiiKind::CreditCard, start: first.0, end });
                    i = j + 1;
                }
                None => i += 1,
            }
        }
    });
}

/// Luhn checksum over decimal digits (most significant first).
pub fn luhn_valid(digits: &[u32]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let sum: u32 = digits.iter().rev().enumerate().map(|(i, &d)| if !i.is_multiple_of(2) { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }).sum();
    sum.is_multiple_of(10)
}

fn find_phones(text: &str, out: &mut Vec<PiiMatch>) {
    let patterns: [(&LazyLock<Option<Regex>>, std::ops::RangeInclusive<usize>); 3] = [(&PHONE_INTL, 8..=15), (&PHONE_JP, 10..=11), (&PHONE_US, 10..=11)];
    for (re, digits) in patterns {
        each_match(re, text, |start, end| {
            let count = text.get(start..end).map(digit_count).unwrap_or(0);
            if digits.contains(&count) && clean_edges(text, start, end, false) {
                out.push(PiiMatch { kind: PiiKind::Phone, start, end });
            }
        });
    }
}

/// Finds personal data of the requested `kinds` in `text`.
///
/// The result is sorted by `start` and contains no overlapping spans. An
/// empty `kinds` slice finds nothing; pass [`PiiKind::ALL`] for everything.
pub fn find_pii(text: &str, kinds: &[PiiKind]) -> Vec<PiiMatch> {
    let mut found = Vec::new();
    if kinds.contains(&PiiKind::Email) {
        each_match(&EMAIL, text, |start, end| found.push(PiiMatch { kind: PiiKind::Email, start, end }));
    }
    if kinds.contains(&PiiKind::Url) {
        each_match(&URL, text, |start, end| {
            let end = url_end(text, start, end);
            if end > start {
                found.push(PiiMatch { kind: PiiKind::Url, start, end });
            }
        });
    }
    if kinds.contains(&PiiKind::Ip) {
        each_match(&IPV4, text, |start, end| {
            let octets_ok = text.get(start..end).is_some_and(|s| s.split('.').all(|o| o.parse::<u32>().is_ok_and(|v| v <= 255)));
            if octets_ok && clean_edges(text, start, end, true) {
                found.push(PiiMatch { kind: PiiKind::Ip, start, end });
            }
        });
    }
    if kinds.contains(&PiiKind::CreditCard) {
        find_cards(text, &mut found);
    }
    if kinds.contains(&PiiKind::Phone) {
        find_phones(text, &mut found);
    }
    resolve_overlaps(found)
}

fn resolve_overlaps(mut found: Vec<PiiMatch>) -> Vec<PiiMatch> {
    found.retain(|m| m.end > m.start);
    found.sort_by(|a, b| a.start.cmp(&b.start).then((b.end - b.start).cmp(&(a.end - a.start))).then(a.kind.priority().cmp(&b.kind.priority())));
    let mut out: Vec<PiiMatch> = Vec::with_capacity(found.len());
    for m in found {
        if out.last().is_none_or(|last| m.start >= last.end) {
            out.push(m);
        }
    }
    out
}

/// Replaces each match with its kind's placeholder (`[EMAIL]`, `[PHONE]`,
/// `[URL]`, `[IP]`, `[CREDIT_CARD]`).
///
/// Robust to arbitrary input: matches are sorted first, and spans that are
/// empty, out of range, not on char boundaries or overlapping an earlier one
/// are skipped.
pub fn redact(text: &str, matches: &[PiiMatch]) -> String {
    let mut valid: Vec<&PiiMatch> = matches.iter().filter(|m| m.start < m.end && text.get(m.start..m.end).is_some()).collect();
    valid.sort_by_key(|m| (m.start, std::cmp::Reverse(m.end)));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for m in valid {
        if m.start < cursor {
            continue;
        }
        out.push_str(text.get(cursor..m.start).unwrap_or(""));
        out.push_str(m.kind.placeholder());
        cursor = m.end;
    }
    out.push_str(text.get(cursor..).unwrap_or(""));
    out
}

/// Convenience: [`find_pii`] followed by [`redact`].
pub fn redact_pii(text: &str, kinds: &[PiiKind]) -> String {
    redact(text, &find_pii(text, kinds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans<'a>(text: &'a str, kinds: &[PiiKind]) -> Vec<(PiiKind, &'a str)> {
        find_pii(text, kinds).iter().map(|m| (m.kind, text.get(m.start..m.end).unwrap_or("?"))).collect()
    }

    #[test]
    fn all_patterns_compile() {
        for re in [&EMAIL, &URL, &IPV4, &PHONE_INTL, &PHONE_JP, &PHONE_US, &DIGIT_RUN] {
            assert!(re.is_some());
        }
    }

    #[test]
    fn positives_table() {
        use PiiKind::*;
        let cases: &[(&str, PiiKind, &str)] = &[
            ("連絡先: taro.yamada+ml@example.co.jp まで", Email, "taro.yamada+ml@example.co.jp"),
            ("mail me at a_b@x-y.org.", Email, "a_b@x-y.org"),
            ("電話は+81 90-1234-5678です", Phone, "+81 90-1234-5678"),
            ("携帯090-1234-5678に", Phone, "090-1234-5678"),
            ("TEL 03-1234-5678", Phone, "03-1234-5678"),
            ("フリーダイヤル0120-123-456まで", Phone, "0120-123-456"),
            ("電話：０９０－１２３４－５６７８", Phone, "０９０－１２３４－５６７８"),
            ("番号は09012345678です", Phone, "09012345678"),
            ("call (555) 123-4567 now", Phone, "(555) 123-4567"),
            ("call 555-123-4567.", Phone, "555-123-4567"),
            ("or +1 555-123-4567", Phone, "+1 555-123-4567"),
            ("London +44 20 7946 0958", Phone, "+44 20 7946 0958"),
            ("see https://example.com/a?b=1&c=2.", Url, "https://example.com/a?b=1&c=2"),
            ("(https://en.wikipedia.org/wiki/Rust_(language))", Url, "https://en.wikipedia.org/wiki/Rust_(language)"),
            ("詳細はhttps://example.jp/docsを参照", Url, "https://example.jp/docs"),
            ("visit www.example.com today", Url, "www.example.com"),
            ("サーバーは192.168.0.1です", Ip, "192.168.0.1"),
            ("host 10.0.0.255:8080", Ip, "10.0.0.255"),
            ("card 4111 1111 1111 1111 exp", CreditCard, "4111 1111 1111 1111"),
            ("カード番号4111-1111-1111-1111で", CreditCard, "4111-1111-1111-1111"),
            ("amex 378282246310005", CreditCard, "378282246310005"),
            ("card 4111 1111 1111 1111 2025", CreditCard, "4111 1111 1111 1111"),
        ];
        for (text, kind, expected) in cases {
            assert_eq!(spans(text, &PiiKind::ALL), vec![(*kind, *expected)], "text {text:?}");
        }
    }

    #[test]
    fn negatives_table() {
        let cases = [
            "2024-01-15に公開",
            "version 1.2.3 released",
            "v1.2.3.4 build",
            "IP 999.1.1.1 is invalid",
            "1.2.3.4.5",
            "card 4111 1111 1111 1112",
            "id 12345678901234567890123",
            "pi is 3.14159265358979323846",
            "価格は1,234円、数量は12個",
            "2024年1月15日 10:30",
            "user@localhost",
            "ISBN 978-4-87311-565-8",
            "",
        ];
        for text in cases {
            assert_eq!(spans(text, &PiiKind::ALL), vec![], "text {text:?}");
        }
    }

    #[test]
    fn long_number_tables_stay_linear() {
        let table = "12 ".repeat(20_000);
        assert!(find_pii(&table, &PiiKind::ALL).is_empty());
        let with_card = format!("{table}x 4111 1111 1111 1111 x {table}");
        assert_eq!(find_pii(&with_card, &[PiiKind::CreditCard]).len(), 1);
    }

    #[test]
    fn overlaps_and_kind_filter() {
        let text = "https://user@example.com/x と bob@example.com";
        assert_eq!(spans(text, &PiiKind::ALL), vec![(PiiKind::Url, "https://user@example.com/x"), (PiiKind::Email, "bob@example.com")]);
        assert_eq!(spans(text, &[PiiKind::Email]).len(), 2);
        assert!(find_pii(text, &[]).is_empty());
        assert!(find_pii(text, &[PiiKind::Phone, PiiKind::Ip]).is_empty());
    }

    #[test]
    fn redaction() {
        let text = "Mail a@b.io or call 090-1234-5678 from 8.8.8.8";
        assert_eq!(redact_pii(text, &PiiKind::ALL), "Mail [EMAIL] or call [PHONE] from [IP]");
        let card = "支払い: 5555 5555 5555 4444。";
        assert_eq!(redact_pii(card, &PiiKind::ALL), "支払い: [CREDIT_CARD]。");
    }

    #[test]
    fn redact_tolerates_bad_matches() {
        let text = "日本語abc";
        let bad = [
            PiiMatch { kind: PiiKind::Url, start: 1, end: 2 },
            PiiMatch { kind: PiiKind::Url, start: 9, end: 100 },
            PiiMatch { kind: PiiKind::Ip, start: 9, end: 10 },
            PiiMatch { kind: PiiKind::Ip, start: 5, end: 3 },
            PiiMatch { kind: PiiKind::Email, start: 0, end: 3 },
            PiiMatch { kind: PiiKind::Phone, start: 0, end: 6 },
        ];
        assert_eq!(redact(text, &bad), "[PHONE]語[IP]bc");
    }

    #[test]
    fn serde_names() {
        let names: Vec<String> = PiiKind::ALL.iter().filter_map(|k| serde_json::to_string(k).ok()).collect();
        assert_eq!(names, ["\"email\"", "\"phone\"", "\"url\"", "\"ip\"", "\"credit_card\""]);
        let m = PiiMatch { kind: PiiKind::CreditCard, start: 1, end: 2 };
        let json = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(json, r#"{"kind":"credit_card","start":1,"end":2}"#);
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(!luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
        assert!(!luhn_valid(&[]));
    }
}
