//! Japanese spelling variants (表記ゆれ): one word written in several ways
//! across a dataset.
//!
//! Four families, each a transparent rule:
//!
//! * **Long-vowel mark** (`long_vowel`): katakana words with and without ー.
//!   A katakana run's key drops a final ー (サーバー/サーバ, ユーザー/ユーザ);
//!   runs of five or more kana drop every ー (インターフェース/インタフェース).
//!   Shorter words keep inner marks, so ビール and ビル never meet.
//! * **Okurigana** (`okurigana`): compounds whose kana between kanji are
//!   optional (申し込み/申込み, 取り扱い/取扱い, 打ち合わせ/打合せ). A
//!   token is kanji–kana–kanji… with a single non-particle kana between the
//!   kanji groups; its key is its kanji. The same kanji written alone with
//!   okurigana (申込み, 取扱い) is the short spelling; a bare kanji word
//!   (申込書, but also 生物 for 生き物, 置換 for 置き換え — other words read
//!   another way) is not counted. Verb stems that are
//!   one kanji (行う/行なう) are in the built-in table instead.
//! * **Kanji or kana** (`kanji_kana`): a built-in table of words commonly
//!   written either way (出来る/できる, 下さい/ください, 致します/いたします,
//!   事/こと after a verb, …), each with the characters that must follow
//!   (or precede) so that, say, 出来事 is not 出来る.
//! * **Dictionary** (`dictionary`): the user's preferred forms and the
//!   variants to replace, matched literally.
//!
//! A group is reported when the dataset uses at least two spellings of one
//! key (or, for the dictionary, any non-preferred one). Detection is pure
//! and per text; counting over a dataset is [`Census`].

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use regex::Regex;
use serde::Serialize;

/// Which rule found a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Katakana with or without ー.
    LongVowel,
    /// Optional kana between or after kanji.
    Okurigana,
    /// Kanji or kana for the same word.
    KanjiKana,
    /// The user's dictionary.
    Dictionary,
}

/// One spelling found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spelling {
    /// The rule.
    pub family: Family,
    /// What all spellings of the word share (the group's identity).
    pub key: String,
    /// Byte range in the text.
    pub at: Range<usize>,
}

/// Built-in kanji/kana pairs: (spellings, kana that may follow, kana that
/// must precede). An empty follow set means "anything"; a non-empty
/// precede set means the spelling counts only after one of those kana
/// (事/こと and 時/とき as nouns after a verb or の).
const KANJI_KANA: &[(&[&str], &str, &str)] = &[
    (&["出来", "でき"], "るまたなてれずよ", ""),
    (&["下さ", "くださ"], "いるっ", ""),
    (&["致し", "いたし"], "まてた", ""),
    (&["頂", "いただ"], "きくけい", ""),
    (&["行な", "行"], "う", ""),
    (&["行な", "行"], "います", ""),
    (&["宜しく", "よろしく"], "", ""),
    (&["有難う", "ありがとう"], "", ""),
    (&["御座い", "ござい"], "まます", ""),
    (&["様々", "さまざま"], "", ""),
    (&["予め", "あらかじめ"], "", ""),
    (&["既に", "すでに"], "", ""),
    (&["殆ど", "ほとんど"], "", ""),
    (&["沢山", "たくさん"], "", ""),
    (&["及び", "および"], "", ""),
    (&["又は", "または"], "", ""),
    (&["但し", "ただし"], "", ""),
    (&["更に", "さらに"], "", ""),
    (&["色々", "いろいろ"], "", ""),
    (&["丁度", "ちょうど"], "", ""),
    (&["綺麗", "きれい"], "", ""),
    (&["素晴らし", "すばらし"], "", ""),
    (&["分か", "わか"], "るりらっれ", ""),
    (&["全て", "すべて"], "", ""),
    (&["是非", "ぜひ"], "", ""),
    (&["一旦", "いったん"], "", ""),
    (&["何故", "なぜ"], "", ""),
    (&["暫く", "しばらく"], "", ""),
    (&["概ね", "おおむね"], "", ""),
    (&["事", "こと"], "", "るたうのない"),
    (&["時", "とき"], "", "るたうのない"),
    (&["物", "もの"], "", "るたうな"),
    (&["為", "ため"], "", "るたうの"),
];

