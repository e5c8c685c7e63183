//! End-to-end tests of the GGUF importer on the fixtures written by
//! `libs/model/tests/make_gguf_fixture.py` (gguf-py is the reference for every
//! expected value), on corrupted copies of them, and — when present on this
//! machine — on the real SmolLM2-135M-Instruct Q4_1 file.

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde_json::Value;
use tokenizers::Tokenizer;

use super::ggml::dequantize;
use super::gguf::Gguf;
use super::{ModelError, import};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every tensor of `got` equals the one of the same name in `want`, bit for bit.
fn assert_same_tensors(got: &Path, want: &Path) {
    let (gb, wb) = (std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
    let (g, w) = (SafeTensors::deserialize(&gb).unwrap(), SafeTensors::deserialize(&wb).unwrap());
    let mut gn = g.names();
    let mut wn = w.names();
    gn.sort();
    wn.sort();
    assert_eq!(gn, wn);
    for name in wn {
        let (a, b) = (g.tensor(name).unwrap(), w.tensor(name).unwrap());
        assert_eq!(a.dtype(), safetensors::Dtype::F32, "{name}");
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert!(a.data() == b.data(), "{name}: values differ");
    }
}

#[test]
fn tiny_gguf_imports_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = import(&fixture("tiny.gguf"), dir.path()).unwrap();
    assert_eq!(s.name.as_deref(), Some("tiny-llama-gqa"));
    assert_eq!((s.layers, s.hidden, s.heads, s.kv_heads, s.vocab, s.tied), (2, 64, 4, 2, 128, true));
    assert_eq!(s.parameters, 128 * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 128 * 64 + 2 * 64) + 64);
    let types: Vec<(&str, usize)> = s.tensor_types.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(types, [("BF16", 1), ("F16", 2), ("F32", 5), ("Q4_0", 3), ("Q4_1", 3), ("Q5_0", 2), ("Q5_1", 2), ("Q8_0", 2)]);
    assert_same_tensors(&dir.path().join("model.safetensors"), &fixture("expected.safetensors"));

    let c = read_json(&dir.path().join("config.json"));
    assert_eq!(c["architectures"][0], "LlamaForCausalLM");
    for (k, v) in [
        ("vocab_size", 128),
        ("hidden_size", 64),
        ("intermediate_size", 128),
        ("num_hidden_layers", 2),
        ("num_attention_heads", 4),
        ("num_key_value_heads", 2),
        ("head_dim", 16),
        ("max_position_embeddings", 256),
        ("bos_token_id", 1),
        ("eos_token_id", 2),
        ("pad_token_id", 2),
    ] {
        assert_eq!(c[k], v, "{k}");
    }
    assert_eq!((c["rms_norm_eps"].as_f64(), c["rope_theta"].as_f64()), (Some(1e-5), Some(10000.0)));
    assert_eq!((&c["tie_word_embeddings"], &c["rope_scaling"], &c["torch_dtype"]), (&Value::Bool(true), &Value::Null, &Value::from("float32")));
    let generation = read_json(&dir.path().join("generation_config.json"));
    assert_eq!((&generation["bos_token_id"], &generation["eos_token_id"]), (&Value::from(1), &Value::from(2)));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn tiny_gguf_tokenizer_matches_the_python_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    import(&fixture("tiny.gguf"), dir.path()).unwrap();
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let cases = read_json(&fixture("tokenizer_expected.json"));
    for case in cases["smollm"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(text, true).unwrap().get_ids(), want, "{text:?}");
        assert_eq!(tok.encode(text, false).unwrap().get_ids(), want, "{text:?}");
    }
    let enc = tok.encode("<|im_start|>user", false).unwrap();
    assert_eq!(enc.get_ids()[0], 1);
    assert_eq!(tok.decode(&[42, 71, 113, 81, 126], false).unwrap(), "Hello world");
    // The rest of the crate loads it like any HF tokenizer directory.
    let files = crate::tokenizer::load(dir.path()).unwrap();
    assert_eq!(files.config.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(files.config.bos_token.as_deref(), Some("<|im_start|>"));
    assert!(!files.config.add_bos_token);
    assert!(files.config.chat_template.unwrap().contains("<|im_start|>"));
    let cfg = read_json(&dir.path().join("tokenizer_config.json"));
    assert_eq!((&cfg["unk_token"], &cfg["model_max_length"]), (&Value::from("<|endoftext|>"), &Value::from(256)));
    let map = read_json(&dir.path().join("special_tokens_map.json"));
    assert_eq!(map["additional_special_tokens"], serde_json::json!([]));
}

