#include "mpi_communicator.h"

#include "weft_config.h"

#if WEFT_HAVE_MPI

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "mpi_impl.h"
#include "reduce.h"
#include "../trace.h"

namespace weft::parallel {
namespace {
void finalize_at_exit() {
  // A collective abandoned at its timeout is still inside MPI on the blocker thread, and
  // MPI_Finalize would wait for it forever: exit without it (mpirun then reports that
  // this process ended without finalising, which is true).
  if (Blocker::mpi_stuck()) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// The handles of a communicator over the ranks of `base`: two duplicates of it, one for
// handshakes and collectives, one for the user's send/recv (so their tags never meet
// ours), and both kept apart from whatever else uses `base`.
std::unique_ptr<MpiCommunicator::Impl> impl_over(MPI_Comm base, bool serialise) {
  auto impl = std::make_unique<MpiCommunicator::Impl>();
  impl->serialise = serialise;
  impl->polled = serialise;  // a blocking call would hold the lock for its whole run
  MPI_Comm_dup(base, &impl->ctl);
  MPI_Comm_dup(base, &impl->p2p);
  MPI_Comm_set_errhandler(impl->ctl, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(impl->p2p, MPI_ERRORS_RETURN);
  MPI_Comm_rank(impl->ctl, &impl->rank);
  impl->trace_rank = impl->rank;
  MPI_Comm_size(impl->ctl, &impl->size);
  return impl;
}
}  // namespace

// ---- construction -----------------------------------------------------------------------

bool built_with_mpi() { return true; }

std::shared_ptr<MpiCommunicator> MpiCommunicator::world() {
  static std::mutex mu;
  static std::weak_ptr<MpiCommunicator> existing;
  std::lock_guard lock(mu);
  if (auto w = existing.lock()) return w;
  int initialised = 0, provided = MPI_THREAD_SINGLE;
  MPI_Initialized(&initialised);
  if (!initialised) {
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    std::atexit(finalize_at_exit);
  } else {
    MPI_Query_thread(&provided);
  }
  std::shared_ptr<MpiCommunicator> comm(new MpiCommunicator(impl_over(MPI_COMM_WORLD, provided < MPI_THREAD_MULTIPLE)));
  existing = comm;
  return comm;
}

MpiCommunicator::MpiCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MpiCommunicator::~MpiCommunicator() {
  impl_->progress.drain();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && impl_->broken.empty()) {  // a broken comm may have requests in flight
    MPI_Comm_free(&impl_->ctl);
    MPI_Comm_free(&impl_->p2p);
  }
}

int MpiCommunicator::rank() const { return impl_->rank; }
int MpiCommunicator::trace_rank() const { return impl_->trace_rank; }
int MpiCommunicator::size() const { return impl_->size; }
void MpiCommunicator::set_check_arrivals(bool on) { impl_->check_arrivals = on; }
void MpiCommunicator::set_polled_collectives(bool on) { impl_->polled = on || impl_->serialise; }

void MpiCommunicator::leave(const std::string& reason) {
  if (!impl_->broken.empty()) return;  // the group already failed (perhaps a peer left first)
  impl_->announce_leaving(reason, std::min(timeout(), Timeout(10'000)));
}

void MpiCommunicator::abort(const std::string& reason) {
  std::fprintf(stderr, "weft: rank %d aborts the MPI job: %s\n", impl_->rank, reason.c_str());
  if (impl_->broken.empty()) {  // the failure is this rank's own: tell the others first
    leave(reason);
    // They now fail with this rank named; give them a moment to say so before the job
    // ends (MPI_Abort also stops any rank that is not in a collective to hear it).
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  MPI_Abort(MPI_COMM_WORLD, 1);
}


// ---- collectives ------------------------------------------------------------------------
namespace {

Header header_for(Kind kind, const Tensor& t) {
  Header h;
  h.kind = int64_t(kind);
  std::string problem = tensor_problem(t, kCPU);
  if (problem.empty() && t.numel() > INT_MAX) problem = detail::str(t.numel(), " elements is more than MPI's int count");
  if (problem.empty()) {
    h.dtype = int64_t(t.dtype());
    h.numel = t.numel();
  }
  std::strncpy(h.problem, problem.c_str(), sizeof(h.problem) - 1);
  return h;
}

void set_problem(Header& h, const std::string& p) {
  if (!h.problem[0]) std::strncpy(h.problem, p.c_str(), sizeof(h.problem) - 1);
}

// Numbers the collective and runs the handshake; returns its name for errors.
std::string begin(MpiCommunicator::Impl& m, Header h, Timeout timeout) {
  m.check_usable();
  h.seq = m.seq++;
  std::string what = detail::str(kind_name(h.kind), " #", h.seq);
  if (m.check_arrivals) m.handshake(h, what, timeout);
  else if (h.problem[0]) throw Error(what + ": " + h.problem);  // only this rank knows
  return what;
}

std::string trace_args(const Tensor& t, int64_t seq) {
  if (!trace::enabled() || !t.defined()) return {};
  return detail::str("seq ", seq, ", ", t.numel(), " ", dtype_name(t.dtype()));
}

void allreduce_on(MpiCommunicator::Impl& m, Timeout timeout, const Tensor& t, ReduceOp op) {
  trace::Scope scope("allreduce", "comm", m.trace_rank, trace_args(t, m.seq));
  Header h = header_for(Kind::Allreduce, t);
  h.op = int64_t(op);
  const std::string what = begin(m, h, timeout);
  void* data = t.raw_data();
  const int count = int(t.numel());
  MPI_Datatype type = mpi_type(t.dtype());
  m.run(what, timeout, [&] { return MPI_Allreduce(MPI_IN_PLACE, data, count, type, mpi_op(op, t.dtype()), m.ctl); },
        [&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, data, count, type, mpi_op(op, t.dtype()), m.ctl, r); });
  finish_mean(data, count, t.dtype(), op, m.size);
}

void broadcast_on(MpiCommunicator::Impl& m, Timeout timeout, const Tensor& t, int root) {
  trace::Scope scope("broadcast", "comm", m.trace_rank, trace_args(t, m.seq));
  Header h = header_for(Kind::Broadcast, t);
  h.root = root;
  if (root < 0 || root >= m.size) set_problem(h, detail::str("root ", root, " is outside the group of ", m.size));
  const std::string what = begin(m, h, timeout);
  void* data = t.raw_data();
  const int count = int(t.numel());
  MPI_Datatype type = mpi_type(t.dtype());
  m.run(what, timeout, [&] { return MPI_Bcast(data, count, type, root, m.ctl); },
        [&](MPI_Request* r) { return MPI_Ibcast(data, count, type, root, m.ctl, r); });
}

}  // namespace

void MpiCommunicator::allreduce(const Tensor& t, ReduceOp op) {
  impl_->progress.drain();
  allreduce_on(*impl_, timeout(), t, op);
}

void MpiCommunicator::broadcast(const Tensor& t, int root) {
  impl_->progress.drain();
  broadcast_on(*impl_, timeout(), t, root);
}

WorkHandle MpiCommunicator::allreduce_async(const Tensor& t, ReduceOp op) {
  return impl_->progress.submit([m = impl_.get(), timeout = timeout(), t, op] { allreduce_on(*m, timeout, t, op); });
}

WorkHandle MpiCommunicator::broadcast_async(const Tensor& t, int root) {
  return impl_->progress.submit([m = impl_.get(), timeout = timeout(), t, root] { broadcast_on(*m, timeout, t, root); });
}

void MpiCommunicator::allgather(const Tensor& in, const Tensor& out) {
  impl_->progress.drain();
  Impl& m = *impl_;
  trace::Scope scope("allgather", "comm", m.trace_rank, trace_args(in, m.seq));
  Header h = header_for(Kind::Allgather, in);
  if (std::string p = tensor_problem(out, kCPU); !p.empty()) set_problem(h, "out: " + p);
  else if (in.defined() && (out.numel() != m.size * in.numel() || out.dtype() != in.dtype()))
    set_problem(h, detail::str("out has ", out.numel(), " ", dtype_name(out.dtype()), " elements, expected ", m.size,
                               " x ", in.numel(), " ", dtype_name(in.dtype())));
  const std::string what = begin(m, h, timeout());
  const int count = int(in.numel());
  MPI_Datatype type = mpi_type(in.dtype());
  m.run(what, timeout(), [&] { return MPI_Allgather(in.raw_data(), count, type, out.raw_data(), count, type, m.ctl); },
        [&](MPI_Request* r) {
          return MPI_Iallgather(in.raw_data(), count, type, out.raw_data(), count, type, m.ctl, r);
        });
}

void MpiCommunicator::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  impl_->progress.drain();
  Impl& m = *impl_;
  trace::Scope scope("reduce_scatter", "comm", m.trace_rank, trace_args(in, m.seq));
  Header h = header_for(Kind::ReduceScatter, in);
  h.op = int64_t(op);
  if (std::string p = tensor_problem(out, kCPU); !p.empty()) set_problem(h, "out: " + p);
  else if (in.defined() && (in.numel() != m.size * out.numel() || out.dtype() != in.dtype()))
    set_problem(h, detail::str("in has ", in.numel(), " ", dtype_name(in.dtype()), " elements, expected ", m.size,
                               " x ", out.numel(), " ", dtype_name(out.dtype()), " (out)"));
  const std::string what = begin(m, h, timeout());
  const int count = int(out.numel());
  MPI_Datatype type = mpi_type(in.dtype());
  m.run(what, timeout(),
        [&] { return MPI_Reduce_scatter_block(in.raw_data(), out.raw_data(), count, type, mpi_op(op, in.dtype()), m.ctl); },
        [&](MPI_Request* r) {
          return MPI_Ireduce_scatter_block(in.raw_data(), out.raw_data(), count, type, mpi_op(op, in.dtype()), m.ctl, r);
        });
  finish_mean(out.raw_data(), count, out.dtype(), op, m.size);
}

void MpiCommunicator::barrier() {
  impl_->progress.drain();
  Impl& m = *impl_;
  trace::Scope scope("barrier", "comm", m.trace_rank);
  Header h;
  h.kind = int64_t(Kind::Barrier);
  const std::string what = begin(m, h, timeout());
  if (m.check_arrivals) return;  // the handshake already heard from every rank
  m.run(what, timeout(), [&] { return MPI_Barrier(m.ctl); }, [&](MPI_Request* r) { return MPI_Ibarrier(m.ctl, r); });
}

// ---- split --------------------------------------------------------------------------------

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  impl_->progress.drain();
  Impl& m = *impl_;
  trace::Scope scope("split", "comm", m.trace_rank);
  Header h;
  h.kind = int64_t(Kind::Split);
  // The handshake names a rank that never calls split. Once it has heard from everyone,
  // MPI_Comm_split (which has no timeout of its own) cannot wait for a missing rank.
  // (With set_check_arrivals(false) it would, like any MPI call.)
  const std::string what = begin(m, h, timeout());
  MPI_Comm sub = MPI_COMM_NULL;
  const int rc = m.call([&] { return MPI_Comm_split(m.ctl, color < 0 ? MPI_UNDEFINED : color, key, &sub); });
  WEFT_CHECK(rc == MPI_SUCCESS, what, ": MPI_Comm_split: MPI error ", rc);
  if (sub == MPI_COMM_NULL) return nullptr;  // a negative color: in no group
  std::unique_ptr<Impl> impl = impl_over(sub, m.serialise);
  MPI_Comm_free(&sub);  // the new communicator keeps only its own duplicates
  impl->polled = m.polled;
  impl->check_arrivals = m.check_arrivals;
  impl->trace_rank = m.trace_rank;
  std::shared_ptr<MpiCommunicator> comm(new MpiCommunicator(std::move(impl)));
  comm->set_timeout(timeout());
  return comm;
}

// ---- point to point -----------------------------------------------------------------------
namespace {

// A posted MPI_Isend / MPI_Irecv, polled against its deadline by wait().
class MpiTransfer : public Work {
 public:
  MpiTransfer(MpiCommunicator::Impl& m, bool is_send, std::string what, Timeout timeout, Tensor t, int peer)
      : m_(m), is_send_(is_send), what_(std::move(what)), timeout_(timeout),
        deadline_(std::chrono::steady_clock::now() + timeout), t_(std::move(t)), peer_(peer) {}

  MPI_Request* request() { return &req_; }
  bool is_completed() override {
    std::lock_guard lock(mu_);
    return test();
  }
  void wait() override {
    std::lock_guard lock(mu_);
    trace::Scope s(is_send_ ? "send" : "recv", "comm", m_.trace_rank, trace::enabled() ? what_ : "");
    for (long it = 0; !test(); ++it) {
      if (it > 2000) sched_yield();
      if ((it & 63) == 0 && std::chrono::steady_clock::now() >= deadline_) {
        m_.call([&] { return MPI_Cancel(&req_); });
        m_.call([&] { return MPI_Request_free(&req_); });
        error_ = detail::str(what_, ": rank ", peer_, " did not ", is_send_ ? "receive" : "send", " within ",
                             timeout_.count(), " ms");
        done_ = true;
      }
    }
    if (!error_.empty()) throw Error(error_);
  }

 private:
  // One MPI_Test; on completion of a recv, checks the sender sent what we expected.
  bool test() {
    if (done_) return true;
    int flag = 0;
    MPI_Status st;
    int rc = m_.call([&] { return MPI_Test(&req_, &flag, &st); });
    if (!flag && rc == MPI_SUCCESS) return false;
    done_ = true;
    const char* dt = dtype_name(t_.dtype());
    if (rc != MPI_SUCCESS) {
      int cls = 0;
      MPI_Error_class(rc, &cls);
      error_ = cls == MPI_ERR_TRUNCATE
                   ? detail::str(what_, ": rank ", peer_, " sent more than the ", t_.numel(), " ", dt, " elements expected")
                   : detail::str(what_, ": MPI error ", rc);
    } else if (!is_send_) {
      int count = 0;
      MPI_Get_count(&st, mpi_type(t_.dtype()), &count);
      if (count != t_.numel())
        error_ = detail::str(what_, ": rank ", peer_, " sent ", count, " ", dt, " elements, rank ", m_.rank,
                             " expects ", t_.numel());
    }
    return true;
  }

  MpiCommunicator::Impl& m_;
  bool is_send_;
  std::string what_;
  Timeout timeout_;
  std::chrono::steady_clock::time_point deadline_;
  Tensor t_;  // keeps the buffer alive until the transfer is done
  int peer_;
  MPI_Request req_ = MPI_REQUEST_NULL;
  std::mutex mu_;
  bool done_ = false;
  std::string error_;
};

}  // namespace

WorkHandle MpiCommunicator::isend(const Tensor& t, int dst, int tag) {
  Impl& m = *impl_;
  std::string what = detail::str("send to rank ", dst, " (tag ", tag, ")");
  std::string problem = tensor_problem(t, kCPU);
  WEFT_CHECK(problem.empty(), what, ": ", problem);
  WEFT_CHECK(dst >= 0 && dst < m.size, what, ": rank ", dst, " is outside the group of ", m.size);
  auto work = std::make_shared<MpiTransfer>(m, true, std::move(what), timeout(), t, dst);
  m.call([&] { return MPI_Isend(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), dst, tag, m.p2p, work->request()); });
  return work;
}

WorkHandle MpiCommunicator::irecv(const Tensor& t, int src, int tag) {
  Impl& m = *impl_;
  std::string what = detail::str("recv from rank ", src, " (tag ", tag, ")");
  std::string problem = tensor_problem(t, kCPU);
  WEFT_CHECK(problem.empty(), what, ": ", problem);
  WEFT_CHECK(src >= 0 && src < m.size, what, ": rank ", src, " is outside the group of ", m.size);
  auto work = std::make_shared<MpiTransfer>(m, false, std::move(what), timeout(), t, src);
  m.call([&] { return MPI_Irecv(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), src, tag, m.p2p, work->request()); });
  return work;
}

void MpiCommunicator::send(const Tensor& t, int dst, int tag) { isend(t, dst, tag)->wait(); }
void MpiCommunicator::recv(const Tensor& t, int src, int tag) { irecv(t, src, tag)->wait(); }

}  // namespace weft::parallel

