//! A dataset profile: the primer's guidance as numbers.
//!
//! * **Size band** — tens to hundreds of examples are the minimum, thousands
//!   give a stable effect, tens of thousands are large-scale use.
//! * **Consistency** — Japanese register (share of replies in the majority
//!   register, replies that mix both), spelling-variant groups, the share of
//!   exact and near duplicates, and the share of replies that are JSON when
//!   the data is mostly JSON.
//! * **Knowledge or behaviour** — fine-tuning teaches behaviour and format
//!   well; knowledge that changes is better served by retrieval (RAG). The
//!   signal is transparent: facts per 100 characters of reply (numbers,
//!   dates, versions, URLs, capitalised names inside English sentences), the
//!   share of those facts that appear in only one reply, and how much the
//!   replies repeat a structure (a shared opening or ending). Each number is
//!   shown with the threshold it is compared with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::register::{Register, analyze};
use crate::variants::{Census, Finder};
use crate::{MinHashConfig, NormalizeOptions, near_duplicates, normalize};

/// Where a number of training examples falls among the primer's bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeBand {
    /// Fewer than 50: below the minimum.
    BelowMinimum,
    /// 50–999: tens to hundreds, the minimum for a visible effect.
    Minimum,
    /// 1,000–9,999: thousands, a stable effect.
    Stable,
    /// 10,000 and more: large-scale use.
    LargeScale,
}

impl SizeBand {
    /// The band of `n` examples.
    pub fn of(n: usize) -> Self {
        match n {
            0..50 => SizeBand::BelowMinimum,
            50..1000 => SizeBand::Minimum,
            1000..10_000 => SizeBand::Stable,
            _ => SizeBand::LargeScale,
        }
    }

    /// The band and what it means, in words.
    pub fn describe(self) -> &'static str {
        match self {
            SizeBand::BelowMinimum => "below the minimum, under 50: fine-tuning needs dozens of examples at least; expect little or unstable effect",
            SizeBand::Minimum => "minimum, tens to hundreds: enough to nudge a style or format; thousands give a stable effect",
            SizeBand::Stable => "stable, thousands: the band where fine-tuning reliably keeps a style, format or rule",
            SizeBand::LargeScale => "large-scale, tens of thousands",
        }
    }

    /// Whether the run should be warned about.
    pub fn below_minimum(self) -> bool {
        self == SizeBand::BelowMinimum
    }
}

/// One measured signal with the threshold it is judged by.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    /// What is measured.
    pub name: &'static str,
    /// The value.
    pub value: f64,
    /// The threshold, in words (`">= 3"`).
    pub threshold: &'static str,
    /// Whether the value points towards knowledge (RAG) rather than behaviour.
    pub towards_knowledge: bool,
}

/// What the data mostly teaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Teaches {
    /// Behaviour, style or format: what fine-tuning is for.
    Behaviour,
    /// Facts that differ from reply to reply: consider retrieval (RAG).
    Knowledge,
    /// Some of both.
    Mixed,
}

/// A dataset's profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// Records profiled.
    pub records: usize,
    /// Their size band.
    pub band: SizeBand,
    /// Replies with a Japanese register: polite, plain, mixed within one reply.
    pub register: BTreeMap<&'static str, usize>,
    /// Share of replies with a register that use the majority one (1.0 when none has).
    pub register_consistency: f64,
    /// Spelling-variant groups (Japanese).
    pub variant_groups: usize,
    /// The most used groups, as "サーバー ×12 / サーバ ×3".
    pub variant_examples: Vec<String>,
    /// Share of records that repeat an earlier one exactly (after NFKC, case and whitespace folding).
    pub exact_duplicates: f64,
    /// Share of records that are near duplicates of an earlier one (default settings).
    pub near_duplicates: f64,
    /// Share of replies that parse as JSON, when at least a fifth do.
    pub json_replies: Option<f64>,
    /// The knowledge-or-behaviour signals.
    pub signals: Vec<Signal>,
    /// What the data mostly teaches.
    pub teaches: Teaches,
    /// The advice that follows.
    pub advice: &'static str,
}

static FACTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"https?://\S+",
        r"|\b\d{4}[-/年]\d{1,2}[-/月]\d{1,2}日?",
        r"|\bv?\d+\.\d+(?:\.\d+)*\b",
        r"|\d+(?:[.,]\d+)*",
        r"|[a-z,;]\s+(?P<name>[A-Z][a-zA-Z]+)",
    ))
    .unwrap_or_else(|_| unreachable!("a fixed pattern"))
});