/// Kana that are particles (or copula), never okurigana.
const PARTICLES: &str = "のにをはがでともへやかなだねよ";

/// Okurigana of the noun (連用形) forms that compounds drop: i-row and
/// e-row kana (申し込み, 取り扱い, 組み合わせ). A compound whose kana between
/// kanji is another kana (使う方) or that ends in another kana (書き込む,
/// an inflected verb) is not counted.
const STEM_KANA: &str = "いきしちひみりぎじびえけせねめれげぜべ";

/// Stem kana that may end a compound: not れ, which mostly ends a passive
/// or potential form (読み込まれ, 読出され) — an inflection, not a spelling.
const STEM_TAIL: &str = "いきしちひみりぎじびえけせねめげぜべ";

/// Kana after a kanji-only word that make it a Sino-Japanese verbal noun
/// (置換する, 置換され) rather than a compound without okurigana.
const SURU: &str = "すさしせ";

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '々' | '〆')
}

fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}')
}

fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}' | 'ー')
}

/// The key of a katakana run, or `None` when the run is too short to judge.
fn katakana_key(run: &str) -> Option<String> {
    let run = run.trim_start_matches('ー');
    let letters = run.chars().filter(|c| *c != 'ー').count();
    if letters < 2 {
        return None;
    }
    Some(if letters >= 5 { run.chars().filter(|c| *c != 'ー').collect() } else { run.trim_end_matches('ー').to_string() })
}

/// Finds spellings in texts.
pub struct Finder {
    okurigana: Regex,
    table: Vec<(usize, &'static str, &'static str, &'static str)>,
    dictionary: Vec<(String, String)>,
}

impl Default for Finder {
    fn default() -> Self {
        Self::new(&BTreeMap::new())
    }
}

impl Finder {
    /// A finder with the user's dictionary: preferred form → its variants.
    pub fn new(dictionary: &BTreeMap<String, Vec<String>>) -> Self {
        // kanji (kana kanji)+ then up to two trailing kana; particles are
        // filtered after matching.
        let okurigana = Regex::new(r"[\p{Han}々〆]+(?:[\p{Hiragana}][\p{Han}々〆]+)+[\p{Hiragana}]{0,2}").unwrap_or_else(|_| unreachable!("a fixed pattern"));
        let mut table = Vec::new();
        for (i, (forms, follow, precede)) in KANJI_KANA.iter().enumerate() {
            for f in forms.iter() {
                table.push((i, *f, *follow, *precede));
            }
        }
        // Longest spelling first, so 行な wins over 行 at the same place.
        table.sort_by_key(|(_, f, _, _)| std::cmp::Reverse(f.len()));
        let mut dict = Vec::new();
        for (preferred, variants) in dictionary {
            dict.push((preferred.clone(), preferred.clone()));
            for v in variants {
                dict.push((v.clone(), preferred.clone()));
            }
        }
        dict.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
        Self { okurigana, table, dictionary: dict }
    }

    /// The keys of the mixed okurigana spellings in `text` (申し込み → 申込):
    /// the first pass over a dataset, before [`Finder::find`] can count the
    /// kanji-only spellings of those keys.
    pub fn okurigana_keys(&self, text: &str) -> Vec<String> {
        self.okurigana.find_iter(text).filter_map(|m| okurigana_token(m.as_str())).map(|(key, _)| key).collect()
    }

