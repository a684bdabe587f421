// Dynamic sparse training: the sparsity stays fixed, the *connections* move.
//
// Every `interval` steps, in each target layer with k active weights:
//   drop  d = round(f(t) k) active weights with the smallest |w|;
//   grow  d inactive ones: RigL (Evci et al. 2020, "Rigging the Lottery") picks those
//         where the dense gradient |dL/dW| is largest -- the connections that would
//         reduce the loss fastest if they existed; SET (Mocanu et al. 2018) picks them
//         at random, the baseline.
// Grown weights start at zero (so the function the network computes does not jump) with
// zero optimizer state. The drop fraction decays with a cosine,
//   f(t) = alpha/2 (1 + cos(pi t / T_end)),
// so the topology explores early and settles; after T_end the masks stay fixed.
//
// The dense gradient. The Pruner's gradient hook masks dL/dW, so the gradient at pruned
// positions -- exactly what RigL needs -- is gone by the time backward returns. On an
// update step we ask the Pruner to capture the gradient before masking it:
//
//   rigl.before_backward(t);   // turns capture on only when step t+1 is an update step
//   loss.backward(); opt.step();
//   rigl.after_step(t + 1);    // drops and grows on update steps, then capture goes off
//
// Capturing costs a copy of each weight's gradient, so it is done on update steps only.
#pragma once

#include <cstdint>

#include "pruner.h"

namespace weft::prune {

struct DynamicSparseOptions {
  enum class Grow { Gradient, Random };  // RigL, SET
  Grow grow = Grow::Gradient;
  double alpha = 0.3;       // initial drop fraction
  int64_t interval = 100;   // dt: steps between topology updates
  int64_t end_step = 0;     // T_end: no updates from here on (required)
  uint64_t seed = 0;        // for SET's random growth
};

class DynamicSparse {
 public:
  // The Pruner's targets must already be masked at the wanted sparsity. `opt`, if given,
  // has its state zeroed at grown positions (a dropped weight can be regrown at once).
  DynamicSparse(Pruner& pruner, const DynamicSparseOptions& options, optim::Optimizer* opt = nullptr);

  // f(t) = alpha/2 (1 + cos(pi t / T_end)), 0 from T_end on.
  double drop_fraction(int64_t step) const;
  bool is_update_step(int64_t step) const;

  // The two calls of the training loop shown above. `step` counts optimizer steps taken.
  void before_backward(int64_t steps_taken);
  // Returns true when it changed the topology.
  bool after_step(int64_t steps_taken);

  // One drop-and-grow of every target with drop fraction f (the dense gradients must be
  // captured for RigL). Public for tests.
  void update(double f);
  const DynamicSparseOptions options;

  // Where SET's random draws stand, for a checkpoint: a resumed run that sets it back
  // grows the same connections as a run that never stopped.
  uint64_t generator_offset() const { return gen_.offset(); }
  void set_generator_offset(uint64_t offset) { gen_.set_offset(offset); }

 private:
  Tensor grow_scores(size_t i, const Tensor& inactive) const;

  Pruner& pruner_;
  optim::Optimizer* opt_;
  mutable Generator gen_;  // SET draws from it in a const helper
};

}  // namespace weft::prune
