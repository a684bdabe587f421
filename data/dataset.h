// Datasets: N samples that can be fetched a batch at a time by index.
//
//   auto train = weft::data::load_fashion_mnist("/usr/share/datasets/fashion-mnist");
//   train.size();                           // 60000
//   Batch b = train.get({0, 5, 7});         // b.x (3,1,28,28) float32, b.y (3) int64
//   auto small = train.head(1000);          // the first 1000 samples, no copy
//
// Dataset is the interface the DataLoader pulls from; TensorDataset (all samples held in
// two tensors, sample i being x[i] and y[i]) is the one most programs need. get() is
// called from the loader's background thread, so an implementation must be safe to
// call while the training thread runs: TensorDataset only reads its tensors.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../tensor/tensor.h"

namespace weft::data {

// One batch: B samples stacked along a new first dim.
struct Batch {
  Tensor x;      // (B, ...) the inputs, e.g. (B,1,28,28) float32 images
  Tensor y;      // (B, ...) the targets, e.g. (B) int64 class labels
  Tensor index;  // (B) int64: which samples of the dataset these are (the DataLoader fills it in)
  int64_t size() const { return index.defined() ? index.numel() : x.size(0); }
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The samples at `indices` (1-D int64, each in [0, size())), in that order.
  virtual Batch get(const Tensor& indices) const = 0;
  Batch get(const std::vector<int64_t>& indices) const;
};

// Sample i is (x[i], y[i]): x is (N, ...) and y is (N, ...), both on the CPU.
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor x, Tensor y);

  int64_t size() const override { return x_.size(0); }
  // x.index_select(0, indices), y.index_select(0, indices): fresh contiguous tensors.
  Batch get(const Tensor& indices) const override;
  using Dataset::get;

  // Samples [begin, end) as views of the same storage (no copy): quick runs and
  // train/validation splits.
  TensorDataset slice(int64_t begin, int64_t end) const;
  TensorDataset head(int64_t n) const { return slice(0, std::min(n, size())); }

  const Tensor& x() const { return x_; }
  const Tensor& y() const { return y_; }

 private:
  Tensor x_, y_;
};

// ---- MNIST-like image sets ----------------------------------------------------------

// Where the Debian package dataset-fashion-mnist puts the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// Mean and standard deviation of the Fashion-MNIST training pixels, scaled to [0,1].
inline constexpr double kFashionMnistMean = 0.2860;
inline constexpr double kFashionMnistStd = 0.3530;

// Pixels become (p / 255 - mean) / std. The default leaves them in [0, 1].
struct Normalize {
  double mean = 0.0;
  double std = 1.0;
};

// An images IDX file (N,H,W) and a labels IDX file (N), gzipped or plain, as a dataset:
// x is (N,1,H,W) float32 and y is (N) int64. Errors name the file at fault; a count
// mismatch names both.
TensorDataset load_idx_dataset(const std::string& images_path, const std::string& labels_path,
                               const Normalize& norm = {});

// Fashion-MNIST from `dir`: train-{images-idx3,labels-idx1}-ubyte (60000 samples) when
// `train`, else t10k-* (10000), each as .gz or already uncompressed. MNIST uses the same
// file names, so an MNIST directory loads too. A missing file gives an error that says
// how to install the package and how to point at another directory.
TensorDataset load_fashion_mnist(const std::string& dir = kFashionMnistDir, bool train = true,
                                 const Normalize& norm = {});

}  // namespace weft::data
