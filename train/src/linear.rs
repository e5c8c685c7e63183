//! A linear layer with an optional LoRA adapter, as PEFT defines it:
//! `y = W x + b + scale · B(A(dropout(x)))`, `scale = alpha / r` (or
//! `alpha / sqrt(r)` with rsLoRA). A starts Kaiming-uniform, B at zero, so an
//! untrained adapter changes nothing. The base weight is a plain tensor
//! without gradient when adapters are trained, so the optimizer only ever
//! sees adapter variables.

use tch::{Kind, Tensor};

/// A LoRA adapter.
pub struct Lora {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// `alpha / r` or `alpha / sqrt(r)`.
    pub scale: f64,
    /// Dropout on the adapter's input.
    pub dropout: f64,
}

/// `x Wᵀ + b`, plus the adapter if any.
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// Adapter.
    pub lora: Option<Lora>,
}

impl Linear {
    /// A layer without adapter.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, lora: None }
    }

    /// Output features.
    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }

    /// Input features.
    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    /// Apply the layer; `train` enables adapter dropout.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let w = if self.weight.kind() == x.kind() { self.weight.shallow_clone() } else { self.weight.to_kind(x.kind()) };
        let mut y = x.matmul(&w.tr());
        if let Some(b) = &self.bias {
            y = y + b.to_kind(x.kind());
        }
        if let Some(l) = &self.lora {
            let h = if train && l.dropout > 0.0 { x.dropout(l.dropout, true) } else { x.shallow_clone() };
            let a = l.a.to_kind(x.kind());
            let b = l.b.to_kind(x.kind());
            y = y + h.matmul(&a.tr()).matmul(&b.tr()) * l.scale;
        }
        y
    }

    /// Fold the adapter into the weight (for a merged model), in float32.
    pub fn merged_weight(&self) -> Tensor {
        let w = self.weight.to_kind(Kind::Float);
        match &self.lora {
            Some(l) => w + l.b.to_kind(Kind::Float).matmul(&l.a.to_kind(Kind::Float)) * l.scale,
            None => w,
        }
    }
}
