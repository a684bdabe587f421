// GradientBucket: several parameters' gradients packed into one flat buffer, so that
// DistributedDataParallel all-reduces a few large messages instead of one small
// message per parameter.
//
// Why buckets. Every collective pays a fixed latency (alpha, tens of microseconds on a
// network, a few on threads) on top of its bandwidth cost. A model with 100 parameter
// tensors would pay it 100 times per step; packing them into buckets of ~25 MB pays it
// a handful of times, while still leaving several buckets so the first ones can be
// all-reduced while backward is computing the gradients of the others.
//
// Why reverse registration order. Backward visits layers last to first, so the
// gradients of the last-registered parameters are final first. Bucket 0 holds the last
// parameters, bucket 1 the ones before them, and so on: bucket 0 fills up (and its
// all-reduce starts) early in backward, the last bucket at its very end.
//
//   registration:  fc1.weight fc1.bias | fc2.weight fc2.bias | fc3.weight fc3.bias
//   buckets:            bucket 2       |      bucket 1       |      bucket 0
//   backward:      <------------------------------------------------------ time
//
// The bucket's flat buffer is (numel) of its parameters' dtype (float32, or bfloat16 /
// float16 for a 16-bit model, whose all-reduce then sends 16-bit values); parameter k
// occupies [offset_k, offset_k + numel_k), in the bucket's own (reverse) order.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/communicator.h"

namespace weft::parallel {

// Groups parameters into buckets of at most `cap_bytes` each (a parameter larger than
// the cap gets a bucket of its own). `param_bytes` is in registration order; the result
// lists, per bucket, the parameter indices it holds: bucket 0 starts with the last
// parameter, and indices descend through the buckets. With `dtypes` (one per parameter),
// a parameter of another dtype than the bucket's so far starts a new bucket: one buffer
// holds one dtype.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& param_bytes, int64_t cap_bytes,
                                                const std::vector<DType>& dtypes = {});

class GradientBucket {
 public:
  // `params` in the bucket's order; all of one floating dtype, on one device.
  GradientBucket(std::vector<size_t> indices, std::vector<Tensor> params);

  // Starts a new round: every parameter's gradient is pending again.
  void reset() { pending_ = static_cast<int>(params_.size()); }
  // One parameter's gradient is final; true when it was the bucket's last.
  bool mark_ready();
  bool ready() const { return pending_ == 0; }

  // Copies every parameter's .grad into the flat buffer (zeros where a parameter has no
  // gradient: it took no part in this rank's loss, or the rank had no data).
  void pack(bool zeros = false);
  // Divides the flat buffer by `divisor` and copies it back into each parameter's .grad.
  void unpack(double divisor);

  const Tensor& flat() const { return flat_; }  // (numel), the parameters' dtype
  // views()[k]: parameter k's slice of flat(), shaped like the parameter (the layout a
  // communication hook reads to treat each parameter's gradient as a matrix).
  const std::vector<Tensor>& views() const { return views_; }
  const std::vector<size_t>& indices() const { return indices_; }  // into the module's parameters()
  int64_t numel() const { return flat_.numel(); }
  int64_t bytes() const { return flat_.numel() * static_cast<int64_t>(element_size(flat_.dtype())); }

  // The all-reduce in flight for this bucket, if launched and not yet waited for.
  WorkHandle work;

 private:
  std::vector<size_t> indices_;
  std::vector<Tensor> params_;
  std::vector<Tensor> views_;  // views_[k]: param k's slice of flat_, shaped like it
  Tensor flat_;
  int pending_ = 0;
};

}  // namespace weft::parallel
