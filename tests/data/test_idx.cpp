// data/idx: the IDX reader (good files round-trip, every corrupt one is an error naming
// the file) and the MNIST-like loaders. IDX files are written at test time into a
// temporary directory, gzipped (through zlib) and plain. TensorDataset and the
// DataLoader are in test_dataloader.cpp.
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "../helpers.h"

using namespace weft;
using namespace weft::data;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

using weft::test::TempDir;

// An IDX file's bytes: 00 00 type ndim, the sizes as big-endian uint32, then `data`.
Bytes idx_bytes(const std::vector<uint32_t>& sizes, const Bytes& data, uint8_t type = 0x08) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(sizes.size())};
  for (uint32_t s : sizes)
    for (int shift : {24, 16, 8, 0}) b.push_back(static_cast<uint8_t>(s >> shift));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// n bytes 0, 1, 2, ... (mod 256)
Bytes ramp(size_t n, int start = 0) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((start + i) % 256);
  return b;
}

void write_file(const std::string& path, const Bytes& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == int(bytes.size()));
    REQUIRE(gzclose(f) == Z_OK);
  } else {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// Writes an IDX file into `dir`, gzipped when the name ends in .gz; returns its path.
std::string write_idx(const TempDir& dir, const std::string& name, const std::vector<uint32_t>& sizes,
                      const Bytes& data, uint8_t type = 0x08) {
  const std::string path = dir.file(name);
  write_file(path, idx_bytes(sizes, data, type), name.ends_with(".gz"));
  return path;
}

std::vector<int64_t> ints(const Tensor& t) { return t.to_vector<int64_t>(); }

// read_idx(path) throws "read_idx: <path>: ..." containing `what`. (A macro: Catch's
// combined matchers hold their parts by reference, so they cannot be returned.)
#define REQUIRE_IDX_ERROR(path, what) \
  REQUIRE_THROWS_WITH(read_idx(path), Catch::StartsWith("read_idx: " + (path) + ": ") && Catch::Contains(what))

}  // namespace

// ---- the IDX reader ---------------------------------------------------------------------

TEST_CASE("read_idx reads gzipped and plain files back exactly", "[data]") {
  TempDir dir;
  const std::string name = GENERATE(std::string("x-idx3-ubyte.gz"), std::string("x-idx3-ubyte"));
  const Bytes data = ramp(3 * 4 * 5, 200);  // wraps past 255, so every byte value matters
  const std::string path = write_idx(dir, name, {3, 4, 5}, data);

  Tensor t = read_idx(path);
  REQUIRE(t.dtype() == kInt64);
  REQUIRE(t.shape() == Shape{3, 4, 5});
  REQUIRE(t.is_contiguous());
  REQUIRE(ints(t) == std::vector<int64_t>(data.begin(), data.end()));

  Tensor f = read_idx(path, kFloat32);
  REQUIRE(f.dtype() == kFloat32);
  REQUIRE(f.to_vector<float>() == std::vector<float>(data.begin(), data.end()));  // raw 0..255, unscaled
  REQUIRE(read_idx(path, kFloat64).to_vector<double>() == std::vector<double>(data.begin(), data.end()));
}

TEST_CASE("read_idx: 1-D labels, 4-D data and data larger than one read chunk", "[data]") {
  TempDir dir;
  REQUIRE(ints(read_idx(write_idx(dir, "l.gz", {4}, {9, 0, 3, 255}))) == std::vector<int64_t>{9, 0, 3, 255});
  REQUIRE(read_idx(write_idx(dir, "four", {2, 1, 3, 2}, ramp(12))).shape() == Shape{2, 1, 3, 2});
  const Bytes big = ramp(3 * 1000 * 1000, 1);  // > the 1 MiB chunk: reads across chunks
  Tensor t = read_idx(write_idx(dir, "big.gz", {3, 1000, 1000}, big));
  REQUIRE(t.numel() == 3000000);
  REQUIRE(t.flatten().narrow(0, 1048570, 10).to_vector<int64_t>() ==
          std::vector<int64_t>(big.begin() + 1048570, big.begin() + 1048580));
  REQUIRE(t.flatten()[2999999].item<int64_t>() == big[2999999]);
}

