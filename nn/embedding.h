// Embedding: a lookup table of vectors, the first layer of every language model.
//
//   nn::Embedding emb(vocab, 64);            // weight (vocab, 64), N(0, 1) as PyTorch
//   Tensor h = emb(tokens);                   // int64 (B, T) -> (B, T, 64)
//
// forward is index_select of the rows; backward adds each output row's gradient into
// its row of weight (rows looked up twice get both). With padding_idx (PyTorch's
// meaning; negative counts from the end) that row starts at zeros and never receives a
// gradient, so it stays what it is -- the "no token here" vector -- while forward still
// returns its current value, as PyTorch does.
#pragma once

#include <optional>

#include "module.h"

namespace weft::nn {

// The lookup as a function: weight (num, dim), indices int64 of any shape ->
// (*indices.shape, dim); the padding row's gradient is zero.
Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<int64_t> padding_idx = std::nullopt);

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = std::nullopt);
  Tensor forward(const Tensor& indices) override;
  std::string repr() const override;
  std::shared_ptr<Module> make_fresh() const override;

  Tensor& weight;  // (num_embeddings, embedding_dim)
  const int64_t num_embeddings, embedding_dim;
  const std::optional<int64_t> padding_idx;  // in [0, num_embeddings) once constructed
};

}  // namespace weft::nn
