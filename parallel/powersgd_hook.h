// PowerSGDHook: low-rank gradient compression (Vogels, Karimireddy and Jaggi, "PowerSGD:
// Practical Low-Rank Gradient Compression for Distributed Optimization", 2019), a
// communication hook for DDP (comm_hook.h).
//
// Each parameter of dim >= 2 in a bucket is seen as a matrix M (rows = its first dim,
// columns = the rest: a conv weight (O,C,kH,kW) is (O, C*kH*kW)); per step and per matrix,
// with rank r' = min(r, rows, cols):
//   M = grad + residual                     error feedback: what earlier steps left out
//   P = M Q                 (rows, r')      Q (cols, r') from the previous step (warm start)
//   all-reduce P (sum);  orthonormalise P's columns (Gram-Schmidt)
//   Q = M^T P               (cols, r')
//   residual = M - P Q^T                    this rank's part the approximation misses
//   all-reduce Q (sum);  sum over ranks ~ P Q^T;  keep Q for the next step
// Since P is the same on every rank, sum_r P (M_r^T P)^T = P (sum_r Q_r)^T: the approximation
// of the sum is the sum of each rank's approximation, and for every rank
//   (its share of the applied sum) + (new residual) == grad + (old residual)
// exactly, up to float rounding. So nothing is lost, only delayed. With r' = rows, P's
// orthonormal columns span everything and the result is exact (the same when r' = cols
// and the summed M has full column rank).
//
// Vectors (biases, norms' scales) are few bytes: they are all-reduced uncompressed, in
// the same message as the P's; so is a matrix that would not shrink enough, where
// rows cols < min_compression_rate (rows + cols) r' (PyTorch's hook, same default 2: the
// first conv's (32, 9) weight at rank 4 would shrink 1.8x and lose accuracy for it).
//
// WARM-UP. The first start_step reductions of each bucket are plain all-reduces (PyTorch's
// start_powerSGD_iter); the residual starts at zero after them. Early gradients are large
// and change fast, which is where a rank-r memory lags most. Off by default: those steps
// pay full price, and the run's average bytes per step rise with them.
//
// INF AND NaN. A rank whose gradient overflowed (a GradScaler step about to be skipped)
// makes the summed P non-finite on every rank; then the bucket becomes NaN everywhere,
// so every rank's scaler skips, and the residual and Q stay as they were -- one bad step
// does not poison the memory. Unlike PyTorch's hook, P is orthonormalised by Gram-Schmidt
// done twice (PyTorch: once, or QR). Q starts as Gaussian noise from a seed that depends only
// on (bucket, parameter), so it is the same on every rank without a broadcast.
//
// BYTES: two float32 all-reduces per bucket, of sum(rows * r') + the vectors and of
// sum(cols * r'): for a (rows, cols) matrix, (rows + cols) r' floats instead of rows*cols.
// Synchronous (two dependent collectives and work between them): no overlap with backward.
// CPU tensors only.
#pragma once

#include <map>
#include <vector>

#include "comm_hook.h"

namespace weft::parallel {

struct PowerSGDOptions {
  int rank = 1;                        // r: the approximation's rank (PyTorch: matrix_approximation_rank)
  double min_compression_rate = 2.0;   // compress a matrix only where it shrinks this many times
  int64_t start_step = 0;              // plain all-reduces per bucket before compressing
  uint64_t seed = 0x9053d;             // of the first Q, the same on every rank
};

class PowerSGDHook : public CommHook {
 public:
  explicit PowerSGDHook(PowerSGDOptions options);
  explicit PowerSGDHook(int rank) : PowerSGDHook(PowerSGDOptions{.rank = rank}) {}
  // "powersgd:R", with ",start=N" and ",min_rate=X" where they are not the defaults.
  std::string name() const override;
  WorkHandle reduce(size_t index, GradientBucket& bucket, Communicator& comm) override;

  // Per reduced bucket: "bucket.<i>.reductions" (int64, 1), "bucket.<i>.residual"
  // (float32, the bucket's numel) and, where it compresses a matrix, "bucket.<i>.q" (float32,
  // every compressed matrix's (cols, r') Q in turn). Loading checks each size against
  // the bucket and this hook's rank and min_compression_rate.
  nn::NamedTensors state_dict() const override;
  bool keeps_state() const override { return true; }
  void load_state_dict(const nn::NamedTensors& state, const std::vector<GradientBucket>& buckets) override;

  // The bucket's residual memory, laid out like its flat buffer (0 where vectors sit);
  // undefined before the bucket's first reduce.
  Tensor residual(size_t index) const;

 private:
  // One parameter of a bucket, seen as a (rows, cols) matrix; rank 0: a vector, not compressed.
  struct Matrix {
    int64_t offset, rows, cols;
    int rank;
    std::vector<float> q;  // (cols, rank), row-major: the warm start
  };
  struct State {
    int64_t reductions = 0;  // reduce() calls so far: the first start_step are plain
    std::vector<Matrix> matrices;
    std::vector<float> residual;  // (bucket numel)
  };
  State fresh_state(size_t index, const GradientBucket& bucket) const;  // zero residual, the seeded Q
  State& state_for(size_t index, const GradientBucket& bucket);         // this bucket's, made on first use
  State loaded_state(size_t index, const GradientBucket& bucket,
                     const std::map<std::string, const Tensor*>& parts) const;
  static int64_t q_length(const State& s);

  PowerSGDOptions opt_;
  std::map<size_t, State> states_;
};

}  // namespace weft::parallel
