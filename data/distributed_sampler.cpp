#include "distributed_sampler.h"

#include "../tensor/creation.h"
#include "../tensor/generator.h"

namespace weft::data {

DistributedSampler::DistributedSampler(int64_t dataset_size, int num_replicas, int rank,
                                       const DistributedSamplerOptions& opt)
    : dataset_size_(dataset_size), num_replicas_(num_replicas), rank_(rank), opt_(opt) {
  WEFT_CHECK(dataset_size >= 1, "DistributedSampler: the dataset is empty");
  WEFT_CHECK(num_replicas >= 1, "DistributedSampler: num_replicas must be >= 1, got ", num_replicas);
  WEFT_CHECK(rank >= 0 && rank < num_replicas, "DistributedSampler: rank ", rank, " is outside [0, ", num_replicas,
             ")");
  const int64_t r = num_replicas;
  num_samples_ = opt_.drop_last ? dataset_size / r : (dataset_size + r - 1) / r;
  WEFT_CHECK(num_samples_ >= 1, "DistributedSampler: with drop_last, ", dataset_size, " samples leave nothing for ",
             num_replicas, " ranks");
}

// The same permutation as DataLoader::order for this seed and epoch (counters
// [e*N, (e+1)*N) of the seed's stream), so a 1-rank sampler reproduces a plain
// shuffled loader.
Tensor DistributedSampler::global_order(int64_t epoch) const {
  WEFT_CHECK(epoch >= 0, "DistributedSampler: the epoch must be >= 0, got ", epoch);
  const int64_t n = dataset_size_;
  Tensor order = arange(n);
  if (opt_.shuffle) {
    Generator gen(opt_.seed);
    gen.set_offset(static_cast<uint64_t>(epoch) * static_cast<uint64_t>(n));
    order = randperm(n, gen);
  }
  const int64_t total = num_samples_ * num_replicas_;
  if (total <= n) return order.narrow(0, 0, total);  // drop_last (or already a multiple)
  // Pad by wrapping around: element i of the padded order is order[i mod n]. (With more
  // ranks than samples this wraps more than once.)
  std::vector<int64_t> padded(static_cast<size_t>(total));
  const int64_t* o = order.data<int64_t>();
  for (int64_t i = 0; i < total; ++i) padded[static_cast<size_t>(i)] = o[i % n];
  return tensor(padded);
}

Tensor DistributedSampler::indices(int64_t epoch) const {
  // Every num_replicas-th element starting at rank: a strided view, made contiguous.
  return global_order(epoch).slice(0, rank_, num_samples_ * num_replicas_, num_replicas_).contiguous();
}

}  // namespace weft::data
