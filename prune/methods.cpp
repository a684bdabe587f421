#include "methods.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "../tensor/raw.h"

namespace weft::prune {

namespace {
constexpr double kNever = -std::numeric_limits<double>::infinity();

void check_sparsity(const char* op, double s) {
  WEFT_CHECK(s >= 0.0 && s <= 1.0, op, ": sparsity must be in [0, 1], got ", s);
}

Tensor mask_from(const std::vector<double>& values, const Shape& shape) {
  return tensor(values, shape, TensorOptions{});
}

// Indices of the k highest scores (ties: lower index first), among the finite ones.
std::vector<int64_t> top_k_indices(const std::vector<double>& scores, int64_t k) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t finite = std::count_if(scores.begin(), scores.end(), [](double s) { return s != kNever; });
  k = std::clamp<int64_t>(k, 0, finite);
  auto higher = [&](int64_t a, int64_t b) { return scores[a] != scores[b] ? scores[a] > scores[b] : a < b; };
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), higher);
  idx.resize(k);
  return idx;
}

// How many of n entries a layer keeps at `sparsity`: round, so 0.9 of 10 keeps exactly 1.
int64_t keep_count(int64_t n, double sparsity) { return n - static_cast<int64_t>(std::llround(sparsity * n)); }
}  // namespace

Tensor keep_top_k(const Tensor& scores, int64_t k) {
  const std::vector<double> s = scores.to_vector<double>();
  std::vector<double> m(s.size(), 0.0);
  for (int64_t i : top_k_indices(s, k)) m[i] = 1.0;
  return mask_from(m, scores.shape());
}

Tensor magnitude_scores(const Tensor& w, const Tensor& mask) {
  WEFT_CHECK(w.shape() == mask.shape(), "magnitude_scores: weight ", w.shape(), " and mask ", mask.shape(), " differ");
  std::vector<double> s = w.to_vector<double>();
  const std::vector<double> m = mask.to_vector<double>();
  for (size_t i = 0; i < s.size(); ++i) s[i] = m[i] != 0.0 ? std::abs(s[i]) : kNever;
  return mask_from(s, w.shape()).to(kFloat64);
}

Tensor n_m_mask(const Tensor& w, int64_t n, int64_t m) {
  WEFT_CHECK(m > 0 && n >= 0 && n <= m, "n_m_mask: need 0 <= N <= M and M > 0, got ", n, ":", m);
  WEFT_CHECK(w.dim() >= 2, "n_m_mask: weight ", w.shape(), " needs 2 or more dims");
  const int64_t cols = w.numel() / w.size(0);
  WEFT_CHECK(cols % m == 0, "n_m_mask: ", n, ":", m, " needs the ", cols, " inputs per row of weight ", w.shape(),
             " to be a multiple of ", m);
  const std::vector<double> v = w.to_vector<double>();
  std::vector<double> mask(v.size(), 0.0);
  std::vector<double> group(m);
  // Rows are contiguous in row-major order, and groups never straddle rows (cols % m
  // == 0), so the groups are simply consecutive runs of m elements.
  for (size_t g = 0; g < v.size(); g += m) {
    for (int64_t j = 0; j < m; ++j) group[j] = std::abs(v[g + j]);
    for (int64_t j : top_k_indices(group, n)) mask[g + j] = 1.0;
  }
  return mask_from(mask, w.shape());
}

Tensor row_norms(const Tensor& w, int p) {
  WEFT_CHECK(p == 1 || p == 2, "row_norms: p must be 1 or 2, got ", p);
  WEFT_CHECK(w.dim() >= 1, "row_norms: weight needs a dimension");
  const int64_t rows = w.size(0), cols = w.numel() / rows;
  const std::vector<double> v = w.to_vector<double>();
  std::vector<double> out(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[r] += p == 1 ? std::abs(v[r * cols + c]) : v[r * cols + c] * v[r * cols + c];
    if (p == 2) out[r] = std::sqrt(out[r]);
  }
  return tensor(out, {rows}, TensorOptions{.dtype = kFloat64});
}

void magnitude(Pruner& pruner, double sparsity) {
  check_sparsity("magnitude", sparsity);
  for (size_t i = 0; i < pruner.size(); ++i) {
    const Tensor w = pruner.weight(i);
    pruner.set_mask(i, keep_top_k(magnitude_scores(w, pruner.mask(i)), keep_count(w.numel(), sparsity)));
  }
}

void global_magnitude(Pruner& pruner, double sparsity) {
  check_sparsity("global_magnitude", sparsity);
  // One list of scores over every target; the top k of it are kept wherever they are.
  std::vector<double> all;
  std::vector<size_t> starts;
  for (size_t i = 0; i < pruner.size(); ++i) {
    starts.push_back(all.size());
    const std::vector<double> s = magnitude_scores(pruner.weight(i), pruner.mask(i)).to_vector<double>();
    all.insert(all.end(), s.begin(), s.end());
  }
  std::vector<double> keep(all.size(), 0.0);
  for (int64_t k : top_k_indices(all, keep_count(static_cast<int64_t>(all.size()), sparsity))) keep[k] = 1.0;
  for (size_t i = 0; i < pruner.size(); ++i) {
    const Tensor w = pruner.weight(i);
    std::vector<double> part(keep.begin() + starts[i], keep.begin() + starts[i] + w.numel());
    pruner.set_mask(i, mask_from(part, w.shape()));
  }
}

