// Cutting a batch of several tensors into pieces of rows, and putting the pieces'
// outputs back together: what DataParallel (one piece per replica) and the pipeline
// (one piece per microbatch) do with a module that takes or returns several tensors.
//
//   inputs (x (B, T, E), mask (B, 1, T, T))  --scatter-->  piece k: (x[rows_k], mask[rows_k])
//   piece k's outputs (logits (n_k, C), aux ())  --gather-->  (logits (B, C), aux ())
//
// SCATTER. Every input is cut along dim 0, so every input must have the batch's rows
// there: a mask shared by the whole batch -- a causal (T, T) mask, say -- must be
// expanded to (B, ...) first (x.expand is a view: it costs nothing), or built inside the
// module. An input without the batch's rows is an error naming it.
//
// GATHER. An output with dim 0 is concatenated along it (each piece's must have that
// piece's rows). A 0-d output is a number per piece -- an auxiliary loss, a mean
// statistic -- and becomes the mean of the pieces' values weighted by their rows,
// sum_k out_k * n_k / B, the same weights the training loss gets: a per-piece MEAN over
// its rows comes back as the whole batch's mean (up to rounding), exactly what one
// device computes. (PyTorch's DataParallel instead returns a vector of one value per
// replica, with a warning; a weighted mean keeps the output's shape and meaning.) A 0-d
// output that is a SUM over rows would need a plain sum: multiply it by B afterwards,
// or return it with a batch dimension.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../nn/module.h"

namespace weft::parallel {

// [start, end) of each piece's rows.
using RowRanges = std::vector<std::pair<int64_t, int64_t>>;

// The number of rows every input has along dim 0; throws naming `who` and the input
// when one is undefined, 0-d, or has another number of rows than inputs[0].
int64_t batch_rows(const nn::Tensors& inputs, const std::string& who);

// pieces[k][i] = inputs[i].narrow(0, rows[k]): views, no copies.
std::vector<nn::Tensors> scatter_rows(const nn::Tensors& inputs, const RowRanges& rows);

// The pieces' outputs (parts[k]: piece k's list, rows[k] its rows) as one list on
// `device`, by the rules above. Throws naming `who` when the pieces return different
// numbers of tensors, or an output is neither 0-d nor has its piece's rows.
nn::Tensors gather_rows(const std::vector<nn::Tensors>& parts, const RowRanges& rows, Device device,
                        const std::string& who);

}  // namespace weft::parallel