TEST_CASE("read_idx: every malformed file is an error that names it", "[data]") {
  TempDir dir;
  const bool gz = GENERATE(false, true);
  const std::string ext = gz ? ".gz" : "";
  auto file = [&](const std::string& name, const Bytes& bytes) {
    const std::string p = dir.file(name + ext);
    write_file(p, bytes, gz);
    return p;
  };

  std::string p = file("magic", {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 7});
  REQUIRE_IDX_ERROR(p, "bad magic number 0x12340801");

  p = file("float", idx_bytes({2}, Bytes(8), 0x0D));
  REQUIRE_IDX_ERROR(p, "unsupported IDX element type 0x0D (float32): only 0x08");

  p = file("truncated", Bytes(idx_bytes({3, 4, 5}, ramp(59))));
  REQUIRE_THROWS_WITH(read_idx(p), "read_idx: " + p + ": truncated: expected 60 bytes of data after the header, got 59");

  p = file("empty_data", idx_bytes({10}, {}));
  REQUIRE_IDX_ERROR(p, "expected 10 bytes of data after the header, got 0");

  p = file("trailing", idx_bytes({2, 2}, ramp(7)));
  REQUIRE_IDX_ERROR(p, "3 trailing bytes after the 4 bytes of data");

  p = file("ndim0", {0, 0, 0x08, 0});
  REQUIRE_IDX_ERROR(p, "the header gives 0 dims; expected 1 to 4");

  p = file("ndim5", idx_bytes({1, 1, 1, 1, 1}, {42}));
  REQUIRE_IDX_ERROR(p, "the header gives 5 dims");

  p = file("zero_size", idx_bytes({2, 0}, {}));
  REQUIRE_IDX_ERROR(p, "size 1 in the header is 0");

  p = file("huge", idx_bytes({0xFFFFFFFF, 0xFFFFFFFF}, {}));
  REQUIRE_IDX_ERROR(p, "corrupt header");

  p = file("short_header", {0, 0});
  REQUIRE_IDX_ERROR(p, "too short for an IDX header: 2 bytes");

  p = file("empty", {});
  REQUIRE_IDX_ERROR(p, "too short for an IDX header: 0 bytes");

  p = file("short_sizes", {0, 0, 0x08, 3, 0, 0, 0, 5});
  REQUIRE_IDX_ERROR(p, "truncated in the header's 3 sizes");
}

TEST_CASE("read_idx: missing files, directories and bool are clear errors", "[data]") {
  TempDir dir;
  const std::string missing = dir.file("nope-idx1-ubyte.gz");
  REQUIRE_THROWS_WITH(read_idx(missing), "read_idx: " + missing + ": no such file");
  REQUIRE_THROWS_WITH(read_idx(dir.path.string()), Catch::Contains(dir.path.string()) && Catch::Contains("directory"));
  const std::string ok = write_idx(dir, "ok", {2}, {1, 2});
  REQUIRE_THROWS_WITH(read_idx(ok, kBool), Catch::Contains(ok) && Catch::Contains("bool"));
}

TEST_CASE("read_idx: a damaged gzip stream is an error that names the file", "[data]") {
  TempDir dir;
  const std::string good = write_idx(dir, "good.gz", {100, 100}, ramp(10000));
  const Bytes gz = read_file(good);
  REQUIRE(gz.size() > 40);

  SECTION("compressed file cut short") {
    const std::string p = dir.file("cut.gz");
    write_file(p, Bytes(gz.begin(), gz.begin() + gz.size() / 2), false);
    REQUIRE_THROWS_WITH(read_idx(p), Catch::StartsWith("read_idx: " + p + ": ") &&
                                         Catch::Contains("gzip stream ends early"));
  }
  SECTION("gzip trailer (CRC) damaged") {
    Bytes bad = gz;
    bad[bad.size() - 6] ^= 0xFF;  // inside the CRC32: the data inflates fine, the check fails
    const std::string p = dir.file("crc.gz");
    write_file(p, bad, false);
    REQUIRE_THROWS_WITH(read_idx(p), Catch::StartsWith("read_idx: " + p + ": ") && Catch::Contains("corrupt gzip"));
  }
  SECTION("deflate data garbled") {
    Bytes bad = gz;
    for (size_t i = 12; i < bad.size() - 8; ++i) bad[i] = static_cast<uint8_t>(0xA5 ^ i);
    const std::string p = dir.file("garbled.gz");
    write_file(p, bad, false);
    REQUIRE_THROWS_WITH(read_idx(p), Catch::StartsWith("read_idx: " + p + ": "));
  }
}

// ---- MNIST-like datasets ----------------------------------------------------------------

TEST_CASE("load_idx_dataset: (N,1,H,W) float32 in [0,1] and int64 labels", "[data]") {
  TempDir dir;
  const Bytes pixels = {0, 51, 255, 102, 0, 255, 255, 0, 153, 204, 255, 0};
  const std::string images = write_idx(dir, "img.gz", {3, 2, 2}, pixels);
  const std::string labels = write_idx(dir, "lab", {3}, {7, 0, 9});

  TensorDataset ds = load_idx_dataset(images, labels);
  REQUIRE(ds.size() == 3);
  REQUIRE(ds.x().shape() == Shape{3, 1, 2, 2});
  REQUIRE(ds.x().dtype() == kFloat32);
  REQUIRE(ds.y().dtype() == kInt64);
  REQUIRE(ints(ds.y()) == std::vector<int64_t>{7, 0, 9});
  std::vector<float> want;
  for (uint8_t p : pixels) want.push_back(static_cast<float>(p / 255.0));
  REQUIRE(ds.x().to_vector<float>() == want);
  REQUIRE(ds.x().max().item<float>() == 1.0f);  // 255 is exactly 1

  TensorDataset norm = load_idx_dataset(images, labels, {.mean = 0.5, .std = 0.25});
  REQUIRE(allclose(norm.x(), (ds.x() - 0.5) / 0.25, 1e-6, 1e-6));
  REQUIRE_THROWS_WITH(load_idx_dataset(images, labels, {.std = 0}), Catch::Contains("std"));
}

