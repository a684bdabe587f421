#include "attention.h"

#include <cmath>
#include <limits>
#include <map>
#include <tuple>

#include "../autograd/functions.h"
#include "../tensor/error.h"
#include "init.h"

namespace weft::nn {

namespace {

// The (L, S) additive causal mask: 0 where j <= i, -inf above the diagonal. Made once
// per (L, S, dtype, device) and thread, not on every forward: on a GPU it would
// otherwise be a host loop and a copy per attention layer per step.
Tensor causal_mask(int64_t L, int64_t S, DType dtype, Device device) {
  thread_local std::map<std::tuple<int64_t, int64_t, int, int, int>, Tensor> cache;  // (L, S, dtype, device)
  Tensor& mask = cache[{L, S, int(dtype), int(device.kind), int(device.index)}];
  if (!mask.defined()) {
    std::vector<float> m(size_t(L * S), 0.0f);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = i + 1; j < S; ++j) m[size_t(i * S + j)] = -std::numeric_limits<float>::infinity();
    mask = tensor(m, {L, S}).to(dtype).to(device);
  }
  return mask;
}

// (B, T, E) -> (B, heads, T, E / heads)
Tensor split_heads(const Tensor& x, int64_t heads) {
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

// (B, heads, T, D) -> (B, T, heads D)
Tensor merge_heads(const Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    bool is_causal, double dropout_p, std::optional<double> scale, Generator& gen) {
  WEFT_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2 && q.size(-1) == k.size(-1) && k.size(-2) == v.size(-2),
             "scaled_dot_product_attention: q ", q.shape(), ", k ", k.shape(), " and v ", v.shape(),
             " must be (..., L, E), (..., S, E) and (..., S, Ev)");
  WEFT_CHECK(!(is_causal && attn_mask.defined()), "scaled_dot_product_attention: pass attn_mask or is_causal, not both");
  const int64_t L = q.size(-2), S = k.size(-2);
  // The scale goes on q (..., L, E) rather than on the scores (..., L, S): the same
  // product up to rounding, and a pass over L x E instead of L x S elements each way.
  const double s = scale.value_or(1.0 / std::sqrt(double(q.size(-1))));
  Tensor scores = weft::matmul(q * s, k.transpose(-2, -1));  // (..., L, S)
  if (is_causal) {
    scores = scores + causal_mask(L, S, scores.dtype(), scores.device());
  } else if (attn_mask.defined() && attn_mask.dtype() == kBool) {
    const Tensor minus_inf = full({}, -std::numeric_limits<double>::infinity(), {.dtype = scores.dtype(), .device = scores.device()});
    scores = weft::where(attn_mask.to(scores.device()), scores, minus_inf);
  } else if (attn_mask.defined()) {
    scores = scores + attn_mask.to(scores.device());
  }
  Tensor weights = scores.softmax(-1);
  if (dropout_p > 0) weights = weft::dropout(weights, dropout_p, true, gen);
  return weft::matmul(weights, v);
}

MultiheadAttention::MultiheadAttention(int64_t e, int64_t h, bool causal_, double dropout_, bool bias)
    : in_proj_weight(register_parameter("in_proj_weight", empty({3 * std::max<int64_t>(e, 0), std::max<int64_t>(e, 0)}))),
      in_proj_bias(register_parameter("in_proj_bias", bias ? zeros({3 * std::max<int64_t>(e, 0)}) : Tensor())),
      out_proj(register_module("out_proj", std::make_shared<Linear>(e, e, bias))),
      embed_dim(e),
      num_heads(h),
      causal(causal_),
      dropout(dropout_) {
  WEFT_CHECK(e > 0 && h > 0 && e % h == 0, "MultiheadAttention: embed_dim ", e, " must split into ", h, " equal heads");
  WEFT_CHECK(dropout_ >= 0 && dropout_ < 1, "MultiheadAttention: dropout must be in [0, 1), got ", dropout_);
  init::xavier_uniform_(in_proj_weight);  // PyTorch's initialisation
  if (bias) init::zeros_(out_proj->bias);
}

Tensor MultiheadAttention::forward(const Tensor& x) { return attend(x, x, x, {}, causal); }

Tensor MultiheadAttention::attend(const Tensor& query, const Tensor& key, const Tensor& value, const Tensor& attn_mask,
                                  bool is_causal) {
  for (const Tensor* t : {&query, &key, &value})
    WEFT_CHECK(t->dim() == 3 && t->size(2) == embed_dim, "MultiheadAttention(", embed_dim, ", ", num_heads,
               "): query ", query.shape(), ", key ", key.shape(), " and value ", value.shape(), " must be (B, T, ",
               embed_dim, ")");
  // One GEMM when it is self-attention: x (B, T, E) @ W^T (E, 3E), then q, k, v side by side.
  const int64_t E = embed_dim;
  auto project = [&](const Tensor& x, int64_t part) {
    const Tensor b = in_proj_bias.defined() ? in_proj_bias.narrow(0, part * E, E) : Tensor();
    return weft::linear(x, in_proj_weight.narrow(0, part * E, E), b);
  };
  Tensor q, k, v;
  if (query.is_same(key) && key.is_same(value)) {
    const Tensor qkv = weft::linear(query, in_proj_weight, in_proj_bias);  // (B, T, 3E)
    q = qkv.narrow(2, 0, E), k = qkv.narrow(2, E, E), v = qkv.narrow(2, 2 * E, E);
  } else {
    q = project(query, 0), k = project(key, 1), v = project(value, 2);
  }
  const Tensor heads = scaled_dot_product_attention(split_heads(q, num_heads), split_heads(k, num_heads),
                                                    split_heads(v, num_heads), attn_mask, is_causal,
                                                    is_training() ? dropout : 0.0);  // (B, H, L, D)
  return (*out_proj)(merge_heads(heads));
}

std::string MultiheadAttention::repr() const {
  return detail::str("MultiheadAttention(embed_dim=", embed_dim, ", num_heads=", num_heads,
                     causal ? ", causal=True" : "", ")");
}

std::shared_ptr<Module> MultiheadAttention::make_fresh() const {
  return std::make_shared<MultiheadAttention>(embed_dim, num_heads, causal, dropout, in_proj_bias.defined());
}

}  // namespace weft::nn
