#include "naive_allreduce.h"

#include "../comm/reduce.h"
#include "../trace.h"

namespace weft::parallel {

void naive_allreduce(Communicator& comm, const Tensor& t, ReduceOp op, int tag) {
  const std::string problem = tensor_problem(t, kCPU);
  WEFT_CHECK(problem.empty(), "naive_allreduce: ", problem);
  trace::Scope scope("naive_allreduce", "comm", comm.trace_rank());
  const int n = comm.size();
  if (comm.rank() != 0) {
    comm.send(t, 0, tag);  // my contribution up...
    comm.recv(t, 0, tag);  // ...and the result back down
    return;
  }
  Tensor incoming = empty_like(t);
  for (int q = 1; q < n; ++q) {  // one rank at a time: rank 0's link is the bottleneck
    comm.recv(incoming, q, tag);
    reduce_into(t.raw_data(), incoming.raw_data(), t.numel(), t.dtype(), op);
  }
  finish_mean(t.raw_data(), t.numel(), t.dtype(), op, n);
  for (int q = 1; q < n; ++q) comm.send(t, q, tag);
}

}  // namespace weft::parallel
