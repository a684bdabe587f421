#include "progress_thread.h"

namespace weft::parallel {

bool CompletionWork::is_completed() {
  std::lock_guard lock(mu_);
  return done_;
}

void CompletionWork::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return done_; });
  if (error_) std::rethrow_exception(error_);
}

void CompletionWork::finish(std::exception_ptr error) {
  {
    std::lock_guard lock(mu_);
    done_ = true;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

ProgressThread::~ProgressThread() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

WorkHandle ProgressThread::submit(std::function<void()> op) {
  auto work = std::make_shared<CompletionWork>();
  {
    std::lock_guard lock(mu_);
    queue_.emplace_back(std::move(op), work);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }
  cv_.notify_all();
  return work;
}

void ProgressThread::drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
}

void ProgressThread::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left to run
    auto [op, work] = std::move(queue_.front());
    queue_.pop_front();
    running_ = 1;
    lock.unlock();
    std::exception_ptr error;
    try {
      op();
    } catch (...) {
      error = std::current_exception();
    }
    work->finish(error);
    lock.lock();
    running_ = 0;
    cv_.notify_all();  // wakes drain()
  }
}

}  // namespace weft::parallel
