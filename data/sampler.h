// Sampler: which samples one pass over a dataset visits, and in what order.
//
// A DataLoader normally makes its own order (0..N-1, or a seeded permutation). Give it
// a Sampler (DataLoaderOptions::sampler) and it asks the sampler instead:
// sampler->indices(epoch) is the order of that epoch's pass, and it need not cover the
// whole dataset -- a DistributedSampler hands each rank its own share of it.
#pragma once

#include <cstdint>

#include "../tensor/tensor.h"

namespace weft::data {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // The sample indices (1-D int64, each in [0, dataset size)) of epoch `epoch`, in the
  // order the pass visits them. Depends on the epoch and the sampler's settings only,
  // so calling it twice gives the same answer and a resumed run sees the same order.
  virtual Tensor indices(int64_t epoch) const = 0;
  // indices(e).numel() for every epoch: how many samples one pass visits.
  virtual int64_t num_samples() const = 0;
};

}  // namespace weft::data
