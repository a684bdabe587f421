#include "thread_group.h"

#include <cstring>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define WEFT_CPU_RELAX() _mm_pause()
#else
#define WEFT_CPU_RELAX() ((void)0)
#endif

namespace weft::parallel {
namespace {

// A collective between ranks that are all running finishes within microseconds, so a
// waiter first spins (no system call, no wake-up latency), then yields its core, and
// only then sleeps. Sleeping threads are woken by notify() or re-check every 1 ms.
constexpr int kSpins = 2000;
constexpr int kYields = 200;
constexpr auto kSleepSlice = std::chrono::milliseconds(1);

std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

}  // namespace

const char* collective_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::Allreduce: return "allreduce";
    case CollectiveKind::Broadcast: return "broadcast";
    case CollectiveKind::Allgather: return "allgather";
    case CollectiveKind::ReduceScatter: return "reduce_scatter";
    case CollectiveKind::Barrier: return "barrier";
    case CollectiveKind::Split: return "split";
  }
  return "?";
}

ThreadGroup::ThreadGroup(int size)
    : size_(size), slots_(2 * size), arrived_(new Counter[size]), gone_(new std::atomic<bool>[size]),
      gone_reasons_(size) {
  WEFT_CHECK(size >= 1, "ThreadGroup: size must be at least 1, got ", size);
  for (int r = 0; r < size; ++r) gone_[r].store(false);
}

ThreadGroup::ThreadGroup(std::shared_ptr<const ThreadGroup> parent, std::vector<int> parent_ranks)
    : ThreadGroup(int(parent_ranks.size())) {
  parent_ = parent;
  parent_ranks_ = std::move(parent_ranks);
}

bool ThreadGroup::wait_until(const std::function<bool()>& ready, const std::function<void()>& check,
                             Clock::time_point deadline) {
  for (int i = 0; i < kSpins; ++i) {
    if (ready()) return true;
    WEFT_CPU_RELAX();
  }
  for (int i = 0; i < kYields; ++i) {
    if (ready()) return true;
    std::this_thread::yield();
  }
  // Announce the sleeper before the last check: a notify() that comes after our check
  // sees sleepers_ > 0 and takes the lock (both are sequentially consistent).
  sleepers_.fetch_add(1);
  bool ok = true;
  try {
    while (!ready()) {
      check();
      auto now = Clock::now();
      if (now >= deadline) {
        ok = ready();
        break;
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::min<Clock::duration>(kSleepSlice, deadline - now), ready);
    }
  } catch (...) {
    sleepers_.fetch_sub(1);
    throw;
  }
  sleepers_.fetch_sub(1);
  return ok;
}

void ThreadGroup::notify() {
  if (sleepers_.load() == 0) return;  // the common case: everybody is spinning
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

std::optional<std::string> ThreadGroup::gone_reason(int rank) const {
  // A thread that left the parent group (its function threw or returned) will not
  // come to this sub-group either. (Waiters here re-check every sleep slice, so they
  // see it without the parent's notify.)
  if (!gone_[rank].load()) {
    if (auto parent = parent_.lock()) return parent->gone_reason(parent_ranks_[rank]);
    return std::nullopt;
  }
  std::lock_guard lock(mu_);
  return gone_reasons_[rank];
}

void ThreadGroup::mark_gone(int rank, const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    gone_reasons_[rank] = reason;
  }
  gone_[rank].store(true);
  notify();
}

void ThreadGroup::break_group(const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    if (broken_.load()) return;  // keep the first cause
    broken_reason_ = reason;
    broken_.store(true);
  }
  notify();
}

void ThreadGroup::throw_if_broken() const {
  if (!broken_.load()) return;
  std::lock_guard lock(mu_);
  throw Error(broken_reason_);
}

void ThreadGroup::barrier(int rank, int64_t gen, const std::string& what, Clock::time_point deadline,
                          Timeout timeout) {
  arrived_[rank].value.store(gen, std::memory_order_release);
  notify();
  auto missing = [&] {
    std::vector<int> m;
    for (int q = 0; q < size_; ++q)
      if (arrived_[q].value.load(std::memory_order_acquire) < gen) m.push_back(q);
    return m;
  };
  auto ready = [&] {
    for (int q = 0; q < size_; ++q)
      if (arrived_[q].value.load(std::memory_order_acquire) < gen) return false;
    return true;
  };
  auto check = [&] {
    throw_if_broken();
    for (int q : missing())
      if (auto why = gone_reason(q))
        throw Error(detail::str(what, ": rank ", q, " did not arrive (", *why, ")"));
  };
  if (wait_until(ready, check, deadline)) return;
  std::string msg = detail::str(what, ": ", rank_list(missing()), " did not arrive within ",
                                timeout.count(), " ms");
  break_group(msg);
  throw_if_broken();  // the first cause, which may be another rank's identical timeout
}

