//! NF4 against bitsandbytes on the same tensors (fixture from
//! `make_nf4_fixture.py`): the code tables, the packed bytes, the absmax
//! values (plain and double-quantized) and the dequantized weights; and the
//! NF4 linear layer's gradient against a float matmul on the same weight.

use std::collections::HashMap;
use std::path::PathBuf;

use tailor_train::nf4::{self, Absmax, Nf4};
use tch::{Device, Kind, Tensor};

fn bnb() -> HashMap<String, Tensor> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nf4/bnb.safetensors");
    Tensor::read_safetensors(p).unwrap().into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Float) - b.to_kind(Kind::Float)).abs().max().double_value(&[])
}

#[test]
fn code_tables_equal_bitsandbytes() {
    let t = bnb();
    assert_eq!(max_diff(&Tensor::from_slice(&nf4::NF4_CODE), &t["nf4_code"]), 0.0);
    assert_eq!(max_diff(&Tensor::from_slice(&nf4::dynamic_code()), &t["dynamic_code"]), 0.0);
}

#[test]
fn quantize_and_dequantize_equal_bitsandbytes() {
    let t = bnb();
    for name in ["a", "b"] {
        let x = &t[&format!("{name}.x")];
        let q = Nf4::quantize(x, false, Device::Cpu).unwrap();
        assert!(q.packed.equal(&t[&format!("{name}.packed")]), "{name}: packed bytes differ");
        let Absmax::F32(a) = &q.absmax else { panic!() };
        assert_eq!(max_diff(a, &t[&format!("{name}.absmax")]), 0.0, "{name}: absmax");
        let y = q.dequantize().unwrap();
        assert_eq!(max_diff(&y, &t[&format!("{name}.y")]), 0.0, "{name}: dequantized");
        // The error is what 4 bits allow: under half the widest level gap of each block's absmax.
        let err = max_diff(&y, x);
        assert!(err < 0.5 * 0.31 * x.abs().max().double_value(&[]), "{name}: error {err}");

        let dq = Nf4::quantize(x, true, Device::Cpu).unwrap();
        let Absmax::Double { q: codes, scale, offset, .. } = &dq.absmax else { panic!() };
        assert!(codes.equal(&t[&format!("{name}.dq.absmax_q")]), "{name}: double-quantized absmax codes differ");
        assert!(max_diff(scale, &t[&format!("{name}.dq.scale")]) < 1e-9, "{name}: second-level scales");
        let want = t[&format!("{name}.dq.offset")].double_value(&[0]);
        assert!((offset - want).abs() < 1e-6 * want.abs(), "{name}: offset {offset} vs {want}");
        let y2 = dq.dequantize().unwrap();
        assert!(max_diff(&y2, &t[&format!("{name}.dq.y")]) < 1e-7, "{name}: double-quantized dequantization");
    }
}

#[test]
fn midpoints_and_odd_lengths_equal_bitsandbytes() {
    let t = bnb();
    // "mid": each value exactly halfway between two levels goes to the lower one.
    // "oddN": N values, so the last byte holds one value and bitsandbytes' padding nibble.
    for name in ["mid", "odd1", "odd3", "odd15", "odd65", "odd127"] {
        let x = &t[&format!("{name}.x")];
        let q = Nf4::quantize(x, false, Device::Cpu).unwrap();
        let want = &t[&format!("{name}.packed")];
        assert!(
            q.packed.equal(want),
            "{name}: packed bytes differ:\n ours {:?}\n bnb  {:?}",
            Vec::<u8>::try_from(&q.packed).unwrap(),
            Vec::<u8>::try_from(want).unwrap()
        );
        let Absmax::F32(a) = &q.absmax else { panic!() };
        assert_eq!(max_diff(a, &t[&format!("{name}.absmax")]), 0.0, "{name}: absmax");
        assert_eq!(max_diff(&q.dequantize().unwrap(), &t[&format!("{name}.y")]), 0.0, "{name}: dequantized");
    }
}

#[test]
fn nf4_linear_matches_a_float_matmul_forward_and_backward() {
    tch::manual_seed(3);
    let w = Tensor::randn([48, 80], (Kind::Float, Device::Cpu)) * 0.1;
    let q = Nf4::quantize(&w, true, Device::Cpu).unwrap();
    let wd = q.dequantize().unwrap();
    let x = Tensor::randn([2, 5, 80], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let y = q.linear(&x).unwrap();
    let x2 = x.detach().copy().set_requires_grad(true);
    let y2 = x2.matmul(&wd.tr());
    assert!(max_diff(&y, &y2) < 1e-5);
    let g = Tensor::randn([2, 5, 48], (Kind::Float, Device::Cpu));
    (&y * &g).sum(Kind::Float).backward();
    (&y2 * &g).sum(Kind::Float).backward();
    assert!(max_diff(&x.grad(), &x2.grad()) < 1e-5);
    // 4 bits per weight plus about 0.13 for the scales.
    assert!(q.bytes() < w.numel() as i64 * 4 / 7, "{} bytes for {} weights", q.bytes(), w.numel());
}
