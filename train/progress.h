// A live progress line for long loops: a bar, the running loss, samples per second and
// the time left. On a terminal it redraws in place; otherwise (a log file, CI) it prints
// a plain line at each quarter so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace weft::train {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total_steps);
  // Called after each step with that step's sample count and loss.
  void update(int64_t samples, double loss);
  // Ends the line (terminal) and returns the mean samples/s over the whole run.
  double finish();

 private:
  void draw(bool final_draw);

  std::string label_;
  int64_t total_, done_ = 0, samples_ = 0, next_plain_ = 0;
  double loss_avg_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace weft::train
