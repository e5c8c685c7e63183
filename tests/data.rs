//! Data stages end to end through the engine: clean's per-step counts on a
//! fixture with known problems, collect's errors on a bad-input corpus, the
//! loss mask of every template (golden files) and thread-count independence.
//!
//! Golden files: `tests/fixtures/masks/*.txt`; regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test data`.

mod common;

use std::path::{Path, PathBuf};

use tailor_engine::exec::Outcome;
use tailor_engine::{Overrides, Reporter, RunOptions, Workspace};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Run a pipeline file; return the workspace and outcomes.
fn run(file: &Path) -> (Workspace, Vec<(String, Outcome)>) {
    let p = tailor_engine::load(file, &tailor_stages::registry(), &Overrides::default()).unwrap_or_else(|e| panic!("{}", e.render()));
    let ws = Workspace::open(&p, None).unwrap();
    let out = tailor_engine::run(&p, &ws, &RunOptions { jobs: 1, ..Default::default() }, &Reporter::new(true)).unwrap();
    (ws, out.stages)
}

fn output_dir(ws: &Workspace, stage: &str, output: &str) -> PathBuf {
    let lock = ws.lock().unwrap();
    ws.store.view(&lock.stages[stage].outputs[output]).unwrap()
}

fn scratch_with(files: &[(&str, &Path)], yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, from) in files {
        std::fs::copy(from, dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("tailor.yaml"), yaml).unwrap();
    dir
}

