// ThreadsCommunicator: N ranks as N threads of one process, over shared memory.
//
// The embedded default backend: no launcher, no network. Every multi-rank feature can be
// run and tested inside one test binary, and on a multi-core host it is real parallelism.
//
//   parallel::run_ranks(4, [&](parallel::Communicator& comm) {
//     Tensor g = ...;                       // this rank's gradient
//     comm.allreduce(g, ReduceOp::Mean);    // now the same on every rank
//   });
//
// HOW A COLLECTIVE WORKS (see thread_group.h for the shared pieces). Each rank
//   1. publishes an Arrival -- collective, sequence number, dtype, sizes, buffer address
//      -- and waits at a barrier for all ranks. Every rank then checks every Arrival;
//      any disagreement makes all ranks throw the same error before any data moves;
//   2. does its share of the data movement straight in the other ranks' buffers.
//      allreduce: the elements are cut into 64 KiB blocks; each rank claims blocks from
//      a shared counter, and for each element of a block reads the n values, reduces
//      them, and writes the result back into all n buffers -- a reduce-scatter and an
//      all-gather fused in one pass, one read and one write of every byte, no
//      temporary buffer. Claiming (rather than "rank r owns slice r") lets a running
//      rank do the work of one the OS has descheduled;
//   3. waits until no rank can still read or write its tensor: for allreduce, until
//      every block is done; for the others, at a second barrier.
// Point to point matches (src, dst, tag) mailboxes and copies sender -> receiver once.
// split() is a collective like the others (an Arrival carrying color and key, then the
// barrier); each new group gets a ThreadGroup of its own, made by its first member.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "communicator.h"

namespace weft::parallel {

class ThreadGroup;
class ProgressThread;
struct Arrival;

class ThreadsCommunicator : public Communicator {
 public:
  ThreadsCommunicator(std::shared_ptr<ThreadGroup> group, int rank);
  ~ThreadsCommunicator() override;

  int rank() const override { return rank_; }
  int trace_rank() const override { return trace_rank_; }
  int size() const override;
  std::string backend() const override { return "threads"; }

  void send(const Tensor& t, int dst, int tag = 0) override;
  void recv(const Tensor& t, int src, int tag = 0) override;
  WorkHandle isend(const Tensor& t, int dst, int tag = 0) override;
  WorkHandle irecv(const Tensor& t, int src, int tag = 0) override;

  void allreduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  void broadcast(const Tensor& t, int root) override;
  void allgather(const Tensor& in, const Tensor& out) override;
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::Sum) override;
  void barrier() override;

  WorkHandle allreduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  WorkHandle broadcast_async(const Tensor& t, int root) override;

  std::shared_ptr<Communicator> split(int color, int key) override;

  void abort(const std::string& reason) override;

 private:
  // Publishes `mine`, waits for every rank, checks they agree (throws if not).
  // Returns every rank's Arrival, indexed by rank.
  std::vector<const Arrival*> enter(Arrival mine);
  void leave(const std::string& what);  // the closing barrier
  std::string what(const char* op) const;  // "allreduce #3" (the op about to run)
  void drain();  // waits for queued async ops: keeps call order
  WorkHandle post(bool is_send, const Tensor& t, int peer, int tag);

  void do_allreduce(const Tensor& t, ReduceOp op);
  void do_broadcast(const Tensor& t, int root);

  std::shared_ptr<ThreadGroup> group_;
  int rank_;
  int trace_rank_;  // the timeline's pid: rank_, or the parent's for a split
  int64_t seq_ = 0;  // collectives entered so far
  int64_t gen_ = 0;  // barrier generations passed so far
  int64_t blocks_before_ = 0;  // all-reduce blocks of all earlier all-reduces (ThreadGroup::claim_block)
  std::unique_ptr<ProgressThread> progress_;
};

// n communicators, one per rank, sharing one group. Hand communicator r to thread r.
std::vector<std::shared_ptr<Communicator>> make_thread_group(int n, Timeout timeout = kDefaultTimeout);

// Runs fn(comm) on n threads, one per rank of a fresh thread group, and joins them.
// fn takes the rank's communicator as a Communicator& or, for what keeps a handle (a
// DistributedDataParallel, a communicator layered over it), as a
// std::shared_ptr<Communicator>. A rank whose fn throws is marked gone (so ranks waiting
// for it fail at once instead of at the timeout), and so is a rank whose fn returns.
// Afterwards the first exception thrown (in time) is rethrown; the others were usually
// its consequences.
void run_ranks_shared(int n, const std::function<void(const std::shared_ptr<Communicator>&)>& fn,
                      Timeout timeout = kDefaultTimeout);

template <class F>
void run_ranks(int n, F&& fn, Timeout timeout = kDefaultTimeout) {
  if constexpr (std::is_invocable_v<F&, Communicator&>)
    run_ranks_shared(n, [&](const std::shared_ptr<Communicator>& c) { fn(*c); }, timeout);
  else
    run_ranks_shared(n, [&](const std::shared_ptr<Communicator>& c) { fn(c); }, timeout);
}

}  // namespace weft::parallel
