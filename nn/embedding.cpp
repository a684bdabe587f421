#include "embedding.h"

#include "../autograd/tape.h"
#include "../tensor/error.h"
#include "../tensor/raw.h"
#include "init.h"

namespace weft::nn {

namespace {

std::optional<int64_t> resolve_padding(std::optional<int64_t> idx, int64_t num) {
  if (!idx) return idx;
  WEFT_CHECK(*idx >= -num && *idx < num, "Embedding: padding_idx ", *idx, " is outside [", -num, ", ", num, ")");
  return *idx < 0 ? *idx + num : *idx;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<int64_t> padding_idx) {
  WEFT_CHECK(weight.dim() == 2, "embedding: weight ", weight.shape(), " must be (num_embeddings, embedding_dim)");
  WEFT_CHECK(indices.dtype() == kInt64, "embedding: indices must be int64, got ", indices.dtype(), " of shape ",
             indices.shape());
  const Tensor flat = indices.reshape({indices.numel()}).to(weight.device());  // (n)
  std::vector<int64_t> out_shape(indices.shape().begin(), indices.shape().end());
  out_shape.push_back(weight.size(1));
  // raw::index_select checks every index against the table and names the bad one.
  Tensor rows = raw::index_select(weight, 0, flat);  // (n, dim)
  if (autograd::needs_recording(weight)) {
    rows = autograd::record("embedding", rows, {weight}, {flat},
                            [in = weight.shape(), padding_idx](const autograd::BackwardArgs& g) -> std::vector<Tensor> {
                              Tensor dw = raw::index_add(in, 0, g.saved[0], g.grad);  // rows used twice add up
                              if (padding_idx) raw::fill_(dw.narrow(0, *padding_idx, 1), 0.0);
                              return {dw};
                            });
  }
  return rows.reshape(Shape(out_shape));
}

Embedding::Embedding(int64_t num, int64_t dim, std::optional<int64_t> pad)
    : weight(register_parameter("weight", empty({num > 0 ? num : 0, dim > 0 ? dim : 0}))),
      num_embeddings(num),
      embedding_dim(dim),
      padding_idx(resolve_padding(pad, num)) {
  WEFT_CHECK(num > 0 && dim > 0, "Embedding: needs num_embeddings > 0 and embedding_dim > 0, got ", num, " and ", dim);
  init::normal_(weight, 0.0, 1.0);
  if (padding_idx) {
    autograd::NoGradGuard no_grad;
    raw::fill_(weight.narrow(0, *padding_idx, 1), 0.0);
  }
}

Tensor Embedding::forward(const Tensor& indices) { return embedding(weight, indices, padding_idx); }

std::string Embedding::repr() const {
  return detail::str("Embedding(", num_embeddings, ", ", embedding_dim,
                     padding_idx ? detail::str(", padding_idx=", *padding_idx) : std::string(), ")");
}

std::shared_ptr<Module> Embedding::make_fresh() const {
  return std::make_shared<Embedding>(num_embeddings, embedding_dim, padding_idx);
}

}  // namespace weft::nn