#else  // built without MPI: the class exists (programs using it still link), world() says why it cannot be had

namespace weft::parallel {
namespace {
[[noreturn]] void no_mpi() {
  throw Error("MpiCommunicator: weft was built without MPI (install Open MPI -- apt-get install "
              "libopenmpi-dev openmpi-bin -- and reconfigure with -Dmpi=enabled)");
}
}  // namespace
struct MpiCommunicator::Impl {};
bool built_with_mpi() { return false; }
std::shared_ptr<MpiCommunicator> MpiCommunicator::world() { no_mpi(); }
MpiCommunicator::MpiCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MpiCommunicator::~MpiCommunicator() = default;
int MpiCommunicator::rank() const { no_mpi(); }
int MpiCommunicator::trace_rank() const { no_mpi(); }
int MpiCommunicator::size() const { no_mpi(); }
void MpiCommunicator::send(const Tensor&, int, int) { no_mpi(); }
void MpiCommunicator::recv(const Tensor&, int, int) { no_mpi(); }
WorkHandle MpiCommunicator::isend(const Tensor&, int, int) { no_mpi(); }
WorkHandle MpiCommunicator::irecv(const Tensor&, int, int) { no_mpi(); }
void MpiCommunicator::allreduce(const Tensor&, ReduceOp) { no_mpi(); }
void MpiCommunicator::broadcast(const Tensor&, int) { no_mpi(); }
void MpiCommunicator::allgather(const Tensor&, const Tensor&) { no_mpi(); }
void MpiCommunicator::reduce_scatter(const Tensor&, const Tensor&, ReduceOp) { no_mpi(); }
void MpiCommunicator::barrier() { no_mpi(); }
WorkHandle MpiCommunicator::allreduce_async(const Tensor&, ReduceOp) { no_mpi(); }
WorkHandle MpiCommunicator::broadcast_async(const Tensor&, int) { no_mpi(); }
std::shared_ptr<Communicator> MpiCommunicator::split(int, int) { no_mpi(); }
void MpiCommunicator::abort(const std::string&) { no_mpi(); }
void MpiCommunicator::leave(const std::string&) { no_mpi(); }
void MpiCommunicator::set_check_arrivals(bool) { no_mpi(); }
void MpiCommunicator::set_polled_collectives(bool) { no_mpi(); }
}  // namespace weft::parallel

#endif
