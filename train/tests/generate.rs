//! Generation with a key-value cache against recomputing the whole sequence
//! at every step; batching prompts of different lengths (left padding)
//! against one prompt at a time; seeded sampling; stop strings and EOS.

use std::path::PathBuf;

use tailor_train::generate::{Decoding, generate};
use tailor_train::model::{Attend, Llama};
use tch::{Device, Kind, Tensor};

fn model() -> Llama {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_gqa_tied");
    let cfg = tailor_train::load::config(&dir).unwrap();
    let opts = tailor_train::load::LoadOptions { kind: Kind::Float, device: Device::Cpu, nf4: None };
    Llama::from_weights(cfg, tailor_train::load::weights(&dir, opts).unwrap(), Kind::Float, Device::Cpu).unwrap()
}

fn greedy_without_cache(m: &Llama, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut seq: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
    let mut out = Vec::new();
    for _ in 0..n {
        let ids = Tensor::from_slice(&seq).unsqueeze(0);
        let logits = tch::no_grad(|| m.forward(&ids, None, Attend::Causal, false).unwrap());
        let next = logits.get(0).get(seq.len() as i64 - 1).argmax(0, false).int64_value(&[]);
        out.push(next as u32);
        seq.push(next);
    }
    out
}

fn dec(max_new: usize) -> Decoding {
    Decoding { max_new_tokens: max_new, temperature: 0.0, top_p: 1.0, seed: 0, stop: vec![], batch_size: 8 }
}

fn names(ids: &[u32]) -> String {
    ids.iter().map(|i| format!("<{i}>")).collect()
}

#[test]
fn cached_batched_greedy_equals_recomputing_each_prompt_alone() {
    let m = model();
    let prompts: Vec<Vec<u32>> = vec![vec![5, 17, 33], vec![9, 2, 44, 61, 70, 3, 8], vec![100], vec![12, 12, 12, 12, 12]];
    let got = generate(&m, &prompts, &[], &dec(10), Device::Cpu, &names, &mut |_| {}).unwrap();
    for (p, g) in prompts.iter().zip(&got) {
        assert_eq!(g.ids, greedy_without_cache(&m, p, 10), "prompt {p:?}");
        assert_eq!(g.finish, "length");
        assert_eq!(g.text, names(&g.ids));
    }
    // One at a time gives the same as in a batch.
    let mut one = dec(10);
    one.batch_size = 1;
    assert_eq!(generate(&m, &prompts, &[], &one, Device::Cpu, &names, &mut |_| {}).unwrap(), got);
}

#[test]
fn eos_and_stop_strings_end_a_reply() {
    let m = model();
    // A prompt whose greedy reply has a token not produced before it: as
    // EOS, that token ends the reply there.
    let (prompt, free, k) = (0u32..40)
        .find_map(|s| {
            let p = vec![s, (s * 7 + 3) % 128, (s * 13 + 5) % 128];
            let free = greedy_without_cache(&m, &p, 12);
            (1..free.len()).find(|&k| !free[..k].contains(&free[k])).map(|k| (vec![p], free, k))
        })
        .expect("every greedy reply repeats one token");
    let eos = generate(&m, &prompt, &[free[k]], &dec(12), Device::Cpu, &names, &mut |_| {}).unwrap();
    assert_eq!((eos[0].ids.clone(), eos[0].finish.as_str()), (free[..k].to_vec(), "eos"));
    let mut d = dec(12);
    d.stop = vec![format!("<{}>", free[k])];
    let stop = generate(&m, &prompt, &[], &d, Device::Cpu, &names, &mut |_| {}).unwrap();
    assert_eq!(stop[0].finish, "stop");
    assert_eq!(stop[0].text, names(&free[..k]));
}

#[test]
fn sampling_is_seeded_per_prompt() {
    let m = model();
    let prompts: Vec<Vec<u32>> = vec![vec![5, 17, 33], vec![9, 2, 44, 61]];
    let mut d = dec(12);
    d.temperature = 1.5;
    d.top_p = 0.95;
    let a = generate(&m, &prompts, &[], &d, Device::Cpu, &names, &mut |_| {}).unwrap();
    assert_ne!(a[1].ids, greedy_without_cache(&m, &prompts[1], 12), "sampling at temperature 1.5 gave the greedy reply");
    let alone = generate(&m, &prompts[..1], &[], &d, Device::Cpu, &names, &mut |_| {}).unwrap();
    assert_eq!(a[0], alone[0], "a prompt's sample changed with its batch");
    // Prompt indices seed the streams, so a different seed changes replies.
    d.seed = 1;
    let c = generate(&m, &prompts, &[], &d, Device::Cpu, &names, &mut |_| {}).unwrap();
    assert_ne!(a, c);
}
