#include "nccl_communicator.h"

#include "weft_config.h"

#if WEFT_HAVE_NCCL

#include <cuda_bf16.h>  // before nccl.h: NCCL versions that guard ncclBfloat16 test for it
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <sched.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <vector>

#include "../../cuda/cuda.h"
#include "progress_thread.h"
#include "threads_communicator.h"
#include "../trace.h"

namespace weft::parallel {
namespace {

using Clock = std::chrono::steady_clock;
enum class Kind : int64_t { Allreduce, Broadcast, Allgather, ReduceScatter, Barrier, Split };
const char* kind_name(int64_t k) {
  static const char* names[] = {"allreduce", "broadcast", "allgather", "reduce_scatter", "barrier", "split"};
  return k >= 0 && k < 6 ? names[k] : "?";
}

// bfloat16 and ncclAvg came with NCCL 2.10, ncclGetLastError with 2.13.
static_assert(NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0), "weft's NCCL communicator needs NCCL 2.13 or later");

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Float16: return ncclFloat16;  // NCCL adds 16-bit values itself
    case DType::BFloat16: return ncclBfloat16;
    case DType::Int64: return ncclInt64;
    default: throw Error(detail::str("nccl: dtype ", dtype_name(dt), " is not supported"));
  }
}
ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Mean: return ncclAvg;  // NCCL divides on the GPU (int64 truncates)
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

void check_cuda(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw Error(detail::str(what, ": ", cudaGetErrorString(e)));
}

// The handshake header, as int64s so it travels over any CPU communicator:
// seq, kind, dtype, numel, op, root, then this rank's argument error as text.
constexpr int kFields = 6, kProblemWords = 16, kHeaderWords = kFields + kProblemWords;
struct Header {
  int64_t seq = 0, kind = 0, dtype = 0, numel = 0, op = 0, root = 0;
  std::string problem;
};

class NcclTransfer;  // a posted send or recv (below)

}  // namespace

struct NcclCommunicator::Impl {
  std::shared_ptr<Communicator> boot;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int rank = 0, size = 1, device = 0;
  int trace_rank = -1;  // the timeline's pid: rank, or the parent's for a split
  bool check_arrivals = true;
  int64_t seq = 0;
  std::string broken;  // set by a timeout or an NCCL error: unusable after
  std::mutex mu;       // one thread at a time queues NCCL work (caller vs progress thread)
  std::vector<std::shared_ptr<NcclTransfer>> posted;  // sends/recvs not launched yet
  ProgressThread progress;

  void check_usable() const { WEFT_CHECK(broken.empty(), broken); }
  [[noreturn]] void fail(const std::string& msg) {
    if (comm) ncclCommAbort(comm);  // frees peers' kernels waiting for us, ends ours
    comm = nullptr;
    broken = msg + " (this NCCL communicator is unusable now)";
    throw Error(msg);
  }
  void check_nccl(ncclResult_t r, const std::string& what) {
    if (r != ncclSuccess) fail(detail::str(what, ": ", ncclGetErrorString(r), " (", ncclGetLastError(comm), ")"));
  }

