//! Rows with padding or packed samples: the decoder on the real tokens
//! alone, attention run per segment (gathered into a batch of segments for
//! the fused causal kernel, outputs scattered back), gives the logits and
//! gradients of the oracles — the dense block-diagonal mask for packed rows
//! (with padding after the last segment, one-token segments, rows of one
//! segment), plain causal attention over the padded batch for padded rows.

mod common;

use std::path::PathBuf;

use common::fixture;
use tailor_train::model::Attend;
use tailor_train::peft::LoraSpec;
use tailor_train::trainer::{Method, TrainJob, build};
use tch::{Device, Kind, Tensor};

/// Logits on the real (non-padding) positions and every gradient after one
/// backward pass of their summed log-likelihood.
fn run(model_dir: &str, method: Method, how: How, seg: &[i64]) -> (Tensor, Vec<(String, Tensor)>) {
    let lora = Some(LoraSpec { r: 4, alpha: 8.0, dropout: 0.0, targets: vec!["all-linear".into()], rslora: false });
    let job = TrainJob::with_defaults(fixture(model_dir), PathBuf::new(), PathBuf::new(), method, lora);
    let built = build(&job, Device::Cpu).unwrap();
    tch::manual_seed(11);
    tch::no_grad(|| {
        for (name, p) in &built.params {
            if name.contains("lora_B") {
                p.shallow_clone().copy_(&(Tensor::randn(p.size(), (Kind::Float, Device::Cpu)) * 0.02));
            }
        }
    });
    let vocab = built.model.cfg.vocab_size as i64;
    let ids = Tensor::randint(vocab, [3, 12], (Kind::Int64, Device::Cpu));
    let segments = Tensor::from_slice(seg).view([3, 12]);
    let mut pos = vec![0i64; seg.len()];
    for i in 1..seg.len() {
        pos[i] = if i % 12 != 0 && seg[i] == seg[i - 1] { pos[i - 1] + 1 } else { 0 };
    }
    let positions = Tensor::from_slice(&pos).view([3, 12]);
    let real = segments.ge(0).unsqueeze(-1);
    let attend = match how {
        How::Segments => Attend::Segments(&segments),
        How::Masked => Attend::SegmentsMasked(&segments),
        How::Causal => Attend::Causal,
    };
    let logits = built.model.forward(&ids, Some(&positions), attend, true).unwrap();
    let kept = logits.masked_select(&real);
    let targets = ids.roll([-1], [1]);
    let ll = logits.log_softmax(-1, Kind::Float).gather(-1, &targets.unsqueeze(-1), false);
    ll.masked_select(&real).sum(Kind::Float).neg().backward();
    (kept.detach(), built.params.iter().map(|(n, p)| (n.clone(), p.grad().copy())).collect())
}

#[derive(Clone, Copy)]
enum How {
    Segments,
    Masked,
    Causal,
}

#[rustfmt::skip]
const PACKED: [i64; 36] = [
    0, 0, 0, 0, 1, 1, 1, 1, 1, 2, -1, -1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 2, 2, 2, 2, 2, 2, -1, -1,
];

#[rustfmt::skip]
const PADDED: [i64; 36] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1,
];

#[test]
fn per_segment_attention_equals_the_dense_mask() {
    compare(How::Masked, &PACKED);
}

#[test]
fn padded_rows_on_their_real_tokens_equal_plain_causal_attention() {
    compare(How::Causal, &PADDED);
}

/// The runs seed libtorch's global generator: one test at a time.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn compare(oracle: How, seg: &[i64]) {
    let _one = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    for model in ["llama_gqa_tied", "llama3_untied"] {
        for method in [Method::Full, Method::Lora] {
            let (la, ga) = run(model, method, How::Segments, seg);
            let (lb, gb) = run(model, method, oracle, seg);
            let d = (&la - &lb).abs().max().double_value(&[]);
            assert!(d <= 1e-5, "{model} {method:?}: logits differ by {d:e}");
            let mut nonzero = 0;
            for ((name, x), (_, y)) in ga.iter().zip(&gb) {
                let diff = (x - y).abs().max().double_value(&[]);
                assert!(diff <= 1e-5, "{model} {method:?}: gradient of {name} differs by {diff:e}");
                nonzero += usize::from(x.abs().max().double_value(&[]) > 0.0);
            }
            assert!(nonzero * 2 > ga.len(), "{model} {method:?}: most gradients must be non-zero ({nonzero}/{})", ga.len());
        }
    }
}
