// Naive all-reduce, over send/recv: gather everything at rank 0, reduce there,
// send the result back to everyone.
//
// The baseline the ring improves on. Rank 0 receives (n-1) whole tensors and sends
// (n-1) whole tensors, one after another, while every other link sits idle: its time
// grows like n * bytes, where the ring's stays near 2 * bytes.
#pragma once

#include "../comm/communicator.h"

namespace weft::parallel {

// In place on `t`, like Communicator::allreduce. Messages use `tag`.
void naive_allreduce(Communicator& comm, const Tensor& t, ReduceOp op = ReduceOp::Sum, int tag = 7200);

}  // namespace weft::parallel
