// Attention, the core of a transformer.
//
// scaled_dot_product_attention(q, k, v): softmax(q k^T * scale + mask) v with
//   q (..., L, E), k (..., S, E), v (..., S, Ev) -> (..., L, Ev), scale 1/sqrt(E),
// as torch.nn.functional.scaled_dot_product_attention defines it:
// - attn_mask bool: true where a query may attend a key (the rest get -inf before the
//   softmax); float: added to the scores. It broadcasts against (..., L, S).
// - is_causal: query i attends keys j <= i (the lower triangle, aligned at the top
//   left, as PyTorch's); not together with attn_mask.
// - dropout_p: dropout on the attention weights (pass 0 in evaluation).
// A query that may attend no key gets a row of NaN, as PyTorch's math path gives.
// It is written with weft's differentiable ops (a batched matmul, softmax, where), so
// the whole L x S matrix of scores is materialised; a fused kernel that never stores it
// (FlashAttention) is a later step.
//
// MultiheadAttention(embed_dim, num_heads): PyTorch's module with batch_first = true and
// its parameter names (in_proj_weight (3E, E), in_proj_bias (3E), out_proj.weight,
// out_proj.bias), so a state dict moves between the two. x (B, T, E): the three
// projections in one GEMM, split into num_heads heads of E / num_heads, attention per
// head, the heads concatenated and projected back. forward(x) is self-attention (causal
// when made with causal = true); attend(q, k, v, mask) the general case.
#pragma once

#include <optional>

#include "linear.h"
#include "module.h"

namespace weft::nn {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = {},
                                    bool is_causal = false, double dropout_p = 0.0,
                                    std::optional<double> scale = std::nullopt, Generator& gen = default_generator());

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, bool causal = false, double dropout = 0.0, bool bias = true);
  // Self-attention of x (B, T, E) -> (B, T, E).
  Tensor forward(const Tensor& x) override;
  // query (B, L, E), key and value (B, S, E) -> (B, L, E); attn_mask as above, shared by
  // every head (broadcast against (B, heads, L, S)).
  Tensor attend(const Tensor& query, const Tensor& key, const Tensor& value, const Tensor& attn_mask = {},
                bool is_causal = false);
  std::string repr() const override;
  std::shared_ptr<Module> make_fresh() const override;

  Tensor& in_proj_weight;  // (3E, E): the q, k and v projections stacked
  Tensor& in_proj_bias;    // (3E), zeros; undefined without bias
  std::shared_ptr<Linear> out_proj;
  const int64_t embed_dim, num_heads;
  const bool causal;
  const double dropout;
};

}  // namespace weft::nn
