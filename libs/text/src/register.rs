//! Japanese politeness register (丁寧語 vs. 普通体) of sentence endings.
//!
//! Design: a deliberately small, table-driven heuristic over sentence
//! *endings* only, because register in Japanese is marked at the end of the
//! predicate (です/ます vs. だ/る-form).
//!
//! 1. Quoted speech inside 「」 and 『』 is removed (nesting is tracked; a line
//!    break resets an unclosed quote so one stray bracket cannot hide the
//!    rest of a document). A quote's own register belongs to the quoted
//!    speaker, not the writer.
//! 2. The rest is split on 。！？!?．｡ and line breaks.
//! 3. Each sentence is trimmed from the right: whitespace, emoji, symbols,
//!    Latin letters (`w`), trailing parentheticals such as （笑）, and
//!    lengthening marks (ー 〜 っ) go. Then sentence-final particles
//!    (よ ね な わ ぞ ぜ さ か の and combinations such as よね かな) are
//!    peeled off, at most four times.
//! 4. The remaining ending is matched: polite endings first (です ます でした
//!    ました ません でしょう ましょう ください ございます ませ っす), then plain
//!    ones (だ である だった ではない じゃない じゃん だろう でしょ, and the last
//!    kana of a plain predicate: た い う く ぐ す つ ぬ ぶ む る ろ).
//!    Anything else (noun endings 体言止め, katakana, kanji, connective endings
//!    such as ですが / けど) is unknown, as are sentences without kana and
//!    bare interjections (はい, いいえ, うん, ...).
//!
//! Mid-sentence polite forms (「雨ですが、行く。」) do not count: only the end
//! of each sentence is looked at.

use serde::{Deserialize, Serialize};

/// The register of one sentence ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Register {
    /// 丁寧語: です/ます style.
    Polite,
    /// 普通体: だ/である or plain verb and adjective endings.
    Plain,
}

/// Counts of classified sentence endings in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegisterReport {
    /// Sentences ending in the polite register.
    pub polite: usize,
    /// Sentences ending in the plain register.
    pub plain: usize,
    /// The register with strictly more sentences; `None` on a tie (including
    /// no classified sentence at all).
    pub dominant: Option<Register>,
    /// Whether both registers occur.
    pub mixed: bool,
}

const POLITE_ENDINGS: &[&str] = &["です", "ます", "でした", "ました", "ません", "でしょう", "ましょう", "ください", "下さい", "ございます", "ませ", "っす"];
const PLAIN_ENDINGS: &[&str] = &["だ", "である", "だった", "ではない", "じゃない", "じゃん", "だろう", "だろ", "でしょ"];
const PLAIN_LAST_KANA: &[char] = &['た', 'い', 'う', 'く', 'ぐ', 'す', 'つ', 'ぬ', 'ぶ', 'む', 'る', 'ろ'];
/// Longest first, so that よね is peeled before ね.
const FINAL_PARTICLES: &[&str] = &["かしら", "よね", "かな", "かね", "っけ", "よ", "ね", "な", "わ", "ぞ", "ぜ", "さ", "か", "の"];
const INTERJECTIONS: &[&str] = &["はい", "いいえ", "ええ", "うん", "ううん", "いや", "おい", "ああ"];

fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{309F}')
}

fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A0}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9D}')
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '\u{3005}' | '\u{3006}')
}

fn is_japanese_letter(c: char) -> bool {
    is_hiragana(c) || is_katakana(c) || is_han(c)
}

fn is_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '!' | '?' | '．' | '｡' | '\n' | '\r')
}

