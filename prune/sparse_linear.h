// SparseLinear: a pruned Linear layer stored in CSR, for inference.
//
// y = x W^T + b with x (B, in), W (out, in) holding mostly zeros, b (out) -> y (B, out).
//
// CSR (compressed sparse row) keeps only the non-zeros of W, row by row:
//   values[k], col[k]   the k-th non-zero and its input column, rows one after another
//   row_ptr[o]          where row o starts in values/col; row o is [row_ptr[o], row_ptr[o+1])
// At sparsity s that is (1 - s) * out * in * 8 bytes (a float and an int32 per non-zero)
// against out * in * 4 for the dense weight: CSR is smaller once s > 0.5, and the
// multiply-adds fall by the same factor. Whether that is *faster* than a dense GEMM is a
// different question -- the GEMM runs near peak FLOPs with SIMD and register blocking,
// while sparse code chases indices -- see bench/sparse_linear.cpp for the break-even.
//
// The kernels, both one pass over the rows of W (one output feature per row):
//   batch 1:  y[o] = b[o] + sum_k values[k] * x[col[k]]           (a sparse dot product;
//             with AVX-512, 16 rows at once with x held in registers 32 inputs at a
//             time, see "blocked SELL-16" below)
//   batch B:  in the transposed layout. x is transposed once to xT (in, B), so that the
//             B inputs a non-zero multiplies are contiguous, and row o of yT (out, B) is
//             sum_k values[k] * xT[col[k], 0:B) -- SIMD axpys over rows that stay in
//             cache, into 64 accumulators held in registers; yT is transposed back.
// Rows are split across the intra-op thread pool (tensor/thread_pool.h).
//
// There is no backward: it is built from a trained, pruned Linear (fine-tune the dense
// masked layer, then convert). float32 only. On a GPU input the same CSR arrays, copied
// to that GPU the first time it is used, go through cuSPARSE's SpMM (cuda/sparse.cpp).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "../nn/linear.h"
#include "../nn/sequential.h"

namespace weft::prune {

class SparseLinear : public nn::Module {
 public:
  // From a dense weight (out, in), dropping its zeros, and a bias (out) or undefined.
  SparseLinear(const Tensor& weight, const Tensor& bias);
  static std::shared_ptr<SparseLinear> from(const nn::Linear& linear);

  // x (..., in) -> (..., out). Inference only: an error if x needs a gradient.
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;

  Tensor to_dense() const;  // W (out, in) with the zeros back
  int64_t nnz() const { return static_cast<int64_t>(values_.size()); }
  double sparsity() const { return 1.0 - double(nnz()) / double(in_features * out_features); }
  const int64_t in_features, out_features;

 private:
  void forward_vector(const float* x, float* y) const;              // batch 1
  void forward_batch(const float* xt, int64_t batch, float* yt) const;  // (in, batch) -> (out, batch)
  void build_slices();

  std::vector<int32_t> row_ptr_;  // out + 1 entries
  std::vector<int32_t> col_;      // nnz
  std::vector<float> values_;     // nnz
  std::vector<float> bias_;       // out, zeros when built without a bias

  // The CSR arrays on a GPU, for cuSPARSE (int64 indices: weft has no int32 dtype).
  struct OnDevice {
    Tensor row_ptr, col, values, bias;
  };
  const OnDevice& on_device(Device d) const;
  mutable std::mutex device_mu_;
  mutable std::map<int, OnDevice> device_copies_;  // by GPU index

  // The same non-zeros again, for batch 1 with AVX-512, as "blocked SELL-16". Rows are
  // sorted by their number of non-zeros, longest first, and cut into slices of 16 rows,
  // one per SIMD lane. The inputs are cut into blocks of 32, and for each slice and block
  // step j holds the j-th non-zero of each lane's row inside that block (value 0 past a
  // row's end there): 16 values and 16 one-byte positions inside the block. The kernel
  // loads the block's 32 inputs into two registers once and picks each lane's input with
  // one two-register permute (vpermt2ps) instead of a gather from memory: on the AMD
  // EPYC (Zen 4) development machine a 16-lane gather costs about 28 cycles, slower than
  // 16 scalar loads, while a permute costs one. The price is padding: a step is as long
  // as the lane with the most non-zeros in the block (about 2x the non-zeros at 95%).
  static constexpr int64_t kLanes = 16, kBlock = 32;
  std::vector<int32_t> slice_rows_;    // 16 per slice: the row of each lane, -1 for padding
  std::vector<int64_t> slice_start_;   // slices + 1: where each slice's steps start
  std::vector<uint16_t> block_steps_;  // slices x blocks: steps of that slice in that block
  std::vector<float> step_val_;        // 16 per step
  std::vector<uint8_t> step_pos_;      // 16 per step: the input's position in its block
};

// A copy of `model` for inference with every Linear replaced by its SparseLinear; the
// other layers are shared with `model` (they hold no weights that change).
std::shared_ptr<nn::Sequential> sparsify_linears(const nn::Sequential& model);

}  // namespace weft::prune
