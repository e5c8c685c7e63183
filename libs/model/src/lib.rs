//! Model formats and sizes, without libtorch: tokenizers in the Hugging
//! Face layout ([`tokenizer`]), what a run will need ([`estimate`]), and
//! model import — turning a llama.cpp GGUF file into a Hugging Face model
//! directory Tailor (and `transformers`) can train from, in pure Rust.
//!
//! One file, one idea: [`gguf`] reads the container (header eagerly, tensor
//! data lazily by seeking), [`ggml`] and [`kquants`] dequantize block
//! formats to `f32` bit-exactly like llama.cpp, [`llama`] maps the Llama
//! architecture's metadata and tensor names to `config.json` and HF names
//! ([`rope`] recovers Llama 3.1-style rope scaling from `rope_freqs`),
//! [`gguf_tokenizer`] rebuilds `tokenizer.json` from the vocabulary,
//! [`safetensors_out`] streams a float32 safetensors file, and [`import`]
//! ties them together. Errors are [`ModelError`]s naming the file, the key or
//! tensor, and what is wrong; no input can make the importer panic.

pub mod error;
pub mod estimate;
pub mod ggml;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod import;
pub mod kquants;
pub mod llama;
pub mod rope;
pub mod safetensors_out;
pub mod tokenizer;

pub use error::ModelError;
pub use import::{ImportSummary, import};

#[cfg(test)]
mod tests;