/// Removes quoted spans 「…」 and 『…』 (with nesting).
fn strip_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '「' | '『' => depth += 1,
            '」' | '』' => depth = depth.saturating_sub(1),
            '\n' => {
                depth = 0;
                out.push(c);
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Trims decoration from the end of a sentence.
fn trim_ending(mut s: &str) -> &str {
    loop {
        let Some(last) = s.chars().next_back() else { return s };
        let cut = match last {
            ')' | '）' => s.rfind(['(', '（']).unwrap_or(s.len() - last.len_utf8()),
            'ー' | '〜' | '～' | 'っ' | 'ッ' => s.len() - last.len_utf8(),
            c if !is_japanese_letter(c) => s.len() - last.len_utf8(),
            _ => return s,
        };
        s = s.get(..cut).unwrap_or("");
    }
}

/// Peels sentence-final particles (at most four).
fn strip_particles(mut s: &str) -> &str {
    for _ in 0..4 {
        let Some(rest) = FINAL_PARTICLES.iter().find_map(|p| s.strip_suffix(p)) else { break };
        if rest.is_empty() {
            break;
        }
        s = rest;
    }
    s
}

/// Classifies one sentence by its ending; `None` means unknown.
///
/// The sentence should not contain a terminator in the middle; quotes are
/// not removed here (see [`analyze`]).
pub fn classify_sentence(sentence: &str) -> Option<Register> {
    if !sentence.chars().any(|c| is_hiragana(c) || is_katakana(c)) {
        return None;
    }
    let ending = strip_particles(trim_ending(sentence.trim()));
    if INTERJECTIONS.contains(&ending) {
        return None;
    }
    if POLITE_ENDINGS.iter().any(|e| ending.ends_with(e)) {
        return Some(Register::Polite);
    }
    if PLAIN_ENDINGS.iter().any(|e| ending.ends_with(e)) || ending.chars().next_back().is_some_and(|c| PLAIN_LAST_KANA.contains(&c)) {
        return Some(Register::Plain);
    }
    None
}

/// Counts polite and plain sentence endings in `text`, ignoring quoted
/// speech in 「」『』.
pub fn analyze(text: &str) -> RegisterReport {
    let unquoted = strip_quotes(text);
    let mut report = RegisterReport::default();
    for sentence in unquoted.split(is_terminator) {
        match classify_sentence(sentence) {
            Some(Register::Polite) => report.polite += 1,
            Some(Register::Plain) => report.plain += 1,
            None => {}
        }
    }
    report.dominant = match report.polite.cmp(&report.plain) {
        std::cmp::Ordering::Greater => Some(Register::Polite),
        std::cmp::Ordering::Less => Some(Register::Plain),
        std::cmp::Ordering::Equal => None,
    };
    report.mixed = report.polite > 0 && report.plain > 0;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use Register::{Plain, Polite};

    #[test]
    fn sentence_table() {
        let cases: &[(&str, Option<Register>)] = &[
            ("今日は晴れです", Some(Polite)),
            ("明日は雨が降ります", Some(Polite)),
            ("昨日は楽しかったです", Some(Polite)),
            ("もう食べました", Some(Polite)),
            ("それは知りません", Some(Polite)),
            ("たぶん大丈夫でしょう", Some(Polite)),
            ("一緒に行きましょう", Some(Polite)),
            ("こちらをご覧ください", Some(Polite)),
            ("ありがとうございます", Some(Polite)),
            ("いらっしゃいませ", Some(Polite)),
            ("これは何ですか", Some(Polite)),
            ("いい天気ですね", Some(Polite)),
            ("きっと間に合いますよ", Some(Polite)),
            ("そうなんですよね", Some(Polite)),
            ("よろしくお願いします（笑）", Some(Polite)),
            ("楽しかったです🎉", Some(Polite)),
            ("ではありません", Some(Polite)),
            ("今日は晴れだ", Some(Plain)),
            ("これはペンである", Some(Plain)),
            ("昨日は雨だった", Some(Plain)),
            ("それは問題ではない", Some(Plain)),
            ("そんなの無理じゃない", Some(Plain)),
            ("やればできるのだ", Some(Plain)),
            ("明日は晴れるだろう", Some(Plain)),
            ("もう行くぞ", Some(Plain)),
            ("本を読んだ", Some(Plain)),
            ("このケーキは美味しい", Some(Plain)),
            ("毎日走る", Some(Plain)),
            ("行かないよ", Some(Plain)),
            ("それでいいのか", Some(Plain)),
            ("頑張ろう", Some(Plain)),
            ("そうだね", Some(Plain)),
            ("だよねー", Some(Plain)),
            ("雨ですが", None),
            ("行くけど", None),
            ("東京タワー", None),
            ("以上", None),
            ("はい", None),
            ("Hello world", None),
            ("😊", None),
            ("", None),
        ];
        for (sentence, expected) in cases {
            assert_eq!(classify_sentence(sentence), *expected, "sentence {sentence:?}");
        }
    }

    #[test]
    fn analyze_table() {
        // (text, polite, plain)
        let cases: &[(&str, usize, usize)] = &[
            ("今日は晴れです。明日も晴れるでしょう。", 2, 0),
            ("雨ですが、行きます。", 1, 0),
            ("雨ですが、行く。", 0, 1),
            ("彼は「そうだ」と言いました。", 1, 0),
            ("「行くぞ！」と彼は叫んだ。", 0, 1),
            ("『それは違います。』と書いた", 0, 1),
            ("これは何ですか？それは本だ！", 1, 1),
            ("ありがとうございます！😊", 1, 0),
            ("楽しかったです🎉", 1, 0),
            ("Hello world. This is English!", 0, 0),
            ("見出し\n本文を書きました\n\n結論である", 1, 1),
            ("そうですね…", 1, 0),
            ("雨ですが…", 0, 0),
            ("「閉じない引用だ\n次の行です。", 1, 0),
            ("", 0, 0),
        ];
        for (text, polite, plain) in cases {
            let r = analyze(text);
            assert_eq!((r.polite, r.plain), (*polite, *plain), "text {text:?}");
            assert_eq!(r.mixed, *polite > 0 && *plain > 0);
        }
    }

    #[test]
    fn dominant_register() {
        assert_eq!(analyze("行きます。食べます。寝る。").dominant, Some(Polite));
        assert_eq!(analyze("行く。食べる。寝ます。").dominant, Some(Plain));
        assert_eq!(analyze("行く。寝ます。").dominant, None);
        assert_eq!(analyze("English only.").dominant, None);
        let r = analyze("行く。寝ます。");
        assert!(r.mixed);
    }

    #[test]
    fn report_serializes() {
        let json = serde_json::to_string(&analyze("行きます。")).unwrap_or_default();
        assert_eq!(json, r#"{"polite":1,"plain":0,"dominant":"polite","mixed":false}"#);
    }
}
