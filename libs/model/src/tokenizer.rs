//! Tokenizers in the Hugging Face layout: `tokenizer.json` (loaded with the
//! `tokenizers` crate) plus `tokenizer_config.json` (special tokens, whether
//! to add BOS, and the Jinja `chat_template`). Also trains small byte-level
//! BPE tokenizers, so tests and the quickstart need no download.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The parts of `tokenizer_config.json` Tailor uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Beginning-of-sequence token.
    pub bos_token: Option<String>,
    /// End-of-sequence token.
    pub eos_token: Option<String>,
    /// Padding token.
    pub pad_token: Option<String>,
    /// Whether BOS is prepended to every sequence.
    pub add_bos_token: bool,
    /// Jinja chat template.
    pub chat_template: Option<String>,
}

/// A loaded tokenizer with its configuration and content digest.
pub struct TokenizerFiles {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// BLAKE3 of `tokenizer.json` (data and models must agree on it).
    pub digest: String,
    /// Special tokens and chat template.
    pub config: TokenizerConfig,
    /// Where `tokenizer.json` was found (or the GGUF it was built from).
    pub path: PathBuf,
    /// The `tokenizer.json` bytes (what `digest` hashes).
    pub bytes: Vec<u8>,
}

impl TokenizerFiles {
    /// Id of a special token, if the vocabulary has it.
    pub fn id(&self, token: Option<&str>) -> Option<u32> {
        token.and_then(|t| self.tokenizer.token_to_id(t))
    }
}

fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Where `tokenizer.json` is, given a file or a model directory.
pub fn tokenizer_json(path: &Path) -> PathBuf {
    if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() }
}

/// Load `tokenizer.json` (a file, or a directory containing it) and the
/// `tokenizer_config.json` beside it, if any.
pub fn load(path: &Path) -> Result<TokenizerFiles> {
    if crate::gguf::is_gguf(path) {
        return load_gguf(path);
    }
    let file = tokenizer_json(path);
    let bytes = std::fs::read(&file).map_err(ModelError::io(&file))?;
    let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| ModelError::malformed(&file, format!("not a valid tokenizer.json: {e}")))?;
    let cfg_path = file.with_file_name("tokenizer_config.json");
    let cfg = match std::fs::read_to_string(&cfg_path) {
        Ok(text) => Some(serde_json::from_str(&text).map_err(|e| ModelError::malformed(&cfg_path, e.to_string()))?),
        // tokenizer_config.json is optional.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ModelError::Io { path: cfg_path, source: e }),
    };
    Ok(assemble(tokenizer, bytes, cfg.as_ref(), file))
}

/// The tokenizer a GGUF file carries in its metadata, exactly as `tailor
/// import` writes it (so data tokenized from the GGUF matches the imported
/// model's tokenizer digest).
fn load_gguf(path: &Path) -> Result<TokenizerFiles> {
    let hf = crate::import::tokenizer_files(path)?;
    Ok(assemble(hf.tokenizer, hf.tokenizer_json.into_bytes(), Some(&hf.tokenizer_config), path.to_path_buf()))
}

fn assemble(tokenizer: Tokenizer, bytes: Vec<u8>, cfg: Option<&Value>, path: PathBuf) -> TokenizerFiles {
    let digest = blake3::hash(&bytes).to_hex().to_string();
    let mut config = TokenizerConfig::default();
    if let Some(v) = cfg {
        config.bos_token = token_text(v.get("bos_token"));
        config.eos_token = token_text(v.get("eos_token"));
        config.pad_token = token_text(v.get("pad_token"));
        config.add_bos_token = v.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        config.chat_template = match v.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take `default`.
            Some(Value::Array(a)) => a
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
    }
    if config.eos_token.is_none() {
        config.eos_token = ["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>"].iter().find(|t| tokenizer.token_to_id(t).is_some()).map(|t| t.to_string());
    }
    TokenizerFiles { tokenizer, digest, config, path, bytes }
}

/// Special tokens of the tokenizers Tailor trains (ChatML-style chat).
pub const SPECIAL: [&str; 4] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"];

/// A ChatML chat template in the Hugging Face convention.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Train a byte-level BPE tokenizer on `texts` and write `tokenizer.json`
/// and `tokenizer_config.json` into `dir`. Deterministic for the same input.
pub fn train_bpe(texts: &[String], vocab_size: usize, dir: &Path) -> Result<()> {
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = SPECIAL.iter().map(|s| AddedToken::from(*s, true)).collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tok.train(&mut trainer, texts.iter()).map_err(|e| ModelError::Invalid(format!("training the tokenizer: {e}")))?;
    tok.add_special_tokens(&specials);
    std::fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    let json = dir.join("tokenizer.json");
    tok.save(&json, false).map_err(|e| ModelError::malformed(&json, format!("saving: {e}")))?;
    let cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|pad|>",
        "unk_token": null,
        "add_bos_token": false,
        "model_max_length": 2048,
        "chat_template": CHATML_TEMPLATE,
    });
    let path = dir.join("tokenizer_config.json");
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| ModelError::malformed(&path, e.to_string()))?;
    std::fs::write(&path, text).map_err(ModelError::io(&path))
}

/// Training text from files: every string value of JSONL/JSON lines, or
/// the lines of other files.
pub fn texts_from_files(paths: &[PathBuf]) -> Result<Vec<String>> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(m) => m.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(ModelError::io(p))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v.is_object() => strings(&v, &mut out),
                _ => out.push(line.to_string()),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_loads_and_round_trips_japanese() {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<String> = (0..200).map(|i| format!("こんにちは、今日は{i}番目の良い天気ですね。Hello world number {i}.")).collect();
        train_bpe(&texts, 400, dir.path()).unwrap();
        let t = load(dir.path()).unwrap();
        assert_eq!(t.config.eos_token.as_deref(), Some("<|im_end|>"));
        let text = "<|im_start|>user\nこんにちは<|im_end|>";
        let enc = t.tokenizer.encode(text, false).unwrap();
        assert_eq!(enc.get_ids()[0], t.tokenizer.token_to_id("<|im_start|>").unwrap());
        assert_eq!(t.tokenizer.decode(enc.get_ids(), false).unwrap(), text);
        // Same input → same file.
        let dir2 = tempfile::tempdir().unwrap();
        train_bpe(&texts, 400, dir2.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("tokenizer.json")).unwrap(), std::fs::read(dir2.path().join("tokenizer.json")).unwrap());
    }
}
