// The MPI handles and helpers behind MpiCommunicator (internal: includes mpi.h).
// Compiled only when WEFT_HAVE_MPI.
#pragma once

#define OMPI_SKIP_MPICXX 1  // the C API only (the C++ bindings are deprecated)
#include <mpi.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mpi_communicator.h"
#include "progress_thread.h"
#include "reduce.h"

namespace weft::parallel {
namespace mpi_detail {

using Clock = std::chrono::steady_clock;
// Left: not a collective but a rank's last word, sent in place of its next header.
enum class Kind : int64_t { Allreduce, Broadcast, Allgather, ReduceScatter, Barrier, Left, Split };
inline const char* kind_name(int64_t k) {
  static const char* names[] = {"allreduce", "broadcast", "allgather", "reduce_scatter", "barrier", "left", "split"};
  return k >= 0 && k < 7 ? names[k] : "?";
}

// What one rank says about the collective it enters (sent as raw bytes).
struct Header {
  int64_t seq = 0, kind = 0, dtype = 0, numel = 0, op = 0, root = 0;
  char problem[128] = {};  // this rank's own argument error, "" when fine
};
constexpr int kHeaderTag = 1;

// bfloat16 and float16 travel as MPI_UINT16_T: MPI has no 16-bit float, so it moves
// their bits, and reductions of them go through the user-defined operations below.
inline MPI_Datatype mpi_type(DType dt) {
  switch (dt) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
    case DType::BFloat16:
    case DType::Float16: return MPI_UINT16_T;
    default: throw Error(detail::str("mpi: dtype ", dtype_name(dt), " is not supported"));
  }
}

// MPI's user function for 16-bit sums and maxima: inout = in (op) inout, through reduce.h
// (widened to float32, rounded once per call).
template <DType D, ReduceOp Op>
void half_reduce(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_into(inout, in, *len, D, Op);
}

// The MPI_Op for op on dt; Mean sums, and the caller divides (finish_mean). The 16-bit
// ones are made once, at their first use (MPI is initialised by then), and live as long
// as the process.
inline MPI_Op mpi_op(ReduceOp op, DType dt) {
  if (!is_half(dt)) return op == ReduceOp::Max ? MPI_MAX : MPI_SUM;
  auto make = [](MPI_User_function* f) {
    MPI_Op o = MPI_OP_NULL;
    const int rc = MPI_Op_create(f, /*commute=*/1, &o);
    WEFT_CHECK(rc == MPI_SUCCESS, "mpi: MPI_Op_create for a 16-bit reduction failed (error ", rc, ")");
    return o;
  };
  static const MPI_Op bf16_sum = make(&half_reduce<DType::BFloat16, ReduceOp::Sum>);
  static const MPI_Op bf16_max = make(&half_reduce<DType::BFloat16, ReduceOp::Max>);
  static const MPI_Op fp16_sum = make(&half_reduce<DType::Float16, ReduceOp::Sum>);
  static const MPI_Op fp16_max = make(&half_reduce<DType::Float16, ReduceOp::Max>);
  if (dt == DType::BFloat16) return op == ReduceOp::Max ? bf16_max : bf16_sum;
  return op == ReduceOp::Max ? fp16_max : fp16_sum;
}

inline std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

// Runs blocking MPI calls on a thread of its own so that the caller can stop waiting at
// a deadline: MPI cannot interrupt a blocking call (MPI_Allreduce with a rank that died
// mid-transfer never returns), so this is how the blocking mode keeps communicator.h's
// timeout. A call still running at its deadline is abandoned on that thread (it is
// detached, the communicator broken) and the process must not call MPI_Finalize, which
// would wait for it: mpi_stuck() tells finalize_at_exit so.
class Blocker {
 public:
  Blocker() = default;
  Blocker(const Blocker&) = delete;
  Blocker& operator=(const Blocker&) = delete;
  ~Blocker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) stuck_ ? thread_.detach() : thread_.join();
  }

  // f's result, or nullopt when it has not returned by the deadline.
  std::optional<int> run(std::function<int()> f, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    job_ = std::move(f), has_job_ = true, done_ = false;
    cv_.notify_all();
    if (!cv_.wait_until(lock, deadline, [this] { return done_; })) {
      stuck_ = true;
      mpi_stuck() = true;
      return std::nullopt;
    }
    return result_;
  }

  static std::atomic<bool>& mpi_stuck() {
    static std::atomic<bool> stuck{false};
    return stuck;
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || has_job_; });
      if (stop_ && !has_job_) return;
      auto job = std::move(job_);
      has_job_ = false;
      lock.unlock();
      const int rc = job();
      lock.lock();
      result_ = rc, done_ = true;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<int()> job_;
  bool has_job_ = false, done_ = false, stop_ = false, stuck_ = false;
  int result_ = 0;
  std::thread thread_;
};

}  // namespace mpi_detail
using namespace mpi_detail;

