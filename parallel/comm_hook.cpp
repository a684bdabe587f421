#include "comm_hook.h"

#include <charconv>
#include <cmath>

#include "half_hook.h"
#include "powersgd_hook.h"
#include "topk_hook.h"

namespace weft::parallel {

int64_t ring_allreduce_bytes(int64_t payload_bytes, int ranks) {
  return ranks > 1 ? 2 * (ranks - 1) * payload_bytes / ranks : 0;
}

int64_t ring_allgather_bytes(int64_t payload_bytes, int ranks) { return ranks > 1 ? (ranks - 1) * payload_bytes : 0; }

void CommHook::count(int64_t bytes, int64_t numel, int ranks) {
  stats_.bytes_sent += bytes;
  stats_.float32_bytes += ring_allreduce_bytes(numel * 4, ranks);
}

WorkHandle AllReduceHook::reduce(size_t, GradientBucket& bucket, Communicator& comm) {
  count(ring_allreduce_bytes(bucket.bytes(), comm.size()), bucket.numel(), comm.size());
  return comm.allreduce_async(bucket.flat(), ReduceOp::Sum);
}

namespace {

// The number after "name:" in `spec`, or NaN when it is missing or not all a number.
double spec_number(const std::string& spec, size_t colon) {
  if (colon == std::string::npos || colon + 1 >= spec.size()) return std::nan("");
  const char* first = spec.data() + colon + 1;
  const char* last = spec.data() + spec.size();
  double v = 0;
  const auto res = std::from_chars(first, last, v);
  return res.ec == std::errc() && res.ptr == last ? v : std::nan("");
}

}  // namespace

std::shared_ptr<CommHook> make_comm_hook(const std::string& spec) {
  if (spec.empty() || spec == "none") return std::make_shared<AllReduceHook>();
  if (spec == "bf16") return std::make_shared<HalfPrecisionHook>(HalfFormat::BFloat16);
  if (spec == "fp16") return std::make_shared<HalfPrecisionHook>(HalfFormat::Float16);
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const double v = spec_number(spec, colon);
  if (kind == "powersgd") {
    WEFT_CHECK(v >= 1 && v <= 1e6 && v == std::floor(v), "comm hook '", spec,
               "': powersgd:R needs a whole rank R >= 1, e.g. powersgd:4");
    return std::make_shared<PowerSGDHook>(static_cast<int>(v));
  }
  if (kind == "topk") {
    WEFT_CHECK(v > 0 && v <= 1, "comm hook '", spec, "': topk:F needs a fraction 0 < F <= 1, e.g. topk:0.01");
    return std::make_shared<TopKHook>(v);
  }
  throw Error(detail::str("comm hook '", spec, "': unknown (use none, bf16, fp16, powersgd:R or topk:F)"));
}

}  // namespace weft::parallel