  // Every rank's header via an allgather on the bootstrap communicator; throws, on every
  // rank alike, naming a missing rank or a disagreement.
  void handshake(const Header& mine, const std::string& what) {
    Tensor in = zeros({kHeaderWords}, {.dtype = kInt64});
    int64_t* h = in.data<int64_t>();
    const int64_t fields[kFields] = {mine.seq, mine.kind, mine.dtype, mine.numel, mine.op, mine.root};
    std::memcpy(h, fields, sizeof fields);
    std::strncpy(reinterpret_cast<char*>(h + kFields), mine.problem.c_str(), kProblemWords * 8 - 1);
    Tensor out = zeros({size * kHeaderWords}, {.dtype = kInt64});
    const Timeout before = boot->timeout();
    try {
      boot->set_timeout(boot_timeout);
      boot->allgather(in, out);
      boot->set_timeout(before);
    } catch (const Error& e) {
      boot->set_timeout(before);
      fail(detail::str(what, ": the handshake on the ", boot->backend(), " bootstrap failed: ", e.what()));
    }
    const int64_t* all = out.data<int64_t>();
    auto at = [&](int q, int f) { return all[q * kHeaderWords + f]; };
    for (int q = 0; q < size; ++q) {
      const char* p = reinterpret_cast<const char*>(all + q * kHeaderWords + kFields);
      if (p[0]) throw Error(detail::str(what, ": rank ", q, ": ", std::string(p, strnlen(p, kProblemWords * 8))));
    }
    for (int q = 0; q < size; ++q)
      if (at(q, 0) != at(0, 0) || at(q, 1) != at(0, 1)) {
        std::string s = detail::str("collective #", mine.seq, ": ranks called different collectives:");
        for (int p = 0; p < size; ++p) s += detail::str(p ? ", " : " ", "rank ", p, " ", kind_name(at(p, 1)), " #", at(p, 0));
        throw Error(s);
      }
    for (int q = 0; q < size; ++q)
      if (at(q, 2) != at(0, 2) || at(q, 3) != at(0, 3)) {
        std::string s = what + ": tensors differ across ranks: ";
        for (int p = 0; p < size; ++p)
          s += detail::str(p ? ", " : "", "rank ", p, " has ", at(p, 3), " ", dtype_name(DType(at(p, 2))));
        throw Error(s);
      }
    for (int q = 0; q < size; ++q)
      if (at(q, 4) != at(0, 4) || at(q, 5) != at(0, 5))
        throw Error(detail::str(what, ": ranks disagree on the reduction or root: rank 0 ",
                                reduce_op_name(ReduceOp(at(0, 4))), " root ", at(0, 5), ", rank ", q, " ",
                                reduce_op_name(ReduceOp(at(q, 4))), " root ", at(q, 5)));
  }
  Timeout boot_timeout = kDefaultTimeout;

  // weft's kernels and copies run on the thread's current stream, a non-blocking one that
  // our stream is not ordered after: without this the collective could read an input the
  // copy or kernel that produces it has not finished writing. (The host waits for our
  // stream before returning, so later weft work needs no event the other way.)
  void after_compute() {
    cuda::Event produced;
    produced.record(cuda::current_stream(device));
    produced.wait(cuda::Stream(stream, device));
  }

  // Polls the stream until the queued work finished, an NCCL error, or the deadline.
  void wait_stream(const std::string& what, Timeout timeout) {
    const auto deadline = Clock::now() + timeout;
    for (long it = 0;; ++it) {
      cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) fail(detail::str(what, ": ", cudaGetErrorString(e)));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        fail(detail::str(what, ": NCCL failed: ", ncclGetErrorString(async)));
      if (it > 1000) sched_yield();
      if ((it & 63) == 0 && Clock::now() >= deadline)
        fail(detail::str(what, ": not finished within ", timeout.count(),
                         " ms (a rank stalled or died mid-transfer; NCCL cannot tell which)"));
    }
  }

  // Numbers the collective, checks arguments (all ranks, via the handshake), queues the
  // NCCL call and waits for it.
  template <class Enqueue>
  void collective(Header h, Timeout timeout, Enqueue enqueue) {
    std::lock_guard lock(mu);
    check_usable();
    h.seq = seq++;
    const std::string what = detail::str(kind_name(h.kind), " #", h.seq);
    trace::Scope scope(kind_name(h.kind), "comm", trace_rank < 0 ? rank : trace_rank, trace::enabled() ? detail::str("seq ", h.seq, ", ", h.numel) : "");
    boot_timeout = timeout;
    if (check_arrivals) handshake(h, what);
    else if (!h.problem.empty()) throw Error(what + ": " + h.problem);
    const cuda::DeviceGuard on(device);  // the caller's current device is restored after
    after_compute();
    check_nccl(enqueue(), what);
    wait_stream(what, timeout);
  }

  // CPU tensors -- small control messages such as DDP's join flag, its parameter check,
  // a count of correct test predictions -- travel over the bootstrap communicator, which
  // carries CPU tensors (NCCL cannot). Under mu, after the queued async work: the
  // handshakes of that work use the bootstrap too, and every rank must see the same order.
  template <class Op>
  bool on_boot(const Tensor& t, Op op) {
    if (!t.defined() || !t.device().is_cpu()) return false;
    progress.drain();
    std::lock_guard lock(mu);
    check_usable();
    op(*boot);
    return true;
  }

  Header header_for(Kind kind, const Tensor& t) const {
    Header h;
    h.kind = int64_t(kind);
    h.problem = tensor_problem(t, Device::cuda(device));
    if (h.problem.empty()) {
      h.dtype = int64_t(t.dtype());
      h.numel = t.numel();
    }
    return h;
  }
};

