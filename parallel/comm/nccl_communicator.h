// NcclCommunicator: GPU tensors, one rank per GPU, over NCCL.
//
//   auto boot = parallel::MpiCommunicator::world();          // one process per GPU
//   auto comm = parallel::NcclCommunicator::create(boot, boot->rank() % cuda::device_count());
//   comm->allreduce(grad_on_gpu, ReduceOp::Mean);
//
// BOOTSTRAP. NCCL ranks find each other through a 128-byte ncclUniqueId that rank 0
// makes and every other rank must receive. Any CPU Communicator can carry it -- MPI for
// processes (one or many machines), the threads backend for one process driving several
// GPUs (one thread per GPU) -- so create() takes one and broadcasts the id over it.
//
// FAILURES. NCCL kernels wait on the GPU for their peers and cannot name who is
// missing. So, like the MPI backend, every collective first does a small HANDSHAKE on
// the bootstrap communicator: an allgather of (collective, sequence number, dtype,
// numel, reduction, root). The bootstrap's own timeout names a rank that never arrives
// ("allgather #12: rank 3 did not arrive within ..."), which this backend rethrows as
// "allreduce #5: rank 3 did not arrive ..."; headers that disagree make every rank throw
// the same error naming both sizes before NCCL is called. Then the NCCL call is queued
// on this communicator's stream and the stream is polled against the timeout; a rank
// that dies mid-transfer makes the others abort the NCCL communicator (ncclCommAbort)
// and throw. set_check_arrivals(false) skips the handshake.
//
// CPU TENSORS. A collective on CPU tensors (small control messages: DDP's join flag and
// parameter check, a count of correct predictions) goes over the bootstrap communicator,
// so code written against Communicator -- DistributedDataParallel -- runs unchanged.
//
// Streams: the communicator has its own CUDA stream. Before each NCCL call it waits (an
// event, no host block) for the calling thread's current weft stream, where the kernels
// and copies that produced the inputs ran. Blocking calls return after the stream
// finished, so the tensor may be used at once.
//
// Built without NCCL (no GPU stack, or -Dnccl=disabled), create() throws a clear
// "built without NCCL" error and everything else in weft works.
#pragma once

#include <memory>

#include "communicator.h"

namespace weft::parallel {

class NcclCommunicator : public Communicator {
 public:
  // Every rank of `bootstrap` calls this with the CUDA device it drives (one rank per
  // device). The NCCL communicator has the same ranks and size as `bootstrap`.
  static std::shared_ptr<NcclCommunicator> create(std::shared_ptr<Communicator> bootstrap, int device);
  ~NcclCommunicator() override;

  int rank() const override;
  int trace_rank() const override;
  int size() const override;
  std::string backend() const override { return "nccl"; }
  int device() const;

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

  // Splits the bootstrap the same way (the new communicator's handshakes go over it),
  // and the NCCL communicator with ncclCommSplit (NCCL >= 2.18) or a new one over it.
  std::shared_ptr<Communicator> split(int color, int key) override;

  void abort(const std::string& reason) override;
  void set_check_arrivals(bool on);  // the handshake before each collective (default on)

  struct Impl;  // holds the NCCL and CUDA handles (their headers stay out of this one)

 private:
  explicit NcclCommunicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when weft was built with NCCL.
bool built_with_nccl();

}  // namespace weft::parallel
