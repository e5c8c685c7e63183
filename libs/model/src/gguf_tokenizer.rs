//! Hugging Face tokenizer files from a GGUF's `tokenizer.ggml.*` metadata.
//!
//! Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, SmolLM,
//! Llama 3, Qwen 2, …) is converted. The vocabulary is the token list in id
//! order, merges are copied as given (`"a b"`), control tokens (token type
//! 3, and 2 "unknown") become special added tokens and user-defined ones
//! (type 4) non-special added tokens. llama.cpp does not store the
//! pre-tokenizer itself, only its name (`tokenizer.ggml.pre`); each name we
//! know maps to the `tokenizer.json` pre-tokenizer Hugging Face ships for
//! that model family, and an unknown name is an error rather than a guess
//! (a wrong pre-tokenizer silently changes every token id).
//!
//! The JSON is assembled with `serde_json`, loaded with
//! `tokenizers::Tokenizer` (so a file we write always loads) and written in
//! the form `tokenizers` itself serializes.

use serde_json::{Value, json};
use tokenizers::Tokenizer;

use super::gguf::Gguf;
use crate::error::{ModelError, Result};

/// Token types in `tokenizer.ggml.token_type` (`llama_token_type`).
const UNKNOWN: i128 = 2;
const CONTROL: i128 = 3;
const USER_DEFINED: i128 = 4;

/// Llama 3's split regex (`llama-bpe`; llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's split regex (`qwen2`): as Llama 3's but one digit at a time.
pub const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Values of `tokenizer.ggml.pre` this converter knows.
pub const SUPPORTED_PRE: &str = "smollm, gpt2, default (or none), llama-bpe, qwen2";

/// The converted tokenizer, ready to write.
pub struct HfTokenizer {
    /// `tokenizer.json` text.
    pub tokenizer_json: String,
    /// `tokenizer_config.json`.
    pub tokenizer_config: Value,
    /// `special_tokens_map.json`.
    pub special_tokens_map: Value,
    /// The loaded tokenizer (for checks).
    pub tokenizer: Tokenizer,
}

/// The special token ids from metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpecialIds {
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u64>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u64>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u64>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u64>,
}

impl SpecialIds {
    /// Read the ids.
    pub fn of(g: &Gguf) -> Result<Self> {
        Ok(SpecialIds {
            bos: g.get_u64("tokenizer.ggml.bos_token_id")?,
            eos: g.get_u64("tokenizer.ggml.eos_token_id")?,
            pad: g.get_u64("tokenizer.ggml.padding_token_id")?,
            unk: g.get_u64("tokenizer.ggml.unknown_token_id")?,
        })
    }
}

/// Pre-tokenizer, decoder-independent model flags and normalizer for a
/// `tokenizer.ggml.pre` name.
fn pre_tokenizer(g: &Gguf, pre: Option<&str>) -> Result<(Value, bool, Value)> {
    let byte_level = |trim: bool, regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim, "use_regex": regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
        Some("smollm") => {
            (json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true, true)]}), false, Value::Null)
        }
        None | Some("gpt2") | Some("default") => (byte_level(true, true), false, Value::Null),
        Some("llama-bpe") => (json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(true, false)]}), true, Value::Null),
        Some("qwen2") => (json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(false, false)]}), false, json!({"type": "NFC"})),
        Some(other) => {
            return Err(ModelError::unsupported(
                &g.path,
                format!("tokenizer.ggml.pre = {other:?} is not a pre-tokenizer this importer knows (supported: {SUPPORTED_PRE})"),
            ));
        }
    })
}

