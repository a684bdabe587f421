#include "dynamic_sparse.h"

#include <cmath>
#include <numbers>

#include "../tensor/raw.h"
#include "methods.h"

namespace weft::prune {

DynamicSparse::DynamicSparse(Pruner& pruner, const DynamicSparseOptions& o, optim::Optimizer* opt)
    : options(o), pruner_(pruner), opt_(opt), gen_(o.seed) {
  WEFT_CHECK(o.alpha >= 0 && o.alpha <= 1, "DynamicSparse: alpha must be in [0, 1], got ", o.alpha);
  WEFT_CHECK(o.interval >= 1 && o.end_step >= 1, "DynamicSparse: need interval >= 1 and end_step >= 1, got ",
             o.interval, " and ", o.end_step);
  for (size_t i = 0; i < pruner.size(); ++i)
    WEFT_CHECK(pruner.is_masked(pruner.name(i)), "DynamicSparse: target '", pruner.name(i),
               "' has no mask; prune the model to its sparsity first");
}

double DynamicSparse::drop_fraction(int64_t t) const {
  if (t >= options.end_step) return 0.0;
  return options.alpha / 2 * (1 + std::cos(std::numbers::pi * double(t) / double(options.end_step)));
}

bool DynamicSparse::is_update_step(int64_t t) const {
  return t > 0 && t < options.end_step && t % options.interval == 0;
}

void DynamicSparse::before_backward(int64_t steps_taken) {
  // Only RigL needs gradients, and only for the backward that precedes an update.
  pruner_.capture_dense_grads(options.grow == DynamicSparseOptions::Grow::Gradient &&
                              is_update_step(steps_taken + 1));
}

bool DynamicSparse::after_step(int64_t steps_taken) {
  const bool update_now = is_update_step(steps_taken);
  if (update_now) update(drop_fraction(steps_taken));
  pruner_.capture_dense_grads(false);
  return update_now;
}

// Where to grow: |dense grad| (RigL) or a random number (SET) at inactive positions,
// -inf at active ones so that only inactive positions can be picked.
Tensor DynamicSparse::grow_scores(size_t i, const Tensor& inactive) const {
  Tensor source = options.grow == DynamicSparseOptions::Grow::Gradient
                      ? pruner_.dense_grad(i)
                      : rand(inactive.shape(), {.dtype = kFloat64}, gen_);
  return magnitude_scores(source, inactive);
}

void DynamicSparse::update(double f) {
  for (size_t i = 0; i < pruner_.size(); ++i) {
    const Tensor w = pruner_.weight(i);
    const Tensor mask = pruner_.mask(i);
    const int64_t active = pruner_.nonzeros(i);
    const int64_t drop = std::llround(f * double(active));
    if (drop == 0) continue;
    // Drop: keep the (active - drop) largest |w| among the active.
    const Tensor kept = keep_top_k(magnitude_scores(w, mask), active - drop);
    // Grow: the `drop` best-scoring positions among everything not kept -- a connection
    // dropped a moment ago may come straight back, as in RigL's reference code.
    const Tensor inactive = raw::scalar_binary(raw::Binary::Sub, 1.0, kept);
    const Tensor grown = keep_top_k(grow_scores(i, inactive), drop);
    // Installing `kept` first zeroes the dropped weights (and, with an optimizer, their
    // state), so every grown weight starts at zero with a clean state.
    pruner_.set_mask(i, kept);
    if (opt_) pruner_.apply(opt_);
    pruner_.set_mask(i, raw::binary(raw::Binary::Add, kept, grown));
  }
}

}  // namespace weft::prune