void structured(Pruner& pruner, double sparsity, int p) {
  check_sparsity("structured", sparsity);
  for (size_t i = 0; i < pruner.size(); ++i) {
    const Tensor w = pruner.weight(i);
    const int64_t rows = w.size(0), cols = w.numel() / rows;
    // A row already pruned (mask all zero) scores -inf and stays pruned.
    std::vector<double> score = row_norms(w, p).to_vector<double>();
    const std::vector<double> row_alive = row_norms(pruner.mask(i), 1).to_vector<double>();
    for (int64_t r = 0; r < rows; ++r)
      if (row_alive[r] == 0.0) score[r] = kNever;
    std::vector<double> keep_row(rows, 0.0);
    for (int64_t r : top_k_indices(score, keep_count(rows, sparsity))) keep_row[r] = 1.0;
    std::vector<double> mask(w.numel());
    for (int64_t r = 0; r < rows; ++r) std::fill_n(mask.begin() + r * cols, cols, keep_row[r]);
    pruner.set_mask(i, mask_from(mask, w.shape()));
    // The channel's bias goes too: a pruned channel must output exactly 0 (not relu(b))
    // for structured_removal to drop it without changing the model's outputs.
    const std::string bias = split_param_name(pruner.name(i)).first;
    const std::string bias_name = bias.empty() ? "bias" : bias + ".bias";
    for (const auto& [n, b] : pruner.model().named_parameters())
      if (n == bias_name && b.dim() == 1 && b.size(0) == rows) pruner.set_mask(bias_name, mask_from(keep_row, {rows}));
  }
}

void n_m(Pruner& pruner, int64_t n, int64_t m) {
  for (size_t i = 0; i < pruner.size(); ++i) pruner.set_mask(i, n_m_mask(pruner.weight(i), n, m));
}

namespace {
// Target i keeps a random keep_count(numel, sparsity[i]) of its active weights.
void random_per_layer(Pruner& pruner, const std::vector<double>& sparsity, Generator& gen) {
  for (size_t i = 0; i < pruner.size(); ++i) {
    const Tensor w = pruner.weight(i);
    // Random scores in [0, 1) on the active entries, -inf on the pruned ones.
    Tensor u = rand(w.shape(), {.dtype = kFloat64}, gen);
    Tensor scores = magnitude_scores(u, pruner.mask(i));
    pruner.set_mask(i, keep_top_k(scores, keep_count(w.numel(), sparsity[i])));
  }
}
}  // namespace

void random(Pruner& pruner, double sparsity, Generator& gen) {
  check_sparsity("random", sparsity);
  random_per_layer(pruner, std::vector<double>(pruner.size(), sparsity), gen);
}

std::vector<double> erk_densities(const std::vector<Shape>& shapes, double sparsity) {
  check_sparsity("erk", sparsity);
  const size_t n = shapes.size();
  std::vector<double> numel(n), raw(n), density(n, 0.0);
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t d : shapes[i]) sum += double(d);
    numel[i] = double(shapes[i].numel());
    raw[i] = numel[i] > 0 ? sum / numel[i] : 0.0;
    total += numel[i];
  }
  // Layers whose density would pass 1 are made dense, and eps is solved again over the
  // rest, until no density passes 1 (at most n rounds).
  std::vector<bool> dense(n, false);
  for (size_t round = 0; round <= n; ++round) {
    double budget = (1.0 - sparsity) * total, weight = 0;
    for (size_t i = 0; i < n; ++i) {
      if (dense[i]) budget -= numel[i];
      else weight += raw[i] * numel[i];
    }
    const double eps = weight > 0 ? std::max(budget, 0.0) / weight : 0.0;
    bool capped = false;
    for (size_t i = 0; i < n; ++i) {
      if (dense[i]) continue;
      density[i] = eps * raw[i];
      if (density[i] > 1.0) dense[i] = capped = true;
    }
    if (!capped) break;
  }
  for (size_t i = 0; i < n; ++i) density[i] = dense[i] ? 1.0 : std::clamp(density[i], 0.0, 1.0);
  return density;
}

void erk(Pruner& pruner, double sparsity, Generator& gen) {
  std::vector<Shape> shapes;
  for (size_t i = 0; i < pruner.size(); ++i) shapes.push_back(pruner.weight(i).shape());
  std::vector<double> layer_sparsity;
  for (double d : erk_densities(shapes, sparsity)) layer_sparsity.push_back(1.0 - d);
  random_per_layer(pruner, layer_sparsity, gen);
}

}  // namespace weft::prune
