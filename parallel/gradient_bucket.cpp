#include "gradient_bucket.h"

#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::parallel {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& param_bytes, int64_t cap_bytes,
                                                const std::vector<DType>& dtypes) {
  WEFT_CHECK(cap_bytes >= 1, "assign_buckets: the bucket cap must be positive, got ", cap_bytes, " bytes");
  WEFT_CHECK(dtypes.empty() || dtypes.size() == param_bytes.size(), "assign_buckets: ", dtypes.size(),
             " dtypes for ", param_bytes.size(), " parameters");
  std::vector<std::vector<size_t>> buckets;
  int64_t filled = 0;
  for (size_t k = param_bytes.size(); k-- > 0;) {
    // Close the current bucket when this parameter would overflow it; a bucket always
    // takes at least one parameter, however large.
    const bool other_dtype = !buckets.empty() && !dtypes.empty() && dtypes[k] != dtypes[buckets.back().back()];
    if (buckets.empty() || other_dtype || (filled > 0 && filled + param_bytes[k] > cap_bytes)) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().push_back(k);
    filled += param_bytes[k];
  }
  return buckets;
}

GradientBucket::GradientBucket(std::vector<size_t> indices, std::vector<Tensor> params)
    : indices_(std::move(indices)), params_(std::move(params)) {
  WEFT_CHECK(!params_.empty() && params_.size() == indices_.size(), "GradientBucket: needs one index per parameter");
  int64_t total = 0;
  const Device device = params_[0].device();
  const DType dtype = params_[0].dtype();
  for (const Tensor& p : params_) {
    WEFT_CHECK(p.dtype() == kFloat32 || is_half(p.dtype()), "GradientBucket: parameters must be float32, bfloat16 ",
               "or float16, got ", dtype_name(p.dtype()));
    WEFT_CHECK(p.dtype() == dtype, "GradientBucket: one bucket holds one dtype, got ", dtype_name(dtype), " and ",
               dtype_name(p.dtype()), " (assign_buckets splits them)");
    WEFT_CHECK(p.device() == device, "GradientBucket: parameters on ", device, " and ", p.device(),
               "; a rank's model lives on one device");
    total += p.numel();
  }
  flat_ = zeros({total}, {.dtype = dtype, .device = device});
  int64_t offset = 0;
  for (const Tensor& p : params_) {
    views_.push_back(flat_.narrow(0, offset, p.numel()).view(p.shape()));
    offset += p.numel();
  }
  reset();
}

bool GradientBucket::mark_ready() {
  WEFT_CHECK(pending_ > 0, "DistributedDataParallel: a gradient became final twice before synchronize(): run one "
                           "backward per synchronize(), or accumulate inside no_sync()");
  return --pending_ == 0;
}

void GradientBucket::pack(bool zeros) {
  autograd::NoGradGuard no_grad;
  for (size_t k = 0; k < params_.size(); ++k) {
    const Tensor g = params_[k].grad();
    if (zeros || !g.defined()) raw::fill_(views_[k], 0.0);
    else raw::copy_(views_[k], g);
  }
}

void GradientBucket::unpack(double divisor) {
  autograd::NoGradGuard no_grad;
  if (divisor != 1.0) flat_.div_(divisor);
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor p = params_[k];
    // A fresh tensor, never a view of flat_: the next round overwrites flat_ while the
    // optimizer (or an accumulating backward) may still hold on to .grad.
    if (!p.grad().defined()) p.set_grad(raw::clone(views_[k]));
    else raw::copy_(p.grad(), views_[k]);
  }
}

}  // namespace weft::parallel