struct MpiCommunicator::Impl {
  MPI_Comm ctl = MPI_COMM_NULL;  // handshakes and collectives
  MPI_Comm p2p = MPI_COMM_NULL;  // the user's send/recv, so their tags never meet ours
  int rank = 0, size = 1;
  int trace_rank = 0;  // the timeline's pid: rank, or the parent's for a split
  bool serialise = false;        // the library lacks MPI_THREAD_MULTIPLE
  bool check_arrivals = true;
  bool polled = false;
  std::mutex mpi_mu;             // held around MPI calls when serialise
  std::string broken;            // set by a timeout: the communicator is unusable after
  int64_t seq = 0;
  ProgressThread progress;
  Blocker blocker;  // the blocking data phases (run)

  // Runs f() holding the MPI lock when calls must be serialised.
  template <class F>
  int call(F&& f) {
    if (!serialise) return f();
    std::lock_guard lock(mpi_mu);
    return f();
  }

  // Polls reqs until all complete or the deadline; returns which did not complete.
  // Spins on MPI_Testsome at first (as MPI_Wait does), then yields the core between
  // tests, so oversubscribed ranks (more ranks than cores) still make progress.
  std::vector<int> poll(std::vector<MPI_Request>& reqs, Clock::time_point deadline) {
    std::vector<int> idx(reqs.size());
    int left = 0;
    for (auto& r : reqs) left += r != MPI_REQUEST_NULL;
    for (long it = 0; left > 0; ++it) {
      int done = 0;
      call([&] { return MPI_Testsome(int(reqs.size()), reqs.data(), &done, idx.data(), MPI_STATUSES_IGNORE); });
      if (done != MPI_UNDEFINED) left -= done;
      if (left == 0) break;
      if (it > 2000) sched_yield();
      if ((it & 63) == 0 && Clock::now() >= deadline) break;
    }
    std::vector<int> pending;
    for (size_t i = 0; i < reqs.size(); ++i)
      if (reqs[i] != MPI_REQUEST_NULL) pending.push_back(int(i));
    return pending;
  }

  void check_usable() const { WEFT_CHECK(broken.empty(), broken); }
  [[noreturn]] void fail(const std::string& msg) {
    broken = msg + " (this MPI communicator is unusable now)";
    throw Error(msg);
  }

