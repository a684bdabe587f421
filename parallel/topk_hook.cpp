#include "topk_hook.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>

#include "../tensor/creation.h"

namespace weft::parallel {

TopKHook::TopKHook(double fraction) : fraction_(fraction) {
  WEFT_CHECK(fraction > 0 && fraction <= 1, "TopKHook: the fraction must be in (0, 1], got ", fraction);
}

std::string TopKHook::name() const { return "topk:" + detail::str(fraction_); }

int64_t TopKHook::k_for(int64_t n) const {
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(fraction_ * static_cast<double>(n))), 1, n);
}

WorkHandle TopKHook::reduce(size_t index, GradientBucket& bucket, Communicator& comm) {
  const Tensor& flat = bucket.flat();
  WEFT_CHECK(flat.device().is_cpu(), "comm hook ", name(), ": CPU tensors only (the bucket is on ", flat.device(),
             "); use the default all-reduce on GPUs");
  const int64_t n = flat.numel(), k = k_for(n);
  WEFT_CHECK(n < (int64_t{1} << 32), "TopKHook: a bucket of ", n, " values does not fit 32-bit indices");
  std::vector<float>& res = residuals_[index];
  if (res.empty()) res.assign(static_cast<size_t>(n), 0.0f);
  float* g = flat.data<float>();
  for (int64_t i = 0; i < n; ++i) res[i] += g[i];  // res is now m = grad + residual

  // The k largest |m|; comparing (|m|, -index) makes the choice unique.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), [&res](int64_t a, int64_t b) {
    const float fa = std::abs(res[a]), fb = std::abs(res[b]);
    return fa > fb || (fa == fb && a < b);
  });
  Tensor pairs = empty({k}, {.dtype = kInt64});
  auto* w = reinterpret_cast<uint64_t*>(pairs.data<int64_t>());
  for (int64_t j = 0; j < k; ++j) {
    const int64_t i = order[j];
    w[j] = (static_cast<uint64_t>(i) << 32) | std::bit_cast<uint32_t>(res[i]);
    res[i] = 0.0f;  // sent: nothing of it is left over
  }

  const int p = comm.size();
  Tensor all = empty({k * p}, {.dtype = kInt64});
  comm.allgather(pairs, all);
  count(ring_allgather_bytes(k * 8, p), n, p);

  const auto* aw = reinterpret_cast<const uint64_t*>(all.data<int64_t>());
  std::fill(g, g + n, 0.0f);
  for (int64_t j = 0; j < k * p; ++j)  // rank order: the same sum on every rank
    g[aw[j] >> 32] += std::bit_cast<float>(static_cast<uint32_t>(aw[j] & 0xFFFFFFFFu));
  return nullptr;
}

Tensor TopKHook::residual(size_t index) const {
  auto it = residuals_.find(index);
  if (it == residuals_.end()) return Tensor();
  return tensor(it->second, {static_cast<int64_t>(it->second.size())});
}

}  // namespace weft::parallel
