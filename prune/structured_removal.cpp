#include "structured_removal.h"

#include "../autograd/tape.h"
#include "../nn/conv.h"
#include "../nn/layers.h"
#include "../nn/linear.h"
#include "../tensor/raw.h"

namespace weft::prune {

namespace {

bool is_weight_layer(const nn::Module* m) {
  return dynamic_cast<const nn::Linear*>(m) || dynamic_cast<const nn::Conv2d*>(m);
}

// Layers that map a zero feature to zero, channel by channel.
bool keeps_zeros(const nn::Module* m) {
  return dynamic_cast<const nn::ReLU*>(m) || dynamic_cast<const nn::Tanh*>(m) ||
         dynamic_cast<const nn::MaxPool2d*>(m) || dynamic_cast<const nn::AvgPool2d*>(m) ||
         dynamic_cast<const nn::Flatten*>(m) || dynamic_cast<const nn::Dropout*>(m);
}

const Tensor& weight_of(const nn::Module* m) {
  if (const auto* l = dynamic_cast<const nn::Linear*>(m)) return l->weight;
  return dynamic_cast<const nn::Conv2d*>(m)->weight;
}
const Tensor& bias_of(const nn::Module* m) {
  if (const auto* l = dynamic_cast<const nn::Linear*>(m)) return l->bias;
  return dynamic_cast<const nn::Conv2d*>(m)->bias;
}

// Output features whose weight row and bias are not all zero.
std::vector<int64_t> nonzero_rows(const nn::Module* m) {
  const Tensor& w = weight_of(m);
  const Tensor& b = bias_of(m);
  const int64_t rows = w.size(0), cols = w.numel() / rows;
  const std::vector<float> wv = w.to_vector<float>();
  const std::vector<float> bv = b.defined() ? b.to_vector<float>() : std::vector<float>(rows, 0.0f);
  std::vector<int64_t> live;
  for (int64_t r = 0; r < rows; ++r) {
    bool any = bv[r] != 0.0f;
    for (int64_t c = 0; c < cols && !any; ++c) any = wv[r * cols + c] != 0.0f;
    if (any) live.push_back(r);
  }
  return live;
}

std::vector<int64_t> all_of(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Input columns of `next` fed by the kept outputs of `prev`: the channels themselves,
// or, for Conv -> Flatten -> Linear, each channel's block of H*W flattened columns.
std::vector<int64_t> input_columns(const nn::Module* prev, const nn::Module* next, const std::vector<int64_t>& kept) {
  const int64_t prev_out = weight_of(prev).size(0);
  const int64_t next_in = weight_of(next).size(1);
  const int64_t per_channel = next_in / prev_out;  // 1, or H*W after a Flatten
  WEFT_CHECK(per_channel * prev_out == next_in, "remove_pruned_channels: ", next_in, " inputs of the next layer are not ",
             "a whole number of blocks for ", prev_out, " channels");
  std::vector<int64_t> cols;
  for (int64_t c : kept)
    for (int64_t j = 0; j < per_channel; ++j) cols.push_back(c * per_channel + j);
  return cols;
}

Tensor pick(const Tensor& t, int64_t dim, const std::vector<int64_t>& index) {
  return raw::index_select(t, dim, tensor(index, {static_cast<int64_t>(index.size())}));
}

// A fresh layer like `m` keeping output rows `out` and input columns `in`.
std::shared_ptr<nn::Module> shrink(const nn::Module* m, const std::vector<int64_t>& out, const std::vector<int64_t>& in) {
  Tensor w = pick(pick(weight_of(m), 0, out), 1, in);
  Tensor b = bias_of(m).defined() ? pick(bias_of(m), 0, out) : Tensor();
  std::shared_ptr<nn::Module> fresh;
  Tensor *fw, *fb;
  if (const auto* l = dynamic_cast<const nn::Linear*>(m)) {
    auto lin = std::make_shared<nn::Linear>(int64_t(in.size()), int64_t(out.size()), l->bias.defined());
    fw = &lin->weight, fb = &lin->bias, fresh = lin;
  } else {
    const auto* c = dynamic_cast<const nn::Conv2d*>(m);
    auto conv = std::make_shared<nn::Conv2d>(int64_t(in.size()), int64_t(out.size()), c->options);
    fw = &conv->weight, fb = &conv->bias, fresh = conv;
  }
  autograd::NoGradGuard no_grad;
  raw::copy_(*fw, w);
  if (b.defined()) raw::copy_(*fb, b);
  return fresh;
}

// Can the outputs of weight layer `a` be cut, given what follows it up to weight layer b?
bool removable(const nn::Sequential& model, size_t a, size_t b) {
  if (const auto* c = dynamic_cast<const nn::Conv2d*>(model[a].get()); c && c->options.groups != 1) return false;
  if (const auto* c = dynamic_cast<const nn::Conv2d*>(model[b].get()); c && c->options.groups != 1) return false;
  // Linear -> Conv would need an unflatten; not a pattern weft's models have.
  if (dynamic_cast<const nn::Linear*>(model[a].get()) && dynamic_cast<const nn::Conv2d*>(model[b].get())) return false;
  for (size_t i = a + 1; i < b; ++i)
    if (!keeps_zeros(model[i].get())) return false;
  return true;
}

}  // namespace

std::vector<std::vector<int64_t>> live_channels(const nn::Sequential& model) {
  std::vector<size_t> layers;
  for (size_t i = 0; i < model.size(); ++i)
    if (is_weight_layer(model[i].get())) layers.push_back(i);
  std::vector<std::vector<int64_t>> live;
  for (size_t j = 0; j < layers.size(); ++j) {
    const nn::Module* m = model[layers[j]].get();
    const bool cut = j + 1 < layers.size() && removable(model, layers[j], layers[j + 1]);
    live.push_back(cut ? nonzero_rows(m) : all_of(weight_of(m).size(0)));
  }
  return live;
}

std::shared_ptr<nn::Sequential> remove_pruned_channels(const nn::Sequential& model) {
  const auto live = live_channels(model);
  auto out = std::make_shared<nn::Sequential>();
  const nn::Module* prev = nullptr;  // the previous weight layer
  size_t j = 0;
  for (size_t i = 0; i < model.size(); ++i) {
    const nn::Module* m = model[i].get();
    if (!is_weight_layer(m)) {
      out->push_back(model[i]);
      continue;
    }
    const int64_t in_size = weight_of(m).size(1);
    const std::vector<int64_t> in = prev ? input_columns(prev, m, live[j - 1]) : all_of(in_size);
    out->push_back(shrink(m, live[j], in));
    prev = m;
    ++j;
  }
  return out;
}

}  // namespace weft::prune
