#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WEFT_CPU_RELAX() _mm_pause()
#else
#define WEFT_CPU_RELAX() std::this_thread::yield()
#endif

#include "error.h"

namespace weft {

namespace {

// How long an idle worker (or a waiting caller) spins before it sleeps. Long enough to
// cover the gap between two ops of a training step, short enough not to matter when idle.
constexpr auto kSpinMicros = std::chrono::microseconds(300);

thread_local bool t_in_parallel = false;
thread_local int t_thread_limit = 0;  // 0: no ThreadLimit on this thread

// One parallel_for call: its chunks count down `remaining`; the caller waits for zero.
struct Job {
  const std::function<void(int64_t, int64_t)>* fn;
  std::atomic<int> remaining{0};
  std::mutex mu;
  std::condition_variable done;
  std::exception_ptr error;
};

struct Task {
  std::shared_ptr<Job> job;
  int64_t begin, end;
};

void run_task(const Task& t) {
  t_in_parallel = true;
  try {
    (*t.job->fn)(t.begin, t.end);
  } catch (...) {
    std::lock_guard<std::mutex> lk(t.job->mu);
    if (!t.job->error) t.job->error = std::current_exception();
  }
  t_in_parallel = false;
  if (t.job->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard<std::mutex> lk(t.job->mu);
    t.job->done.notify_all();
  }
}

// Spins until pred() holds or kSpinMicros pass; returns pred().
template <class Pred>
bool spin_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinMicros;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    WEFT_CPU_RELAX();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return pred();
  }
}

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int i = 1; i < threads; ++i) {
      try {
        workers_.emplace_back([this] { loop(); });
      } catch (const std::system_error& e) {
        // The system refused a thread (a process or address-space limit). Stop and join
        // the workers already running -- leaving them waiting on cv_ while it is
        // destroyed would hang -- and say what to do.
        stop();
        throw Error(detail::str("thread pool: could not start worker thread ", i, " of ", threads - 1, " (",
                                e.what(), "); ask for fewer threads (--threads, set_num_threads or WEFT_NUM_THREADS)"));
      }
    }
  }
  ~Pool() { stop(); }
  int threads() const { return threads_; }

  void submit(std::vector<Task>& tasks) {
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (auto& t : tasks) queue_.push_back(std::move(t));
      queued_.store(static_cast<int>(queue_.size()), std::memory_order_release);
      wake = sleepers_ > 0;
    }
    if (wake) cv_.notify_all();  // spinning workers see queued_ without a syscall
  }

  // Lets a waiting caller help: runs one queued task if there is one.
  bool try_run_one() {
    Task t;
    if (!pop(t)) return false;
    run_task(t);
    return true;
  }

 private:
  bool pop(Task& t) {
    if (queued_.load(std::memory_order_acquire) == 0) return false;
    std::lock_guard<std::mutex> lk(mu_);
    if (queue_.empty()) return false;
    t = std::move(queue_.front());
    queue_.pop_front();
    queued_.store(static_cast<int>(queue_.size()), std::memory_order_release);
    return true;
  }

  void loop() {
    for (;;) {
      Task t;
      if (spin_until([&] { return stop_flag_.load(std::memory_order_relaxed) || pop(t); })) {
        if (t.job) {
          run_task(t);
          continue;
        }
      }
      std::unique_lock<std::mutex> lk(mu_);
      ++sleepers_;
      cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
      --sleepers_;
      if (stop_ && queue_.empty()) return;
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    stop_flag_ = true;
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int threads_;
  std::vector<std::thread> workers_;
  std::deque<Task> queue_;
  std::atomic<int> queued_{0};  // queue_.size(), readable while spinning
  std::atomic<bool> stop_flag_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int sleepers_ = 0;
  bool stop_ = false;
};

int default_threads() {
  if (const char* env = std::getenv("WEFT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::mutex g_pool_mu;
std::shared_ptr<Pool> g_pool;
// The pool's size, readable without the mutex: small ranges decide to run inline
// without touching the pool at all (this is on every op's path).
std::atomic<int> g_threads{0};

std::shared_ptr<Pool> pool() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool) {
    g_pool = std::make_shared<Pool>(default_threads());
    g_threads = g_pool->threads();
  }
  return g_pool;
}

int pool_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : pool()->threads();
}

}  // namespace

void set_num_threads(int n) {
  WEFT_CHECK(n >= 1, "set_num_threads: need at least 1 thread, got ", n);
  std::shared_ptr<Pool> old;
  {
    std::lock_guard<std::mutex> lk(g_pool_mu);
    if (g_pool && g_pool->threads() == n) return;
    auto fresh = std::make_shared<Pool>(n);  // if it throws, the old pool stays in place
    old = std::exchange(g_pool, std::move(fresh));
    g_threads = n;
  }
  // `old` joins its workers here, after any parallel_for still holding it finishes.
}

int num_threads() {
  const int n = pool_threads();
  return t_thread_limit > 0 ? std::min(n, t_thread_limit) : n;
}

ThreadLimit::ThreadLimit(int n) : previous_(t_thread_limit) {
  WEFT_CHECK(n >= 1, "ThreadLimit: need at least 1 thread, got ", n);
  t_thread_limit = n;
}

ThreadLimit::~ThreadLimit() { t_thread_limit = previous_; }

bool in_parallel_region() { return t_in_parallel; }

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn, int chunks_per_thread) {
  if (end <= begin) return;
  const int64_t n = end - begin;
  grain = std::max<int64_t>(grain, 1);
  // Too small to split, nested, or one thread: run inline without touching the pool.
  if (t_in_parallel || n < 2 * grain || t_thread_limit == 1 || g_threads.load(std::memory_order_relaxed) == 1) {
    fn(begin, end);
    return;
  }
  auto p = pool();
  const int64_t max_chunks = (t_thread_limit > 0 ? std::min(p->threads(), t_thread_limit) : p->threads()) *
                             std::max(chunks_per_thread, 1);
  const int64_t chunks = std::min<int64_t>(max_chunks, n / grain);
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->remaining = static_cast<int>(chunks);
  std::vector<Task> rest;
  const int64_t step = (n + chunks - 1) / chunks;
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t b = begin + c * step, e = std::min(end, b + step);
    if (b >= e) {
      job->remaining.fetch_sub(1);
      continue;
    }
    rest.push_back({job, b, e});
  }
  p->submit(rest);
  run_task({job, begin, std::min(end, begin + step)});
  // Help with queued work (ours or another caller's), then spin, then sleep.
  auto finished = [&] { return job->remaining.load(std::memory_order_acquire) == 0; };
  while (!finished() && p->try_run_one()) {
  }
  if (!spin_until(finished)) {
    std::unique_lock<std::mutex> lk(job->mu);
    job->done.wait(lk, finished);
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace weft
