// An asynchronous parameter server, with bounded staleness (SSP), over send/recv.
//
// parameter_server.h waits for every rank's gradient each step: the slowest worker sets
// the pace. Here a worker pushes its gradient and pulls the parameters back WITHOUT
// waiting for the others:
//   worker q, each step:  compute g from the parameters it holds (version v)
//                         push (v, g) -> server;  pull <- (parameters, version)
//   server, per arrival:  staleness = version now - v;  apply g;  reply
//
// VERSIONS ARE CLOCKS (Ho et al., "More effective distributed ML via a stale synchronous
// parallel parameter server", 2013). Worker q's clock c_q is how many gradients it has
// pushed; the server's version V = min over the workers still training of c_q, the
// number of steps EVERY worker has contributed to the parameters. A gradient computed
// from version v and applied at version V is V - v clocks stale.
//
// STALENESS BOUND S (AsyncPSOptions::staleness):
//   S < 0  fully asynchronous: a pull is answered at once.
//   S >= 0 bounded (SSP): worker q's pull waits until V >= c_q - S, so no worker runs
//          more than S steps ahead of the slowest, and every applied gradient is at most
//          S clocks stale (q read at version >= c_q - S; until q pushes again, V <= c_q).
//   S = 0  is the synchronous parameter server: nobody reads between two gradients of a
//          clock, so the server may keep a clock's gradients and apply them together,
//          summed in rank order (the server's first) -- ParameterServer's exact
//          arithmetic, bit for bit. Every other S applies each gradient as it arrives.
//
// WHERE THE SERVER RUNS. As in parameter_server.h, the server is a rank that also
// trains (rank 0 by default): n workers use n ranks, none idle. Because the server must
// answer while its own rank computes, it runs as extra threads of that rank, one per
// worker (its own rank included, which talks to it by send/recv to itself): each thread
// blocks in recv on one worker, so a gradient is applied the moment it arrives, with no
// polling. The parameters the server holds are its own copy, apart from the model its
// rank trains, and one mutex guards them.
//
// OBSERVING IT. stats() is a histogram of the staleness of every applied gradient; with
// tracing on, each apply is a span "ps_apply" (category "ps") on the server rank with
// "from rank q, staleness s, version V" as its args, and a worker's wait for the bound
// is a span "ps_wait".
//
// Over MPI the server threads call MPI beside the training thread: with MPI_THREAD_MULTIPLE
// directly, otherwise serialised and polled by the MPI communicator (mpi_communicator.h).
// tests/parallel/test_mpi_comm.cpp runs it under mpirun.
//
// ERRORS. A server thread that fails aborts the communicator, so the workers' next
// receive fails with its message; a rank destroyed by an exception before finish()
// aborts it too (on MPI that ends the job), instead of leaving the others waiting.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "../comm/communicator.h"