// ---- construction -----------------------------------------------------------------------

bool built_with_nccl() { return true; }

std::shared_ptr<NcclCommunicator> NcclCommunicator::create(std::shared_ptr<Communicator> bootstrap, int device) {
  if (!bootstrap) bootstrap = make_thread_group(1)[0];  // a world of one: no peers to find
  WEFT_CHECK(cuda::is_available(), "NcclCommunicator: no CUDA device is visible");
  WEFT_CHECK(device >= 0 && device < cuda::device_count(), "NcclCommunicator: rank ", bootstrap->rank(),
             " asked for cuda:", device, " but ", cuda::device_count(), " device(s) are visible");
  auto m = std::make_unique<Impl>();
  m->boot = bootstrap;
  m->rank = bootstrap->rank();
  m->size = bootstrap->size();
  m->device = device;
  // Rank 0 makes the id; the bootstrap carries its 128 bytes to everyone as 16 int64s.
  static_assert(sizeof(ncclUniqueId) % 8 == 0);
  ncclUniqueId id{};
  Tensor id_words = zeros({int64_t(sizeof id / 8)}, {.dtype = kInt64});
  if (m->rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    WEFT_CHECK(r == ncclSuccess, "NcclCommunicator: ncclGetUniqueId: ", ncclGetErrorString(r));
    std::memcpy(id_words.raw_data(), &id, sizeof id);
  }
  bootstrap->broadcast(id_words, 0);
  std::memcpy(&id, id_words.raw_data(), sizeof id);
  // Left current on purpose: the thread that creates a rank's communicator drives that
  // rank's GPU from then on (samples::nccl_over: rank thread r, GPU r), and weft's
  // kernels launch on the current device. (Each collective still sets it for itself.)
  check_cuda(cudaSetDevice(device), "NcclCommunicator: cudaSetDevice");
  // Non-blocking: no implicit sync with the legacy default stream; after_compute()
  // orders it after weft's work.
  check_cuda(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking), "NcclCommunicator: cudaStreamCreate");
  ncclResult_t r = ncclCommInitRank(&m->comm, m->size, id, m->rank);
  WEFT_CHECK(r == ncclSuccess, "NcclCommunicator: ncclCommInitRank (rank ", m->rank, " of ", m->size, ", cuda:", device,
             "): ", ncclGetErrorString(r));
  return std::shared_ptr<NcclCommunicator>(new NcclCommunicator(std::move(m)));
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclCommunicator::~NcclCommunicator() {
  impl_->progress.drain();
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

int NcclCommunicator::rank() const { return impl_->rank; }
int NcclCommunicator::trace_rank() const { return impl_->trace_rank < 0 ? impl_->rank : impl_->trace_rank; }
int NcclCommunicator::size() const { return impl_->size; }
int NcclCommunicator::device() const { return impl_->device; }
void NcclCommunicator::set_check_arrivals(bool on) { impl_->check_arrivals = on; }

void NcclCommunicator::abort(const std::string& reason) {
  std::lock_guard lock(impl_->mu);
  if (impl_->comm) ncclCommAbort(impl_->comm);
  impl_->comm = nullptr;
  impl_->broken = "NCCL communicator aborted: " + reason;
  impl_->boot->abort(reason);
}

// ---- collectives ------------------------------------------------------------------------

void NcclCommunicator::allreduce(const Tensor& t, ReduceOp op) {
  if (impl_->on_boot(t, [&](Communicator& b) { b.allreduce(t, op); })) return;
  impl_->progress.drain();
  Impl& m = *impl_;
  Header h = m.header_for(Kind::Allreduce, t);
  h.op = int64_t(op);
  m.collective(h, timeout(), [&] {
    return ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), nccl_op(op), m.comm, m.stream);
  });
}

