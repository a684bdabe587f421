// Modules taking and returning several tensors (nn/module.h, forward_many), shared by
// the module, data-parallel and pipeline tests: a pre-norm transformer block over
// (x, mask), an auxiliary loss accumulated across layers, and a head returning
// (logits, aux_loss).
#pragma once

#include <memory>
#include <vector>

#include "weft.h"

namespace weft::test {

// (x (B, T, E), mask (B, 1, T, T), ...) -> (y, mask, ...): a pre-norm transformer block,
//   h = x + attn(ln1(x), mask),  y = h + fc2(gelu(fc1(ln2(h)))).
// The mask is bool (true: may attend) or float (added to the scores). Anything after
// the mask -- an auxiliary loss so far -- passes through untouched.
struct MaskedBlock : nn::Module {
  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<nn::MultiheadAttention> attn;
  std::shared_ptr<nn::Linear> fc1, fc2;
  int64_t dim, heads;

  MaskedBlock(int64_t dim, int64_t heads) : dim(dim), heads(heads) {
    ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(std::vector<int64_t>{dim}));
    attn = register_module("attn", std::make_shared<nn::MultiheadAttention>(dim, heads));
    ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(std::vector<int64_t>{dim}));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(dim, 2 * dim));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(2 * dim, dim));
  }
  nn::Tensors forward_many(const nn::Tensors& in) override {
    if (in.size() < 2) expect_inputs(in, 2, "(x, mask)");
    const Tensor& x = in[0];
    const Tensor& mask = in[1];
    const Tensor a = (*ln1)(x);
    const Tensor h = x + attn->attend(a, a, a, mask);
    const Tensor y = h + (*fc2)((*fc1)((*ln2)(h)).gelu());
    nn::Tensors out = in;
    out[0] = y;
    return out;
  }
  std::shared_ptr<nn::Module> make_fresh() const override { return std::make_shared<MaskedBlock>(dim, heads); }
};

// (x, mask[, aux]) -> (x, mask, aux + weight * mean(x^2)): an auxiliary loss summed over
// the layers it follows (as a mixture of experts sums its load-balancing losses). It is
// a 0-d tensor that needs a gradient, and crosses stage boundaries like x.
struct AuxTally : nn::Module {
  double weight;
  explicit AuxTally(double weight = 0.01) : weight(weight) {}
  nn::Tensors forward_many(const nn::Tensors& in) override {
    if (in.size() != 3) expect_inputs(in, 2, "(x, mask) or (x, mask, aux)");
    const Tensor here = (in[0] * in[0]).mean() * weight;
    return {in[0], in[1], in.size() == 3 ? in[2] + here : here};
  }
  std::shared_ptr<nn::Module> make_fresh() const override { return std::make_shared<AuxTally>(weight); }
};

// (x, ...) -> (layer(x), ...): a one-tensor layer applied to the first tensor of a list.
struct OnFirst : nn::Module {
  std::shared_ptr<nn::Module> layer;
  explicit OnFirst(std::shared_ptr<nn::Module> l) { layer = register_module("layer", std::move(l)); }
  nn::Tensors forward_many(const nn::Tensors& in) override {
    nn::Tensors out = in;
    out.at(0) = (*layer)(in.at(0));
    return out;
  }
  std::shared_ptr<nn::Module> make_fresh() const override { return std::make_shared<OnFirst>(layer->make_fresh()); }
};

// (x (B, T, E), mask, aux) -> (logits (B, classes), aux): the mean over T, classified.
struct LogitsAndAux : nn::Module {
  std::shared_ptr<nn::Linear> fc;
  LogitsAndAux(int64_t dim, int64_t classes) { fc = register_module("fc", std::make_shared<nn::Linear>(dim, classes)); }
  nn::Tensors forward_many(const nn::Tensors& in) override {
    expect_inputs(in, 3, "(x, mask, aux)");
    return {(*fc)(in[0].mean(1)), in[2]};
  }
  std::shared_ptr<nn::Module> make_fresh() const override {
    return std::make_shared<LogitsAndAux>(fc->in_features, fc->out_features);
  }
};

constexpr int64_t kSeqIn = 5, kSeqDim = 8, kSeqHeads = 2, kSeqClasses = 3, kSeqLen = 4;

// (x (B, T, 5), mask (B, 1, T, T)) -> (logits (B, 3), aux_loss ()): six layers, so it cuts
// into 2 pipeline stages of 3 or 4 chunks, with (x, mask) and (x, mask, aux) crossing.
inline std::shared_ptr<nn::Sequential> make_masked_model(uint64_t seed = 5) {
  manual_seed(seed);
  auto net = std::make_shared<nn::Sequential>();
  net->add<OnFirst>(std::make_shared<nn::Linear>(kSeqIn, kSeqDim));
  net->add<MaskedBlock>(kSeqDim, kSeqHeads);
  net->add<AuxTally>();
  net->add<MaskedBlock>(kSeqDim, kSeqHeads);
  net->add<AuxTally>();
  net->add<LogitsAndAux>(kSeqDim, kSeqClasses);
  return net;
}

// A batch for it: x (n, T, 5), a per-sample key-padding mask (n, 1, T, T) -- sample b
// sees its first 1 + (b + seed) % T keys -- bool, or float (0 or -1e9, added to the
// scores), and labels (n).
struct MaskedBatch {
  Tensor x, mask, y;
};
inline MaskedBatch masked_batch(int64_t n, uint64_t seed, bool float_mask = false) {
  Generator gen(seed);
  Tensor x = randn({n, kSeqLen, kSeqIn}, {}, gen);
  std::vector<float> allowed;
  std::vector<int64_t> labels;
  for (int64_t b = 0; b < n; ++b) {
    const int64_t keys = 1 + (b + int64_t(seed)) % kSeqLen;
    for (int64_t i = 0; i < kSeqLen; ++i)
      for (int64_t j = 0; j < kSeqLen; ++j) allowed.push_back(j < keys ? 1.f : 0.f);
    labels.push_back((b * 2 + int64_t(seed)) % kSeqClasses);
  }
  Tensor mask = tensor(allowed, {n, 1, kSeqLen, kSeqLen});
  mask = float_mask ? (mask - 1.0) * 1e9 : mask.to(kBool);
  return {x, mask, tensor(labels)};
}

// The loss of (logits, aux_loss): cross-entropy plus the auxiliary loss.
inline Tensor ce_plus_aux(const nn::Tensors& out, const Tensor& y) { return nn::cross_entropy(out.at(0), y) + out.at(1); }

}  // namespace weft::test
