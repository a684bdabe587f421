#include "flags.h"

#include <cmath>
#include <functional>
#include <sstream>

#include "../../nn/safetensors.h"
#include "../../parallel/pipeline/shard.h"
#include "../../tensor/device.h"

namespace weft::samples {

namespace {
// 2e-3 as "0.002", 1e6 as "1e+06": short, and exact enough for a bound.
std::string shortest(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}
}  // namespace

CLI::Validator real_number(double lo, double hi, bool lo_open) {
  const std::string bounds = hi == std::numeric_limits<double>::max()
                                 ? (lo_open ? "> " : ">= ") + shortest(lo)
                                 : (lo_open ? "in (" : "in [") + shortest(lo) + ", " + shortest(hi) + "]";
  return CLI::Validator(
      [lo, hi, lo_open, bounds](std::string& text) {
        double v = 0;
        const char* end = text.data() + text.size();
        const auto res = std::from_chars(text.data(), end, v);
        const bool parsed = res.ec == std::errc() && res.ptr == end && !text.empty();
        if (parsed && std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi) return std::string();
        return "must be a finite number " + bounds + ", got '" + text + "'";
      },
      "NUMBER " + bounds);
}

void add_timeout_flag(CLI::App& app, double& seconds) {
  app.add_option("--timeout", seconds,
                 "seconds a collective (all-reduce, send, barrier...) waits for the other ranks before every rank "
                 "stops with an error naming the missing one")
      ->check(real_number(0, kMaxTimeoutSeconds, /*lo_open=*/true))
      ->capture_default_str();
}

parallel::Timeout collective_timeout(double seconds) {
  return parallel::Timeout(static_cast<int64_t>(std::ceil(seconds * 1000)));
}

CLI::Validator savable_file() {
  return CLI::Validator(
      [](std::string& path) {
        try {
          nn::check_can_save(path);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      },
      "FILE");
}

namespace {
// Accepts what `parse` accepts; otherwise CLI11 prints parse's error after the flag.
CLI::Validator parsed_by(const char* name, std::function<void(const std::string&)> parse) {
  return CLI::Validator(
      [parse](std::string& spec) {
        try {
          parse(spec);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      },
      name);
}
}  // namespace

CLI::Validator device_spec() {
  return parsed_by("DEVICE", [](const std::string& spec) { (void)Device(spec); });
}

CLI::Validator balance_spec() {
  return parsed_by("BALANCE", [](const std::string& spec) { (void)parallel::Balance::parse(spec); });
}

}  // namespace weft::samples