void NcclCommunicator::broadcast(const Tensor& t, int root) {
  if (impl_->on_boot(t, [&](Communicator& b) { b.broadcast(t, root); })) return;
  impl_->progress.drain();
  Impl& m = *impl_;
  Header h = m.header_for(Kind::Broadcast, t);
  h.root = root;
  if (h.problem.empty() && (root < 0 || root >= m.size))
    h.problem = detail::str("root ", root, " is outside the group of ", m.size);
  m.collective(h, timeout(), [&] {
    return ncclBroadcast(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), root, m.comm, m.stream);
  });
}

void NcclCommunicator::allgather(const Tensor& in, const Tensor& out) {
  if (impl_->on_boot(in, [&](Communicator& b) { b.allgather(in, out); })) return;
  impl_->progress.drain();
  Impl& m = *impl_;
  Header h = m.header_for(Kind::Allgather, in);
  if (h.problem.empty()) {
    if (std::string p = tensor_problem(out, Device::cuda(m.device)); !p.empty()) h.problem = "out: " + p;
    else if (out.numel() != m.size * in.numel() || out.dtype() != in.dtype())
      h.problem = detail::str("out has ", out.numel(), " ", dtype_name(out.dtype()), " elements, expected ", m.size,
                              " x ", in.numel(), " ", dtype_name(in.dtype()));
  }
  m.collective(h, timeout(), [&] {
    return ncclAllGather(in.raw_data(), out.raw_data(), in.numel(), nccl_type(in.dtype()), m.comm, m.stream);
  });
}

void NcclCommunicator::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  if (impl_->on_boot(in, [&](Communicator& b) { b.reduce_scatter(in, out, op); })) return;
  impl_->progress.drain();
  Impl& m = *impl_;
  Header h = m.header_for(Kind::ReduceScatter, in);
  h.op = int64_t(op);
  if (h.problem.empty()) {
    if (std::string p = tensor_problem(out, Device::cuda(m.device)); !p.empty()) h.problem = "out: " + p;
    else if (in.numel() != m.size * out.numel() || out.dtype() != in.dtype())
      h.problem = detail::str("in has ", in.numel(), " ", dtype_name(in.dtype()), " elements, expected ", m.size,
                              " x ", out.numel(), " ", dtype_name(out.dtype()), " (out)");
  }
  m.collective(h, timeout(), [&] {
    return ncclReduceScatter(in.raw_data(), out.raw_data(), out.numel(), nccl_type(in.dtype()), nccl_op(op), m.comm,
                             m.stream);
  });
}

void NcclCommunicator::barrier() {
  impl_->progress.drain();
  Impl& m = *impl_;
  Header h;
  h.kind = int64_t(Kind::Barrier);
  if (m.check_arrivals) {  // the handshake alone hears from every rank
    m.collective(h, timeout(), [] { return ncclSuccess; });
    return;
  }
  Tensor one = zeros({1}, {.device = Device::cuda(m.device)});
  m.collective(h, timeout(), [&] {
    return ncclAllReduce(one.raw_data(), one.raw_data(), 1, ncclFloat32, ncclSum, m.comm, m.stream);
  });
}

WorkHandle NcclCommunicator::allreduce_async(const Tensor& t, ReduceOp op) {
  return impl_->progress.submit([this, t, op] {
    Impl& m = *impl_;
    Header h = m.header_for(Kind::Allreduce, t);
    h.op = int64_t(op);
    m.collective(h, timeout(), [&] {
      return ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), nccl_op(op), m.comm, m.stream);
    });
  });
}

WorkHandle NcclCommunicator::broadcast_async(const Tensor& t, int root) {
  return impl_->progress.submit([this, t, root] {
    Impl& m = *impl_;
    Header h = m.header_for(Kind::Broadcast, t);
    h.root = root;
    m.collective(h, timeout(), [&] {
      return ncclBroadcast(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), root, m.comm, m.stream);
    });
  });
}

