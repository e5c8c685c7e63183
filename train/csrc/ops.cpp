// Native operations tch does not expose, compiled against the same libtorch
// headers as torch-sys and called from Rust (train/src/native.rs).
//
// * An NF4 linear layer as a custom autograd function: the forward pass
//   dequantizes the 4-bit weight into a temporary, multiplies, and lets it go;
//   the backward pass dequantizes again. Autograd therefore keeps only the
//   packed weight alive between the two passes (what makes QLoRA's memory
//   saving real: a plain `x.matmul(dequant(w).t())` would keep every layer's
//   float weight until backward).
// * NF4 dequantization (a parallel CPU kernel; ATen ops on other devices).
// * The fused AdamW step PyTorch uses with `fused=True`.
//
// Tensors cross the boundary as `torch::Tensor*`, the representation tch
// uses; results are new heap tensors that tch owns and frees. C++ exceptions
// never cross: a failing call returns null (or 1) and leaves its message for
// `tailor_last_error`.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <string>

namespace {

thread_local std::string last_error;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Weight [rows, cols] from packed codes (two per byte, the first element of
// a pair in the high nibble, as bitsandbytes stores them), the 16-entry code
// table and one absmax per block of `block` consecutive elements.
at::Tensor dequant(const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code, int64_t rows, int64_t cols, int64_t block) {
  const int64_t n = rows * cols;
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.numel() * 2 >= n, "nf4: packed weight has ", packed.numel(), " bytes for ", n, " values");
  TORCH_CHECK(absmax.numel() * block >= n, "nf4: ", absmax.numel(), " absmax values cannot cover ", n, " values in blocks of ", block);
  if (packed.device().is_cpu()) {
    auto p = packed.contiguous();
    auto a = absmax.to(at::kFloat).contiguous();
    auto c = code.to(at::kFloat).contiguous();
    auto out = at::empty({rows, cols}, packed.options().dtype(at::kFloat));
    const uint8_t* pp = p.data_ptr<uint8_t>();
    const float* ap = a.data_ptr<float>();
    const float* cp = c.data_ptr<float>();
    float* op = out.data_ptr<float>();
    const int64_t blocks = (n + block - 1) / block;
    at::parallel_for(0, blocks, 16, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const float s = ap[b];
        const int64_t end = std::min(n, (b + 1) * block);
        for (int64_t i = b * block; i < end; ++i) {
          const uint8_t byte = pp[i >> 1];
          const uint8_t q = (i & 1) ? (byte & 0x0F) : (byte >> 4);
          op[i] = cp[q] * s;
        }
      }
    });
    return out;
  }
  auto hi = at::bitwise_right_shift(packed, 4);
  auto lo = at::bitwise_and(packed, 15);
  auto idx = at::stack({hi, lo}, 1).reshape({-1}).narrow(0, 0, n).to(at::kLong);
  auto vals = code.to(at::kFloat).index_select(0, idx);
  const int64_t full = (n / block) * block;
  if (full == n) {
    return (vals.view({-1, block}) * absmax.to(at::kFloat).narrow(0, 0, n / block).view({-1, 1})).view({rows, cols});
  }
  auto head = (vals.narrow(0, 0, full).view({-1, block}) * absmax.to(at::kFloat).narrow(0, 0, full / block).view({-1, 1})).view({-1});
  auto tail = vals.narrow(0, full, n - full) * absmax.to(at::kFloat)[full / block];
  return at::cat({head, tail}).view({rows, cols});
}

struct Nf4Linear : public torch::autograd::Function<Nf4Linear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code, int64_t rows, int64_t cols, int64_t block) {
    ctx->save_for_backward({packed, absmax, code});
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["cols"] = cols;
    ctx->saved_data["block"] = block;
    auto w = dequant(packed, absmax, code, rows, cols, block).to(x.scalar_type());
    return at::matmul(x, w.t());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor gx;
    if (ctx->needs_input_grad(0)) {
      auto w = dequant(saved[0], saved[1], saved[2], ctx->saved_data["rows"].toInt(), ctx->saved_data["cols"].toInt(), ctx->saved_data["block"].toInt());
      gx = at::matmul(grads[0], w.to(grads[0].scalar_type()));
    }
    return {gx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

template <typename F>
at::Tensor* guarded(F f) {
  try {
    return new at::Tensor(f());
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

std::vector<at::Tensor> list(at::Tensor** ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

}  // namespace

extern "C" {

const char* tailor_last_error() { return last_error.c_str(); }

at::Tensor* tailor_nf4_dequant(at::Tensor* packed, at::Tensor* absmax, at::Tensor* code, int64_t rows, int64_t cols, int64_t block) {
  return guarded([&] { return dequant(*packed, *absmax, *code, rows, cols, block); });
}

at::Tensor* tailor_nf4_linear(at::Tensor* x, at::Tensor* packed, at::Tensor* absmax, at::Tensor* code, int64_t rows, int64_t cols, int64_t block) {
  return guarded([&] { return Nf4Linear::apply(*x, *packed, *absmax, *code, rows, cols, block); });
}

// One AdamW step over n parameters (PyTorch's fused kernel: decoupled
// weight decay, bias correction; `steps` are float scalars, advanced here).
int tailor_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs, at::Tensor** steps, int n, double lr, double beta1, double beta2, double weight_decay, double eps) {
  try {
    at::NoGradGuard no_grad;
    auto p = list(params, n), g = list(grads, n), m = list(exp_avgs, n), v = list(exp_avg_sqs, n), s = list(steps, n);
    std::vector<at::Tensor> none;
    // The kernel reads the step counters as already advanced (PyTorch's
    // optimizer increments them before calling it).
    at::_foreach_add_(s, 1.0);
    at::_fused_adamw_(p, g, m, v, none, s, lr, beta1, beta2, weight_decay, eps, false, false);
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

}  // extern "C"