/// A post-processor adding BOS / EOS when the metadata asks for them.
fn post_processor(bos: Option<(&str, u64)>, eos: Option<(&str, u64)>) -> Value {
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let special = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    let (mut single, mut pair, mut specials) = (vec![], vec![], serde_json::Map::new());
    for (seq_id, type_id) in [("A", 0), ("B", 1)] {
        let part = if type_id == 0 { &mut single } else { &mut pair };
        bos.iter().for_each(|(t, _)| part.push(special(t, type_id)));
        part.push(seq(seq_id, type_id));
        eos.iter().for_each(|(t, _)| part.push(special(t, type_id)));
    }
    let pair: Vec<Value> = single.iter().cloned().chain(pair).collect();
    for (t, id) in bos.iter().chain(eos.iter()) {
        specials.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

/// The vocabulary part of the metadata.
struct Vocab<'a> {
    tokens: Vec<&'a str>,
    types: Vec<i128>,
    merges: Vec<&'a str>,
}

impl<'a> Vocab<'a> {
    fn of(g: &'a Gguf) -> Result<Self> {
        match g.get_str("tokenizer.ggml.model")? {
            Some("gpt2") => {}
            Some("llama") => {
                return Err(ModelError::unsupported(
                    &g.path,
                    "SentencePiece tokenizers (tokenizer.ggml.model = \"llama\") are not supported yet; only byte-level BPE (\"gpt2\") is",
                ));
            }
            Some(other) => {
                return Err(ModelError::unsupported(
                    &g.path,
                    format!("tokenizer.ggml.model = {other:?} is not supported (supported: \"gpt2\", byte-level BPE)"),
                ));
            }
            None => return Err(ModelError::malformed(&g.path, "no tokenizer in the metadata (tokenizer.ggml.model is missing)")),
        }
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?.ok_or_else(|| ModelError::malformed(&g.path, "tokenizer.ggml.tokens is missing"))?;
        let types = g.get_int_array("tokenizer.ggml.token_type")?.unwrap_or_else(|| vec![1; tokens.len()]);
        if types.len() != tokens.len() {
            return Err(ModelError::malformed(
                &g.path,
                format!("tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}", types.len(), tokens.len()),
            ));
        }
        let merges = g.get_str_array("tokenizer.ggml.merges")?.unwrap_or_default();
        Ok(Vocab { tokens, types, merges })
    }

    /// The BPE vocabulary object (token → id); duplicate tokens are an error.
    fn vocab(&self, g: &Gguf) -> Result<serde_json::Map<String, Value>> {
        let mut vocab = serde_json::Map::new();
        for (id, t) in self.tokens.iter().enumerate() {
            if let Some(first) = vocab.insert(t.to_string(), json!(id)) {
                return Err(ModelError::malformed(&g.path, format!("token {t:?} appears twice in tokenizer.ggml.tokens (ids {first} and {id})")));
            }
        }
        Ok(vocab)
    }

    /// Control / unknown tokens (special) and user-defined ones (not special).
    fn added(&self) -> Vec<Value> {
        let added = self.tokens.iter().zip(&self.types).enumerate().filter(|(_, (_, ty))| matches!(**ty, UNKNOWN | CONTROL | USER_DEFINED));
        added
            .map(|(id, (t, ty))| json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": *ty != USER_DEFINED}))
            .collect()
    }

    /// The token with id `id` (from metadata `key`), checked against the vocabulary.
    fn token(&self, g: &Gguf, key: &str, id: Option<u64>) -> Result<Option<(&'a str, u64)>> {
        match id {
            None => Ok(None),
            Some(i) => match self.tokens.get(i as usize) {
                Some(t) => Ok(Some((*t, i))),
                None => Err(ModelError::malformed(&g.path, format!("{key} = {i} but the vocabulary has {} tokens", self.tokens.len()))),
            },
        }
    }
}

/// Special tokens by role: `(text, id)`.
struct Roles<'a> {
    bos: Option<(&'a str, u64)>,
    eos: Option<(&'a str, u64)>,
    pad: Option<(&'a str, u64)>,
    unk: Option<(&'a str, u64)>,
}

/// Convert the GGUF's tokenizer; `model_max_length` goes into the config.
pub fn convert(g: &Gguf, model_max_length: u64) -> Result<HfTokenizer> {
    let v = Vocab::of(g)?;
    let ids = SpecialIds::of(g)?;
    let roles = Roles {
        bos: v.token(g, "tokenizer.ggml.bos_token_id", ids.bos)?,
        eos: v.token(g, "tokenizer.ggml.eos_token_id", ids.eos)?,
        pad: v.token(g, "tokenizer.ggml.padding_token_id", ids.pad)?,
        unk: v.token(g, "tokenizer.ggml.unknown_token_id", ids.unk)?,
    };
    let pre = g.get_str("tokenizer.ggml.pre")?;
    let add_bos = g.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(pre == Some("llama-bpe"));
    let add_eos = g.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let (pre_tok, ignore_merges, normalizer) = pre_tokenizer(g, pre)?;
    let trim = pre != Some("qwen2");
    let tj = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": v.added(), "normalizer": normalizer,
        "pre_tokenizer": pre_tok,
        "post_processor": post_processor(roles.bos.filter(|_| add_bos), roles.eos.filter(|_| add_eos)),
        "decoder": {"type": "ByteLevel", "add_prefix_space": trim, "trim_offsets": trim, "use_regex": trim},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges, "vocab": v.vocab(g)?, "merges": v.merges},
    });
    let tokenizer: Tokenizer = tj.to_string().parse().map_err(|e| ModelError::malformed(&g.path, format!("the converted tokenizer does not load: {e}")))?;
    let tokenizer_json = tokenizer.to_string(false).map_err(|e| ModelError::malformed(&g.path, format!("serializing the tokenizer: {e}")))?;
    let (tokenizer_config, special_tokens_map) = configs(g, &v, &roles, add_bos, add_eos, model_max_length)?;
    Ok(HfTokenizer { tokenizer_json, tokenizer_config, special_tokens_map, tokenizer })
}

/// `tokenizer_config.json` and `special_tokens_map.json`.
fn configs(g: &Gguf, v: &Vocab, roles: &Roles, add_bos: bool, add_eos: bool, model_max_length: u64) -> Result<(Value, Value)> {
    let text = |t: Option<(&str, u64)>| t.map(|(s, _)| s.to_string());
    let named: Vec<Option<String>> = [roles.bos, roles.eos, roles.pad, roles.unk].into_iter().map(text).collect();
    let specials: Vec<&str> =
        v.tokens.iter().zip(&v.types).filter(|(t, ty)| **ty == CONTROL && !named.iter().any(|n| n.as_deref() == Some(**t))).map(|(t, _)| *t).collect();
    let tokenizer_config = json!({
        "add_bos_token": add_bos, "add_eos_token": add_eos, "add_prefix_space": false, "clean_up_tokenization_spaces": false,
        "bos_token": text(roles.bos), "eos_token": text(roles.eos), "pad_token": text(roles.pad), "unk_token": text(roles.unk),
        "additional_special_tokens": specials, "model_max_length": model_max_length,
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": g.get_str("tokenizer.chat_template")?,
    });
    let special_tokens_map = json!({
        "bos_token": text(roles.bos), "eos_token": text(roles.eos), "pad_token": text(roles.pad), "unk_token": text(roles.unk),
        "additional_special_tokens": specials,
    });
    Ok((tokenizer_config, special_tokens_map))
}