TEST_CASE("load_idx_dataset: mismatched or misshapen files are named", "[data]") {
  TempDir dir;
  const std::string images = write_idx(dir, "img.gz", {3, 2, 2}, ramp(12));
  const std::string labels4 = write_idx(dir, "lab4.gz", {4}, {1, 2, 3, 4});
  REQUIRE_THROWS_WITH(load_idx_dataset(images, labels4),
                      "load_idx_dataset: " + images + " holds 3 images but " + labels4 + " holds 4 labels");
  // The two files swapped: each is the wrong shape for its role.
  const std::string labels3 = write_idx(dir, "lab3.gz", {3}, {1, 2, 3});
  REQUIRE_THROWS_WITH(load_idx_dataset(labels3, labels3), Catch::Contains(labels3) && Catch::Contains("(N,H,W)"));
  REQUIRE_THROWS_WITH(load_idx_dataset(images, images), Catch::Contains(images) && Catch::Contains("labels"));
  // A bad file inside the pair is reported by read_idx, naming that file.
  const std::string bad = write_idx(dir, "bad.gz", {3}, {1, 2});
  REQUIRE_THROWS_WITH(load_idx_dataset(images, bad), Catch::StartsWith("read_idx: " + bad));
}

TEST_CASE("load_fashion_mnist: a missing dataset says how to install it", "[data]") {
  TempDir dir;
  const std::string missing_dir = dir.file("no-such-dir");
  REQUIRE_THROWS_WITH(load_fashion_mnist(missing_dir),
                      Catch::Contains(missing_dir) && Catch::Contains("apt-get install dataset-fashion-mnist") &&
                          Catch::Contains("--data"));
  // The directory exists but the split's files do not: the message names the file.
  REQUIRE_THROWS_WITH(load_fashion_mnist(dir.path.string(), false),
                      Catch::Contains(dir.file("t10k-images-idx3-ubyte.gz")) &&
                          Catch::Contains("apt-get install dataset-fashion-mnist"));
}

TEST_CASE("load_fashion_mnist: finds the files by name, gzipped or not", "[data]") {
  TempDir dir;
  write_idx(dir, "t10k-images-idx3-ubyte.gz", {2, 28, 28}, ramp(2 * 28 * 28));
  write_idx(dir, "t10k-labels-idx1-ubyte", {2}, {3, 8});  // already gunzipped
  TensorDataset test = load_fashion_mnist(dir.path.string(), false);
  REQUIRE(test.x().shape() == Shape{2, 1, 28, 28});
  REQUIRE(ints(test.y()) == std::vector<int64_t>{3, 8});
  // The train split is looked up separately, and its absence is named.
  REQUIRE_THROWS_WITH(load_fashion_mnist(dir.path.string(), true), Catch::Contains("train-images-idx3-ubyte.gz"));
}

TEST_CASE("Fashion-MNIST test set, when the package is installed", "[data]") {
  if (!fs::exists(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz")) {
    WARN("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): skipping the real-data check");
    return;
  }
  TensorDataset test = load_fashion_mnist(kFashionMnistDir, false);
  REQUIRE(test.size() == 10000);
  REQUIRE(test.x().shape() == Shape{10000, 1, 28, 28});
  REQUIRE(test.y().shape() == Shape{10000});
  REQUIRE(test.x().min().item<float>() == 0.0f);
  REQUIRE(test.x().max().item<float>() == 1.0f);
  std::vector<int64_t> per_class(10, 0);
  for (int64_t y : ints(test.y())) {
    REQUIRE((y >= 0 && y <= 9));
    ++per_class[y];
  }
  REQUIRE(per_class == std::vector<int64_t>(10, 1000));  // the test split is balanced
  const double mean = test.x().mean().item<float>();
  REQUIRE(std::abs(mean - kFashionMnistMean) < 0.01);  // test and train means are close

  DataLoader loader(test, {.batch_size = 256, .shuffle = true, .seed = 3});
  REQUIRE(loader.num_batches() == 40);
  auto b = loader.next();
  REQUIRE(b->x.shape() == Shape{256, 1, 28, 28});
  REQUIRE(allclose(b->x[5], test.x()[b->index[5].item<int64_t>()]));
}