/// The facts of a reply: URLs, dates, versions, numbers, and capitalised
/// words that do not start an English sentence.
pub fn facts(reply: &str) -> Vec<String> {
    FACTS.captures_iter(reply).filter_map(|c| c.name("name").or_else(|| c.get(0)).map(|m| m.as_str().to_string())).collect()
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// Profile `replies` (what the model is trained to produce) and `texts`
/// (each record's whole text, for duplicates).
pub fn profile(replies: &[&str], texts: &[&str]) -> Profile {
    let n = replies.len();
    // Register.
    let reports: Vec<_> = replies.iter().map(|r| analyze(r)).collect();
    let count = |want: Register| reports.iter().filter(|r| r.dominant == Some(want)).count();
    let (polite, plain) = (count(Register::Polite), count(Register::Plain));
    let mixed = reports.iter().filter(|r| r.mixed).count();
    let mut register: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (k, v) in [("polite", polite), ("plain", plain), ("mixed within a reply", mixed)] {
        if v > 0 {
            register.insert(k, v);
        }
    }
    let majority = if polite >= plain { Register::Polite } else { Register::Plain };
    let consistent = reports.iter().filter(|r| r.dominant == Some(majority) && !r.mixed).count();
    let register_consistency = if polite + plain == 0 { 1.0 } else { share(consistent, polite + plain) };
    // Spelling variants.
    let finder = Finder::default();
    let keys: HashSet<String> = replies.iter().flat_map(|r| finder.okurigana_keys(r)).collect();
    let mut census = Census::default();
    for r in replies {
        census.add(r, &finder.find(r, &keys));
    }
    let groups = census.groups();
    let variant_examples = groups.iter().take(5).map(|g| g.forms.iter().map(|f| format!("{} ×{}", f.text, f.count)).collect::<Vec<_>>().join(" / ")).collect();
    // Duplicates.
    let mut seen = HashSet::new();
    let exact = texts
        .iter()
        .filter(|t| {
            let folded: String = normalize(t, &NormalizeOptions::default()).chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
            !seen.insert(blake3::hash(folded.as_bytes()))
        })
        .count();
    let near = near_duplicates(texts, &MinHashConfig::default()).iter().filter(|d| d.is_some()).count();
    // Format.
    let json = replies.iter().filter(|r| serde_json::from_str::<serde_json::Value>(r.trim()).is_ok_and(|v| v.is_object() || v.is_array())).count();
    let json_replies = (share(json, n) >= 0.2).then(|| share(json, n));
    // Knowledge or behaviour.
    let chars: usize = replies.iter().map(|r| r.chars().count()).sum();
    let per_reply: Vec<Vec<String>> = replies.iter().map(|r| facts(r)).collect();
    let total_facts: usize = per_reply.iter().map(Vec::len).sum();
    let mut in_replies: HashMap<&str, usize> = HashMap::new();
    for fs in &per_reply {
        for f in fs.iter().collect::<HashSet<_>>() {
            *in_replies.entry(f.as_str()).or_insert(0) += 1;
        }
    }
    let unique_facts = per_reply.iter().flatten().filter(|f| in_replies.get(f.as_str()) == Some(&1)).count();
    let density = if chars == 0 { 0.0 } else { total_facts as f64 * 100.0 / chars as f64 };
    let uniqueness = share(unique_facts, total_facts);
    let edge = |r: &str, head: bool| -> String {
        let cs: Vec<char> = r.trim().chars().collect();
        let k = cs.len().min(10);
        if head { cs[..k].iter().collect() } else { cs[cs.len() - k..].iter().collect() }
    };
    let mut openings: HashMap<String, usize> = HashMap::new();
    let mut endings: HashMap<String, usize> = HashMap::new();
    for r in replies.iter().filter(|r| r.trim().chars().count() >= 10) {
        *openings.entry(edge(r, true)).or_insert(0) += 1;
        *endings.entry(edge(r, false)).or_insert(0) += 1;
    }
    let long = replies.iter().filter(|r| r.trim().chars().count() >= 10).count();
    let repeated_open = openings.values().filter(|c| **c >= 2).sum::<usize>();
    let repeated_end = endings.values().filter(|c| **c >= 2).sum::<usize>();
    let structure = share(repeated_open.max(repeated_end), long);
    let signals = vec![
        Signal { name: "facts per 100 characters of reply", value: density, threshold: ">= 2", towards_knowledge: density >= 2.0 },
        Signal {
            name: "share of facts found in only one reply",
            value: uniqueness,
            threshold: ">= 0.6",
            towards_knowledge: total_facts > 0 && uniqueness >= 0.6,
        },
        Signal {
            name: "share of replies sharing an opening or ending (10 characters) with another",
            value: structure,
            threshold: "< 0.3",
            towards_knowledge: structure < 0.3,
        },
    ];
    let votes = signals.iter().filter(|s| s.towards_knowledge).count();
    let (teaches, advice) = match votes {
        3 => (
            Teaches::Knowledge,
            "the replies mostly carry facts that differ from record to record: fine-tuning is a poor way to store changing knowledge; consider retrieval (RAG) for the facts and fine-tune for behaviour and format",
        ),
        0 | 1 => (Teaches::Behaviour, "the replies mostly share behaviour, style or format: what fine-tuning teaches well"),
        _ => {
            (Teaches::Mixed, "the replies teach both behaviour and facts: fine-tune for the behaviour and format; facts that change belong in retrieval (RAG)")
        }
    };
    Profile {
        records: n,
        band: SizeBand::of(n),
        register,
        register_consistency,
        variant_groups: groups.len(),
        variant_examples,
        exact_duplicates: share(exact, texts.len()),
        near_duplicates: share(near, texts.len()),
        json_replies,
        signals,
        teaches,
        advice,
    }
}

impl Profile {
    /// The profile as lines a person reads.
    pub fn lines(&self) -> Vec<String> {
        let pct = |x: f64| format!("{:.1} %", x * 100.0);
        let mut out = vec![format!("size: {} records — {}", self.records, self.band.describe())];
        if !self.register.is_empty() {
            let parts: Vec<String> = self.register.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push(format!("register: {} — {} of replies with a register use the majority one", parts.join(", "), pct(self.register_consistency)));
        }
        if self.variant_groups > 0 {
            out.push(format!("spelling variants: {} groups, e.g. {}", self.variant_groups, self.variant_examples.join("; ")));
        }
        out.push(format!("duplicates: {} exact, {} near (default settings)", pct(self.exact_duplicates), pct(self.near_duplicates)));
        if let Some(j) = self.json_replies {
            out.push(format!("format: {} of replies are JSON objects or arrays", pct(j)));
        }
        for s in &self.signals {
            out.push(format!("{}: {:.2} (knowledge if {}){}", s.name, s.value, s.threshold, if s.towards_knowledge { " → knowledge" } else { "" }));
        }
        out.push(
            format!("teaches: {:?} — {}", self.teaches, self.advice)
                .replace("Behaviour", "behaviour")
                .replace("Knowledge", "knowledge")
                .replace("Mixed", "mixed"),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_primer() {
        assert!(SizeBand::of(10).below_minimum());
        assert_eq!(SizeBand::of(50), SizeBand::Minimum);
        assert_eq!(SizeBand::of(999), SizeBand::Minimum);
        assert_eq!(SizeBand::of(1000), SizeBand::Stable);
        assert_eq!(SizeBand::of(25_000), SizeBand::LargeScale);
    }

    #[test]
    fn facts_are_numbers_dates_versions_urls_and_names() {
        let f = facts("Released on 2024-05-01 as v1.2.3 by the Debian project, see https://x.org/a; it costs 300 yen.");
        assert_eq!(f, ["2024-05-01", "v1.2.3", "Debian", "https://x.org/a;", "300"]);
        assert!(facts("はい、承知しました。").is_empty());
    }

    #[test]
    fn knowledge_and_behaviour_datasets_are_told_apart() {
        // Behaviour: one format, no facts.
        let behaviour: Vec<String> = (0..60)
            .map(|i| format!("かしこまりました。ご質問{}の件、担当者よりご連絡いたします。", "一二三四五六七八九十".chars().nth(i % 10).unwrap_or('一')))
            .collect();
        let refs: Vec<&str> = behaviour.iter().map(String::as_str).collect();
        let p = profile(&refs, &refs);
        assert_eq!(p.teaches, Teaches::Behaviour, "{:#?}", p.lines());
        assert_eq!(p.register.get("polite"), Some(&60));
        // Knowledge: a different product, price, version and date in each reply.
        let knowledge: Vec<String> = (0..60)
            .map(|i| format!("Model X{i} ships version {}.{} on 2025-0{}-1{} from Osaka at {} dollars", i % 7, i, 1 + i % 9, i % 10, 100 + i * 37))
            .collect();
        let refs: Vec<&str> = knowledge.iter().map(String::as_str).collect();
        let p = profile(&refs, &refs);
        assert_eq!(p.teaches, Teaches::Knowledge, "{:#?}", p.lines());
        assert!(p.lines().iter().any(|l| l.contains("RAG")));
    }

    #[test]
    fn duplicates_variants_and_json_are_measured() {
        let replies = ["{\"a\": 1}", "{\"a\": 1}", "サーバーを再起動します。", "サーバを再起動しました。", "{\"b\": 2}"];
        let p = profile(&replies, &replies);
        assert!((p.exact_duplicates - 0.2).abs() < 1e-9, "{p:?}");
        assert_eq!(p.variant_groups, 1);
        assert!((p.json_replies.unwrap_or(0.0) - 0.6).abs() < 1e-9);
        assert!(p.band.below_minimum());
    }
}
