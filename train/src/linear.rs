//! A linear layer with an optional LoRA adapter, as PEFT defines it:
//! `y = W x + b + scale · B(A(dropout(x)))`, `scale = alpha / r` (or
//! `alpha / sqrt(r)` with rsLoRA). A starts Kaiming-uniform, B at zero, so an
//! untrained adapter changes nothing. The base weight is either a plain
//! tensor (a trainable variable in full fine-tuning, frozen otherwise) or an
//! NF4 matrix (QLoRA), dequantized on the fly; the optimizer only ever sees
//! the variables it was given.

use tch::{Kind, Tensor};

use crate::nf4::Nf4;

/// A LoRA adapter.
pub struct Lora {
    /// `[r, in]`, float32.
    pub a: Tensor,
    /// `[out, r]`, float32.
    pub b: Tensor,
    /// `alpha / r` or `alpha / sqrt(r)`.
    pub scale: f64,
    /// Dropout on the adapter's input.
    pub dropout: f64,
}

/// The base weight of a linear layer.
pub enum Weight {
    /// `[out, in]` in the model's dtype (or a float32 variable).
    Dense(Tensor),
    /// 4-bit NormalFloat.
    Nf4(Nf4),
}

/// `x Wᵀ + b`, plus the adapter if any.
pub struct Linear {
    /// Base weight.
    pub weight: Weight,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// Adapter.
    pub lora: Option<Lora>,
}

impl Linear {
    /// A dense layer without adapter.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight: Weight::Dense(weight), bias, lora: None }
    }

    /// Output features.
    pub fn out_features(&self) -> i64 {
        match &self.weight {
            Weight::Dense(w) => w.size()[0],
            Weight::Nf4(q) => q.rows,
        }
    }

    /// Input features.
    pub fn in_features(&self) -> i64 {
        match &self.weight {
            Weight::Dense(w) => w.size()[1],
            Weight::Nf4(q) => q.cols,
        }
    }

    /// Replace a dense base weight by its NF4 quantization.
    pub fn quantize(&mut self, double: bool) -> Result<(), String> {
        if let Weight::Dense(w) = &self.weight {
            let q = Nf4::quantize(w, double, w.device())?;
            self.weight = Weight::Nf4(q);
        }
        Ok(())
    }

    /// Bytes held by the base weight.
    pub fn weight_bytes(&self) -> i64 {
        match &self.weight {
            Weight::Dense(w) => w.numel() as i64 * w.kind().elt_size_in_bytes() as i64,
            Weight::Nf4(q) => q.bytes(),
        }
    }

    /// Apply the layer; `train` enables adapter dropout.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, String> {
        let bias = self.bias.as_ref().map(|b| if b.kind() == x.kind() { b.shallow_clone() } else { b.to_kind(x.kind()) });
        let mut y = match &self.weight {
            Weight::Dense(w) => {
                let w = if w.kind() == x.kind() { w.shallow_clone() } else { w.to_kind(x.kind()) };
                x.f_linear(&w, bias.as_ref()).map_err(|e| e.to_string())?
            }
            Weight::Nf4(q) => {
                let y = q.linear(x)?;
                match &bias {
                    Some(b) => y + b,
                    None => y,
                }
            }
        };
        if let Some(l) = &self.lora {
            let h = if train && l.dropout > 0.0 { x.dropout(l.dropout, true) } else { x.shallow_clone() };
            let a = l.a.to_kind(x.kind());
            let b = l.b.to_kind(x.kind());
            y = y + h.linear::<Tensor>(&a, None).linear::<Tensor>(&b, None) * l.scale;
        }
        Ok(y)
    }

    /// The base weight in float32 with the adapter folded in (for a merged
    /// model); NF4 weights are dequantized.
    pub fn merged_weight(&self) -> Result<Tensor, String> {
        let w = match &self.weight {
            Weight::Dense(w) => w.to_kind(Kind::Float),
            Weight::Nf4(q) => q.dequantize()?,
        };
        Ok(match &self.lora {
            Some(l) => w + l.b.to_kind(Kind::Float).matmul(&l.a.to_kind(Kind::Float)) * l.scale,
            None => w,
        })
    }
}
