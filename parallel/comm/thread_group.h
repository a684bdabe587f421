// ThreadGroup: the memory that the ranks of a threads communicator share (internal).
//
// Ranks are threads of one process, so a collective needs no messages at all: every
// rank publishes an Arrival (what it is calling, with which sizes, and where its buffer
// is), waits at a barrier until all have, and then reads and writes the other ranks'
// buffers directly. This file holds the pieces that make that safe:
//
//   * the barrier: arrived[r] is the last barrier generation rank r reached. Waiting for
//     generation g means waiting until every arrived[q] >= g -- so on a timeout we know
//     exactly which ranks never came. Waiters spin briefly (a collective between busy
//     ranks completes in microseconds), then yield, then sleep on a condition variable.
//   * the arrival slots, two per rank, indexed by the sequence number's parity: a rank
//     that finished collective #s may already publish #s+1 while a slower rank still
//     reads the slots of #s; it cannot get to #s+2 without that slower rank.
//   * "gone" ranks: a rank that aborted or returned from its function. Waiting for a
//     gone rank fails at once ("rank 2 did not arrive (it aborted: ...)").
//   * "broken": the first timeout breaks the group; every later wait, on every rank,
//     fails with that first message, so all ranks report the same cause.
//   * sub-groups (Communicator::split): a group made by a split is a ThreadGroup of its
//     own -- its own barrier, slots and mailboxes, so its traffic never mixes with the
//     parent's -- that remembers which parent rank each of its ranks is. A rank gone
//     from the parent (its function threw or returned) counts as gone here too.
//   * point-to-point mailboxes keyed by (src, dst, tag): a posted send waits for a
//     matching recv or the other way round; whoever posts second copies the data
//     straight from the sender's tensor into the receiver's -- one copy, no staging.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "communicator.h"

namespace weft::parallel {

using Clock = std::chrono::steady_clock;

enum class CollectiveKind : uint8_t { Allreduce, Broadcast, Allgather, ReduceScatter, Barrier, Split };
const char* collective_name(CollectiveKind kind);

class ThreadGroup;

// What one rank says about the collective it enters.
struct Arrival {
  CollectiveKind kind = CollectiveKind::Barrier;
  int64_t seq = 0;
  DType dtype = kFloat32;
  int64_t numel = 0;      // the tensor (allreduce, broadcast) or `in`
  int64_t out_numel = 0;  // `out` of allgather / reduce_scatter
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  void* data = nullptr;  // where the tensor / `in` lives
  void* out = nullptr;   // `out`
  std::string problem;   // this rank's own argument error, "" when fine
  int color = 0, key = 0;  // split's arguments
  // split: the new group, made by its first member and read by the others after the
  // closing barrier.
  std::shared_ptr<ThreadGroup> child;
};

// One posted send or recv.
struct Transfer {
  int src = 0, dst = 0, tag = 0;
  void* data = nullptr;
  int64_t numel = 0;
  DType dtype = kFloat32;
  std::string error;               // set before done when the two sides disagree
  std::atomic<bool> done{false};
  bool withdrawn = false;          // taken back out of its mailbox unmatched (under mu_)
};

class ThreadGroup {
 public:
  explicit ThreadGroup(int size);
  // A sub-group of `parent` made by split: rank q here is rank parent_ranks[q] there.
  ThreadGroup(std::shared_ptr<const ThreadGroup> parent, std::vector<int> parent_ranks);
  int size() const { return size_; }

  Arrival& slot(int rank, int64_t seq) { return slots_[2 * rank + (seq & 1)]; }

  // Rank `rank` reaches barrier generation `gen` and waits for all others. `what` names
  // the operation in errors ("allreduce #3").
  void barrier(int rank, int64_t gen, const std::string& what, Clock::time_point deadline, Timeout timeout);

  // Work sharing for the fused all-reduce. The blocks of every all-reduce are numbered
  // on from the previous ones (every rank knows how many came before: all ranks see the
  // same collectives), so one ever-growing counter serves them all with no reset.
  // claim_block returns the next unclaimed block of [base, base + count) as an index
  // 0..count-1, or -1 when none is left; block_done counts one finished block;
  // wait_blocks waits until `until` blocks of all time are finished.
  int64_t claim_block(int64_t base, int64_t count);
  void block_done();
  void wait_blocks(int64_t until, const std::string& what, Clock::time_point deadline, Timeout timeout);

  void mark_gone(int rank, const std::string& reason);
  void throw_if_broken() const;

  // Point to point. post_* returns at once; wait_transfer blocks until it completed.
  std::shared_ptr<Transfer> post_send(int src, int dst, int tag, void* data, int64_t numel, DType dt);
  std::shared_ptr<Transfer> post_recv(int src, int dst, int tag, void* data, int64_t numel, DType dt);
  // Throws on timeout, a gone peer, or a size mismatch between the two sides.
  void wait_transfer(const std::shared_ptr<Transfer>& t, bool is_send, const std::string& what, Clock::time_point deadline,
                     Timeout timeout);
  // Withdraws a transfer nobody will wait for (its handle was dropped, say while an
  // exception unwound): the peer must never copy from or into a buffer that is gone.
  // If the peer already matched it, waits the moment the copy takes.
  void abandon(const std::shared_ptr<Transfer>& t);

 private:
  struct alignas(64) Counter {  // one cache line each: ranks never share one
    std::atomic<int64_t> value{0};
  };
  struct Mailbox {
    std::deque<std::shared_ptr<Transfer>> sends, recvs;
  };

  // Spins, yields, then sleeps until ready() or the deadline (false on timeout).
  // check() runs between sleeps and may throw (a gone peer, a broken group).
  bool wait_until(const std::function<bool()>& ready, const std::function<void()>& check,
                  Clock::time_point deadline);
  void notify();
  void match(Transfer& send, Transfer& recv);
  bool cancel(const std::shared_ptr<Transfer>& t);
  std::optional<std::string> gone_reason(int rank) const;
  void break_group(const std::string& reason);

  int size_;
  std::vector<Arrival> slots_;
  std::unique_ptr<Counter[]> arrived_;
  std::unique_ptr<std::atomic<bool>[]> gone_;
  std::atomic<bool> broken_{false};
  std::atomic<int> sleepers_{0};
  Counter next_block_, done_blocks_;  // see claim_block

  mutable std::mutex mu_;  // guards the strings below, the mailboxes, and the sleep cv
  std::condition_variable cv_;
  std::vector<std::string> gone_reasons_;
  std::string broken_reason_;
  std::map<std::tuple<int, int, int>, Mailbox> mailboxes_;

  // The group this one was split from (empty unless made by split). Weak: the parent's
  // arrival slot may still hold this group, and the two must not keep each other alive.
  std::weak_ptr<const ThreadGroup> parent_;
  std::vector<int> parent_ranks_;
};

}  // namespace weft::parallel
