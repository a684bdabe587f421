#include "progress.h"

#include <unistd.h>

#include <algorithm>

namespace weft::training {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
std::string clock(double s) {
  const int t = static_cast<int>(s);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d:%02d", t / 60, t % 60);
  return buf;
}
}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total, const ProgressOptions& options)
    : label_(std::move(label)), unit_(options.unit.empty() ? "samples" : options.unit), out_(options.out ? options.out : stdout), total_(total),
      tty_(!options.plain && isatty(fileno(out_)) != 0), start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  next_plain_ = total_ / 4;
}

void ProgressBar::update(int64_t samples, double loss) {
  ++done_;
  samples_ += samples;
  // An exponential moving average keeps the shown loss steady but current.
  loss_avg_ = done_ == 1 ? loss : 0.98 * loss_avg_ + 0.02 * loss;
  if (tty_ && seconds_since(last_draw_) > 0.1) draw(false);
  if (!tty_ && done_ >= next_plain_ && done_ < total_) {
    draw(false);
    next_plain_ += std::max<int64_t>(total_ / 4, 1);
  }
}

void ProgressBar::draw(bool final_draw) {
  last_draw_ = std::chrono::steady_clock::now();
  const double elapsed = seconds_since(start_);
  const double rate = elapsed > 0 ? samples_ / elapsed : 0;
  const double eta = done_ > 0 ? elapsed / done_ * std::max<int64_t>(total_ - done_, 0) : 0;
  constexpr int kWidth = 30;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * std::min(done_, total_) / total_) : kWidth;
  std::string bar(filled, '=');
  if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
  // On a terminal: back to the line's start and overwrite it; the final draw ends it.
  std::fprintf(out_, "%s%s [%s] %lld/%lld loss %.4f  %.0f %s/s  %s %s%s", tty_ ? "\r" : "", label_.c_str(),
               bar.c_str(), static_cast<long long>(done_), static_cast<long long>(total_), loss_avg_, rate, unit_.c_str(),
               final_draw ? "took" : "ETA", clock(final_draw ? elapsed : eta).c_str(), tty_ && !final_draw ? "" : "\n");
  std::fflush(out_);
}

double ProgressBar::finish() {
  draw(true);
  const double elapsed = seconds_since(start_);
  return elapsed > 0 ? samples_ / elapsed : 0;
}

}  // namespace weft::training
