//! Parity with the reference Python implementations: sacrebleu's chrF
//! (sentence and corpus) and rouge-score's ROUGE-L (English only), read
//! from `tests/fixtures/metrics/reference.json`, which
//! `tests/make_metric_fixture.py` writes.

use serde_json::Value;

use super::chrf::{corpus_chrf, sentence_chrf};
use super::rouge::rouge_l;

const TOLERANCE: f64 = 1e-6;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics/reference.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pairs(f: &Value) -> Vec<(String, String, &Value)> {
    let list = f["pairs"].as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter().map(|p| (p["hyp"].as_str().unwrap_or_default().to_string(), p["ref"].as_str().unwrap_or_default().to_string(), p)).collect()
}

#[test]
fn chrf_matches_sacrebleu() {
    let f = fixture();
    let pairs = pairs(&f);
    assert!(pairs.len() >= 20, "fixture too small");
    for (hyp, reference, p) in &pairs {
        let expected = p["chrf"].as_f64().unwrap_or(f64::NAN);
        let got = 100.0 * sentence_chrf(hyp, reference);
        assert!((got - expected).abs() < TOLERANCE, "chrF({hyp:?}, {reference:?}) = {got}, sacrebleu {expected}");
    }
    let expected = f["corpus_chrf"].as_f64().unwrap_or(f64::NAN);
    let got = 100.0 * corpus_chrf(pairs.iter().map(|(h, r, _)| (h.as_str(), r.as_str())));
    assert!((got - expected).abs() < TOLERANCE, "corpus chrF {got}, sacrebleu {expected}");
}

#[test]
fn rouge_l_matches_rouge_score() {
    let f = fixture();
    let mut checked = 0;
    for (hyp, reference, p) in &pairs(&f) {
        let Some(expected) = p["rouge_l"].as_f64() else { continue };
        let got = rouge_l(hyp, reference).fmeasure;
        assert!((got - expected).abs() < TOLERANCE, "ROUGE-L({hyp:?}, {reference:?}) = {got}, rouge-score {expected}");
        checked += 1;
    }
    assert!(checked >= 10, "too few English pairs ({checked})");
}
