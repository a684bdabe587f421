#include "comm_hook.h"

#include <charconv>
#include <cmath>
#include <string_view>

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

namespace hook_state {

constexpr std::string_view kPrefix = "bucket.";

std::string key(size_t index, const std::string& what) { return std::string(kPrefix) + std::to_string(index) + "." + what; }

std::pair<size_t, std::string> parse_key(const std::string& hook, const std::string& key, size_t buckets) {
  const std::string_view k(key);
  // "bucket." digits "." what -- each part there, the digits all digits and in range.
  const size_t dot = k.starts_with(kPrefix) ? k.find('.', kPrefix.size()) : std::string_view::npos;
  size_t index = 0;
  bool ok = dot != std::string_view::npos && dot > kPrefix.size() && dot + 1 < k.size();
  if (ok) {
    const auto [end, ec] = std::from_chars(k.data() + kPrefix.size(), k.data() + dot, index);
    ok = ec == std::errc() && end == k.data() + dot;
  }
  WEFT_CHECK(ok, "comm hook ", hook, ": state key '", key, "' is not bucket.<index>.<name>");
  WEFT_CHECK(index < buckets, "comm hook ", hook, ": state key '", key, "' names bucket ", index, ", but DDP has ",
             buckets, " bucket", buckets == 1 ? "" : "s", " (saved with another bucket size or model?)");
  return {index, std::string(k.substr(dot + 1))};
}

std::vector<float> floats(const std::string& hook, const std::string& key, const Tensor& t, int64_t n) {
  WEFT_CHECK(t.dtype() == kFloat32 && t.numel() == n, "comm hook ", hook, ": state '", key, "' should be ", n,
             " float32 values, got ", t.numel(), " ", t.dtype(), " (saved with another bucket size or model?)");
  return t.contiguous().to_vector<float>();
}

}  // namespace hook_state

void CommHook::load_state_dict(const nn::NamedTensors& state, const std::vector<GradientBucket>&) {
  WEFT_CHECK(state.empty(), "comm hook ", name(), " keeps no state, but was given ", state.size(),
             " tensors (the first: '", state.empty() ? "" : state[0].first, "')");
}

WorkHandle AllReduceHook::reduce(size_t, GradientBucket& bucket, Communicator& comm) {
  count(ring_allreduce_bytes(bucket.bytes(), comm.size()), bucket.numel(), comm.size());
  return comm.allreduce_async(bucket.flat(), ReduceOp::Sum);
}

namespace {

// `text` as a number, or NaN when it is empty or not all a number.
double spec_number(std::string_view text) {
  double v = 0;
  const auto res = std::from_chars(text.data(), text.data() + text.size(), v);
  return !text.empty() && res.ec == std::errc() && res.ptr == text.data() + text.size() ? v : std::nan("");
}

bool whole(double v, double low, double high) { return v >= low && v <= high && v == std::floor(v); }

// "R[,start=N][,min_rate=X]": what follows "powersgd:".
PowerSGDOptions powersgd_options(const std::string& spec, std::string_view args) {
  const auto usage = [&] {
    return detail::str("comm hook '", spec, "': powersgd:R needs a whole rank R >= 1, then optionally ",
                       ",start=N (whole N >= 0) and ,min_rate=X (X >= 0), e.g. powersgd:4 or powersgd:4,start=100");
  };
  PowerSGDOptions o;
  const size_t comma = std::min(args.find(','), args.size());
  const double rank = spec_number(args.substr(0, comma));
  WEFT_CHECK(whole(rank, 1, 1e6), usage());
  o.rank = static_cast<int>(rank);
  for (size_t pos = comma; pos < args.size();) {
    const size_t next = std::min(args.find(',', pos + 1), args.size());
    const std::string_view item = args.substr(pos + 1, next - pos - 1);
    const size_t eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    const double v = eq == std::string_view::npos ? std::nan("") : spec_number(item.substr(eq + 1));
    if (key == "start" && whole(v, 0, 1e15)) o.start_step = static_cast<int64_t>(v);
    else if (key == "min_rate" && v >= 0 && std::isfinite(v)) o.min_compression_rate = v;
    else throw Error(usage());
    pos = next;
  }
  return o;
}

}  // namespace

std::shared_ptr<CommHook> make_comm_hook(const std::string& spec) {
  if (spec.empty() || spec == "none") return std::make_shared<AllReduceHook>();
  if (spec == "bf16") return std::make_shared<HalfPrecisionHook>(HalfFormat::BFloat16);
  if (spec == "fp16") return std::make_shared<HalfPrecisionHook>(HalfFormat::Float16);
  const size_t colon = std::min(spec.find(':'), spec.size());
  const std::string kind = spec.substr(0, colon);
  const std::string_view args = std::string_view(spec).substr(std::min(colon + 1, spec.size()));
  if (kind == "powersgd") return std::make_shared<PowerSGDHook>(powersgd_options(spec, args));
  if (kind == "topk") {
    const double v = colon < spec.size() ? spec_number(args) : std::nan("");
    WEFT_CHECK(v > 0 && v <= 1, "comm hook '", spec, "': topk:F needs a fraction 0 < F <= 1, e.g. topk:0.01");
    return std::make_shared<TopKHook>(v);
  }
  throw Error(detail::str("comm hook '", spec, "': unknown (use none, bf16, fp16, powersgd:R or topk:F)"));
}

}  // namespace weft::parallel
