//! The fused AdamW step against the AdamW formula (Loshchilov & Hutter, as
//! `torch.optim.AdamW` implements it) computed by hand in float64, over
//! three steps with weight decay on a matrix and none on a vector.

use tailor_train::optim::{AdamW, AdamWConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn fused_adamw_follows_the_formula() {
    tch::manual_seed(0);
    let w = Tensor::randn([3, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let b = Tensor::randn([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let cfg = AdamWConfig { weight_decay: 0.1, ..AdamWConfig::default() };
    let mut opt = AdamW::new(vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())], cfg);
    let mut reference: Vec<(Vec<f64>, Vec<f64>, Vec<f64>, f64)> = [&w, &b]
        .iter()
        .map(|t| {
            let v: Vec<f32> = Vec::try_from(t.detach().view([-1])).unwrap();
            let p: Vec<f64> = v.into_iter().map(f64::from).collect();
            let n = p.len();
            (p, vec![0.0; n], vec![0.0; n], 0.0)
        })
        .collect();
    let lrs = [1e-2, 5e-3, 2e-3];
    for (step, lr) in lrs.iter().enumerate() {
        let x = Tensor::randn([4], (Kind::Float, Device::Cpu));
        let loss = (w.matmul(&x) + (&b * &x).sum(Kind::Float)).pow_tensor_scalar(2).sum(Kind::Float);
        loss.backward();
        let grads: Vec<Vec<f64>> = [&w, &b].iter().map(|t| Vec::<f32>::try_from(t.grad().view([-1])).unwrap().into_iter().map(f64::from).collect()).collect();
        opt.step(*lr).unwrap();
        let t = (step + 1) as i32;
        for (i, (p, m, v, _)) in reference.iter_mut().enumerate() {
            let wd = if i == 0 { 0.1 } else { 0.0 };
            for k in 0..p.len() {
                let g = grads[i][k];
                p[k] *= 1.0 - lr * wd;
                m[k] = 0.9 * m[k] + 0.1 * g;
                v[k] = 0.999 * v[k] + 0.001 * g * g;
                let mhat = m[k] / (1.0 - 0.9f64.powi(t));
                let vhat = v[k] / (1.0 - 0.999f64.powi(t));
                p[k] -= lr * mhat / (vhat.sqrt() + 1e-8);
            }
        }
    }
    for (t, (want, ..)) in [&w, &b].iter().zip(&reference) {
        let got: Vec<f32> = Vec::try_from(t.detach().view([-1])).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
    // The moments and step counters are saved by name.
    let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["param.w", "exp_avg.w", "exp_avg_sq.w", "step.w", "param.b", "exp_avg.b", "exp_avg_sq.b", "step.b"]);
}
