//! Activation checkpointing: the gradients of a checkpointed backward pass
//! equal those of the ordinary one (float32, CPU), for full fine-tuning and
//! LoRA, tied and untied heads, causal and packed (segment) attention.

mod common;

use std::path::PathBuf;

use common::fixture;
use tailor_train::model::Attend;
use tailor_train::peft::LoraSpec;
use tailor_train::trainer::{Method, TrainJob, build};
use tch::{Device, Kind, Tensor};

/// Gradients of every trainable parameter after one backward pass.
fn grads(model_dir: &str, method: Method, checkpointing: bool, packed: bool) -> Vec<(String, Tensor)> {
    let lora = Some(LoraSpec { r: 4, alpha: 8.0, dropout: 0.0, targets: vec!["all-linear".into()], rslora: false });
    let job = TrainJob::with_defaults(fixture(model_dir), PathBuf::new(), PathBuf::new(), method, lora);
    let built = build(&job, Device::Cpu).unwrap();
    // LoRA's B starts at zero, which would make A's gradient zero: give B values.
    tch::manual_seed(7);
    tch::no_grad(|| {
        for (name, p) in &built.params {
            if name.contains("lora_B") {
                p.shallow_clone().copy_(&(Tensor::randn(p.size(), (Kind::Float, Device::Cpu)) * 0.02));
            }
        }
    });
    let vocab = built.model.cfg.vocab_size as i64;
    let ids = Tensor::randint(vocab, [2, 10], (Kind::Int64, Device::Cpu));
    let positions = Tensor::arange(10, (Kind::Int64, Device::Cpu)).unsqueeze(0).repeat([2, 1]);
    let segments = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2]).view([2, 10]);
    let attend = || if packed { Attend::Segments(&segments) } else { Attend::Causal };
    let loss_of = |logits: &Tensor| {
        let targets = ids.roll([-1], [1]);
        logits.log_softmax(-1, Kind::Float).gather(-1, &targets.unsqueeze(-1), false).mean(Kind::Float).neg()
    };
    if checkpointing {
        built.model.backward_checkpointed(&ids, Some(&positions), attend(), true, loss_of).unwrap();
    } else {
        loss_of(&built.model.forward(&ids, Some(&positions), attend(), true).unwrap()).backward();
    }
    built.params.iter().map(|(n, p)| (n.clone(), p.grad().copy())).collect()
}

#[test]
fn checkpointed_gradients_equal_the_ordinary_ones() {
    for model in ["llama_gqa_tied", "llama3_untied"] {
        for method in [Method::Full, Method::Lora] {
            for packed in [false, true] {
                let (a, b) = (grads(model, method, false, packed), grads(model, method, true, packed));
                assert_eq!(a.len(), b.len());
                let mut nonzero = 0;
                for ((name, x), (_, y)) in a.iter().zip(&b) {
                    let diff = (x - y).abs().max().double_value(&[]);
                    assert!(diff <= 1e-6, "{model} {method:?} packed={packed}: {name} differs by {diff:e}");
                    nonzero += usize::from(x.abs().max().double_value(&[]) > 0.0);
                }
                assert!(nonzero * 2 > a.len(), "{model} {method:?}: most gradients must be non-zero ({nonzero}/{})", a.len());
            }
        }
    }
}
