// Element-wise reductions shared by every communicator and collective algorithm.
//
// A collective never sees a Tensor in its inner loop: it sees raw buffers of one dtype.
// These functions are that inner loop, written once, vectorisable (plain loops over
// contiguous arrays), for float32, float64 and int64; bfloat16 and float16 are widened
// to float32 block by block, reduced there and rounded once per call.
#pragma once

#include <cstdint>
#include <span>

#include "../../tensor/dtype.h"
#include "communicator.h"

namespace weft::parallel {

// dst[i] = dst[i] (op) src[i] for i < n. Mean accumulates like Sum: divide once at the
// end with finish_mean, after every contribution is in.
void reduce_into(void* dst, const void* src, int64_t n, DType dtype, ReduceOp op);

// data[i] /= world when op is Mean (int64 truncates); nothing for Sum and Max.
void finish_mean(void* data, int64_t n, DType dtype, ReduceOp op, int world);

// The shared-memory all-reduce kernel. bufs[q] is rank q's buffer (all the same dtype
// and length). For every i in [begin, end):
//     r = bufs[0][i] (op) bufs[1][i] (op) ... (finished: / world for Mean)
//     bufs[q][i] = r   for every q
// One read and one write of each buffer's range, done in L1-sized blocks, so a rank
// that owns the slice [begin, end) finishes it in one pass with no temporary array.
void reduce_and_scatter_back(std::span<void* const> bufs, int64_t begin, int64_t end,
                             DType dtype, ReduceOp op);

// out[i] = srcs[0][i] (op) srcs[1][i] (op) ..., finished for Mean, for i < n. `out`
// may be one of the sources.
void reduce_many(void* out, std::span<const void* const> srcs, int64_t n, DType dtype, ReduceOp op);

}  // namespace weft::parallel