  // The handshake: every rank sends `mine` to every other and receives theirs.
  // Throws naming the ranks not heard from, or the disagreement.
  void handshake(Header mine, const std::string& what, Timeout timeout) {
    std::vector<Header> all(size);
    all[rank] = mine;
    std::vector<MPI_Request> recvs, sends;
    std::vector<int> peers;
    for (int q = 0; q < size; ++q) {
      if (q == rank) continue;
      peers.push_back(q);
      recvs.emplace_back();
      sends.emplace_back();
      call([&] { return MPI_Irecv(&all[q], sizeof(Header), MPI_BYTE, q, kHeaderTag, ctl, &recvs.back()); });
      call([&] { return MPI_Isend(&mine, sizeof(Header), MPI_BYTE, q, kHeaderTag, ctl, &sends.back()); });
    }
    const auto deadline = Clock::now() + timeout;
    std::vector<int> missing = poll(recvs, deadline);
    if (!missing.empty()) {
      std::vector<int> ranks;
      for (int i : missing) {
        ranks.push_back(peers[i]);
        call([&] { return MPI_Cancel(&recvs[i]); });
      }
      fail(detail::str(what, ": ", rank_list(ranks), " did not arrive within ", timeout.count(), " ms"));
    }
    for (int q = 0; q < size; ++q)  // before waiting for our sends: that rank receives nothing more
      if (all[q].kind == int64_t(Kind::Left)) fail(detail::str(what, ": rank ", q, " ", all[q].problem));
    poll(sends, Clock::now() + timeout);  // they complete as soon as the peers received
    for (int q = 0; q < size; ++q)
      if (all[q].problem[0]) throw Error(detail::str(what, ": rank ", q, ": ", all[q].problem));
    for (int q = 0; q < size; ++q)
      if (all[q].kind != all[0].kind || all[q].seq != all[0].seq) {
        std::string s = detail::str("collective #", mine.seq, ": ranks called different collectives:");
        for (int p = 0; p < size; ++p) s += detail::str(p ? ", " : " ", "rank ", p, " ", kind_name(all[p].kind), " #", all[p].seq);
        throw Error(s);
      }
    for (int q = 0; q < size; ++q)
      if (all[q].numel != all[0].numel || all[q].dtype != all[0].dtype) {
        std::string s = what + ": tensors differ across ranks: ";
        for (int p = 0; p < size; ++p)
          s += detail::str(p ? ", " : "", "rank ", p, " has ", all[p].numel, " ", dtype_name(DType(all[p].dtype)));
        throw Error(s);
      }
    for (int q = 0; q < size; ++q)
      if (all[q].op != all[0].op || all[q].root != all[0].root)
        throw Error(detail::str(what, ": ranks disagree on the reduction or root: rank 0 ",
                                reduce_op_name(ReduceOp(all[0].op)), " root ", all[0].root, ", rank ", q, " ",
                                reduce_op_name(ReduceOp(all[q].op)), " root ", all[q].root));
  }

  // This rank's last word: in place of the header of the collective it would call next,
  // every other rank gets "left the job: <reason>", and their handshake fails at once
  // with it instead of waiting out the timeout. Waits up to `wait` for them to take it
  // (a rank busy computing takes it when it next enters a collective).
  void announce_leaving(const std::string& reason, Timeout wait) {
    Header h;
    h.seq = seq, h.kind = int64_t(Kind::Left);
    std::strncpy(h.problem, ("left the job: " + reason).c_str(), sizeof(h.problem) - 1);
    std::vector<MPI_Request> sends;
    for (int q = 0; q < size; ++q) {
      if (q == rank) continue;
      sends.emplace_back();
      call([&] { return MPI_Isend(&h, sizeof(Header), MPI_BYTE, q, kHeaderTag, ctl, &sends.back()); });
    }
    poll(sends, Clock::now() + wait);
    broken = "this rank left the job: " + reason;
  }

  // Runs one collective's data phase: blocking (on the blocker thread, waited for with
  // the timeout), or started non-blocking and polled. Either way a rank that stalls or
  // dies mid-transfer is reported within the timeout.
  template <class Blocking, class Start>
  void run(const std::string& what, Timeout timeout, Blocking blocking, Start start) {
    const std::string stalled =
        detail::str(what, ": not finished within ", timeout.count(), " ms (a rank stalled or died mid-transfer)");
    if (!polled) {
      const std::optional<int> rc = blocker.run(blocking, Clock::now() + timeout);
      if (!rc) fail(stalled);
      WEFT_CHECK(*rc == MPI_SUCCESS, what, ": MPI error ", *rc);
      return;
    }
    std::vector<MPI_Request> req(1);
    call([&] { return start(&req[0]); });
    if (!poll(req, Clock::now() + timeout).empty()) fail(stalled);
  }
};

}  // namespace weft::parallel
