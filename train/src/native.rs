//! Safe wrappers over `csrc/ops.cpp`: the NF4 linear autograd function,
//! NF4 dequantization and PyTorch's fused AdamW step. Tensors cross as the
//! `torch::Tensor*` handles tch itself uses; a failed call comes back as an
//! error message, never as a C++ exception or an abort.

use std::ffi::CStr;

use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn tailor_last_error() -> *const std::ffi::c_char;
    fn tailor_nf4_dequant(packed: *mut C_tensor, absmax: *mut C_tensor, code: *mut C_tensor, rows: i64, cols: i64, block: i64) -> *mut C_tensor;
    fn tailor_nf4_linear(
        x: *mut C_tensor,
        packed: *mut C_tensor,
        absmax: *mut C_tensor,
        code: *mut C_tensor,
        rows: i64,
        cols: i64,
        block: i64,
    ) -> *mut C_tensor;
    fn tailor_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        steps: *const *mut C_tensor,
        n: i32,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> i32;
}

fn last_error() -> String {
    // SAFETY: the C side returns a pointer to its thread-local, NUL-terminated
    // message, valid until the next failing call on this thread.
    unsafe { CStr::from_ptr(tailor_last_error()) }.to_string_lossy().into_owned()
}

fn ptr(t: &Tensor) -> *mut C_tensor {
    // The C side only reads through the handle (or writes tensor contents,
    // which tch's API allows through `&Tensor` as well).
    t.as_ptr() as *mut C_tensor
}

fn wrap(raw: *mut C_tensor) -> Result<Tensor, String> {
    if raw.is_null() {
        Err(last_error())
    } else {
        // SAFETY: a non-null result is a fresh `new torch::Tensor`, owned from
        // here on by the returned value (tch frees it on drop).
        Ok(unsafe { Tensor::from_ptr(raw) })
    }
}

/// NF4 weight `[rows, cols]` in float32 from packed codes, per-block absmax
/// and the 16-value code table.
pub fn nf4_dequant(packed: &Tensor, absmax: &Tensor, code: &Tensor, rows: i64, cols: i64, block: i64) -> Result<Tensor, String> {
    // SAFETY: all handles are live tensors for the duration of the call.
    wrap(unsafe { tailor_nf4_dequant(ptr(packed), ptr(absmax), ptr(code), rows, cols, block) })
}

/// `x · Wᵀ` with W held as NF4; differentiable in `x`, and autograd keeps
/// only the packed weight for the backward pass.
pub fn nf4_linear(x: &Tensor, packed: &Tensor, absmax: &Tensor, code: &Tensor, rows: i64, cols: i64, block: i64) -> Result<Tensor, String> {
    // SAFETY: as above.
    wrap(unsafe { tailor_nf4_linear(ptr(x), ptr(packed), ptr(absmax), ptr(code), rows, cols, block) })
}

/// One fused AdamW step (PyTorch's `_fused_adamw_`) over parallel lists of
/// parameters, gradients, first and second moments and float step counters.
#[allow(clippy::too_many_arguments)]
pub fn fused_adamw(
    params: &[Tensor],
    grads: &[Tensor],
    m: &[Tensor],
    v: &[Tensor],
    steps: &[Tensor],
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    eps: f64,
) -> Result<(), String> {
    let n = params.len();
    if [grads.len(), m.len(), v.len(), steps.len()].iter().any(|&l| l != n) {
        return Err("fused_adamw: lists of different lengths".into());
    }
    if n == 0 {
        return Ok(());
    }
    let handles = |ts: &[Tensor]| ts.iter().map(ptr).collect::<Vec<_>>();
    let (p, g, mm, vv, s) = (handles(params), handles(grads), handles(m), handles(v), handles(steps));
    // SAFETY: five arrays of n live tensor handles.
    let rc = unsafe { tailor_fused_adamw(p.as_ptr(), g.as_ptr(), mm.as_ptr(), vv.as_ptr(), s.as_ptr(), n as i32, lr, beta1, beta2, weight_decay, eps) };
    if rc == 0 { Ok(()) } else { Err(last_error()) }
}
