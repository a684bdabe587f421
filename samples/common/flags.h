// Checks for the samples' command-line flags, so that every flag is validated where it
// is read and a bad value stops the run before anything trains, with an error that
// names the flag and the value. CLI11 puts the flag's name in front of each message:
//
//   --threads: must be a whole number >= 0, got '-2'
//   --lr: must be a finite number >= 0, got 'inf'
//
// Before these, `--threads -2` ran silently with the default, `--epochs 0` failed deep
// in CosineWarmupLR, and `--weight-decay nan` was reported as a bad eps.
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>

#include "../../parallel/comm/communicator.h"

namespace weft::samples {

// A whole number of type T in [lo, hi] (hi defaults to T's largest): no sign but '-',
// no fraction, no trailing text.
template <class T>
CLI::Validator whole_number(T lo, T hi = std::numeric_limits<T>::max()) {
  const std::string bounds = hi == std::numeric_limits<T>::max()
                                 ? ">= " + std::to_string(lo)
                                 : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, bounds](std::string& text) {
        T v{};
        const char* end = text.data() + text.size();
        const auto res = std::from_chars(text.data(), end, v);
        if (res.ec == std::errc() && res.ptr == end && !text.empty() && v >= lo && v <= hi) return std::string();
        return "must be a whole number " + bounds + ", got '" + text + "'";
      },
      "INT " + bounds);
}

// A finite real number in [lo, hi], or (lo, hi] when lo_open: NaN and inf are refused
// (std::stod would take them, and a NaN passes every comparison-based range check).
CLI::Validator real_number(double lo, double hi = std::numeric_limits<double>::max(), bool lo_open = false);

// The seconds of --timeout: finite, > 0 and at most kMaxTimeoutSeconds (about 11.6
// days; a larger deadline would overflow the clock's arithmetic).
inline constexpr double kMaxTimeoutSeconds = 1e6;

// `--timeout SECONDS`, the collectives' timeout, for the samples that make a
// communicator (train_ddp, train_pipeline, ring_allreduce). `seconds` is its default.
void add_timeout_flag(CLI::App& app, double& seconds);

// A --timeout in seconds as the communicator's Timeout (milliseconds, rounded up: a
// timeout never becomes 0).
parallel::Timeout collective_timeout(double seconds);

// A file a checkpoint can be saved to (nn::check_can_save): a --checkpoint whose
// directory is missing or read-only is found at start, not after the first epoch.
CLI::Validator savable_file();

// A device spec that weft::Device parses: cpu, cpu:N, cuda:N.
CLI::Validator device_spec();

// A --balance that parallel::Balance::parse accepts: layers, params, time, manual:i,j
// (the stage count is checked later, against the model).
CLI::Validator balance_spec();

}  // namespace weft::samples
