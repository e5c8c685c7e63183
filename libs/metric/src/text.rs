//! Pass/fail checks on one output: exact match, containment, regex, JSON,
//! JSON Schema and Japanese register.
//!
//! Design: every check is a small pure function over `&str` so it can run
//! per sample and in parallel; anything that must be compiled (a regex, a
//! schema) is compiled once by the caller ([`super::Scorer`]) and passed in.
//! Checks that can explain a failure return `Result<(), String>` with the
//! reason a reviewer reads; the scorer turns that into `1.0` / `0.0`.
//!
//! Decisions:
//!
//! * [`normalize`] (used by exact match and containment) is Unicode NFKC,
//!   trimming, and collapsing every run of Unicode whitespace to one ASCII
//!   space. NFKC folds full-width ASCII (`ＡＢＣ１２３` → `ABC123`), half-width
//!   katakana (`ｶﾀｶﾅ` → `カタカナ`) and the ideographic space U+3000. There is
//!   no case folding: `Paris` and `paris` differ.
//! * The regex, JSON and JSON Schema checks look at the output with leading
//!   and trailing whitespace removed, so a trailing newline does not break
//!   `^\{.*\}$`. The regex is a *search* (it may match anywhere) unless the
//!   pattern anchors itself with `^` / `$` (or `\A` / `\z`); `.` does not
//!   match a line break unless the pattern enables `(?s)`.
//! * JSON validity is strict: the trimmed output must be one JSON document.
//!   A Markdown fence (```` ```json … ``` ````) is *not* unwrapped, because a
//!   downstream `json.loads` would reject it too; a model that fences its
//!   JSON should fail this metric.
//! * Register passes when the output has at least one sentence ending in the
//!   wanted register and none in the other (sentences whose ending the
//!   analyzer cannot classify, such as 体言止め, are ignored). An output
//!   with no classifiable ending fails: it does not show the register.

use std::fmt::Write as _;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use tailor_text::register::{self, Register};

/// Unicode NFKC, then trim, then collapse each internal whitespace run to one
/// ASCII space. Used by [`exact_match`] and [`contains`].
pub fn normalize(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    let mut out = String::with_capacity(nfkc.len());
    for word in nfkc.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Whether `output` equals `reference` after [`normalize`].
pub fn exact_match(output: &str, reference: &str) -> bool {
    normalize(output) == normalize(reference)
}

/// Whether the normalized `reference` occurs in the normalized `output`.
/// An empty (after normalization) reference is contained in every output.
pub fn contains(output: &str, reference: &str) -> bool {
    normalize(output).contains(&normalize(reference))
}

/// Whether `re` matches somewhere in the trimmed output.
pub fn regex_match(re: &regex::Regex, output: &str) -> Result<(), String> {
    if re.is_match(output.trim()) { Ok(()) } else { Err(format!("does not match /{}/", re.as_str())) }
}

/// Parses the trimmed output as one JSON document.
pub fn parse_json(output: &str) -> Result<Value, String> {
    serde_json::from_str(output.trim()).map_err(|e| format!("not valid JSON ({e})"))
}

/// Whether the trimmed output is valid JSON.
pub fn json_valid(output: &str) -> Result<(), String> {
    parse_json(output).map(|_| ())
}

/// Whether the trimmed output is valid JSON that passes `schema`; on failure
/// the message names the first schema error and where it is.
pub fn json_schema_valid(schema: &jsonschema::Validator, output: &str) -> Result<(), String> {
    let value = parse_json(output)?;
    match schema.iter_errors(&value).next() {
        None => Ok(()),
        Some(err) => {
            let mut msg = format!("fails the JSON Schema ({err}");
            let at = err.instance_path().as_str();
            if !at.is_empty() {
                let _ = write!(msg, " at `{at}`");
            }
            msg.push(')');
            Err(msg)
        }
    }
}

fn register_label(r: Register) -> &'static str {
    match r {
        Register::Polite => "です/ます",
        Register::Plain => "だ/である",
    }
}