    /// Every spelling in `text` that a rule recognises, in text order;
    /// `okurigana_keys` are the keys the dataset's mixed spellings produced
    /// (for the kanji-only spelling; pass an empty set on the first pass).
    pub fn find(&self, text: &str, okurigana_keys: &HashSet<String>) -> Vec<Spelling> {
        let mut out = Vec::new();
        let mut taken = vec![false; text.len()];
        let claim = |out: &mut Vec<Spelling>, taken: &mut [bool], family: Family, key: String, at: Range<usize>| {
            if taken[at.clone()].iter().any(|t| *t) {
                return;
            }
            taken[at.clone()].iter_mut().for_each(|t| *t = true);
            out.push(Spelling { family, key, at });
        };
        // The user's dictionary first: it overrides the rules.
        for (form, preferred) in &self.dictionary {
            for (i, _) in text.match_indices(form.as_str()) {
                claim(&mut out, &mut taken, Family::Dictionary, preferred.clone(), i..i + form.len());
            }
        }
        // Katakana runs.
        let mut start = None;
        for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
            match (is_katakana(c), start) {
                // A word never starts with ー (a line break can leave one).
                (true, None) if c != 'ー' => start = Some(i),
                (false, Some(s)) => {
                    if let Some(key) = katakana_key(&text[s..i]) {
                        claim(&mut out, &mut taken, Family::LongVowel, key, s..i);
                    }
                    start = None;
                }
                _ => {}
            }
        }
        // Built-in kanji/kana words.
        for (id, form, follow, precede) in &self.table {
            for (i, _) in text.match_indices(form) {
                let end = i + form.len();
                let next = text[end..].chars().next();
                let prev = text[..i].chars().next_back();
                if !follow.is_empty() && !next.is_some_and(|c| follow.contains(c)) {
                    continue;
                }
                if !precede.is_empty() && !prev.is_some_and(|c| precede.contains(c)) {
                    continue;
                }
                // A kana spelling inside a longer kana word is not this word
                // (でき in ふできる is fine, but こと in ことば is not).
                if precede.is_empty() && form.chars().all(is_hiragana) && prev.is_some_and(|c| is_hiragana(c) && !"てでをはがにもと".contains(c)) {
                    continue;
                }
                // A kanji spelling inside a kanji compound is another word
                // (出来 in 出来事, 事 in 事故).
                if (form.chars().next_back().is_some_and(is_han) && next.is_some_and(is_han))
                    || (form.chars().next().is_some_and(is_han) && prev.is_some_and(is_han))
                {
                    continue;
                }
                claim(&mut out, &mut taken, Family::KanjiKana, KANJI_KANA[*id].0[0].to_string(), i..end);
            }
        }
        // Mixed okurigana compounds.
        for m in self.okurigana.find_iter(text) {
            if let Some((key, len)) = okurigana_token(m.as_str()) {
                claim(&mut out, &mut taken, Family::Okurigana, key, m.start()..m.start() + len);
            }
        }
        // Kanji-only spellings of known keys, at the start or end of a kanji run.
        if !okurigana_keys.is_empty() {
            let mut start = None;
            for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
                match (is_han(c), start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        let run = &text[s..i];
                        let after = text[i..].chars().next();
                        if okurigana_keys.contains(run) {
                            // The whole run with its okurigana (申込み, 取扱い):
                            // a bare kanji word (置換, 生物) is often another
                            // word read another way, so it is not counted, nor
                            // a verbal noun (置換し) or an inflected verb.
                            let tail: String = text[i..].chars().take_while(|c| is_hiragana(*c) && !PARTICLES.contains(*c)).take(2).collect();
                            let noun = tail.chars().next_back().is_some_and(|c| STEM_TAIL.contains(c));
                            if noun && !after.is_some_and(|c| SURU.contains(c) && tail.chars().count() < 2) {
                                claim(&mut out, &mut taken, Family::Okurigana, run.to_string(), s..i + tail.len());
                            }
                        }
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        out.sort_by_key(|s| s.at.start);
        out
    }
}

/// A mixed kanji–kana match as an okurigana token: (key, byte length kept).
/// `None` when a kana between kanji is a particle (東京に住む is not a word)
/// or when fewer than two kanji groups remain.
fn okurigana_token(m: &str) -> Option<(String, usize)> {
    let chars: Vec<(usize, char)> = m.char_indices().collect();
    let mut key = String::new();
    let mut groups = 0;
    let mut end = 0;
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if is_han(c) {
            if i == 0 || !is_han(chars[i - 1].1) {
                groups += 1;
            }
            key.push(c);
            end = at + c.len_utf8();
            i += 1;
            continue;
        }
        // Kana: between kanji (one stem kana) or trailing.
        let between = chars.get(i + 1).is_some_and(|(_, n)| is_han(*n));
        if between {
            if !STEM_KANA.contains(c) {
                return None;
            }
            i += 1;
            continue;
        }
        // Trailing okurigana: up to two kana, stopping at a particle; the
        // last must be a stem kana (the noun form), else it is an inflected
        // verb and not counted.
        for &(at, c) in &chars[i..] {
            if PARTICLES.contains(c) {
                break;
            }
            end = at + c.len_utf8();
        }
        if m[..end].chars().next_back().is_some_and(|c| is_hiragana(c) && !STEM_TAIL.contains(c)) {
            return None;
        }
        break;
    }
    (groups >= 2).then_some((key, end))
}

/// One spelling of a group, with its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Form {
    /// The spelling.
    pub text: String,
    /// Occurrences.
    pub count: usize,
    /// Records that use it.
    pub records: usize,
}