// ---- split --------------------------------------------------------------------------------
//
// A sub-communicator needs two things: a bootstrap of its own (for its handshakes and CPU
// tensors), which the bootstrap's split gives, and NCCL's communicator over the same
// ranks. NCCL >= 2.18 splits its communicator directly (ncclCommSplit, with
// MPI_Comm_split's ordering: by key, then by rank); older versions build a new one over
// the split bootstrap, as create() does.
namespace {
std::shared_ptr<Communicator> split_bootstrap(Communicator& boot, int color, int key, Timeout timeout) {
  const Timeout before = boot.timeout();
  boot.set_timeout(timeout);
  std::shared_ptr<Communicator> sub;
  try {
    sub = boot.split(color, key);
  } catch (...) {
    boot.set_timeout(before);
    throw;
  }
  boot.set_timeout(before);
  return sub;
}
}  // namespace

std::shared_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  impl_->progress.drain();
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  m.check_usable();
  Header h;
  h.kind = int64_t(Kind::Split);
  h.seq = m.seq++;
  const std::string what = detail::str("split #", h.seq);
  m.boot_timeout = timeout();
  if (m.check_arrivals) m.handshake(h, what);  // names a rank that never calls split
  std::shared_ptr<Communicator> boot = split_bootstrap(*m.boot, color, key, timeout());
  std::shared_ptr<NcclCommunicator> sub;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
  const cuda::DeviceGuard on(m.device);
  ncclComm_t nccl_sub = nullptr;  // every rank calls it; a negative color gets none
  m.check_nccl(ncclCommSplit(m.comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &nccl_sub, nullptr), what);
  if (!boot) return nullptr;
  auto impl = std::make_unique<Impl>();
  impl->boot = boot;
  impl->comm = nccl_sub;
  impl->rank = boot->rank();
  impl->size = boot->size();
  impl->device = m.device;
  impl->check_arrivals = m.check_arrivals;
  check_cuda(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), what + ": cudaStreamCreate");
  int nccl_rank = -1;
  ncclCommUserRank(nccl_sub, &nccl_rank);
  WEFT_CHECK(nccl_rank == impl->rank, what, ": NCCL numbered this rank ", nccl_rank, ", the bootstrap ", impl->rank);
  sub.reset(new NcclCommunicator(std::move(impl)));
#else
  if (!boot) return nullptr;
  sub = create(boot, m.device);
#endif
  sub->set_timeout(timeout());
  sub->impl_->trace_rank = trace_rank();
  return sub;
}

// ---- point to point -----------------------------------------------------------------------
//
// An NCCL send blocks on the GPU until the peer's recv runs, so a ring step's isend to
// the right and irecv from the left, queued one after the other on one stream, would
// deadlock between two neighbours. So isend/irecv only *post* the transfer; the first
// wait() launches every posted transfer together in one ncclGroupStart/End, where NCCL
// runs them concurrently. The ring's "post both, then wait" pattern is exactly that.
// Sizes are not checked across the pair: NCCL itself cannot tell.
namespace {

class NcclTransfer : public Work {
 public:
  NcclTransfer(NcclCommunicator::Impl& m, bool is_send, Tensor t, int peer, std::string what, Timeout timeout)
      : m_(m), is_send_(is_send), t_(std::move(t)), peer_(peer), what_(std::move(what)),
        timeout_(timeout) {}

  bool is_completed() override {  // true once launched (by some wait()) and finished
    return done_ || (launched_ && cudaStreamQuery(m_.stream) == cudaSuccess);
  }
  void wait() override {
    if (done_) return;
    std::lock_guard lock(m_.mu);
    if (!launched_) launch_posted();
    m_.wait_stream(what_, timeout_);
    for (auto& t : batch_) t->done_ = true;
    batch_.clear();
  }

 private:
  // Launches every transfer posted so far, as one NCCL group.
  void launch_posted() {
    m_.check_usable();
    const cuda::DeviceGuard on(m_.device);
    auto batch = std::move(m_.posted);
    m_.posted.clear();
    m_.after_compute();
    m_.check_nccl(ncclGroupStart(), what_);
    for (auto& t : batch) {
      const auto type = nccl_type(t->t_.dtype());
      m_.check_nccl(t->is_send_ ? ncclSend(t->t_.raw_data(), t->t_.numel(), type, t->peer_, m_.comm, m_.stream)
                                : ncclRecv(t->t_.raw_data(), t->t_.numel(), type, t->peer_, m_.comm, m_.stream),
                    t->what_);
      t->launched_ = true;
    }
    m_.check_nccl(ncclGroupEnd(), what_);
    batch_ = std::move(batch);
  }