int64_t ThreadGroup::claim_block(int64_t base, int64_t count) {
  int64_t cur = next_block_.value.load(std::memory_order_relaxed);
  // Never past base + count: the counter must stop exactly at the next all-reduce's base.
  while (cur < base + count)
    if (next_block_.value.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) return cur - base;
  return -1;
}

void ThreadGroup::block_done() {
  done_blocks_.value.fetch_add(1, std::memory_order_release);
  notify();
}

void ThreadGroup::wait_blocks(int64_t until, const std::string& what, Clock::time_point deadline, Timeout timeout) {
  auto ready = [&] { return done_blocks_.value.load(std::memory_order_acquire) >= until; };
  if (wait_until(ready, [&] { throw_if_broken(); }, deadline)) return;
  break_group(detail::str(what, ": the reduction did not finish within ", timeout.count(),
                          " ms (a rank stalled in the middle of it)"));
  throw_if_broken();
}

// ---- point to point -------------------------------------------------------------------

std::shared_ptr<Transfer> ThreadGroup::post_send(int src, int dst, int tag, void* data, int64_t numel, DType dt) {
  auto t = std::make_shared<Transfer>();
  t->src = src, t->dst = dst, t->tag = tag, t->data = data, t->numel = numel, t->dtype = dt;
  std::shared_ptr<Transfer> recv;
  {
    std::lock_guard lock(mu_);
    Mailbox& box = mailboxes_[{src, dst, tag}];
    if (box.recvs.empty()) {
      box.sends.push_back(t);
      return t;
    }
    recv = box.recvs.front();
    box.recvs.pop_front();
  }
  match(*t, *recv);  // the copy happens outside the lock: other pairs go on meanwhile
  return t;
}

std::shared_ptr<Transfer> ThreadGroup::post_recv(int src, int dst, int tag, void* data, int64_t numel, DType dt) {
  auto t = std::make_shared<Transfer>();
  t->src = src, t->dst = dst, t->tag = tag, t->data = data, t->numel = numel, t->dtype = dt;
  std::shared_ptr<Transfer> send;
  {
    std::lock_guard lock(mu_);
    Mailbox& box = mailboxes_[{src, dst, tag}];
    if (box.sends.empty()) {
      box.recvs.push_back(t);
      return t;
    }
    send = box.sends.front();
    box.sends.pop_front();
  }
  match(*send, *t);
  return t;
}

void ThreadGroup::match(Transfer& send, Transfer& recv) {
  if (send.numel != recv.numel || send.dtype != recv.dtype) {
    std::string msg = detail::str("rank ", send.src, " sends ", send.numel, " ", dtype_name(send.dtype),
                                  " elements, rank ", recv.dst, " expects ", recv.numel, " ",
                                  dtype_name(recv.dtype));
    send.error = msg;
    recv.error = msg;
  } else {
    std::memcpy(recv.data, send.data, send.numel * element_size(send.dtype));
  }
  send.done.store(true, std::memory_order_release);
  recv.done.store(true, std::memory_order_release);
  notify();
}

bool ThreadGroup::cancel(const std::shared_ptr<Transfer>& t) {
  std::lock_guard lock(mu_);
  Mailbox& box = mailboxes_[{t->src, t->dst, t->tag}];
  for (auto* queue : {&box.sends, &box.recvs})
    for (auto it = queue->begin(); it != queue->end(); ++it)
      if (*it == t) {
        queue->erase(it);
        t->withdrawn = true;
        return true;
      }
  return false;  // already matched: the copy is under way and finishes shortly
}

void ThreadGroup::abandon(const std::shared_ptr<Transfer>& t) {
  if (t->done.load(std::memory_order_acquire)) return;
  {
    std::lock_guard lock(mu_);
    if (t->withdrawn) return;  // wait_transfer already took it back
  }
  if (cancel(t)) return;
  while (!t->done.load(std::memory_order_acquire)) std::this_thread::yield();
}

void ThreadGroup::wait_transfer(const std::shared_ptr<Transfer>& t, bool is_send, const std::string& what,
                                Clock::time_point deadline, Timeout timeout) {
  const int peer = is_send ? t->dst : t->src;
  const char* verb = is_send ? "receive" : "send";
  auto ready = [&] { return t->done.load(std::memory_order_acquire); };
  // Withdraws the posted transfer and throws; if the other side matched it meanwhile,
  // the copy is under way: wait the moment it takes and report success instead.
  auto give_up = [&](const std::string& msg) {
    if (cancel(t)) throw Error(msg);
    while (!ready()) std::this_thread::yield();
  };
  auto check = [&] {
    if (auto why = gone_reason(peer); why && !ready())
      give_up(detail::str(what, ": rank ", peer, " did not ", verb, " (", *why, ")"));
  };
  if (!wait_until(ready, check, deadline))
    give_up(detail::str(what, ": rank ", peer, " did not ", verb, " within ", timeout.count(), " ms"));
  if (!t->error.empty()) throw Error(detail::str(what, ": ", t->error));
}

}  // namespace weft::parallel
