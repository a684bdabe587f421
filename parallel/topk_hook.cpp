#include "topk_hook.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
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
  WEFT_CHECK(static_cast<int64_t>(res.size()) == n, "comm hook ", name(), ": bucket ", index, " has ", n,
             " values but had ", res.size(), " before; use one hook per DDP (and rank)");
  float* g = flat.data<float>();
  // m = grad + residual, in the scratch buffer: the residual changes only if every
  // rank's gradient is finite (see the last word below). The buffers are the hook's, so
  // a step allocates nothing of the bucket's size.
  std::vector<float>& m = scratch_;
  m.assign(res.begin(), res.end());
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    finite = finite && std::isfinite(g[i]);
    m[i] += g[i];
  }

  // Words 0..k-1: the k largest |m| as (index, value), comparing (|m|, -index) so the
  // choice is unique; word k: 1 when this rank's gradient holds an inf or NaN (then its
  // pairs are not chosen: NaN has no order).
  Tensor pairs = zeros({k + 1}, {.dtype = kInt64});
  auto* w = reinterpret_cast<uint64_t*>(pairs.data<int64_t>());
  std::vector<int64_t>& order = order_;
  if (finite) {
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), [&m](int64_t a, int64_t b) {
      const float fa = std::abs(m[a]), fb = std::abs(m[b]);
      return fa > fb || (fa == fb && a < b);
    });
    for (int64_t j = 0; j < k; ++j) w[j] = (static_cast<uint64_t>(order[j]) << 32) | std::bit_cast<uint32_t>(m[order[j]]);
  }
  w[k] = finite ? 0 : 1;

  const int p = comm.size();
  Tensor all = empty({(k + 1) * p}, {.dtype = kInt64});
  comm.allgather(pairs, all);
  count(ring_allgather_bytes((k + 1) * 8, p), n, p);

  const auto* aw = reinterpret_cast<const uint64_t*>(all.data<int64_t>());
  for (int q = 0; q < p; ++q)
    if (aw[q * (k + 1) + k] != 0) {
      // Some rank overflowed: every rank gets a NaN bucket (its GradScaler skips the step)
      // and keeps its residual as it was.
      std::fill(g, g + n, std::numeric_limits<float>::quiet_NaN());
      return nullptr;
    }
  for (int64_t j = 0; j < k; ++j) m[order[j]] = 0.0f;  // sent: nothing of it is left over
  std::swap(res, m);  // the old residual becomes the next step's scratch
  std::fill(g, g + n, 0.0f);
  for (int q = 0; q < p; ++q)  // rank order: the same sum on every rank
    for (int64_t j = 0; j < k; ++j) {
      const uint64_t word = aw[q * (k + 1) + j];
      g[word >> 32] += std::bit_cast<float>(static_cast<uint32_t>(word & 0xFFFFFFFFu));
    }
  return nullptr;
}

nn::NamedTensors TopKHook::state_dict() const {
  nn::NamedTensors out;
  for (const auto& [index, res] : residuals_)
    out.emplace_back(hook_state::key(index, "residual"), tensor(res, {static_cast<int64_t>(res.size())}));
  return out;
}

void TopKHook::load_state_dict(const nn::NamedTensors& state, const std::vector<GradientBucket>& buckets) {
  std::map<size_t, std::vector<float>> loaded;
  for (const auto& [key, t] : state) {
    const auto [index, what] = hook_state::parse_key(name(), key, buckets.size());
    WEFT_CHECK(what == "residual", "comm hook ", name(), ": unknown state key '", key, "'");
    WEFT_CHECK(!loaded.contains(index), "comm hook ", name(), ": state key '", key, "' is given twice");
    loaded[index] = hook_state::floats(name(), key, t, buckets[index].numel());
  }
  residuals_ = std::move(loaded);
}

Tensor TopKHook::residual(size_t index) const {
  auto it = residuals_.find(index);
  if (it == residuals_.end()) return Tensor();
  return tensor(it->second, {static_cast<int64_t>(it->second.size())});
}

}  // namespace weft::parallel
