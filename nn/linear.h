// Linear: y = x W^T + b, for x (..., in) and W (out, in), b (out).
//
// THE TRANSPOSED WEIGHT. W is stored (out, in), as PyTorch stores it, so the forward
// GEMM reads W transposed ("x @ W^T", an NT product). BLAS libraries pack such an
// operand slowly when x has few rows: on a Zen 4 core a 1024 x 1024 layer runs at
// 35 GFLOP/s for 16 rows and 73 for 64, against 106-108 for the same product with W^T
// stored row-major (bench/gemm --model deep-mlp). A pipeline stage runs exactly such
// calls, m microbatches of few rows with the same weights. So inside a
// TransposedWeightScope a CPU Linear that gets at most kTransposeMaxRows rows keeps a
// contiguous copy of W^T, made on its first forward and reused until W changes (a new
// storage or version counter: every in-place op bumps it, tensor/storage.h); the scope
// frees the copies when it ends. PipelineStage opens one for each step, so a stage pays
// one transpose per layer per step (0.2-0.8 ms for 1M weights) and saves up to 3x on
// every microbatch's forward GEMM. Outside a scope nothing is kept, so code that writes
// weights through data<T>() (gradcheck does) never meets a stale copy, and a call's
// result never depends on earlier calls. The NN product rounds differently from the
// NT one (another summation order): results agree to rounding, not bit for bit.
#pragma once

#include <memory>
#include <mutex>

#include "module.h"

namespace weft::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  // x (..., in) -> (..., out)
  Tensor forward(const Tensor& x) override;
  std::string repr() const override;

  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for the weight and the bias.
  void reset_parameters(Generator& gen = default_generator());

  Tensor& weight;
  Tensor& bias;  // undefined when built without bias
  const int64_t in_features, out_features;

  // See THE TRANSPOSED WEIGHT above: false never keeps a copy, even in a scope.
  bool keep_transposed_weight = true;
  static constexpr int64_t kTransposeMaxRows = 256;  // above it NN and NT run alike
  bool holds_transposed_weight() const;                 // a copy is kept now (for tests)

  // A kept W^T and the weight it was made from (storage, offset, version).
  struct TransposedCopy {
    std::mutex mutex;  // forward may run on several threads
    std::weak_ptr<Storage> storage;
    int64_t offset = -1;
    uint64_t version = 0;
    Tensor value;
  };

  std::shared_ptr<Module> make_fresh() const override {
    return std::make_shared<Linear>(in_features, out_features, bias.defined());
  }

 private:
  Tensor transposed_weight(int64_t rows);  // W^T, or undefined to use W itself
  std::shared_ptr<TransposedCopy> transposed_ = std::make_shared<TransposedCopy>();
};

// While one is alive on a thread, CPU Linear layers running forward on that thread keep
// their transposed weights (see above); when the outermost one ends, the copies made
// under it are freed. Nested scopes are part of the outermost one.
class TransposedWeightScope {
 public:
  TransposedWeightScope();
  ~TransposedWeightScope();
  TransposedWeightScope(const TransposedWeightScope&) = delete;
  TransposedWeightScope& operator=(const TransposedWeightScope&) = delete;

  static bool active();  // on this thread
  // Bytes of the transposed copies this thread's scope holds now (memory reports
  // separate them from activations).
  static int64_t bytes();
  // Called by Linear: free `copy` when the outermost scope ends.
  static void track(const std::shared_ptr<Linear::TransposedCopy>& copy);
};

}  // namespace weft::nn
