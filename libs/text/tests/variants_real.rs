//! Spelling-variant groups on real Japanese text, for judging precision by
//! hand: `bash bench/variants.sh` (the Debian reference manual in Japanese,
//! from Debian's `debian-reference-ja` package). Prints every group with
//! its spellings, counts and one context per spelling.

use std::collections::HashSet;

use tailor_text::variants::{Census, Finder};

#[test]
#[ignore = "benchmark input: bash bench/variants.sh"]
fn groups_on_real_text() {
    let path = std::env::var("TAILOR_VARIANTS_TEXT").expect("TAILOR_VARIANTS_TEXT=path of a UTF-8 text file (bench/variants.sh sets it)");
    let text = std::fs::read_to_string(&path).expect("readable UTF-8 text");
    let paragraphs: Vec<&str> = text.split("\n\n").map(str::trim).filter(|p| p.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c))).collect();
    let finder = Finder::default();
    let mut keys = HashSet::new();
    for p in &paragraphs {
        keys.extend(finder.okurigana_keys(p));
    }
    let mut census = Census::default();
    let mut contexts: std::collections::BTreeMap<String, String> = Default::default();
    for p in &paragraphs {
        let found = finder.find(p, &keys);
        for s in &found {
            let surface = &p[s.at.clone()];
            contexts.entry(surface.to_string()).or_insert_with(|| {
                let a = p[..s.at.start].chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<String>();
                let b: String = p[s.at.end..].chars().take(8).collect();
                format!("{a}【{surface}】{b}").replace('\n', " ")
            });
        }
        census.add(p, &found);
    }
    let groups = census.groups();
    println!("{} paragraphs, {} groups", paragraphs.len(), groups.len());
    for g in &groups {
        let forms: Vec<String> = g.forms.iter().map(|f| format!("{} ×{}", f.text, f.count)).collect();
        println!("{:?}\t{}\t{}", g.family, g.key, forms.join(" / "));
        for f in &g.forms {
            println!("\t\t{}", contexts.get(&f.text).map_or("", String::as_str));
        }
    }
}
