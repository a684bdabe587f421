// ProgressThread: runs a communicator's async operations, one after another, in the
// order they were submitted.
//
// allreduce_async(t) must return at once while the all-reduce runs "in the background";
// the simplest honest background is one thread per rank that takes operations off a
// queue. Because every rank submits its collectives in the same order and this thread
// runs them in that order, the ranks' sequence numbers stay in step -- exactly the rule
// the blocking collectives follow.
//
// A blocking collective called while async ones are still queued first calls drain(),
// so it too runs after everything submitted before it.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "communicator.h"

namespace weft::parallel {

// A Work whose completion is set by whoever runs the operation.
class CompletionWork : public Work {
 public:
  bool is_completed() override;
  void wait() override;  // rethrows the operation's error
  void finish(std::exception_ptr error = nullptr);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

class ProgressThread {
 public:
  ProgressThread() = default;
  ~ProgressThread();  // runs what is queued, then joins
  ProgressThread(const ProgressThread&) = delete;
  ProgressThread& operator=(const ProgressThread&) = delete;

  // Queues `op`; the thread starts on first use. The handle rethrows op's exception.
  WorkHandle submit(std::function<void()> op);
  // Blocks until every submitted operation has finished (successfully or not).
  void drain();

 private:
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<CompletionWork>>> queue_;
  int running_ = 0;  // 1 while the thread executes an op taken off the queue
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace weft::parallel
