//! The `benchmark` stage end to end on the quickstart's tiny model:
//! multiple-choice tasks (zero- and few-shot, with and without a space
//! before the choice) and rolling perplexity, the tuned model against its
//! base and against itself, a gate relative to the base, and bad inputs
//! reported with their positions.

mod common;

use std::path::Path;

use common::{artifact, example, jsonl, lock, ok, run_in, text};
use serde_json::{Value, json};

const STAGES: &str = r#"
  general:
    kind: benchmark
    model: tuned
    compare_to: base
    tasks:
      - {name: sums, path: bench/sums.jsonl}
      - {name: kana, path: bench/kana.jsonl, num_fewshot: 2, target_delimiter: "", fewshot_seed: 3}
    perplexity:
      - {name: prose, path: bench/prose.jsonl, window: 32, stride: 16}
    gate: {acc: ">= base - 1"}
  itself:
    kind: benchmark
    model: tuned
    compare_with: tuned
    tasks:
      - {name: sums, path: bench/sums.jsonl}
    perplexity:
      - {name: prose, path: bench/prose.jsonl, window: 32}
"#;

fn write_lines(path: &Path, lines: &[Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn metric(lock: &Value, stage: &str, name: &str) -> f64 {
    lock["stages"][stage]["metrics"][name].as_f64().unwrap_or_else(|| panic!("{stage}: no metric {name} in {}", lock["stages"][stage]["metrics"]))
}

#[test]
fn benchmarks_score_choices_and_text_against_the_base_and_gate_on_it() {
    let dir = example("quickstart");
    let d = dir.path();
    let yaml = std::fs::read_to_string(d.join("tailor.yaml")).unwrap().replace("max_steps: 120", "max_steps: 30");
    std::fs::write(d.join("tailor.yaml"), format!("{yaml}{STAGES}")).unwrap();
    let sums: Vec<Value> = (0..9).map(|i| json!({"id": format!("s{i}"), "context": format!("{i} plus {i} is"), "choices": [format!("{}", 2 * i), format!("{}", 2 * i + 1), "a bird"], "gold": 0})).collect();
    write_lines(&d.join("bench/sums.jsonl"), &sums);
    let kana: Vec<Value> = ["あ", "か", "さ", "た", "な", "は"]
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"query": format!("「{k}」の次は"), "choices": ["い", "き", "し", "ち"], "label": i % 4}))
        .collect();
    write_lines(&d.join("bench/kana.jsonl"), &kana);
    let prose = [
        json!({"text": "Thank you for your message. We will reply within two business days. ".repeat(12)}),
        json!({"text": "ご連絡ありがとうございます。二営業日以内にお返事いたします。".repeat(10)}),
        json!({"text": "short"}),
    ];
    write_lines(&d.join("bench/prose.jsonl"), &prose);
    ok(d, &["run"]);
    let l = lock(d);

    // Exactly the metrics the stage's config check accepts gates on (the same names, measured).
    let names: std::collections::BTreeSet<&str> =
        l["stages"]["general"]["metrics"].as_object().unwrap().keys().map(String::as_str).filter(|k| !k.starts_with("base_")).collect();
    let expected: std::collections::BTreeSet<&str> = [
        "acc",
        "acc_norm",
        "sums_acc",
        "sums_acc_norm",
        "kana_acc",
        "kana_acc_norm",
        "bits_per_byte",
        "prose_perplexity",
        "prose_word_perplexity",
        "prose_byte_perplexity",
        "prose_bits_per_byte",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected);
    // Accuracies are proportions; the overall one is the item-weighted mean of the tasks'.
    for v in ["", "base_"] {
        let (s, k, all) =
            (metric(&l, "general", &format!("{v}sums_acc")), metric(&l, "general", &format!("{v}kana_acc")), metric(&l, "general", &format!("{v}acc")));
        for x in [s, k, all, metric(&l, "general", &format!("{v}acc_norm"))] {
            assert!((0.0..=1.0).contains(&x), "{v}: {x}");
        }
        assert!((all - (9.0 * s + 6.0 * k) / 15.0).abs() < 1e-5, "{v}acc {all} is not the weighted mean of {s} and {k}");
        let bpb = metric(&l, "general", &format!("{v}prose_bits_per_byte"));
        assert!(bpb > 0.0 && metric(&l, "general", &format!("{v}prose_perplexity")) > 1.0);
        assert!((metric(&l, "general", &format!("{v}prose_byte_perplexity")).log2() - bpb).abs() < 1e-4);
    }

    // Per item and variant: one log-probability per choice, picks that follow from them.
    let results = artifact(d, "general.results");
    let items = jsonl(&results.join("items.jsonl"));
    assert_eq!(items.len(), 2 * (9 + 6));
    for it in &items {
        let lps: Vec<f64> = it["logprobs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!(lps.iter().all(|&x| x < 0.0 && x.is_finite()), "{it}");
        let best = (0..lps.len()).fold(0, |b, i| if lps[i] > lps[b] { i } else { b });
        assert_eq!(it["pick"], best, "{it}");
        assert_eq!(it["correct"], it["pick"] == it["gold"], "{it}");
    }
    // Training moved the tuned model away from its base.
    let by = |v: &str| items.iter().filter(|i| i["variant"] == v).map(|i| i["logprobs"].clone()).collect::<Vec<_>>();
    assert_ne!(by("tuned"), by("base"));

    // The same model compared with itself scores identically.
    for m in ["sums_acc", "sums_acc_norm", "prose_bits_per_byte", "prose_perplexity"] {
        assert_eq!(metric(&l, "itself", m), metric(&l, "itself", &format!("before_{m}")), "{m}");
    }
    for m in ["sums_acc", "sums_acc_norm"] {
        assert_eq!(metric(&l, "itself", m), metric(&l, "general", m), "{m}: the same requests in another stage");
    }
    // A smaller stride gives tokens more context: never a worse fit on this repetitive text.
    assert!(metric(&l, "general", "prose_bits_per_byte") <= metric(&l, "itself", "prose_bits_per_byte") + 1e-9);
    let shown = text(&run_in(d, &["show", "general"]).stdout);
    assert!(shown.contains("sums_acc") && shown.contains("picked differently from base"), "{shown}");

    // A gate relative to the base that the tuned model cannot meet fails the run.
    let yaml = std::fs::read_to_string(d.join("tailor.yaml")).unwrap();
    std::fs::write(d.join("tailor.yaml"), yaml.replace("gate: {acc: \">= base - 1\"}", "gate: {acc: \">= base + 2\"}")).unwrap();
    let out = run_in(d, &["run"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("acc") && err.contains("misses >= base + 2"), "{err}");

    // A broken item is reported with its file, line and column.
    let mut bad = sums.clone();
    bad[2] = json!({"context": "2 plus 2 is", "choices": ["4", "5"], "gold": 5});
    write_lines(&d.join("bench/sums.jsonl"), &bad);
    let out = run_in(d, &["run"]);
    let err = text(&out.stderr);
    assert!(err.contains("bench/sums.jsonl:3:1: `gold` is 5, but there are only 2 choices"), "{err}");
}

#[test]
fn benchmark_settings_are_checked_before_anything_runs() {
    let dir = example("quickstart");
    let d = dir.path();
    let yaml = std::fs::read_to_string(d.join("tailor.yaml")).unwrap();
    let stage = r#"
  general:
    kind: benchmark
    model: tuned
    tasks:
      - {name: Sums, path: data/support.jsonl}
      - {name: ok, path: data/support.jsonl}
    perplexity:
      - {name: ok, path: data/support.jsonl, window: 8, stride: 16}
    gate: {acc: ">= base", accuracy: ">= 0.5"}
"#;
    std::fs::write(d.join("tailor.yaml"), format!("{yaml}{stage}")).unwrap();
    let out = run_in(d, &["validate"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "\"Sums\" is not a usable name",
        "the name \"ok\" is used twice",
        "the stride 16 is longer than the window 8",
        "relative to `base`, which this stage does not evaluate",
        "`accuracy` is not one of this stage's metrics",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
