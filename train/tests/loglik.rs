//! Log-likelihood scoring against transformers (fixture from
//! make_loglik_fixture.py): per request the summed log-probability within
//! 1e-4 and the same greedy flag, whatever the batching; a context longer
//! than the model's window is cut as lm-evaluation-harness cuts it.

use std::path::PathBuf;

use tailor_protocol::job::LoglikRequest;
use tailor_train::model::Llama;
use tch::{Device, Kind};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model() -> Llama {
    let dir = fixtures().join("llama_gqa_tied");
    let cfg = tailor_train::load::config(&dir).unwrap();
    let opts = tailor_train::load::LoadOptions { kind: Kind::Float, device: Device::Cpu, nf4: None };
    Llama::from_weights(cfg, tailor_train::load::weights(&dir, opts).unwrap(), Kind::Float, Device::Cpu).unwrap()
}

#[test]
fn summed_logprobs_equal_transformers_in_any_batching() {
    let text = std::fs::read_to_string(fixtures().join("loglik.json")).expect("train/tests/fixtures/loglik.json (make_loglik_fixture.py)");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let window = v["window"].as_u64().unwrap() as usize;
    let reqs: Vec<LoglikRequest> = serde_json::from_value(v["requests"].clone()).unwrap();
    assert!(reqs.iter().any(|r| r.context.len() + r.continuation.len() > window + 1), "the fixture must exercise truncation");
    let m = model();
    // One request per batch, a small budget (mixed lengths, padding), one
    // batch for all; the output head over all positions at once or 3 at a time.
    for (budget, head) in [(1, 512), (64, 512), (1 << 20, 512), (64, 3), (1 << 20, 1)] {
        let budget: usize = budget;
        let mut seen = 0;
        let got = tailor_train::loglik::score(&m, &reqs, window, budget, head, Device::Cpu, &mut |n| seen += n).unwrap();
        assert_eq!(seen, reqs.len());
        for ((r, g), want) in reqs.iter().zip(&got).zip(v["requests"].as_array().unwrap()) {
            let lp = want["logprob"].as_f64().unwrap();
            assert!((g.logprob - lp).abs() <= 1e-4, "{} at budget {budget}: {} vs transformers {lp}", r.id, g.logprob);
            assert_eq!(g.greedy, want["greedy"].as_bool().unwrap(), "{} greedy at budget {budget}", r.id);
        }
    }
    let greedy = reqs.iter().position(|r| r.id == "greedy").unwrap();
    let got = tailor_train::loglik::score(&m, &reqs[greedy..=greedy], window, 64, 512, Device::Cpu, &mut |_| ()).unwrap();
    assert!(got[0].greedy, "the model's own greedy continuation must be flagged greedy");
}

#[test]
fn a_continuation_longer_than_the_window_is_an_error() {
    let m = model();
    let r = LoglikRequest { id: "long".into(), context: vec![1], continuation: vec![2; 300] };
    let e = tailor_train::loglik::score(&m, &[r], 256, 64, 512, Device::Cpu, &mut |_| ()).unwrap_err();
    assert!(e.contains("long") && e.contains("window of 256"), "{e}");
}
