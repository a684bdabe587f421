#include "sparse_linear.h"

#include <algorithm>
#include <limits>

#include "../../autograd/tape.h"
#include "../../tensor/raw.h"
#include "../../tensor/thread_pool.h"

namespace weft::prune {

namespace {
constexpr int64_t kBatchBlock = 64;  // batch columns per accumulator block (256 bytes)
constexpr int64_t kRowGrain = 16;    // rows per thread-pool chunk, at the least
}  // namespace

SparseLinear::SparseLinear(const Tensor& weight, const Tensor& bias)
    : in_features(weight.defined() && weight.dim() == 2 ? weight.size(1) : 0),
      out_features(weight.defined() && weight.dim() == 2 ? weight.size(0) : 0) {
  WEFT_CHECK(weight.defined() && weight.dim() == 2, "SparseLinear: weight must be 2-D (out, in)");
  WEFT_CHECK(in_features <= std::numeric_limits<int32_t>::max() &&
                 weight.numel() <= std::numeric_limits<int32_t>::max(),
             "SparseLinear: weight ", weight.shape(), " is too large for int32 indices");
  WEFT_CHECK(!bias.defined() || bias.shape() == Shape{out_features}, "SparseLinear: bias ", bias.shape(),
             " must be (", out_features, ")");
  const std::vector<float> w = weight.to_vector<float>();
  row_ptr_.reserve(out_features + 1);
  row_ptr_.push_back(0);
  for (int64_t o = 0; o < out_features; ++o) {
    for (int64_t i = 0; i < in_features; ++i)
      if (const float v = w[o * in_features + i]; v != 0.0f) {
        values_.push_back(v);
        col_.push_back(static_cast<int32_t>(i));
      }
    row_ptr_.push_back(static_cast<int32_t>(values_.size()));
  }
  bias_ = bias.defined() ? bias.to_vector<float>() : std::vector<float>(out_features, 0.0f);
}

std::shared_ptr<SparseLinear> SparseLinear::from(const nn::Linear& linear) {
  return std::make_shared<SparseLinear>(linear.weight, linear.bias);
}

void SparseLinear::forward_vector(const float* x, float* y) const {
  parallel_for(0, out_features, kRowGrain * 8, [&](int64_t r0, int64_t r1) {
    for (int64_t o = r0; o < r1; ++o) {
      float acc = bias_[o];
      for (int32_t k = row_ptr_[o]; k < row_ptr_[o + 1]; ++k) acc += values_[k] * x[col_[k]];
      y[o] = acc;
    }
  });
}

namespace {
// acc[0:n) += v * x[0:n): restrict lets the compiler emit SIMD for it.
inline void axpy(float* __restrict acc, const float* __restrict x, float v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += v * x[j];
}
}  // namespace

void SparseLinear::forward_batch(const float* xt, int64_t batch, float* y) const {
  parallel_for(0, out_features, kRowGrain, [&](int64_t r0, int64_t r1) {
    alignas(64) float acc[kBatchBlock];
    for (int64_t b0 = 0; b0 < batch; b0 += kBatchBlock) {
      const int64_t nb = std::min(kBatchBlock, batch - b0);
      for (int64_t o = r0; o < r1; ++o) {
        std::fill_n(acc, nb, bias_[o]);
        for (int32_t k = row_ptr_[o]; k < row_ptr_[o + 1]; ++k) axpy(acc, xt + col_[k] * batch + b0, values_[k], nb);
        // y is (batch, out): this row of W fills one column of the block.
        for (int64_t j = 0; j < nb; ++j) y[(b0 + j) * out_features + o] = acc[j];
      }
    }
  });
}

Tensor SparseLinear::forward(const Tensor& x) {
  WEFT_CHECK(!(autograd::is_grad_enabled() && x.requires_grad()),
             "SparseLinear: inference only (no backward); run it under NoGradGuard on a tensor without grad");
  WEFT_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "SparseLinear(", in_features, ", ", out_features, "): input ",
             x.shape(), " must end in ", in_features, " features");
  WEFT_CHECK(x.dtype() == kFloat32 && x.device().is_cpu(), "SparseLinear: input must be float32 on the CPU");
  const int64_t batch = x.numel() / in_features;
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = out_features;
  Tensor y = empty({batch, out_features});
  Tensor x2 = raw::contiguous(x.detach().reshape({batch, in_features}));
  if (batch == 1) {
    forward_vector(x2.data<float>(), y.data<float>());
  } else {
    Tensor xt = raw::contiguous(x2.t());  // (in, batch)
    forward_batch(xt.data<float>(), batch, y.data<float>());
  }
  return y.reshape(out_shape);
}

Tensor SparseLinear::to_dense() const {
  std::vector<float> w(out_features * in_features, 0.0f);
  for (int64_t o = 0; o < out_features; ++o)
    for (int32_t k = row_ptr_[o]; k < row_ptr_[o + 1]; ++k) w[o * in_features + col_[k]] = values_[k];
  return tensor(w, {out_features, in_features});
}

std::string SparseLinear::repr() const {
  return detail::str("SparseLinear(in_features=", in_features, ", out_features=", out_features, ", nnz=", nnz(),
                     ", sparsity=", sparsity(), ")");
}

std::shared_ptr<nn::Sequential> sparsify_linears(const nn::Sequential& model) {
  auto out = std::make_shared<nn::Sequential>();
  for (size_t i = 0; i < model.size(); ++i) {
    if (const auto* lin = dynamic_cast<const nn::Linear*>(model[i].get())) out->push_back(SparseLinear::from(*lin));
    else out->push_back(model[i]);
  }
  return out;
}

}  // namespace weft::prune
