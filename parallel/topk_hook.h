// TopKHook: top-k gradient sparsification with error feedback, a communication hook for
// DDP (comm_hook.h). Per bucket and step:
//   m = grad + residual                       error feedback (Stich et al. 2018; Lin et
//                                             al., "Deep Gradient Compression", 2018)
//   keep the k = ceil(F * n) entries of largest |m| (ties: the lower index)
//   allgather every rank's k (index, value) pairs; every rank adds them, in rank order
//   residual = m with the kept entries zeroed: they are sent, the rest waits
// so, for every rank, (what it sent) + (new residual) == grad + (old residual) exactly:
// every gradient entry reaches the sum sooner or later. k depends only on the bucket's
// size, so every rank sends the same count, as allgather needs.
//
// ENCODING AND BYTES. A pair is one int64: the index in the high 32 bits, the float32's
// bit pattern in the low 32 (a bit pattern the communicators only move); one more word
// says whether this rank's gradient held an inf or NaN (then every rank's bucket becomes
// NaN, so a GradScaler skips the step everywhere, and the residuals stay as they were).
// This rank sends its 8 (k+1) bytes to each of the p-1 others in a ring allgather,
// (p-1) * 8 (k+1), against the float32 all-reduce's 2 (p-1)/p * 4n: at p = 2 and
// F = 0.01, about 50 times fewer. Synchronous (an allgather): no overlap with backward.
// CPU tensors only.
#pragma once

#include <map>
#include <vector>

#include "comm_hook.h"

namespace weft::parallel {

class TopKHook : public CommHook {
 public:
  explicit TopKHook(double fraction);
  std::string name() const override;
  WorkHandle reduce(size_t index, GradientBucket& bucket, Communicator& comm) override;

  // Per reduced bucket, "bucket.<i>.residual" (float32, the bucket's numel).
  nn::NamedTensors state_dict() const override;
  bool keeps_state() const override { return true; }
  void load_state_dict(const nn::NamedTensors& state, const std::vector<GradientBucket>& buckets) override;

  // How many entries a bucket of n sends: ceil(F * n), at least 1.
  int64_t k_for(int64_t n) const;
  // The bucket's residual memory (like its flat buffer); undefined before its first reduce.
  Tensor residual(size_t index) const;

 private:
  double fraction_;
  std::map<size_t, std::vector<float>> residuals_;
  std::vector<float> scratch_;   // reduce()'s grad + residual, reused across buckets and steps
  std::vector<int64_t> order_;   // reduce()'s index order for the selection
};

}  // namespace weft::parallel
