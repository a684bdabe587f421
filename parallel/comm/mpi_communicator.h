// MpiCommunicator: one rank per process, under mpirun (Open MPI), CPU tensors.
//
//   auto comm = parallel::MpiCommunicator::world();   // MPI_COMM_WORLD, MPI started on demand
//   comm->allreduce(grad, ReduceOp::Mean);
//   $ mpirun -np 4 ./train
//
// MPI itself has no timeouts and cannot tell a slow rank from a dead one: a collective
// that one process never calls blocks the others forever. So every collective starts
// with a HANDSHAKE: each rank sends every other rank a small header (collective,
// sequence number, dtype, sizes, reduction, root, and its own argument error if any)
// with MPI_Isend/MPI_Irecv, and polls for the others' headers until the timeout. Then
//   * a rank whose header never came is named: "allreduce #7: rank 2 did not arrive
//     within 300000 ms" -- on every rank still alive;
//   * headers that disagree make every rank throw the same error naming both sizes,
//     before any data moves;
//   * only then does the data move, with Open MPI's own tuned collective (MPI_Allreduce
//     etc.), which is the fastest it has. MPI cannot interrupt such a call, so it runs on
//     a thread of its own (mpi_impl.h, Blocker) while the caller waits with the timeout:
//     a rank that stalls or dies *during* the transfer is reported too ("allreduce #7:
//     not finished within 300000 ms"), and the communicator is unusable after.
//     set_polled_collectives(true) instead uses the non-blocking MPI_Iallreduce etc.
//     polled against the timeout, without the extra thread, at the price of Open MPI's
//     slower non-blocking algorithms (see bench/collectives.cpp).
// A rank killed outright is normally seen by mpirun first, which ends the whole job
// before the others can say anything; run `mpirun --mca orte_enable_recovery 1` to let
// the survivors report it themselves ("allreduce #7: rank 2 did not arrive within ...").
// The handshake costs one small message to and from each rank (a few microseconds with
// shared memory); set_check_arrivals(false) skips it for the last bit of speed, and with
// it the timeout and mismatch checks of the collectives.
//
// split() runs the same handshake, then MPI_Comm_split; the new communicator gets its
// own duplicated communicators like world()'s, so its messages never meet the parent's.
//
// Point to point uses MPI_Isend/MPI_Irecv polled against the timeout. A size mismatch is
// reported by the receiver (MPI does not tell the sender).
//
// MPI is initialised with MPI_THREAD_MULTIPLE (the async progress thread and the caller
// both call MPI). When the library offers less, every MPI call is serialised by a mutex
// and the collectives are polled, so the two threads can take turns.
#pragma once

#include <memory>

#include "communicator.h"

namespace weft::parallel {

class MpiCommunicator : public Communicator {
 public:
  // Every process of the job (MPI_COMM_WORLD, duplicated so weft's messages never mix
  // with the program's own). Initialises MPI if nobody has; then MPI is finalised at
  // exit. Throws weft::Error when weft was built without MPI.
  static std::shared_ptr<MpiCommunicator> world();
  ~MpiCommunicator() override;

  int rank() const override;
  int trace_rank() const override;
  int size() const override;
  std::string backend() const override { return "mpi"; }

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

  // This rank's work failed: it prints the reason and ends the whole job (MPI_Abort),
  // which also stops a rank that never enters another collective. When the failure is
  // its own (the communicator still works), the others learn it first: their current or
  // next collective fails with "allreduce #7: rank 1 left the job: <reason>" (sent in
  // place of this rank's next header), and they get a second to report it.
  void abort(const std::string& reason) override;
  // The first half of abort, without ending the job (for tests): the others' next
  // collective fails naming this rank; this communicator is unusable afterwards.
  void leave(const std::string& reason);

  void set_check_arrivals(bool on);      // the handshake before each collective (default on)
  void set_polled_collectives(bool on);  // MPI_I* + polling instead of blocking MPI_* (default off)

  struct Impl;  // holds the MPI handles (mpi.h stays out of this header)

 private:
  explicit MpiCommunicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when weft was built with MPI.
bool built_with_mpi();

}  // namespace weft::parallel
