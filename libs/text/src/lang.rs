//! A cheap, script-based language guess.
//!
//! Design: count letters per script in one pass, then apply a few ordered
//! rules. This is not a statistical language identifier; it is meant for
//! routing and sanity checks in a Japanese/English-centric pipeline, where
//! the script alone settles most cases:
//!
//! 1. No letters at all → `None`.
//! 2. Kana (hiragana + katakana) make up at least 10 % of all letters →
//!    `"ja"`. Japanese prose is typically 40–70 % kana, and this rule also
//!    keeps Japanese text that embeds much English (code, product names)
//!    classified as Japanese.
//! 3. Otherwise the script with the most letters wins:
//!    * Han → `"ja"` if kana are at least 5 % of Han + kana, else `"zh"`;
//!    * Hangul → `"ko"`;
//!    * Latin → `"en"` if at least 10 % of the words are common English
//!      function words (the, of, and, ...; words shared with other Latin
//!      languages such as "a", "in", "on", "was" are left out), else
//!      `"latin"`;
//!    * Cyrillic → `"cyrillic"`; anything else → `"other"`.
//!
//! Short English fragments without function words ("Hello world") are
//! reported as `"latin"`; callers that need more precision should use a real
//! language-identification model.

const FUNCTION_WORDS: &[&str] = &[
    "the", "of", "and", "to", "is", "it", "that", "for", "with", "as", "be", "this", "by", "at", "from", "or", "have", "are", "not", "you", "he", "we", "they",
    "but", "his", "her", "which", "there", "has", "were", "been", "would", "what", "their", "if", "about", "can", "your", "my", "she", "its", "does", "did",
    "than", "these", "those", "our", "will", "should", "could", "when", "who",
];

#[derive(Default)]
struct ScriptCounts {
    hiragana: usize,
    katakana: usize,
    han: usize,
    hangul: usize,
    latin: usize,
    cyrillic: usize,
    other: usize,
}

fn count_scripts(text: &str) -> ScriptCounts {
    let mut n = ScriptCounts::default();
    for c in text.chars() {
        match u32::from(c) {
            0x3041..=0x309F => n.hiragana += 1,
            0x30A1..=0x30FA | 0x30FC..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9D => n.katakana += 1,
            0x4E00..=0x9FFF | 0x3005..=0x3007 | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF => n.han += 1,
            0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => n.hangul += 1,
            _ if !c.is_alphabetic() => {}
            0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF | 0xFF21..=0xFF3A | 0xFF41..=0xFF5A => n.latin += 1,
            0x400..=0x52F => n.cyrillic += 1,
            _ => n.other += 1,
        }
    }
    n
}

/// Share of ASCII-lowercased words that are common English function words.
fn english_function_word_share(text: &str) -> f64 {
    let (mut words, mut hits) = (0usize, 0usize);
    for word in text.split(|c: char| !c.is_alphabetic() && c != '\'').filter(|w| !w.is_empty()) {
        words += 1;
        let lower = word.to_ascii_lowercase();
        if FUNCTION_WORDS.contains(&lower.as_str()) {
            hits += 1;
        }
    }
    if words == 0 { 0.0 } else { hits as f64 / words as f64 }
}

/// Guesses the language of `text` from its scripts: `"ja"`, `"zh"`, `"ko"`,
/// `"en"`, `"latin"`, `"cyrillic"` or `"other"`; `None` when the text has no
/// letters.
pub fn detect(text: &str) -> Option<&'static str> {
    let n = count_scripts(text);
    let kana = n.hiragana + n.katakana;
    let letters = kana + n.han + n.hangul + n.latin + n.cyrillic + n.other;
    if letters == 0 {
        return None;
    }
    if kana * 10 >= letters {
        return Some("ja");
    }
    let cjk = kana + n.han;
    let top = cjk.max(n.hangul).max(n.latin).max(n.cyrillic).max(n.other);
    let guess = if top == cjk {
        if kana * 20 >= cjk { "ja" } else { "zh" }
    } else if top == n.hangul {
        "ko"
    } else if top == n.latin {
        if english_function_word_share(text) >= 0.1 { "en" } else { "latin" }
    } else if top == n.cyrillic {
        "cyrillic"
    } else {
        "other"
    };
    Some(guess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("12345 !!! 😊", None),
            ("今日はいい天気ですね。", Some("ja")),
            ("カタカナだけのテキスト", Some("ja")),
            ("RustのLLM fine-tuningパイプラインを設計する", Some("ja")),
            ("東京都渋谷区で新製品発表会を開催しました", Some("ja")),
            ("我们今天去公园散步，天气很好。", Some("zh")),
            ("오늘은 날씨가 좋네요.", Some("ko")),
            ("The model learns from the data and it improves over time.", Some("en")),
            ("This is a test of the detector.", Some("en")),
            ("Hello world", Some("latin")),
            ("Le chat dort sur la table depuis ce matin.", Some("latin")),
            ("Der Hund spielt gern im Garten mit dem Ball.", Some("latin")),
            ("Привет, как дела?", Some("cyrillic")),
            ("مرحبا بالعالم", Some("other")),
        ];
        for (text, want) in cases {
            assert_eq!(detect(text), *want, "{text:?}");
        }
    }

    #[test]
    fn function_word_share() {
        assert!((english_function_word_share("the cat and the dog") - 0.6).abs() < 1e-9);
        assert_eq!(english_function_word_share("123"), 0.0);
    }
}