/// A word the dataset spells in more than one way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The rule that found it.
    pub family: Family,
    /// What the spellings share.
    pub key: String,
    /// The spellings, most used first.
    pub forms: Vec<Form>,
    /// The spelling to keep: the dictionary's, else the most used.
    pub preferred: String,
}

/// Spelling counts over a dataset.
#[derive(Debug, Default)]
pub struct Census {
    counts: BTreeMap<(Family, String), BTreeMap<String, (usize, usize)>>,
}

impl Census {
    /// Count the spellings of one text (one record).
    pub fn add(&mut self, text: &str, found: &[Spelling]) {
        let mut seen = HashSet::new();
        for s in found {
            let surface = text[s.at.clone()].to_string();
            let entry = self.counts.entry((s.family, s.key.clone())).or_default().entry(surface.clone()).or_insert((0, 0));
            entry.0 += 1;
            if seen.insert((s.family, s.key.clone(), surface)) {
                entry.1 += 1;
            }
        }
    }

    /// The words spelled in more than one way (dictionary words: any
    /// non-preferred spelling), most frequent first.
    pub fn groups(&self) -> Vec<Group> {
        let mut out = Vec::new();
        for ((family, key), forms) in &self.counts {
            let mut list: Vec<Form> = forms.iter().map(|(t, (c, r))| Form { text: t.clone(), count: *c, records: *r }).collect();
            list.sort_by(|a, b| b.count.cmp(&a.count).then(b.text.len().cmp(&a.text.len())).then(a.text.cmp(&b.text)));
            let preferred = if *family == Family::Dictionary { key.clone() } else { list[0].text.clone() };
            let differs = list.iter().any(|f| f.text != preferred);
            if (list.len() >= 2 || *family == Family::Dictionary) && differs {
                out.push(Group { family: *family, key: key.clone(), forms: list, preferred });
            }
        }
        out.sort_by(|a, b| {
            let total = |g: &Group| g.forms.iter().map(|f| f.count).sum::<usize>();
            total(b).cmp(&total(a)).then(a.key.cmp(&b.key))
        });
        out
    }
}

