// DistributedSampler: each rank's share of a dataset for data-parallel training.
//
// With R ranks training one model, every rank must see different samples in a step, and
// together they must see the dataset once per epoch. Each epoch, every rank builds the
// *same* global order -- a permutation drawn from (seed, epoch), or 0..N-1 without
// shuffle -- and takes every R-th element of it, starting at its rank:
//
//   global order   7 2 9 0 4 8 1 5 3 6 | 7 2      N = 10, R = 4: padded to 12
//   rank 0         7       4       3   | 7
//   rank 1           2       8       6 |   2
//   rank 2             9       1       |       (rank 2 gets 9 1 7, rank 3 gets 0 5 2)
//
// N rarely divides by R, and every rank must run the same number of steps (a rank with
// one batch fewer would leave the others waiting in an all-reduce). So either the order
// is padded by wrapping around to its start (the default: a few samples are seen twice
// per epoch), or, with drop_last, its tail is cut so that it divides (a few are not seen
// at all this epoch; a different few next epoch, since the order reshuffles).
//
// Epochs: the sampler has no epoch state of its own. A DataLoader with this sampler
// asks for indices(loader.epoch()), so loader.set_epoch(e) -- the one epoch counter --
// is what PyTorch spells sampler.set_epoch(e). Every rank computes the permutation from
// the same seed and epoch, so the shares never overlap, and each epoch reshuffles.
//
//   auto sampler = std::make_shared<DistributedSampler>(train.size(), comm->size(), comm->rank(),
//                                                       DistributedSamplerOptions{.seed = 1});
//   DataLoader loader(train, {.batch_size = 64, .sampler = sampler});   // per-rank batches
//   loader.set_epoch(epoch);
#pragma once

#include "sampler.h"

namespace weft::data {

struct DistributedSamplerOptions {
  bool shuffle = true;
  uint64_t seed = 0;       // must be the same on every rank
  bool drop_last = false;  // cut the order to a multiple of the rank count instead of padding it
};

class DistributedSampler : public Sampler {
 public:
  DistributedSampler(int64_t dataset_size, int num_replicas, int rank, const DistributedSamplerOptions& opt = {});

  Tensor indices(int64_t epoch) const override;
  int64_t num_samples() const override { return num_samples_; }

  // The order all ranks share in `epoch`, padded or cut to num_replicas * num_samples.
  Tensor global_order(int64_t epoch) const;
  int rank() const { return rank_; }
  int num_replicas() const { return num_replicas_; }

 private:
  int64_t dataset_size_;
  int num_replicas_, rank_;
  DistributedSamplerOptions opt_;
  int64_t num_samples_;  // per rank, per epoch
};

}  // namespace weft::data
