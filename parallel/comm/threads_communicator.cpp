#include "threads_communicator.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "progress_thread.h"
#include "reduce.h"
#include "thread_group.h"
#include "../trace.h"

namespace weft::parallel {
namespace {

// The first `n` ranks' sizes, printed "rank 0: 10 float32, rank 1: 12 float32".
std::string sizes_of(const std::vector<const Arrival*>& all) {
  std::string s;
  for (size_t q = 0; q < all.size(); ++q)
    s += detail::str(q ? ", " : "", "rank ", q, " has ", all[q]->numel, " ", dtype_name(all[q]->dtype));
  return s;
}

// Why the ranks' arrivals at one sequence number disagree, or "". Every rank computes
// this from the same slots, so every rank throws the same message.
std::string disagreement(const std::vector<const Arrival*>& all) {
  const Arrival& a0 = *all[0];
  for (size_t q = 0; q < all.size(); ++q)
    if (!all[q]->problem.empty()) return detail::str("rank ", q, ": ", all[q]->problem);
  for (const Arrival* a : all)
    if (a->kind != a0.kind) {
      std::string s = "ranks called different collectives:";
      for (size_t q = 0; q < all.size(); ++q) s += detail::str(q ? ", " : " ", "rank ", q, " ", collective_name(all[q]->kind));
      return s;
    }
  for (const Arrival* a : all)
    if (a->numel != a0.numel || a->dtype != a0.dtype) return "tensors differ across ranks: " + sizes_of(all);
  for (const Arrival* a : all)
    if (a->op != a0.op || a->root != a0.root) {
      std::string s = "ranks disagree on the reduction or root:";
      for (size_t q = 0; q < all.size(); ++q)
        s += detail::str(q ? ", " : " ", "rank ", q, " ", reduce_op_name(all[q]->op), " root ", all[q]->root);
      return s;
    }
  return "";
}

// The all-reduce's unit of work: 64 KiB, a whole number of 64-byte cache lines (two
// ranks never write into one line: false sharing halves bandwidth) and small enough
// that a 1 MiB tensor still makes 16 blocks to share.
constexpr int64_t kAllreduceBlockBytes = 64 * 1024;

Arrival arrival_for(CollectiveKind kind, const Tensor& t) {
  Arrival a;
  a.kind = kind;
  a.problem = tensor_problem(t, kCPU);
  if (a.problem.empty()) {
    a.dtype = t.dtype();
    a.numel = t.numel();
    a.data = t.raw_data();
  }
  return a;
}

std::string trace_args(const Tensor& t, int64_t seq) {
  if (!trace::enabled() || !t.defined()) return {};
  return detail::str("seq ", seq, ", ", t.numel(), " ", dtype_name(t.dtype()));
}

// The handle of a posted send or recv. Keeps the tensor alive until it completed.
class TransferWork : public Work {
 public:
  TransferWork(std::shared_ptr<ThreadGroup> group, std::shared_ptr<Transfer> t, bool is_send,
               std::string what, Timeout timeout, Tensor keep, int rank)
      : group_(std::move(group)), t_(std::move(t)), is_send_(is_send), what_(std::move(what)),
        timeout_(timeout), deadline_(Clock::now() + timeout), keep_(std::move(keep)), rank_(rank) {}
  // Dropped unfinished (an exception between post and wait): withdraw it before keep_
  // releases the buffer, or the peer would later match it and touch freed memory.
  ~TransferWork() override { group_->abandon(t_); }
  bool is_completed() override { return t_->done.load(); }
  void wait() override {
    std::lock_guard lock(mu_);
    if (!waited_) {
      trace::Scope s(is_send_ ? "send" : "recv", "comm", rank_, trace::enabled() ? what_ : "");
      waited_ = true;
      try {
        group_->wait_transfer(t_, is_send_, what_, deadline_, timeout_);
      } catch (...) {
        error_ = std::current_exception();
      }
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::shared_ptr<ThreadGroup> group_;
  std::shared_ptr<Transfer> t_;
  bool is_send_;
  std::string what_;
  Timeout timeout_;
  Clock::time_point deadline_;
  Tensor keep_;
  int rank_;
  std::mutex mu_;
  bool waited_ = false;
  std::exception_ptr error_;
};

}  // namespace

ThreadsCommunicator::ThreadsCommunicator(std::shared_ptr<ThreadGroup> group, int rank)
    : group_(std::move(group)), rank_(rank), trace_rank_(rank), progress_(std::make_unique<ProgressThread>()) {
  WEFT_CHECK(rank >= 0 && rank < group_->size(), "ThreadsCommunicator: rank ", rank,
             " is outside the group of ", group_->size());
}

ThreadsCommunicator::~ThreadsCommunicator() = default;

int ThreadsCommunicator::size() const { return group_->size(); }

void ThreadsCommunicator::abort(const std::string& reason) { group_->mark_gone(rank_, "it aborted: " + reason); }

void ThreadsCommunicator::drain() { progress_->drain(); }

std::string ThreadsCommunicator::what(const char* op) const { return detail::str(op, " #", seq_); }

std::vector<const Arrival*> ThreadsCommunicator::enter(Arrival mine) {
  group_->throw_if_broken();
  const int64_t seq = seq_++;
  const std::string w = detail::str(collective_name(mine.kind), " #", seq);
  mine.seq = seq;
  group_->slot(rank_, seq) = std::move(mine);
  group_->barrier(rank_, ++gen_, w, Clock::now() + timeout(), timeout());
  std::vector<const Arrival*> all(size());
  for (int q = 0; q < size(); ++q) all[q] = &group_->slot(q, seq);
  if (std::string why = disagreement(all); !why.empty()) {
    bool same_kind = true;
    for (const Arrival* a : all) same_kind = same_kind && a->kind == all[0]->kind;
    throw Error(same_kind ? w + ": " + why : detail::str("collective #", seq, ": ", why));
  }
  return all;
}

void ThreadsCommunicator::leave(const std::string& what) {
  group_->barrier(rank_, ++gen_, what, Clock::now() + timeout(), timeout());
}

// ---- collectives ----------------------------------------------------------------------

void ThreadsCommunicator::allreduce(const Tensor& t, ReduceOp op) {
  drain();
  do_allreduce(t, op);
}

void ThreadsCommunicator::do_allreduce(const Tensor& t, ReduceOp op) {
  trace::Scope scope("allreduce", "comm", trace_rank_, trace_args(t, seq_));
  Arrival a = arrival_for(CollectiveKind::Allreduce, t);
  a.op = op;
  const std::string w = what("allreduce");
  auto all = enter(std::move(a));
  const int n = size();
  if (n == 1) return;
  std::vector<void*> bufs(n);
  for (int q = 0; q < n; ++q) bufs[q] = all[q]->data;
  // The elements are cut into blocks that the ranks claim one at a time: a rank that
  // is running does the blocks of one that is not (on a busy machine a thread is often
  // descheduled). Element i is reduced as bufs[0][i] + bufs[1][i] + ... whichever rank
  // does it, so the result is bit-identical from run to run.
  const int64_t numel = all[0]->numel;
  const int64_t block = kAllreduceBlockBytes / element_size(all[0]->dtype);
  const int64_t count = (numel + block - 1) / block;
  const int64_t base = blocks_before_;
  blocks_before_ += count;
  for (int64_t b; (b = group_->claim_block(base, count)) >= 0;) {
    reduce_and_scatter_back(bufs, b * block, std::min(numel, (b + 1) * block), all[0]->dtype, op);
    group_->block_done();
  }
  // No closing barrier: once every block is done every buffer holds the result, and no
  // rank touches another's buffer again (a rank still here only finds no block left).
  group_->wait_blocks(base + count, w, Clock::now() + timeout(), timeout());
}

void ThreadsCommunicator::broadcast(const Tensor& t, int root) {
  drain();
  do_broadcast(t, root);
}

void ThreadsCommunicator::do_broadcast(const Tensor& t, int root) {
  trace::Scope scope("broadcast", "comm", trace_rank_, trace_args(t, seq_));
  Arrival a = arrival_for(CollectiveKind::Broadcast, t);
  a.root = root;
  if (a.problem.empty() && (root < 0 || root >= size()))
    a.problem = detail::str("root ", root, " is outside the group of ", size());
  const std::string w = what("broadcast");
  auto all = enter(std::move(a));
  if (rank_ != root) std::memcpy(all[rank_]->data, all[root]->data, all[0]->numel * element_size(all[0]->dtype));
  leave(w);
}

void ThreadsCommunicator::allgather(const Tensor& in, const Tensor& out) {
  drain();
  trace::Scope scope("allgather", "comm", trace_rank_, trace_args(in, seq_));
  Arrival a = arrival_for(CollectiveKind::Allgather, in);
  if (a.problem.empty()) {
    if (std::string p = tensor_problem(out, kCPU); !p.empty()) a.problem = "out: " + p;
    else if (out.numel() != size() * in.numel() || out.dtype() != in.dtype())
      a.problem = detail::str("out has ", out.numel(), " ", dtype_name(out.dtype()), " elements, expected ", size(),
                              " x ", in.numel(), " ", dtype_name(in.dtype()));
    else a.out = out.raw_data();
  }
  const std::string w = what("allgather");
  auto all = enter(std::move(a));
  const int64_t bytes = all[0]->numel * element_size(all[0]->dtype);
  for (int q = 0; q < size(); ++q)
    std::memcpy(static_cast<char*>(all[rank_]->out) + q * bytes, all[q]->data, bytes);
  leave(w);
}

void ThreadsCommunicator::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  drain();
  trace::Scope scope("reduce_scatter", "comm", trace_rank_, trace_args(in, seq_));
  Arrival a = arrival_for(CollectiveKind::ReduceScatter, in);
  a.op = op;
  if (a.problem.empty()) {
    if (std::string p = tensor_problem(out, kCPU); !p.empty()) a.problem = "out: " + p;
    else if (in.numel() != size() * out.numel() || out.dtype() != in.dtype())
      a.problem = detail::str("in has ", in.numel(), " ", dtype_name(in.dtype()), " elements, expected ", size(),
                              " x ", out.numel(), " ", dtype_name(out.dtype()), " (out)");
    else a.out = out.raw_data();
  }
  const std::string w = what("reduce_scatter");
  auto all = enter(std::move(a));
  const int64_t m = all[0]->numel / size();
  const int64_t es = element_size(all[0]->dtype);
  std::vector<const void*> srcs(size());
  for (int q = 0; q < size(); ++q) srcs[q] = static_cast<const char*>(all[q]->data) + rank_ * m * es;
  reduce_many(all[rank_]->out, srcs, m, all[0]->dtype, op);
  leave(w);
}

void ThreadsCommunicator::barrier() {
  drain();
  trace::Scope scope("barrier", "comm", trace_rank_);
  enter(Arrival{});  // nothing is read afterwards: no closing barrier needed
}

WorkHandle ThreadsCommunicator::allreduce_async(const Tensor& t, ReduceOp op) {
  return progress_->submit([this, t, op] { do_allreduce(t, op); });
}

WorkHandle ThreadsCommunicator::broadcast_async(const Tensor& t, int root) {
  return progress_->submit([this, t, root] { do_broadcast(t, root); });
}

// ---- split ----------------------------------------------------------------------------

namespace {
// The ranks (numbered here) that passed `color`, in their new order: by key, then by
// rank. Every member computes the same list from the same arrivals.
std::vector<int> members_of(const std::vector<const Arrival*>& all, int color) {
  std::vector<std::pair<int, int>> by_key;  // (key, rank)
  for (int q = 0; q < int(all.size()); ++q)
    if (all[q]->color == color) by_key.emplace_back(all[q]->key, q);
  std::sort(by_key.begin(), by_key.end());
  std::vector<int> members;
  for (const auto& kr : by_key) members.push_back(kr.second);
  return members;
}
}  // namespace

std::shared_ptr<Communicator> ThreadsCommunicator::split(int color, int key) {
  drain();  // async collectives queued before come first, as in every collective
  trace::Scope scope("split", "comm", trace_rank_);
  Arrival a;
  a.kind = CollectiveKind::Split;
  a.color = color;
  a.key = key;
  const int64_t seq = seq_;
  const std::string w = what("split");
  auto all = enter(std::move(a));  // a rank that never calls split is named here
  std::vector<int> members;
  if (color >= 0) members = members_of(all, color);
  // The new group's first member makes its shared memory and leaves it in its own slot;
  // the others take it from there once the closing barrier shows it is written.
  if (color >= 0 && members[0] == rank_) group_->slot(rank_, seq).child = std::make_shared<ThreadGroup>(group_, members);
  leave(w);
  if (color < 0) return nullptr;
  std::shared_ptr<ThreadGroup> child = group_->slot(members[0], seq).child;
  const int new_rank = int(std::find(members.begin(), members.end(), rank_) - members.begin());
  auto comm = std::make_shared<ThreadsCommunicator>(std::move(child), new_rank);
  comm->set_timeout(timeout());
  comm->trace_rank_ = trace_rank_;
  return comm;
}

// ---- point to point -------------------------------------------------------------------

WorkHandle ThreadsCommunicator::post(bool is_send, const Tensor& t, int peer, int tag) {
  const char* op = is_send ? "send" : "recv";
  std::string what = detail::str(op, is_send ? " to rank " : " from rank ", peer, " (tag ", tag, ")");
  std::string problem = tensor_problem(t, kCPU);
  WEFT_CHECK(problem.empty(), what, ": ", problem);
  WEFT_CHECK(peer >= 0 && peer < size(), what, ": rank ", peer, " is outside the group of ", size());
  group_->throw_if_broken();
  auto tr = is_send ? group_->post_send(rank_, peer, tag, t.raw_data(), t.numel(), t.dtype())
                    : group_->post_recv(peer, rank_, tag, t.raw_data(), t.numel(), t.dtype());
  return std::make_shared<TransferWork>(group_, std::move(tr), is_send, std::move(what), timeout(), t, trace_rank_);
}

WorkHandle ThreadsCommunicator::isend(const Tensor& t, int dst, int tag) { return post(true, t, dst, tag); }
WorkHandle ThreadsCommunicator::irecv(const Tensor& t, int src, int tag) { return post(false, t, src, tag); }
void ThreadsCommunicator::send(const Tensor& t, int dst, int tag) { isend(t, dst, tag)->wait(); }
void ThreadsCommunicator::recv(const Tensor& t, int src, int tag) { irecv(t, src, tag)->wait(); }

// ---- groups ---------------------------------------------------------------------------

namespace {
std::vector<std::shared_ptr<Communicator>> make_comms(const std::shared_ptr<ThreadGroup>& group, Timeout timeout) {
  std::vector<std::shared_ptr<Communicator>> comms;
  for (int r = 0; r < group->size(); ++r) {
    comms.push_back(std::make_shared<ThreadsCommunicator>(group, r));
    comms.back()->set_timeout(timeout);
  }
  return comms;
}
}  // namespace

std::vector<std::shared_ptr<Communicator>> make_thread_group(int n, Timeout timeout) {
  WEFT_CHECK(n >= 1, "make_thread_group: need at least one rank, got ", n);
  return make_comms(std::make_shared<ThreadGroup>(n), timeout);
}

void run_ranks_shared(int n, const std::function<void(const std::shared_ptr<Communicator>&)>& fn, Timeout timeout) {
  WEFT_CHECK(n >= 1, "run_ranks: need at least one rank, got ", n);
  auto group = std::make_shared<ThreadGroup>(n);
  auto comms = make_comms(group, timeout);
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(comms[r]);
        group->mark_gone(r, "its function returned");
      } catch (const std::exception& e) {
        {
          std::lock_guard lock(mu);
          if (!first) first = std::current_exception();
        }
        group->mark_gone(r, std::string("its function threw: ") + e.what());
      } catch (...) {
        {
          std::lock_guard lock(mu);
          if (!first) first = std::current_exception();
        }
        group->mark_gone(r, "its function threw");
      }
    });
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace weft::parallel