/// Rewrite `text`'s spellings to the preferred forms of `groups`; returns
/// the new text and the (from, to) replacements made.
pub fn rewrite(text: &str, found: &[Spelling], preferred: &BTreeMap<(Family, String), String>) -> (String, Vec<(String, String)>) {
    let mut out = String::with_capacity(text.len());
    let mut changes = Vec::new();
    let mut last = 0;
    for s in found {
        let Some(to) = preferred.get(&(s.family, s.key.clone())) else { continue };
        let from = &text[s.at.clone()];
        if from == to || s.at.start < last {
            continue;
        }
        out.push_str(&text[last..s.at.start]);
        out.push_str(to);
        changes.push((from.to_string(), to.clone()));
        last = s.at.end;
    }
    out.push_str(&text[last..]);
    (out, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surfaces(text: &str, keys: &[&str]) -> Vec<(Family, String, String)> {
        let keys: HashSet<String> = keys.iter().map(|k| k.to_string()).collect();
        Finder::default().find(text, &keys).into_iter().map(|s| (s.family, s.key, text[s.at].to_string())).collect()
    }

    #[test]
    fn katakana_long_vowels() {
        let got = surfaces("サーバーとサーバ、ユーザーのユーザ。ビールとビル。インターフェースとインタフェース", &[]);
        let keys: Vec<(&str, &str)> = got.iter().map(|(_, k, s)| (k.as_str(), s.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("サーバ", "サーバー"),
                ("サーバ", "サーバ"),
                ("ユーザ", "ユーザー"),
                ("ユーザ", "ユーザ"),
                ("ビール", "ビール"),
                ("ビル", "ビル"),
                ("インタフェス", "インターフェース"),
                ("インタフェス", "インタフェース")
            ]
        );
    }

    #[test]
    fn okurigana_compounds_and_their_kanji_only_spelling() {
        let got =
            surfaces("申し込みと申込みと申込書。取り扱いは取扱いと取扱説明書。東京に住む。生き物と生物。置換して置き換え。", &["申込", "取扱", "生物", "置換"]);
        let keys: Vec<(Family, &str, &str)> = got.iter().map(|(f, k, s)| (*f, k.as_str(), s.as_str())).collect();
        assert!(keys.contains(&(Family::Okurigana, "申込", "申し込み")), "{keys:?}");
        assert!(keys.contains(&(Family::Okurigana, "申込", "申込み")), "{keys:?}");
        assert!(keys.contains(&(Family::Okurigana, "取扱", "取り扱い")), "{keys:?}");
        assert!(keys.contains(&(Family::Okurigana, "取扱", "取扱い")), "{keys:?}");
        // Bare kanji words are not counted: 申込書 and 取扱説明書 are missed,
        // and 生物 (せいぶつ) and 置換 (ちかん) are other words.
        for bare in ["申込", "取扱", "生物", "置換"] {
            assert!(!keys.iter().any(|(_, _, s)| *s == bare), "{bare}: {keys:?}");
        }
        // A particle between kanji ends a word.
        assert!(!keys.iter().any(|(_, k, _)| k.contains('住')), "{keys:?}");
    }

    #[test]
    fn kanji_or_kana_with_context() {
        let got = surfaces("出来ますか。できます。出来事です。下さい。ください。こういう事はこと。事故。ことば。致します。行います。行ないます。", &[]);
        let keys: Vec<(&str, &str)> = got.iter().map(|(_, k, s)| (k.as_str(), s.as_str())).collect();
        assert!(keys.contains(&("出来", "出来")) && keys.contains(&("出来", "でき")), "{keys:?}");
        assert_eq!(keys.iter().filter(|(k, _)| *k == "出来").count(), 2, "出来事 is another word: {keys:?}");
        assert!(keys.contains(&("下さ", "下さ")) && keys.contains(&("下さ", "くださ")), "{keys:?}");
        assert_eq!(keys.iter().filter(|(k, _)| *k == "事").count(), 1, "事故 and ことば are other words: {keys:?}");
        assert!(keys.contains(&("行な", "行な")) && keys.contains(&("行な", "行")), "{keys:?}");
    }

    #[test]
    fn census_groups_and_rewrite() {
        let texts = ["サーバーを再起動します。", "サーバーが落ちました。", "サーバの設定です。", "ビールを飲む。"];
        let finder = Finder::default();
        let mut census = Census::default();
        let found: Vec<Vec<Spelling>> = texts.iter().map(|t| finder.find(t, &HashSet::new())).collect();
        for (t, f) in texts.iter().zip(&found) {
            census.add(t, f);
        }
        let groups = census.groups();
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].preferred, "サーバー");
        assert_eq!(groups[0].forms.iter().map(|f| (f.text.as_str(), f.count)).collect::<Vec<_>>(), [("サーバー", 2), ("サーバ", 1)]);
        let preferred: BTreeMap<(Family, String), String> = groups.iter().map(|g| ((g.family, g.key.clone()), g.preferred.clone())).collect();
        let (text, changes) = rewrite(texts[2], &found[2], &preferred);
        assert_eq!(text, "サーバーの設定です。");
        assert_eq!(changes, [("サーバ".to_string(), "サーバー".to_string())]);
    }

    #[test]
    fn dictionary_overrides() {
        let dict: BTreeMap<String, Vec<String>> = [("問い合わせ".to_string(), vec!["問合せ".to_string(), "問い合せ".to_string()])].into();
        let finder = Finder::new(&dict);
        let text = "問合せ窓口と問い合わせ";
        let found = finder.find(text, &HashSet::new());
        let mut census = Census::default();
        census.add(text, &found);
        let g = census.groups();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].family, Family::Dictionary);
        assert_eq!(g[0].preferred, "問い合わせ");
    }
}