  NcclCommunicator::Impl& m_;
  bool is_send_;
  Tensor t_;
  int peer_;
  std::string what_;
  Timeout timeout_;
  bool launched_ = false, done_ = false;
  std::vector<std::shared_ptr<NcclTransfer>> batch_;  // what this one's wait launched
};

}  // namespace

WorkHandle NcclCommunicator::isend(const Tensor& t, int dst, int tag) {
  std::string what = detail::str("send to rank ", dst, " (tag ", tag, ")");
  WEFT_CHECK(tensor_problem(t, Device::cuda(impl_->device)).empty(), what, ": ",
             tensor_problem(t, Device::cuda(impl_->device)));
  WEFT_CHECK(dst >= 0 && dst < size(), what, ": rank ", dst, " is outside the group of ", size());
  auto w = std::make_shared<NcclTransfer>(*impl_, true, t, dst, std::move(what), timeout());
  std::lock_guard lock(impl_->mu);
  impl_->posted.push_back(w);
  return w;
}

WorkHandle NcclCommunicator::irecv(const Tensor& t, int src, int tag) {
  std::string what = detail::str("recv from rank ", src, " (tag ", tag, ")");
  WEFT_CHECK(tensor_problem(t, Device::cuda(impl_->device)).empty(), what, ": ",
             tensor_problem(t, Device::cuda(impl_->device)));
  WEFT_CHECK(src >= 0 && src < size(), what, ": rank ", src, " is outside the group of ", size());
  auto w = std::make_shared<NcclTransfer>(*impl_, false, t, src, std::move(what), timeout());
  std::lock_guard lock(impl_->mu);
  impl_->posted.push_back(w);
  return w;
}

void NcclCommunicator::send(const Tensor& t, int dst, int tag) { isend(t, dst, tag)->wait(); }
void NcclCommunicator::recv(const Tensor& t, int src, int tag) { irecv(t, src, tag)->wait(); }

}  // namespace weft::parallel

#else  // built without NCCL: the class exists (programs using it still link), create() says why not

namespace weft::parallel {
namespace {
[[noreturn]] void no_nccl() {
  throw Error("NcclCommunicator: weft was built without NCCL (it needs the CUDA backend and libnccl; "
              "reconfigure with -Dcuda=enabled -Dnccl=enabled)");
}
}  // namespace
struct NcclCommunicator::Impl {};
bool built_with_nccl() { return false; }
std::shared_ptr<NcclCommunicator> NcclCommunicator::create(std::shared_ptr<Communicator>, int) { no_nccl(); }
NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclCommunicator::~NcclCommunicator() = default;
int NcclCommunicator::rank() const { no_nccl(); }
int NcclCommunicator::trace_rank() const { no_nccl(); }
int NcclCommunicator::size() const { no_nccl(); }
int NcclCommunicator::device() const { no_nccl(); }
void NcclCommunicator::send(const Tensor&, int, int) { no_nccl(); }
void NcclCommunicator::recv(const Tensor&, int, int) { no_nccl(); }
WorkHandle NcclCommunicator::isend(const Tensor&, int, int) { no_nccl(); }
WorkHandle NcclCommunicator::irecv(const Tensor&, int, int) { no_nccl(); }
void NcclCommunicator::allreduce(const Tensor&, ReduceOp) { no_nccl(); }
void NcclCommunicator::broadcast(const Tensor&, int) { no_nccl(); }
void NcclCommunicator::allgather(const Tensor&, const Tensor&) { no_nccl(); }
void NcclCommunicator::reduce_scatter(const Tensor&, const Tensor&, ReduceOp) { no_nccl(); }
void NcclCommunicator::barrier() { no_nccl(); }
WorkHandle NcclCommunicator::allreduce_async(const Tensor&, ReduceOp) { no_nccl(); }
WorkHandle NcclCommunicator::broadcast_async(const Tensor&, int) { no_nccl(); }
std::shared_ptr<Communicator> NcclCommunicator::split(int, int) { no_nccl(); }
void NcclCommunicator::abort(const std::string&) { no_nccl(); }
void NcclCommunicator::set_check_arrivals(bool) { no_nccl(); }
}  // namespace weft::parallel

#endif