#[test]
fn llama3_and_qwen2_pre_tokenizers_match_transformers() {
    let cases = read_json(&fixture("tokenizer_expected.json"));
    for pre in ["llama-bpe", "qwen2"] {
        let g = Gguf::open(&fixture(&format!("tok_{pre}.gguf"))).unwrap();
        let tok = super::gguf_tokenizer::convert(&g, 256).unwrap();
        let reloaded: Tokenizer = tok.tokenizer_json.parse().unwrap();
        for case in cases[pre].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(reloaded.encode(text, true).unwrap().get_ids(), want, "{pre}: {text:?}");
        }
        assert_eq!(tok.tokenizer_config["add_bos_token"], pre == "llama-bpe", "{pre}");
    }
}

#[test]
fn kquants_dequantize_exactly() {
    let g = Gguf::open(&fixture("kquants.gguf")).unwrap();
    assert_eq!((g.version, g.alignment, g.data_start % 64), (3, 64, 0));
    let bytes = std::fs::read(fixture("kquants_expected.safetensors")).unwrap();
    let want = SafeTensors::deserialize(&bytes).unwrap();
    for name in ["q4_k", "q5_k", "q6_k"] {
        let t = g.tensor(name).unwrap();
        let mut out = vec![0f32; t.n_elements as usize];
        dequantize(t.ty.unwrap(), &g.read_tensor(t).unwrap(), &mut out).unwrap();
        let w = want.tensor(name).unwrap();
        assert_eq!(t.shape(), w.shape());
        let got: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(got == w.data(), "{name} differs");
    }
    let e = g.read_tensor(g.tensor("q2_k").unwrap()).unwrap_err();
    assert!(e.to_string().contains("tensor q2_k: type Q2_K (type 10) cannot be read"), "{e}");
    assert!(matches!(e, ModelError::Unsupported { .. }), "{e:?}");
}

#[test]
fn llama3_rope_scaling_is_recovered_from_rope_freqs() {
    let g = Gguf::open(&fixture("kquants.gguf")).unwrap();
    for (name, factor) in [("rope_freqs_llama31", 8.0), ("rope_freqs_llama32", 32.0)] {
        let t = g.tensor(name).unwrap();
        let mut v = vec![0f32; t.n_elements as usize];
        dequantize(t.ty.unwrap(), &g.read_tensor(t).unwrap(), &mut v).unwrap();
        let s = super::rope::llama3_scaling(&v, 500000.0, 64).unwrap();
        let want = serde_json::json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        assert_eq!(s, want, "{name}");
    }
}

/// Import `bytes` written to a temporary file; the error text.
fn import_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let e = import(&path, &dir.path().join("out")).unwrap_err();
    assert!(e.to_string().contains("bad.gguf"), "error does not name the file: {e}");
    // Bad bytes are malformed or unsupported content, never an I/O error.
    assert!(matches!(e, ModelError::Malformed { .. } | ModelError::Unsupported { .. }), "{e:?}");
    e.to_string()
}

fn tiny_bytes() -> Vec<u8> {
    std::fs::read(fixture("tiny.gguf")).unwrap()
}

/// Byte position of the tensor info of `name` (just after its name).
fn info_at(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    bytes.windows(needle.len()).position(|w| w == needle.as_slice()).unwrap() + needle.len()
}

#[test]
fn bad_headers_are_clear_errors() {
    let good = tiny_bytes();
    let mut b = good.clone();
    b[..4].copy_from_slice(b"GGUG");
    assert!(import_err(&b).contains("not a GGUF file"));
    let mut b = good.clone();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(import_err(&b).contains("GGUF version 1 is not supported"));
    let mut b = good.clone();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(import_err(&b).contains("big-endian"));
    for len in [0, 3, 6, 12, 30, 200, 5000] {
        let e = import_err(&good[..len]);
        assert!(e.to_string().contains("truncated"), "{len}: {e}");
    }
}

