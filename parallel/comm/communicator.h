// Communicator: the one interface every distributed piece of weft talks to.
//
// A communicator is one rank's view of a group of `size()` ranks numbered 0..size-1.
// Everything above it -- the hand-written ring all-reduce and parameter server
// (parallel/algorithms), DistributedDataParallel, pruning masks kept in sync -- is
// written against this class only, so it runs unchanged over
//   - "threads": N ranks as threads of one process, sharing memory (the embedded
//     default, no launcher needed)            -> parallel/comm/threads_communicator.h
//   - "mpi":     one process per rank under mpirun (Open MPI)   -> parallel/comm/mpi_communicator.h
//   - "nccl":    GPU tensors, bootstrapped through MPI           -> parallel/comm/nccl_communicator.h
//
// RULES every backend follows
//   * Collectives are called by every rank, in the same order, with tensors of the same
//     dtype and numel. Each collective has a per-communicator sequence number; a rank
//     that calls with a different size (or a different collective) at the same sequence
//     number makes every rank fail with an error naming the collective, the sequence
//     number and both sizes -- never a silent wrong answer.
//   * Every call has a timeout (default 300 s, settable). A rank that dies or stalls makes
//     the others throw weft::Error within the timeout, naming the collective, its sequence
//     number and the rank(s) that never arrived -- never a silent hang.
//   * Tensors must be contiguous and live on a device the backend serves (any CPU device,
//     logical ones included, for threads and mpi; its CUDA device for nccl). Collectives work in place on `t` (its storage is written).
//   * Reductions: Sum, Mean (sum / size), Max. float32, float64, int64, and bfloat16 and
//     float16 (added in float32 and rounded to 16 bits wherever a partial result is
//     stored or sent: once in all on the threads backend, at every hop of MPI's or
//     NCCL's algorithm; parallel/comm/reduce.h). A 16-bit Mean sums first, so a float16
//     sum above 65504 overflows though the mean would not: divide first (as DDP does).
//   * Async variants return a Work handle at once; the communication runs on the
//     backend's progress thread, in call order. The tensor must not be touched until
//     wait() returns. wait() rethrows any error of the operation.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "../../tensor/tensor.h"

namespace weft::parallel {

enum class ReduceOp { Sum, Mean, Max };  // Mean of int64 truncates (sum / size)
const char* reduce_op_name(ReduceOp op);

// Why `t` cannot be used by a communicator op (undefined, not contiguous, not on
// `device` -- any cpu:N when `device` is a CPU -- not float32/float64/int64), or "" when
// it can. Backends put this in the
// message of the error every rank throws.
std::string tensor_problem(const Tensor& t, Device device);

using Timeout = std::chrono::milliseconds;
inline constexpr Timeout kDefaultTimeout{300'000};

// A handle to an operation that may still be running.
class Work {
 public:
  virtual ~Work() = default;
  virtual bool is_completed() = 0;  // true once finished (successfully or not)
  virtual void wait() = 0;          // blocks until finished; rethrows its error
};
using WorkHandle = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "threads", "mpi", "nccl"

  // The rank this communicator's spans are recorded under on a timeline (parallel/trace.h's
  // pid): rank() for a world communicator, and for one made by split() the rank its
  // parent records under, so every span of one process (or rank thread) lands in one row
  // group however many sub-communicators it uses.
  virtual int trace_rank() const { return rank(); }

  Timeout timeout() const { return timeout_; }
  void set_timeout(Timeout t) { timeout_ = t; }

  // ---- point to point (blocking). `t` is contiguous; recv writes into it. ----------
  // Messages between one (src, dst, tag) are matched in order; sender and receiver must
  // agree on dtype and numel (a mismatch is an error on both sides).
  virtual void send(const Tensor& t, int dst, int tag = 0) = 0;
  virtual void recv(const Tensor& t, int src, int tag = 0) = 0;
  // Non-blocking: post the transfer and return at once; the handle completes when the
  // data has moved (so `t` may be reused). A ring step posts isend to the right and
  // irecv from the left, then waits on both: sending and receiving overlap, and two
  // neighbours that both send first cannot deadlock.
  virtual WorkHandle isend(const Tensor& t, int dst, int tag = 0) = 0;
  virtual WorkHandle irecv(const Tensor& t, int src, int tag = 0) = 0;

  // ---- collectives (blocking, in place) ---------------------------------------------
  virtual void allreduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void broadcast(const Tensor& t, int root) = 0;
  // out has size() * in.numel() elements; rank r's `in` lands at out[r*n, (r+1)*n).
  virtual void allgather(const Tensor& in, const Tensor& out) = 0;
  // in has size() * out.numel() elements; rank r gets the reduction of everyone's
  // in[r*n, (r+1)*n) in out.
  virtual void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::Sum) = 0;
  virtual void barrier() = 0;

  // ---- async: the same operations, returning at once ----------------------------------
  virtual WorkHandle allreduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  virtual WorkHandle broadcast_async(const Tensor& t, int root) = 0;

  // ---- sub-communicators --------------------------------------------------------------
  // MPI_Comm_split: the ranks that pass the same `color` form a new communicator, of the
  // same backend, numbered 0..k-1 in the order of their `key` (ties: in the order of
  // their rank here). A negative color means "in no group" and gives nullptr (MPI's
  // MPI_UNDEFINED). It is a collective: every rank calls it, and a rank that never does
  // is named within the timeout like in any other collective. The new communicator
  // starts with this one's timeout and is independent of it and of its siblings: its
  // messages never mix with theirs, and its collectives have their own sequence numbers.
  //
  // A grid of P pipeline stages x R data-parallel replicas on P*R ranks (rank = replica
  // * P + stage):
  //   auto pipeline = comm.split(rank / P, rank % P);  // my replica's P stages
  //   auto data     = comm.split(rank % P, rank / P);  // the R replicas of my stage
  virtual std::shared_ptr<Communicator> split(int color, int key);

  // Declares this rank gone (its work failed; it will call nothing more). Ranks waiting
  // for it fail at once, naming it and the reason, instead of at the timeout (threads:
  // the group is told; mpi: the others get it in place of this rank's next header, and
  // then the job ends; nccl: as its bootstrap communicator).
  virtual void abort(const std::string& reason) { (void)reason; }

 protected:
  Timeout timeout_ = kDefaultTimeout;
};

}  // namespace weft::parallel