#[test]
fn clean_counts_every_step_on_a_fixture_with_known_problems() {
    let src = fixtures().join("clean");
    let dir = scratch_with(&[("records.jsonl", &src.join("records.jsonl"))], &std::fs::read_to_string(src.join("tailor.yaml")).unwrap());
    let (ws, out) = run(&dir.path().join("tailor.yaml"));
    assert!(out.iter().all(|(_, o)| matches!(o, Outcome::Ran { .. })), "{out:?}");
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(output_dir(&ws, "cleaned", "records").join("stats.json")).unwrap()).unwrap();
    let step = |i: usize| &stats["steps"][i];
    // normalize: seven prompts end in a full-width ？ and record 3 has
    // full-width digits; NFKC makes them ASCII.
    assert_eq!(step(0)["changed"], 8, "{stats}");
    // filter: "はい" is under 4 characters.
    assert_eq!(step(1)["removed"], 1);
    // dedup: records 2 and 3 are exact copies of 1 (3 after NFKC); 5 and 7 are near copies.
    assert_eq!(step(2)["reasons"]["exact duplicate"], 2, "{stats}");
    assert_eq!(step(2)["reasons"]["near duplicate"], 2, "{stats}");
    // pii: one e-mail and one phone number redacted, nothing removed.
    assert_eq!(step(3)["reasons"]["redacted email"], 1);
    assert_eq!(step(3)["reasons"]["redacted phone"], 1);
    assert_eq!(step(3)["removed"], 0);
    // style: one reply mixes です/ます with だ, one is written entirely in だ/である.
    assert_eq!(step(4)["reasons"]["mixed register"], 1, "{stats}");
    assert_eq!(step(4)["reasons"]["wrong register"], 1, "{stats}");
    assert_eq!(stats["kept"], 14 - 1 - 4 - 2);
    let rejects = std::fs::read_to_string(output_dir(&ws, "cleaned", "rejects").join("rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 7, "every removal is kept with its reason");
    let kept = std::fs::read_to_string(output_dir(&ws, "cleaned", "records").join("records.jsonl")).unwrap();
    assert!(kept.contains("[EMAIL]") && kept.contains("[PHONE]") && !kept.contains("info@example"));
}

#[test]
fn collect_names_file_and_line_for_every_bad_input() {
    let bad = fixtures().join("bad_input");
    let cases: &[(&str, &str, &str)] = &[
        ("broken_line.jsonl", "", "broken_line.jsonl:3:"),
        ("latin1.jsonl", "", "latin1.jsonl:2:"),
        ("ragged.csv", ", map: {prompt: question, completion: answer}", "ragged.csv:3"),
        ("not_array.json", ", format: json", "expected a JSON array"),
        ("truncated.json", "", "truncated.json:1:"),
        ("unmapped.jsonl", "", "its fields are: question, reply"),
        ("chat_no_content.jsonl", "", "has no `content`"),
        ("giant.jsonl", "", "over the 16 MiB limit"),
    ];
    let giant = tempfile::tempdir().unwrap();
    let giant_file = giant.path().join("giant.jsonl");
    std::fs::write(&giant_file, format!("{{\"text\":\"{}\"}}\n", "x".repeat(17 << 20))).unwrap();
    for (name, extra, want) in cases {
        let from = if *name == "giant.jsonl" { giant_file.clone() } else { bad.join(name) };
        for policy in ["fail", "skip"] {
            // Small files that are all bad: allow any reject share here (the
            // share rule has its own test).
            let yaml = format!(
                "version: 1\nname: bad\nstages:\n  raw: {{kind: collect, on_error: {policy}, max_reject_share: 1.0, sources: [{{path: {name}{extra}}}]}}\n"
            );
            let dir = scratch_with(&[(name, &from)], &yaml);
            let (ws, out) = run(&dir.path().join("tailor.yaml"));
            match (policy, &out[0].1) {
                ("fail", Outcome::Failed { error }) => assert!(error.contains(want), "{name}: {error}"),
                ("skip", Outcome::Ran { metrics, .. }) => {
                    assert!(metrics["rejected"].as_u64().unwrap() >= 1, "{name}: nothing rejected");
                    let rej = std::fs::read_to_string(output_dir(&ws, "raw", "rejects").join("rejects.jsonl")).unwrap();
                    assert!(rej.contains("\"step\":\"collect\""), "{name}: {rej}");
                }
                (p, o) => panic!("{name} with on_error {p}: unexpected {o:?}"),
            }
        }
    }
    // An empty file is not an error, but it is reported.
    let dir =
        scratch_with(&[("empty.jsonl", &bad.join("empty.jsonl"))], "version: 1\nname: e\nstages:\n  raw: {kind: collect, sources: [{path: empty.jsonl}]}\n");
    let (_, out) = run(&dir.path().join("tailor.yaml"));
    assert!(matches!(&out[0].1, Outcome::Ran { metrics, .. } if metrics["records"] == 0));
}

#[test]
fn loss_masks_of_every_template_match_golden_files() {
    let tok = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart/tokenizer");
    let records = fixtures().join("masks/records.jsonl");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for template in ["completion", "alpaca", "chatml", "llama3", "plain", "tokenizer"] {
        let yaml = format!(
            "version: 1\nname: m\nstages:\n  raw: {{kind: collect, sources: [{{path: records.jsonl}}]}}\n  fmt: {{kind: format, input: raw, tokenizer: {}, template: {template}, max_tokens: 128}}\n",
            tok.display()
        );
        let dir = scratch_with(&[("records.jsonl", &records)], &yaml);
        let (ws, out) = run(&dir.path().join("tailor.yaml"));
        assert!(matches!(out[1].1, Outcome::Ran { .. }), "{template}: {out:?}");
        let mut shown = Vec::new();
        tailor_stages::show::tokenized(&output_dir(&ws, "fmt", "train"), &mut shown, 10).unwrap();
        let shown = String::from_utf8(shown).unwrap();
        let golden = fixtures().join(format!("masks/{template}.txt"));
        if update {
            std::fs::write(&golden, &shown).unwrap();
        } else {
            assert_eq!(shown, std::fs::read_to_string(&golden).unwrap_or_default(), "{template}: mask differs from {}", golden.display());
        }
    }
}

#[test]
fn adding_a_record_never_moves_another_across_the_split() {
    let tok = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart/tokenizer");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart/data/chatterbot_ja.jsonl");
    let yaml = format!(
        "version: 1\nname: s\nstages:\n  raw: {{kind: collect, sources: [{{path: records.jsonl}}]}}\n  fmt: {{kind: format, input: raw, tokenizer: {}, template: chatml, split: {{validation: 0.2, seed: 5}}}}\n",
        tok.display()
    );
    let dir = scratch_with(&[("records.jsonl", &src)], &yaml);
    let ids = |ws: &Workspace, split: &str| -> Vec<String> {
        let text = std::fs::read_to_string(output_dir(ws, "fmt", split).join("samples.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
    };
    let (ws, _) = run(&dir.path().join("tailor.yaml"));
    let (val1, train1) = (ids(&ws, "validation"), ids(&ws, "train"));
    assert!(!val1.is_empty() && !train1.is_empty());
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("records.jsonl")).unwrap();
    use std::io::Write;
    for i in 0..20 {
        writeln!(f, "{{\"prompt\": \"新しい質問{i}\", \"completion\": \"新しい答え{i}です。\"}}").unwrap();
    }
    drop(f);
    let (ws, _) = run(&dir.path().join("tailor.yaml"));
    let (val2, train2) = (ids(&ws, "validation"), ids(&ws, "train"));
    assert!(val1.iter().all(|id| val2.contains(id)), "a validation record moved to train");
    assert!(train1.iter().all(|id| train2.contains(id)), "a training record moved to validation");
    assert_eq!(val2.len() + train2.len(), val1.len() + train1.len() + 20);
}

#[test]
fn parquet_sources_are_read_with_mapping_and_nested_fields() {
    for file in ["qa_snappy.parquet", "qa_gzip.parquet"] {
        let from = fixtures().join("parquet").join(file);
        let yaml =
            format!("version: 1\nname: pq\nstages:\n  raw: {{kind: collect, sources: [{{path: {file}, map: {{prompt: question, completion: answer}}}}]}}\n");
        let dir = scratch_with(&[(file, &from)], &yaml);
        let (ws, out) = run(&dir.path().join("tailor.yaml"));
        assert!(matches!(&out[0].1, Outcome::Ran { metrics, .. } if metrics["records"] == 3), "{file}: {out:?}");
        let text = std::fs::read_to_string(output_dir(&ws, "raw", "records").join("records.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prompt"], "日本の首都は？");
        assert_eq!(first["completion"], "東京です。");
        assert_eq!(first["source"]["line"], 1);
    }
}

fn records_of(ws: &Workspace, stage: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(output_dir(ws, stage, "records").join("records.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn rejects_of(ws: &Workspace, stage: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(output_dir(ws, stage, "rejects").join("rejects.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn scratch_bytes(files: &[(&str, Vec<u8>)], yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("tailor.yaml"), yaml).unwrap();
    dir
}

const JA_LINES: &str = "{\"prompt\": \"挨拶して\", \"completion\": \"こんにちは。\"}\n{\"prompt\": \"天気は？\", \"completion\": \"晴れです。\"}\n{\"prompt\": \"名前は？\", \"completion\": \"テイラーです。\"}\n";

#[test]
fn collect_decodes_boms_and_legacy_encodings_and_fails_mostly_rejected_sources() {
    let collect = |extra: &str| format!("version: 1\nname: enc\nstages:\n  raw: {{kind: collect, on_error: skip{extra}, sources: [{{path: d.jsonl}}]}}\n");
    let with_source = |src: &str| format!("version: 1\nname: enc\nstages:\n  raw: {{kind: collect, on_error: skip, sources: [{{path: d.jsonl{src}}}]}}\n");
    // UTF-16 LE and BE and UTF-32 with a BOM: read as what they are.
    let mut le = vec![0xFF, 0xFE];
    let mut be = vec![0xFE, 0xFF];
    for u in JA_LINES.encode_utf16() {
        le.extend(u.to_le_bytes());
        be.extend(u.to_be_bytes());
    }
    let mut u32le = vec![0xFF, 0xFE, 0, 0];
    for c in JA_LINES.chars() {
        u32le.extend((c as u32).to_le_bytes());
    }
    for bytes in [le, be, u32le] {
        let dir = scratch_bytes(&[("d.jsonl", bytes)], &collect(""));
        let (ws, out) = run(&dir.path().join("tailor.yaml"));
        assert!(matches!(&out[0].1, Outcome::Ran { metrics, .. } if metrics["records"] == 3 && metrics["rejected"] == 0), "{out:?}");
        assert_eq!(records_of(&ws, "raw")[2]["completion"], "テイラーです。");
    }
    // Shift_JIS and EUC-JP when the source says so.
    for (enc, name) in [(encoding_rs::SHIFT_JIS, "shift_jis"), (encoding_rs::EUC_JP, "euc-jp")] {
        let bytes = enc.encode(JA_LINES).0.to_vec();
        let dir = scratch_bytes(&[("d.jsonl", bytes.clone())], &with_source(&format!(", encoding: {name}")));
        let (ws, out) = run(&dir.path().join("tailor.yaml"));
        assert!(matches!(&out[0].1, Outcome::Ran { metrics, .. } if metrics["records"] == 3), "{name}: {out:?}");
        assert_eq!(records_of(&ws, "raw")[1]["completion"], "晴れです。");
        // Unsaid, every line is invalid UTF-8: the stage fails with the
        // counts and the way out, instead of succeeding with 0 records.
        let dir = scratch_bytes(&[("d.jsonl", bytes)], &collect(""));
        let (_, out) = run(&dir.path().join("tailor.yaml"));
        match &out[0].1 {
            Outcome::Failed { error } => {
                assert!(error.contains("3 of 3 records rejected") && error.contains("invalid UTF-8") && error.contains("encoding: shift_jis"), "{error}")
            }
            o => panic!("{name} read as UTF-8 must fail: {o:?}"),
        }
    }
    // A JSON array (read element by element) in Shift_JIS: the same hint,
    // and with the encoding said, the records.
    let array = "[{\"prompt\": \"天気は？\", \"completion\": \"晴れです。\"},\n {\"prompt\": \"名前は？\", \"completion\": \"テイラーです。\"}]\n";
    let sjis = encoding_rs::SHIFT_JIS.encode(array).0.to_vec();
    let json_source = |enc: &str| {
        format!("version: 1\nname: enc\nstages:\n  raw: {{kind: collect, on_error: skip, max_reject_share: 1.0, sources: [{{path: d.json{enc}}}]}}\n")
    };
    let dir = scratch_bytes(&[("d.json", sjis.clone())], &json_source(""));
    let (ws, _) = run(&dir.path().join("tailor.yaml"));
    let rejects = rejects_of(&ws, "raw");
    assert!(rejects.len() == 1 && rejects[0]["reason"].as_str().unwrap().contains("encoding: shift_jis"), "{rejects:?}");
    let dir = scratch_bytes(&[("d.json", sjis)], &json_source(", encoding: shift_jis"));
    let (ws, _) = run(&dir.path().join("tailor.yaml"));
    assert_eq!(records_of(&ws, "raw")[1]["completion"], "テイラーです。");
    // The share is configurable: a file with 1 bad line in 4 passes at the
    // default (0.5) and fails at 0.2; 1.0 allows anything.
    let mixed = format!("{JA_LINES}{{broken\n");
    for (share, ok) in [("", true), (", max_reject_share: 0.2", false), (", max_reject_share: 1.0", true)] {
        let dir = scratch_bytes(&[("d.jsonl", mixed.clone().into_bytes())], &collect(share));
        let (_, out) = run(&dir.path().join("tailor.yaml"));
        assert_eq!(matches!(&out[0].1, Outcome::Ran { .. }), ok, "{share}: {out:?}");
    }
}

#[test]
fn a_directory_given_as_a_source_says_so_and_how_to_fix_it() {
    let dir = scratch_bytes(&[], "version: 1\nname: d\nstages:\n  raw: {kind: collect, sources: [{path: data}]}\n");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let err = match tailor_engine::load(&dir.path().join("tailor.yaml"), &tailor_stages::registry(), &Overrides::default()) {
        Err(e) => e.render(),
        Ok(_) => panic!("a directory is not a source file"),
    };
    assert!(err.contains("is a directory") && err.contains("data/*.jsonl") && !err.contains("does not exist"), "{err}");
}

#[test]
fn csv_rejects_carry_physical_lines_and_reasons_without_positions() {
    // Line 1 header; 2 good; 3 ragged; 4-6 one record with a quoted field
    // over three lines; 7 ragged; 8 good.
    let csv = "question,answer\nq1,a1\nq2,a2,extra\nq3,\"multi\nline\nanswer\"\nq4\nq5,a5\n";
    let yaml = "version: 1\nname: c\nstages:\n  raw: {kind: collect, on_error: skip, sources: [{path: d.csv, map: {prompt: question, completion: answer}}]}\n";
    let dir = scratch_bytes(&[("d.csv", csv.as_bytes().to_vec())], yaml);
    let (ws, out) = run(&dir.path().join("tailor.yaml"));
    assert!(matches!(&out[0].1, Outcome::Ran { .. }), "{out:?}");
    let lines: Vec<u64> = records_of(&ws, "raw").iter().map(|r| r["source"]["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 4, 8]);
    let rejects = rejects_of(&ws, "raw");
    let ids: Vec<&str> = rejects.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["d.csv:3", "d.csv:7"]);
    assert_eq!(rejects[0]["reason"], "row has 3 fields, the header has 2");
    assert_eq!(rejects[1]["reason"], "row has 1 fields, the header has 2");
    // JSON reasons name the problem, not the column, so they group.
    let dir = scratch_bytes(
        &[("d.jsonl", b"{\"text\": 1,}\n{\"text\": \"ok\"}\n{\"text\": \"x\",,}\n{\"text\": \"ok2\"}\n".to_vec())],
        &yaml.replace("d.csv, map: {prompt: question, completion: answer}", "d.jsonl"),
    );
    let (ws, _) = run(&dir.path().join("tailor.yaml"));
    let rejects = rejects_of(&ws, "raw");
    assert_eq!(rejects.len(), 2);
    assert!(rejects.iter().all(|r| !r["reason"].as_str().unwrap().contains("column")), "{rejects:?}");
    assert!(rejects[0]["id"].as_str().unwrap().starts_with("d.jsonl:1:"), "{rejects:?}");
}

#[test]
fn unknown_fields_are_kept_and_where_limits_a_step() {
    let data = concat!(
        "{\"id\": 1, \"task\": \"json\", \"prompt\": \"p1\", \"completion\": \"{\\\"a\\\": 1}\"}\n",
        "{\"id\": 2, \"task\": \"chat\", \"prompt\": \"p2\", \"completion\": \"ただの文章です。よろしくお願いします。\"}\n",
        "{\"id\": 3, \"task\": \"json\", \"prompt\": \"p3\", \"completion\": \"not json\"}\n",
        "{\"id\": 4, \"task\": \"chat\", \"prompt\": \"p4\", \"completion\": \"これは普通の文だ。問題はない。\"}\n",
        "{\"id\": 5, \"task\": \"chat\", \"prompt\": \"p5\", \"completion\": \"今日は晴れです。明日は雨だ。\"}\n",
        "{\"id\": 6, \"task\": \"chat\", \"prompt\": \"p6\", \"completion\": \"彼は「行くぞ」と言いました。私も行きます。\"}\n",
    );
    let yaml = "version: 1\nname: w\nstages:\n  raw: {kind: collect, sources: [{path: d.jsonl}]}\n  cleaned:\n    kind: clean\n    input: raw\n    steps:\n      - check: {json: true}\n        where: {meta: {task: json}}\n      - style: {politeness: mixed}\n        where: {meta: {task: chat}}\n";
    let dir = scratch_bytes(&[("d.jsonl", data.as_bytes().to_vec())], yaml);
    let (ws, out) = run(&dir.path().join("tailor.yaml"));
    assert!(out.iter().all(|(_, o)| matches!(o, Outcome::Ran { .. })), "{out:?}");
    let raw = records_of(&ws, "raw");
    assert_eq!(raw[0]["meta"]["id"], 1);
    assert_eq!(raw[0]["meta"]["task"], "json");
    assert!(raw[0]["meta"].get("prompt").is_none());
    let kept: Vec<i64> = records_of(&ws, "cleaned").iter().map(|r| r["meta"]["id"].as_i64().unwrap()).collect();
    // 3 is not JSON (only JSON tasks are checked, so the chat replies pass
    // that step); 5 mixes です and だ; 4 is consistently plain and 6 has
    // its だ-like ending only inside quotes, so both stay.
    assert_eq!(kept, [1, 2, 4, 6]);
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(output_dir(&ws, "cleaned", "records").join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["steps"][0]["input"], 2, "{stats}");
    assert_eq!(stats["steps"][0]["skipped"], 4, "{stats}");
    assert!(stats["steps"][0]["scope"].as_str().unwrap().contains("meta.task"), "{stats}");
    assert_eq!(stats["steps"][1]["reasons"]["mixed register"], 1, "{stats}");
}

#[test]
fn spelling_variants_are_reported_then_normalized() {
    let replies = [
        "サーバーを再起動しました。申し込みは明日までです。",
        "サーバーの設定を確認して下さい。",
        "サーバが応答しません。申込みを送ってください。",
        "ユーザーの登録が出来ます。",
        "ユーザーを追加できます。",
        "ビールとビルは別の言葉です。",
    ];
    let data: String = replies.iter().enumerate().map(|(i, r)| format!("{}\n", serde_json::json!({"prompt": format!("質問{i}"), "completion": r}))).collect();
    let pipeline = |step: &str| {
        format!(
            "version: 1\nname: v\nstages:\n  raw: {{kind: collect, sources: [{{path: d.jsonl}}]}}\n  cleaned:\n    kind: clean\n    input: raw\n    steps:\n      - variants: {step}\n"
        )
    };
    // Report: groups with counts, less-used spellings flagged, nothing changed.
    let dir = scratch_bytes(&[("d.jsonl", data.clone().into_bytes())], &pipeline("{}"));
    let (ws, out) = run(&dir.path().join("tailor.yaml"));
    assert!(out.iter().all(|(_, o)| matches!(o, Outcome::Ran { .. })), "{out:?}");
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(output_dir(&ws, "cleaned", "records").join("stats.json")).unwrap()).unwrap();
    let groups = stats["steps"][0]["details"]["groups"].as_array().unwrap();
    let find = |key: &str| groups.iter().find(|g| g["key"] == key).unwrap_or_else(|| panic!("no group {key}: {groups:?}"));
    assert_eq!(find("サーバ")["preferred"], "サーバー");
    assert_eq!(find("サーバ")["forms"][1]["text"], "サーバ");
    assert_eq!(find("申込")["family"], "okurigana");
    assert_eq!(find("出来")["family"], "kanji_kana");
    assert!(groups.iter().all(|g| g["key"] != "ビル" && g["key"] != "ユーザ"), "one spelling each is no group: {groups:?}");
    let recs = records_of(&ws, "cleaned");
    assert_eq!(recs[2]["completion"], replies[2], "report changes nothing");
    assert!(recs[2]["meta"]["flags"][0]["reason"].as_str().unwrap().contains("サーバ where the dataset mostly writes サーバー"), "{}", recs[2]);
    // Normalize to the majority: rewritten, and recorded per record.
    let dir = scratch_bytes(&[("d.jsonl", data.clone().into_bytes())], &pipeline("{normalize: majority, rules: [long_vowel]}"));
    let (ws, _) = run(&dir.path().join("tailor.yaml"));
    let recs = records_of(&ws, "cleaned");
    assert_eq!(recs[2]["completion"], "サーバーが応答しません。申込みを送ってください。");
    assert_eq!(recs[2]["meta"]["variants"][0], serde_json::json!({"from": "サーバ", "to": "サーバー"}));
    assert_eq!(recs[5]["completion"], replies[5]);
    // Normalize with a dictionary: only its words, to its forms.
    let dir = scratch_bytes(&[("d.jsonl", data.into_bytes())], &pipeline("{normalize: dictionary, dictionary: {ください: [下さい]}}"));
    let (ws, _) = run(&dir.path().join("tailor.yaml"));
    let recs = records_of(&ws, "cleaned");
    assert_eq!(recs[1]["completion"], "サーバーの設定を確認してください。");
    assert_eq!(recs[2]["completion"], replies[2], "サーバ is not in the dictionary");
}

#[test]
fn near_duplicates_need_alike_answers_not_just_alike_records() {
    // One long question with different short answers: distinct records.
    // A lightly edited copy of a whole record: a duplicate.
    let q = "Could you summarise the main points of the attached quarterly report for the board meeting tomorrow morning?";
    let lines = [
        serde_json::json!({"prompt": q, "completion": "Yes."}),
        serde_json::json!({"prompt": q, "completion": "No, not today."}),
        serde_json::json!({"prompt": q, "completion": "Revenue grew; costs fell; hiring paused."}),
        serde_json::json!({"prompt": "Could you summarise the main points of the attached quarterly report for the board meeting tomorrow?", "completion": "Revenue grew, costs fell, hiring paused."}),
    ];
    let data: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let yaml = "version: 1\nname: n\nstages:\n  raw: {kind: collect, sources: [{path: d.jsonl}]}\n  cleaned: {kind: clean, input: raw, steps: [{dedup: {near: {}}}]}\n";
    let dir = scratch_bytes(&[("d.jsonl", data.into_bytes())], yaml);
    let (ws, out) = run(&dir.path().join("tailor.yaml"));
    assert!(out.iter().all(|(_, o)| matches!(o, Outcome::Ran { .. })), "{out:?}");
    let kept: Vec<String> = records_of(&ws, "cleaned").iter().map(|r| r["completion"].as_str().unwrap().to_string()).collect();
    assert_eq!(kept, ["Yes.", "No, not today.", "Revenue grew; costs fell; hiring paused."]);
}

/// Every file under `dir`, relative path → bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in walk(dir) {
        out.insert(e.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&e).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { files.extend(walk(&p)) } else { files.push(p) }
    }
    files
}

#[test]
fn clean_and_format_write_the_same_bytes_at_any_chunk_size() {
    // The stages stream records a chunk at a time, with census passes for
    // dedup, the majority register and spelling variants: the outputs must
    // not depend on where the chunks end (the default chunk holds the
    // whole fixture, i.e. the all-in-memory case).
    let outputs = ["cleaned.records", "cleaned.rejects", "formatted.train", "formatted.validation"];
    let mut runs = Vec::new();
    for chunk in [None, Some("1"), Some("7")] {
        let dir = tempfile::tempdir().unwrap();
        common::copy_tree(&common::repo().join("pipelines/quickstart/data"), &dir.path().join("data"));
        common::copy_tree(&common::repo().join("pipelines/quickstart/models"), &dir.path().join("models"));
        std::fs::copy(fixtures().join("streaming.yaml"), dir.path().join("tailor.yaml")).unwrap();
        let mut cmd = common::tailor();
        cmd.current_dir(dir.path()).args(["run", "formatted"]);
        if let Some(n) = chunk {
            cmd.env("TAILOR_CHUNK_RECORDS", n);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        let files: Vec<_> = outputs.iter().map(|o| tree(&common::artifact(dir.path(), o))).collect();
        runs.push((chunk, files));
    }
    let (_, first) = &runs[0];
    let stats: serde_json::Value = serde_json::from_slice(&first[0][Path::new("stats.json")]).unwrap();
    // The fixture exercises every census: duplicates removed, register and
    // variants flagged, a selector that skips records.
    assert!(stats["steps"][3]["removed"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["steps"][5]["skipped"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["steps"][0]["details"]["total_groups"].as_u64().unwrap() > 0, "{stats}");
    for (chunk, files) in &runs[1..] {
        for (o, (a, b)) in outputs.iter().zip(first.iter().zip(files)) {
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{o} at chunk {chunk:?}");
            for (name, bytes) in a {
                assert!(b[name] == *bytes, "{o}/{} differs at chunk size {chunk:?}", name.display());
            }
        }
    }
}
