// A live progress line for a loop of a known number of steps: a bar, the running loss,
// samples per second and the time left (at the end: the time it took).
//
//   training::ProgressBar bar("epoch 1/5", loader.num_batches());
//   while (auto b = loader.next()) bar.update(b->size(), step(*b));
//   const double samples_per_s = bar.finish();
//
// Two ways to draw it. On a terminal it redraws one line in place, at most every 0.1 s.
// Anywhere else (a log file, CI, a pipe), or with `plain` set, it prints a whole line at
// each quarter of the steps (1/4, 2/4, 3/4) and one at finish(), so logs stay readable:
//
//   epoch 1/5 [=======>                      ] 25/100 loss 1.2345  51234 samples/s  ETA 0:03
//
// (ProgressOptions::unit names what update() counts: {.unit = "tokens"} shows tokens/s.)
//
// The line goes to `out` (stdout unless given): a researcher's program can send it to
// stderr or a log file, and a test can read it back.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace weft::training {

struct ProgressOptions {
  std::FILE* out = stdout;  // where the line is written (not closed by the bar)
  bool plain = false;       // quarter lines even when `out` is a terminal
  std::string unit = "samples";  // what update() counts: "tokens" shows tokens/s
};

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total_steps, const ProgressOptions& options = {});
  // Called after each step with that step's sample count (in options.unit) and loss. The loss shown is a
  // moving average, steadier than any one step's.
  void update(int64_t samples, double loss);
  // Draws the last line (ending it, on a terminal) and returns the mean samples/s since
  // the bar was made.
  double finish();

 private:
  void draw(bool final_draw);

  std::string label_, unit_;
  std::FILE* out_;
  int64_t total_, done_ = 0, samples_ = 0, next_plain_ = 0;
  double loss_avg_ = 0;
  bool tty_;  // redraw in place (out_ is a terminal and plain was not asked for)
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace weft::training
