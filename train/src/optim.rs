//! AdamW over named parameters, with its state in the open so a checkpoint
//! can save and restore it exactly: first and second moments and a step
//! counter per parameter. The update itself is PyTorch's fused AdamW kernel
//! (decoupled weight decay, bias-corrected moments), the one
//! `torch.optim.AdamW(fused=True)` runs. Parameters are in two groups:
//! matrices decay, vectors (norms, biases) do not.

use std::collections::HashMap;

use tch::{Kind, Tensor};

use crate::native;

/// Hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (matrices only).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// One trainable parameter and its optimizer state.
pub struct Param {
    /// Name (Hugging Face or PEFT-relative).
    pub name: String,
    /// The variable.
    pub tensor: Tensor,
    m: Tensor,
    v: Tensor,
    step: Tensor,
}

/// The optimizer.
pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<Param>,
}

impl AdamW {
    /// An optimizer over `params` (each must require grad), in the order given.
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Self {
        let params = params
            .into_iter()
            .map(|(name, tensor)| {
                let m = tensor.zeros_like().to_kind(Kind::Float);
                let v = tensor.zeros_like().to_kind(Kind::Float);
                let step = Tensor::zeros([], (Kind::Float, tensor.device()));
                Param { name, tensor, m, v, step }
            })
            .collect();
        AdamW { cfg, params }
    }

    /// The parameters.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of trainable values.
    pub fn numel(&self) -> i64 {
        self.params.iter().map(|p| p.tensor.numel() as i64).sum()
    }

    /// Global L2 norm of the gradients; scales them to `max_norm` when above
    /// it (and `max_norm > 0`). Returns the norm before clipping.
    pub fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let norms: Vec<Tensor> = self.params.iter().map(|p| p.tensor.grad()).filter(Tensor::defined).map(|g| g.to_kind(Kind::Float).norm()).collect();
            if norms.is_empty() {
                return 0.0;
            }
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            if max_norm > 0.0 && total > max_norm {
                let c = max_norm / (total + 1e-6);
                for p in &self.params {
                    let mut g = p.tensor.grad();
                    if g.defined() {
                        // In place; the returned handle is `g` itself.
                        let _ = g.g_mul_scalar_(c);
                    }
                }
            }
            total
        })
    }

    /// One update at learning rate `lr`, then clear the gradients.
    pub fn step(&mut self, lr: f64) -> Result<(), String> {
        for decay in [true, false] {
            let group: Vec<&Param> = self.params.iter().filter(|p| (p.tensor.dim() >= 2) == decay && p.tensor.grad().defined()).collect();
            if group.is_empty() {
                continue;
            }
            let take = |f: fn(&Param) -> Tensor| group.iter().map(|p| f(p)).collect::<Vec<Tensor>>();
            let (ps, gs, ms, vs, ss) = (
                take(|p| p.tensor.shallow_clone()),
                take(|p| p.tensor.grad()),
                take(|p| p.m.shallow_clone()),
                take(|p| p.v.shallow_clone()),
                take(|p| p.step.shallow_clone()),
            );
            let wd = if decay { self.cfg.weight_decay } else { 0.0 };
            native::fused_adamw(&ps, &gs, &ms, &vs, &ss, lr, self.cfg.beta1, self.cfg.beta2, wd, self.cfg.eps)?;
        }
        self.zero_grad();
        Ok(())
    }

    /// The gradient of every parameter, in order, for summing across
    /// ranks; a parameter that got none (a rank with no rows this step)
    /// gets zeros first, so every rank passes the same tensors.
    pub fn grads(&self) -> Vec<Tensor> {
        let missing: Vec<Tensor> = self.params.iter().filter(|p| !p.tensor.grad().defined()).map(|p| p.tensor.sum(Kind::Float) * 0.0).collect();
        if !missing.is_empty() {
            Tensor::stack(&missing, 0).sum(Kind::Float).backward();
        }
        self.params.iter().map(|p| p.tensor.grad()).collect()
    }

    /// A position-weighted sum of the trainable weights (to compare ranks).
    pub fn checksum(&self) -> f64 {
        self.params.iter().enumerate().map(|(i, p)| (i + 1) as f64 * p.tensor.to_kind(Kind::Double).sum(Kind::Double).double_value(&[])).sum()
    }

    /// Clear gradients.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                // In place; the returned handle is `g` itself.
                let _ = g.zero_();
            }
        }
    }

    /// Optimizer state by name (`exp_avg.NAME`, `exp_avg_sq.NAME`, `step.NAME`)
    /// and the parameters themselves (`param.NAME`), for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 4);
        for p in &self.params {
            out.push((format!("param.{}", p.name), p.tensor.detach()));
            out.push((format!("exp_avg.{}", p.name), p.m.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", p.name), p.v.shallow_clone()));
            out.push((format!("step.{}", p.name), p.step.reshape([1])));
        }
        out
    }

    /// Restore what [`AdamW::state`] saved: moments and step counters of
    /// every parameter, and the parameter values where present.
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<(), String> {
        tch::no_grad(|| {
            for p in &mut self.params {
                let get = |k: &str| saved.get(&format!("{k}.{}", p.name)).ok_or_else(|| format!("the checkpoint has no `{k}.{}`", p.name));
                let (m, v, s) = (get("exp_avg")?, get("exp_avg_sq")?, get("step")?);
                if m.size() != p.tensor.size() {
                    return Err(format!("saved state of `{}` has shape {:?}, the model {:?}", p.name, m.size(), p.tensor.size()));
                }
                // A checkpoint carries the parameters too; an optimizer state
                // saved beside a result does not (the result holds them).
                if let Some(w) = saved.get(&format!("param.{}", p.name)) {
                    p.tensor.copy_(w);
                }
                p.m.copy_(m);
                p.v.copy_(v);
                p.step.copy_(&s.reshape([]));
            }
            Ok(())
        })
    }
}
