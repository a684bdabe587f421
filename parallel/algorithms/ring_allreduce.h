// Ring all-reduce, written out over send/recv: the algorithm behind NCCL and Horovod.
//
// The n ranks stand in a ring; each sends only to its right neighbour (r+1) and
// receives only from its left one (r-1). The tensor is cut into n chunks (chunk c is
// ring_chunk(numel, n, c); sizes differ by at most one element, and some are empty
// when numel < n). Then two phases of n-1 steps each:
//
//   reduce-scatter, step s: send chunk (r-s) mod n to the right, receive chunk
//       (r-s-1) mod n from the left and add it into ours. A chunk travels around the
//       ring picking up one contribution per hop; after n-1 steps rank r holds chunk
//       (r+1) mod n summed over all ranks.
//   all-gather, step s: send chunk (r+1-s) mod n (a finished one) to the right,
//       receive chunk (r-s) mod n from the left and keep it. After n-1 steps every
//       rank holds every finished chunk.
//
// Each rank sends 2(n-1)/n of the tensor in total, whatever n is -- which is why the
// "bus bandwidth" of an all-reduce is defined as bytes/time * 2(n-1)/n: it is the
// speed of each link. Each step posts isend and irecv together and then waits on both,
// so a rank sends and receives at the same time (and no two neighbours deadlock
// waiting to send first).
//
// TRACE MODE. RingOptions::observer is called by every rank at every step with what it
// sends and receives (samples/ring_allreduce prints the textbook picture from it).
#pragma once

#include <functional>

#include "../comm/communicator.h"

namespace weft::parallel {

enum class RingPhase { ReduceScatter, AllGather };
const char* ring_phase_name(RingPhase p);

struct RingStep {
  int rank;
  RingPhase phase;
  int step;        // 0 .. n-2 within the phase
  int send_chunk;  // the chunk this rank sends to rank+1
  int recv_chunk;  // the chunk it receives from rank-1
};
using RingObserver = std::function<void(const RingStep&)>;  // called from every rank's thread

struct RingOptions {
  int tag = 7100;         // send/recv tag of the ring's messages
  RingObserver observer;  // trace mode when set
};

// [begin, end) of chunk c when numel elements are cut into n chunks.
std::pair<int64_t, int64_t> ring_chunk(int64_t numel, int n, int c);

// In place on `t` (contiguous CPU float32/float64/int64/bfloat16/float16; 16-bit partial
// sums rounded at every hop), like Communicator::allreduce.
void ring_allreduce(Communicator& comm, const Tensor& t, ReduceOp op = ReduceOp::Sum, const RingOptions& opt = {});

}  // namespace weft::parallel