#[test]
fn bad_tensors_are_clear_errors() {
    let good = tiny_bytes();
    // Cut inside the data section: the last tensors no longer fit.
    let e = import_err(&good[..good.len() - 10]);
    assert!(e.to_string().contains("tensor output_norm.weight") && e.to_string().contains("runs past the end of the file"), "{e}");
    // attn_q info: n_dims u32, 2 dims u64, type u32, offset u64.
    let at = info_at(&good, "blk.0.attn_q.weight");
    let mut b = good.clone();
    b[at + 24..at + 32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = import_err(&b);
    assert!(e.to_string().contains("tensor blk.0.attn_q.weight") && e.to_string().contains("runs past the end of the file"), "{e}");
    let mut b = good.clone();
    b[at + 20..at + 24].copy_from_slice(&99u32.to_le_bytes());
    let e = import_err(&b);
    assert!(e.to_string().contains("tensor blk.0.attn_q.weight has type type 99, which this importer cannot dequantize"), "{e}");
    let mut b = good.clone();
    b[at + 20..at + 24].copy_from_slice(&10u32.to_le_bytes());
    assert!(import_err(&b).contains("has type Q2_K (type 10)"));
    let mut b = good.clone();
    b[at + 4..at + 12].copy_from_slice(&48u64.to_le_bytes());
    let e = import_err(&b);
    assert!(e.to_string().contains("tensor blk.0.attn_q.weight: row length 48 is not a multiple of the Q4_0 block size 32"), "{e}");
    let mut b = good.clone();
    b[at + 12..at + 20].copy_from_slice(&32u64.to_le_bytes());
    let e = import_err(&b);
    assert!(e.to_string().contains("tensor blk.0.attn_q.weight has dims [64, 32], expected [64, 64]"), "{e}");
    let mut b = good.clone();
    let at = info_at(&good, "blk.1.ffn_norm.weight") - "blk.1.ffn_norm.weight".len();
    b[at..at + 5].copy_from_slice(b"blk.7");
    let e = import_err(&b);
    assert!(e.to_string().contains("tensor blk.7.ffn_norm.weight is not a Llama tensor this importer knows"), "{e}");
}

#[test]
fn bad_metadata_is_a_clear_error() {
    let good = tiny_bytes();
    let mut b = good.clone();
    let at = info_at(&good, "general.architecture") + 4 + 8;
    assert_eq!(&b[at..at + 5], b"llama");
    b[at..at + 5].copy_from_slice(b"mamba");
    let e = import_err(&b);
    assert!(e.to_string().contains("architecture \"mamba\" is not supported (supported: llama)"), "{e}");
    let e = import(&fixture("kquants.gguf"), &tempfile::tempdir().unwrap().path().join("o")).unwrap_err();
    assert!(e.to_string().contains("architecture \"kquant-test\" is not supported"), "{e}");
    let mut b = good.clone();
    let at = info_at(&good, "tokenizer.ggml.pre") + 4 + 8;
    b[at..at + 6].copy_from_slice(b"nosuch");
    let e = import_err(&b);
    assert!(e.to_string().contains("tokenizer.ggml.pre = \"nosuch\" is not a pre-tokenizer this importer knows"), "{e}");
    let mut b = good.clone();
    let at = info_at(&good, "llama.block_count");
    assert_eq!(&b[at..at + 8], &[4, 0, 0, 0, 2, 0, 0, 0]);
    b[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = import_err(&b);
    assert!(e.to_string().contains("llama.block_count = 4294967295 but the file has only 20 tensors"), "{e}");
    let mut b = good.clone();
    let at = info_at(&good, "tokenizer.ggml.model") + 4 + 8;
    b[at..at + 4].copy_from_slice(b"bert");
    assert!(import_err(&b).contains("tokenizer.ggml.model = \"bert\" is not supported"));
}

#[test]
fn corrupted_headers_never_panic() {
    let good = tiny_bytes();
    let header_len = Gguf::open(&fixture("tiny.gguf")).unwrap().data_start as usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.gguf");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..400 {
        let mut b = good.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b[(seed % header_len as u64) as usize] = (seed >> 32) as u8;
        }
        std::fs::write(&path, &b).unwrap();
        let _ = import(&path, &dir.path().join("out"));
    }
}
