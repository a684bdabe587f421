// TensorDataset and the MNIST-like loaders.
#include "dataset.h"

#include <filesystem>

#include "../tensor/creation.h"
#include "../tensor/raw.h"
#include "idx.h"

namespace weft::data {

Batch Dataset::get(const std::vector<int64_t>& indices) const { return get(tensor(indices)); }

// ---- TensorDataset ------------------------------------------------------------------

TensorDataset::TensorDataset(Tensor x, Tensor y) : x_(std::move(x)), y_(std::move(y)) {
  WEFT_CHECK(x_.defined() && y_.defined(), "TensorDataset: x and y must both be defined tensors");
  WEFT_CHECK(x_.dim() >= 1 && y_.dim() >= 1, "TensorDataset: x ", x_.shape(), " and y ", y_.shape(),
             " need a first (sample) dimension");
  WEFT_CHECK(x_.size(0) == y_.size(0), "TensorDataset: x ", x_.shape(), " holds ", x_.size(0),
             " samples but y ", y_.shape(), " holds ", y_.size(0));
  raw::check_cpu("TensorDataset", x_);
  raw::check_cpu("TensorDataset", y_);
}

// indices (B) -> x (B, ...), y (B, ...). index_select checks the range and copies, so a
// batch never aliases the dataset: training may write to it freely.
Batch TensorDataset::get(const Tensor& indices) const {
  const Tensor index = raw::contiguous(indices);
  return {raw::index_select(x_, 0, index), raw::index_select(y_, 0, index), index};
}

TensorDataset TensorDataset::slice(int64_t begin, int64_t end) const {
  WEFT_CHECK(0 <= begin && begin <= end && end <= size(), "TensorDataset::slice: [", begin, ", ", end,
             ") is not a range of the ", size(), " samples");
  return TensorDataset(x_.narrow(0, begin, end - begin), y_.narrow(0, begin, end - begin));
}

// ---- MNIST-like ---------------------------------------------------------------------

TensorDataset load_idx_dataset(const std::string& images_path, const std::string& labels_path,
                               const Normalize& norm) {
  WEFT_CHECK(norm.std > 0, "load_idx_dataset: Normalize.std must be > 0, got ", norm.std);
  // Labels first: they are small, so a bad pair fails before 47 MB of images are read.
  const Tensor labels = read_idx(labels_path, kInt64);
  WEFT_CHECK(labels.dim() == 1, "load_idx_dataset: ", labels_path, ": expected labels of shape (N), got ",
             labels.shape());
  Tensor images = read_idx(images_path, kFloat32);
  WEFT_CHECK(images.dim() == 3, "load_idx_dataset: ", images_path, ": expected images of shape (N,H,W), got ",
             images.shape());
  WEFT_CHECK(images.size(0) == labels.size(0), "load_idx_dataset: ", images_path, " holds ", images.size(0),
             " images but ", labels_path, " holds ", labels.size(0), " labels");

  // Dividing (not multiplying by 1/255) makes 255 exactly 1.0f.
  raw::binary_scalar_(raw::Binary::Div, images, 255.0);
  if (norm.mean != 0.0) raw::binary_scalar_(raw::Binary::Sub, images, norm.mean);
  if (norm.std != 1.0) raw::binary_scalar_(raw::Binary::Div, images, norm.std);
  // (N,H,W) -> (N,1,H,W): one channel, the layout Conv2d expects.
  return TensorDataset(images.reshape({images.size(0), 1, images.size(1), images.size(2)}), labels);
}

namespace {

// dir/stem.gz, else dir/stem (already gunzipped), else an error saying how to get it.
std::string find_idx_file(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* ext : {".gz", ""}) {
    const fs::path p = fs::path(dir) / (stem + ext);
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  const std::string where = fs::is_directory(dir, ec)
                                ? detail::str((fs::path(dir) / (stem + ".gz")).string(), " not found")
                                : detail::str("directory ", dir, " not found");
  throw Error(detail::str("load_fashion_mnist: ", where,
                          ". Install the dataset with `sudo apt-get install dataset-fashion-mnist` (it goes to ",
                          kFashionMnistDir, "), or pass the directory that holds the *-ubyte.gz files ",
                          "(--data DIR in the samples)"));
}

}  // namespace

TensorDataset load_fashion_mnist(const std::string& dir, bool train, const Normalize& norm) {
  const std::string split = train ? "train" : "t10k";
  const std::string images = find_idx_file(dir, split + "-images-idx3-ubyte");
  const std::string labels = find_idx_file(dir, split + "-labels-idx1-ubyte");
  return load_idx_dataset(images, labels, norm);
}

}  // namespace weft::data