namespace weft::parallel {

// The staleness of the gradients a server applied: a histogram and its summary.
struct StalenessStats {
  std::vector<int64_t> histogram;  // histogram[s]: gradients applied s clocks stale
  int64_t count = 0;               // gradients applied (= pushes received)
  int64_t sum = 0;
  int64_t max = 0;
  void add(int64_t staleness);
  double mean() const { return count ? double(sum) / double(count) : 0.0; }
  // What was added since `earlier` (a copy taken before): one epoch's stats.
  StalenessStats since(const StalenessStats& earlier) const;
};

// How the server changes its parameters. `grad_sum` holds `count` workers' gradients
// summed (one tensor per parameter); each worker's gradient weighs 1/world of a step, as
// in ParameterServer (which averages world gradients per step).
using ServerUpdate = std::function<void(const std::vector<Tensor>& params, const std::vector<Tensor>& grad_sum,
                                        int count, int world)>;
// ParameterServer's rule: p -= (lr / world) * grad_sum.
ServerUpdate sgd_update(double lr);
// For workers that train in float16, each with its own loss scale (optim/grad_scaler.h):
// `update`, except for a gradient sum holding an inf or a NaN, which leaves the
// parameters as they are and calls `skipped(count)` instead (to count it, or to move a
// schedule on). A worker pushes its overflowed gradient all the same -- one that did not
// push would fall a clock behind, and a staleness bound waits for it -- so with S = 0 a
// whole clock is skipped, as the synchronous float16 step skips; otherwise only that
// worker's gradient.
ServerUpdate skip_nonfinite(ServerUpdate update, std::function<void(int count)> skipped = {});

struct AsyncPSOptions {
  int staleness = -1;  // S: < 0 fully asynchronous, >= 0 bounded (0: synchronous)
  int server = 0;      // the rank whose extra threads serve
  int tag = 7400;      // uses tag .. tag + 3
};

class AsyncParameterServer {
 public:
  // `params`: this rank's parameter tensors (contiguous CPU floating point, the same
  // shapes on every rank), written in place by every pull. On the server rank the server
  // copies them as the starting parameters and starts its threads. Every rank then calls
  // pull() once before training.
  AsyncParameterServer(Communicator& comm, std::vector<Tensor> params, ServerUpdate update,
                       AsyncPSOptions options = {});
  ~AsyncParameterServer();  // finish(), if not called yet (errors swallowed)
  AsyncParameterServer(const AsyncParameterServer&) = delete;
  AsyncParameterServer& operator=(const AsyncParameterServer&) = delete;

  // One step of this worker: push its gradients (one per parameter), then pull the
  // parameters, waiting as the bound demands. Returns the version now held.
  int64_t step(const std::vector<Tensor>& grads);
  // The server's parameters now, without pushing (no wait). Returns their version.
  int64_t pull();
  // This worker trains no more (its clock stops holding the others back). Every rank
  // calls it; the server rank's call then waits for every worker's and stops its threads,
  // rethrowing a server thread's error.
  void finish();

  int64_t version() const { return version_; }  // of the parameters this worker holds
  int staleness_bound() const { return options_.staleness; }
  // Server rank: every applied gradient so far; other ranks: empty.
  StalenessStats stats() const;
  // Server rank: the server's own parameters (read them after finish()).
  const std::vector<Tensor>& server_params() const { return server_params_; }
  // Server rank: runs fn while no gradient is being applied (under the server's lock),
  // e.g. to save the update function's optimizer state between epochs.
  void with_server_locked(const std::function<void()>& fn) const {
    std::lock_guard lock(mu_);
    fn();
  }

 private:
  enum Kind : int64_t { kPush = 0, kPull = 1, kDone = 2 };
  // A worker's message (with its gradients, for a push) and the server's reply.
  int64_t request(Kind kind, int64_t read_version, const std::vector<Tensor>& grads = {});
  void serve(int q);                                 // a server thread: worker q's requests
  void on_push(int q, int64_t read_version);         // under mu_
  int64_t min_clock() const;                         // under mu_: the version V
  void apply_clock();                                // under mu_: S = 0, a whole clock

  Communicator& comm_;
  std::vector<Tensor> params_;
  ServerUpdate update_;
  AsyncPSOptions options_;
  int64_t version_ = 0;
  bool finished_ = false;

  // The server's state (server rank only), guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Tensor> server_params_;
  std::vector<std::vector<Tensor>> incoming_;  // per worker: its last gradients
  std::vector<std::vector<Tensor>> reply_;     // per worker: parameters to send
  std::vector<int64_t> clock_;                 // per worker: pushes; INT64_MAX once done
  std::vector<bool> pending_;                  // S = 0: worker's gradient waits for its clock
  int64_t max_clock_ = 0;                      // the furthest worker's clock
  int64_t applied_version_ = 0;                // S = 0: clocks applied so far
  StalenessStats stats_;
  std::exception_ptr error_;  // the server's own failure
  std::string server_error_text() const;  // ": <its what()>", or ""
  std::vector<std::thread> threads_;
};

}  // namespace weft::parallel
