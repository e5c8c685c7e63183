//! Tailor's training code on libtorch (`tch`): a Llama-family model loaded
//! from Hugging Face safetensors by the checkpoint's own names, LoRA adapters
//! in PEFT's layout, the training loop, and tiny random models for tests.
//!
//! It lives in its own crate and binary (`tailor-train`) so that the
//! `tailor` CLI does not load the 440 MB libtorch on every start (no-op runs
//! stay fast), and so that a crash inside libtorch fails one stage, not the
//! engine. The `train` stage writes a [`trainer::Job`] and runs the binary.

// On a tch `Tensor`, `x += y` is the in-place `add_`, which breaks autograd
// when `x` is saved for backward; `x = x + y` (a new tensor) is what is meant.
#![allow(clippy::assign_op_pattern)]

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dist;
pub mod generate;
pub mod infer;
pub mod launch;
pub mod linear;
pub mod load;
pub mod loglik;
pub mod model;
pub mod native;
pub mod nf4;
pub mod optim;
pub mod peft;
pub mod tiny;
pub mod trainer;

/// True when this build links libtorch's CUDA library (`TAILOR_CUDA=1
/// scripts/setup.sh`, or a libtorch with `libtorch_cuda.so`); whether a GPU
/// is there is `tch::Cuda::is_available()`.
pub const CUDA_BUILT: bool = cfg!(tailor_cuda);
