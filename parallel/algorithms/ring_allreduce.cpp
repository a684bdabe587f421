#include "ring_allreduce.h"

#include "../comm/reduce.h"
#include "../trace.h"

namespace weft::parallel {

const char* ring_phase_name(RingPhase p) { return p == RingPhase::ReduceScatter ? "reduce-scatter" : "all-gather"; }

std::pair<int64_t, int64_t> ring_chunk(int64_t numel, int n, int c) {
  const int64_t per = numel / n, extra = numel % n;  // the first `extra` chunks get one more
  const int64_t begin = c * per + std::min<int64_t>(c, extra);
  return {begin, begin + per + (c < extra ? 1 : 0)};
}

namespace {

int mod(int a, int n) { return ((a % n) + n) % n; }

// The part of flat tensor `flat` that chunk c covers (a 1-D view, no copy).
Tensor chunk_of(const Tensor& flat, int n, int c) {
  auto [b, e] = ring_chunk(flat.numel(), n, c);
  return flat.narrow(0, b, e - b);
}

// Sends chunk `send` to the right while receiving chunk `recv` from the left into `into`.
void exchange(Communicator& comm, const Tensor& send, const Tensor& into, int tag) {
  const int n = comm.size();
  auto s = comm.isend(send, mod(comm.rank() + 1, n), tag);
  auto r = comm.irecv(into, mod(comm.rank() - 1, n), tag);
  r->wait();
  s->wait();
}

}  // namespace

void ring_allreduce(Communicator& comm, const Tensor& t, ReduceOp op, const RingOptions& opt) {
  const std::string problem = tensor_problem(t, kCPU);
  WEFT_CHECK(problem.empty(), "ring_allreduce: ", problem);
  const int n = comm.size(), r = comm.rank();
  trace::Scope scope("ring_allreduce", "comm", comm.trace_rank());
  if (n == 1) return;  // a ring of one: already reduced (Mean of one value is itself)
  const Tensor flat = t.view({t.numel()});
  const DType dt = t.dtype();
  // Scratch for an incoming chunk during reduce-scatter; chunk 0 is the largest.
  Tensor incoming = empty({ring_chunk(t.numel(), n, 0).second}, dt);

  for (int s = 0; s < n - 1; ++s) {
    const int send_c = mod(r - s, n), recv_c = mod(r - s - 1, n);
    if (opt.observer) opt.observer({r, RingPhase::ReduceScatter, s, send_c, recv_c});
    Tensor mine = chunk_of(flat, n, recv_c);
    Tensor in = incoming.narrow(0, 0, mine.numel());
    exchange(comm, chunk_of(flat, n, send_c), in, opt.tag);
    reduce_into(mine.raw_data(), in.raw_data(), mine.numel(), dt, op);
  }
  // Rank r now owns the finished sum of chunk r+1: divide once, here, for Mean.
  Tensor owned = chunk_of(flat, n, mod(r + 1, n));
  finish_mean(owned.raw_data(), owned.numel(), dt, op, n);

  for (int s = 0; s < n - 1; ++s) {
    const int send_c = mod(r + 1 - s, n), recv_c = mod(r - s, n);
    if (opt.observer) opt.observer({r, RingPhase::AllGather, s, send_c, recv_c});
    exchange(comm, chunk_of(flat, n, send_c), chunk_of(flat, n, recv_c), opt.tag);  // straight into place
  }
}

}  // namespace weft::parallel