/// Whether the output's sentence endings are consistently in `target`
/// (see the module notes for the exact rule).
pub fn register_consistent(output: &str, target: Register) -> Result<(), String> {
    let report = register::analyze(output);
    let (wanted, other) = match target {
        Register::Polite => (report.polite, report.plain),
        Register::Plain => (report.plain, report.polite),
    };
    let label = register_label(target);
    match (wanted, other) {
        (0, 0) => Err(format!("no sentence ending in a recognizable register ({label} expected)")),
        (_, 0) => Ok(()),
        (0, n) => Err(format!("wrong register ({n} sentence endings not in {label})")),
        (w, n) => Err(format!("mixed register ({w} in {label}, {n} in the other)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases: &[(&str, &str)] = &[
            ("  hello   world \n", "hello world"),
            ("a\t\tb\n\nc", "a b c"),
            ("ＡＢＣ１２３", "ABC123"),
            ("ｶﾀｶﾅ", "カタカナ"),
            ("東京\u{3000}タワー", "東京 タワー"),
            ("①", "1"),
            ("", ""),
            ("   ", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn exact_and_contains_table() {
        // (output, reference, exact_match, contains)
        let cases: &[(&str, &str, bool, bool)] = &[
            ("Paris", "Paris", true, true),
            (" Paris \n", "Paris", true, true),
            ("paris", "Paris", false, false),
            ("The answer is Paris.", "Paris", false, true),
            ("答えは１２３です", "答えは123です", true, true),
            ("ﾃｽﾄ", "テスト", true, true),
            ("これはテストです。", "テスト", false, true),
            ("東京\u{3000}タワー", "東京 タワー", true, true),
            ("Par is", "Paris", false, false),
            ("", "", true, true),
            ("anything", "", false, true),
            ("", "x", false, false),
        ];
        for (out, reference, em, co) in cases {
            assert_eq!(exact_match(out, reference), *em, "exact_match {out:?} {reference:?}");
            assert_eq!(contains(out, reference), *co, "contains {out:?} {reference:?}");
        }
    }

    #[test]
    fn regex_table() {
        // (pattern, output, passes)
        let cases: &[(&str, &str, bool)] = &[
            (r"^\{.*\}$", r#"{"a": 1}"#, true),
            (r"^\{.*\}$", "{\"a\": 1}\n", true),
            (r"^\{.*\}$", r#"Sure: {"a": 1}"#, false),
            (r"\d{3}-\d{4}", "電話は123-4567です", true),
            (r"です$", "そうです。", false),
            (r"です。$", "そうです。", true),
            (r"^\{.*\}$", "{\n}", false),
            (r"(?s)^\{.*\}$", "{\n}", true),
        ];
        for (pattern, out, passes) in cases {
            let re = regex::Regex::new(pattern).expect("test pattern compiles");
            assert_eq!(regex_match(&re, out).is_ok(), *passes, "/{pattern}/ on {out:?}");
        }
    }

    #[test]
    fn json_table() {
        let cases: &[(&str, bool)] = &[
            (r#"{"a": 1}"#, true),
            ("  [1, 2, 3]\n", true),
            ("42", true),
            (r#""text""#, true),
            ("{'a': 1}", false),
            (r#"{"a": 1} trailing"#, false),
            ("```json\n{\"a\": 1}\n```", false),
            ("", false),
            (r#"{"名前": "太郎"}"#, true),
        ];
        for (out, valid) in cases {
            assert_eq!(json_valid(out).is_ok(), *valid, "json_valid {out:?}");
        }
    }

    #[test]
    fn json_schema_table() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["answer"],
            "properties": {"answer": {"type": "string"}, "score": {"type": "number", "maximum": 1}}
        });
        let v = jsonschema::validator_for(&schema).expect("test schema compiles");
        // (output, Ok or a fragment of the error)
        let cases: &[(&str, Result<(), &str>)] = &[
            (r#"{"answer": "はい"}"#, Ok(())),
            (r#"{"answer": "x", "score": 0.5}"#, Ok(())),
            (r#"{"score": 0.5}"#, Err("\"answer\" is a required property")),
            (r#"{"answer": "x", "score": 2}"#, Err("at `/score`")),
            (r#"{"answer": 3}"#, Err("at `/answer`")),
            ("not json", Err("not valid JSON")),
        ];
        for (out, expected) in cases {
            let got = json_schema_valid(&v, out);
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(fragment), Err(msg)) => assert!(msg.contains(fragment), "{out:?}: {msg:?} lacks {fragment:?}"),
                _ => panic!("{out:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn register_table() {
        use Register::{Plain, Polite};
        // (output, target, passes)
        let cases: &[(&str, Register, bool)] = &[
            ("今日は晴れです。明日も晴れるでしょう。", Polite, true),
            ("今日は晴れです。明日も晴れるでしょう。", Plain, false),
            ("本を読んだ。面白かった。", Plain, true),
            ("本を読んだ。面白かった。", Polite, false),
            ("行きます。食べる。", Polite, false),
            ("行きます。食べる。", Plain, false),
            ("彼は「そうだ」と言いました。", Polite, true),
            ("東京タワー", Polite, false),
            ("Hello world.", Plain, false),
            ("", Polite, false),
            ("見出し\n本文を書きました", Polite, true),
        ];
        for (out, target, passes) in cases {
            assert_eq!(register_consistent(out, *target).is_ok(), *passes, "{out:?} as {target:?}");
        }
        let mixed = register_consistent("行きます。食べる。", Polite).unwrap_err();
        assert!(mixed.starts_with("mixed register"), "{mixed}");
    }
}
