// data/: the IDX reader (good files round-trip, every corrupt one is an error naming the
// file), the MNIST-like loaders, TensorDataset, and the DataLoader's order, epochs,
// prefetch thread, shutdown and error propagation. IDX files are written at test time
// into a temporary directory, gzipped (through zlib) and plain.
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
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

// ---- TensorDataset ----------------------------------------------------------------------

namespace {

// Sample i is x = (i, 10 i) as float32, y = i: every batch says which samples it holds.
TensorDataset numbered(int64_t n) {
  Tensor i = arange(n);
  Tensor x = empty({n, 2});
  x.select(1, 0).copy_(i);
  x.select(1, 1).copy_(i * 10.0);
  return TensorDataset(x, i);
}

// A batch holds what its index says: y == index and x == (index, 10 index).
void check_consistent(const Batch& b) {
  REQUIRE(ints(b.y) == ints(b.index));
  for (int64_t k = 0; k < b.size(); ++k) {
    const auto i = static_cast<float>(b.index[k].item<int64_t>());
    REQUIRE(b.x[k].to_vector<float>() == std::vector<float>{i, 10 * i});
  }
}

}  // namespace

TEST_CASE("TensorDataset: get, slice, head and their checks", "[data]") {
  TensorDataset ds = numbered(10);
  REQUIRE(ds.size() == 10);
  Batch b = ds.get({7, 2, 2});
  REQUIRE(b.x.shape() == Shape{3, 2});
  REQUIRE(ints(b.y) == std::vector<int64_t>{7, 2, 2});
  check_consistent(b);
  b.x.fill_(-1);  // a batch is a copy: the dataset is unchanged
  REQUIRE(ds.x()[7].to_vector<float>() == std::vector<float>{7, 70});

  TensorDataset mid = ds.slice(3, 6);
  REQUIRE(mid.size() == 3);
  REQUIRE(ints(mid.get({0, 2}).y) == std::vector<int64_t>{3, 5});
  REQUIRE(mid.x().storage() == ds.x().storage());  // a view, no copy
  REQUIRE(ds.head(4).size() == 4);
  REQUIRE(ds.head(100).size() == 10);

  REQUIRE_THROWS_WITH(ds.slice(5, 11), Catch::Contains("slice") && Catch::Contains("[5, 11)"));
  REQUIRE_THROWS_WITH(ds.get({10}), Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(TensorDataset(zeros({3, 2}), arange(4)), Catch::Contains("(3,2)") && Catch::Contains("(4)"));
  REQUIRE_THROWS_WITH(TensorDataset(zeros({3}), Tensor()), Catch::Contains("defined"));
}

// ---- DataLoader -------------------------------------------------------------------------

namespace {

std::vector<Batch> one_pass(DataLoader& loader) {
  std::vector<Batch> out;
  for (const Batch& b : loader) out.push_back(b);
  return out;
}

std::vector<int64_t> sample_order(const std::vector<Batch>& batches) {
  std::vector<int64_t> order;
  for (const Batch& b : batches)
    for (int64_t i : ints(b.index)) order.push_back(i);
  return order;
}

bool same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (!equal(a[k].x, b[k].x) || !equal(a[k].y, b[k].y) || !equal(a[k].index, b[k].index)) return false;
  return true;
}

// Wraps a dataset: sleeps in get, counts calls, and throws for one sample if asked.
class TestDataset : public Dataset {
 public:
  TestDataset(int64_t n, std::chrono::milliseconds delay = {}, int64_t poison = -1)
      : inner_(numbered(n)), delay_(delay), poison_(poison) {}
  int64_t size() const override { return inner_.size(); }
  Batch get(const Tensor& indices) const override {
    ++calls;
    std::this_thread::sleep_for(delay_);
    for (int64_t i : ints(indices))
      if (i == poison_) throw Error("TestDataset: sample " + std::to_string(i) + " is unreadable");
    return inner_.get(indices);
  }
  using Dataset::get;
  mutable std::atomic<int> calls{0};

 private:
  TensorDataset inner_;
  std::chrono::milliseconds delay_;
  int64_t poison_;
};

}  // namespace

TEST_CASE("DataLoader: every sample exactly once per epoch; batch sizes and drop_last", "[data]") {
  const bool shuffle = GENERATE(false, true);
  const bool drop_last = GENERATE(false, true);
  const bool prefetch = GENERATE(false, true);
  DataLoader loader(numbered(10), {.batch_size = 3, .shuffle = shuffle, .seed = 7, .drop_last = drop_last,
                                   .prefetch = prefetch});
  REQUIRE(loader.num_batches() == (drop_last ? 3 : 4));

  for (int epoch = 0; epoch < 3; ++epoch) {
    const std::vector<Batch> batches = one_pass(loader);
    REQUIRE(static_cast<int64_t>(batches.size()) == loader.num_batches());
    for (size_t k = 0; k < batches.size(); ++k) {
      REQUIRE(batches[k].size() == (k == 3 ? 1 : 3));
      REQUIRE(batches[k].x.shape() == Shape{batches[k].size(), 2});
      check_consistent(batches[k]);
    }
    std::vector<int64_t> order = sample_order(batches);
    if (!shuffle) REQUIRE(order == std::vector<int64_t>(ints(arange(drop_last ? 9 : 10))));
    std::sort(order.begin(), order.end());
    REQUIRE(std::adjacent_find(order.begin(), order.end()) == order.end());  // no repeats
    REQUIRE(order.size() == (drop_last ? 9u : 10u));
  }
  REQUIRE(loader.stats().batches == loader.num_batches());
}

TEST_CASE("DataLoader: batch_size dividing N, larger than N, and an empty dataset", "[data]") {
  DataLoader even(numbered(12), {.batch_size = 4, .drop_last = true});
  REQUIRE(even.num_batches() == 3);
  REQUIRE(one_pass(even).size() == 3);
  DataLoader big(numbered(5), {.batch_size = 8});
  REQUIRE(big.num_batches() == 1);
  REQUIRE(one_pass(big)[0].size() == 5);
  DataLoader none(numbered(5), {.batch_size = 8, .drop_last = true});
  REQUIRE(none.num_batches() == 0);
  REQUIRE(one_pass(none).empty());
  DataLoader empty_ds(numbered(10).head(0), {.shuffle = true});
  REQUIRE(one_pass(empty_ds).empty());
  REQUIRE_THROWS_WITH(DataLoader(numbered(5), {.batch_size = 0}), Catch::Contains("batch_size"));
}

TEST_CASE("DataLoader: the order depends only on (seed, epoch)", "[data]") {
  const DataLoaderOptions opt{.batch_size = 4, .shuffle = true, .seed = 42};
  DataLoader a(numbered(50), opt), b(numbered(50), opt);
  const auto a0 = one_pass(a), a1 = one_pass(a);
  const auto b0 = one_pass(b), b1 = one_pass(b);
  REQUIRE(same_batches(a0, b0));  // same seed: identical batches, epoch after epoch
  REQUIRE(same_batches(a1, b1));
  REQUIRE(sample_order(a0) != sample_order(a1));  // each pass is a new epoch, a new order
  REQUIRE(sample_order(a0) != ints(arange(50)));

  DataLoader other_seed(numbered(50), {.batch_size = 4, .shuffle = true, .seed = 43});
  REQUIRE(sample_order(one_pass(other_seed)) != sample_order(a0));

  // A resumed run: set_epoch(1) gives what the original run saw in its second epoch.
  DataLoader resumed(numbered(50), opt);
  resumed.set_epoch(1);
  REQUIRE(resumed.epoch() == 1);
  REQUIRE(same_batches(one_pass(resumed), a1));
  REQUIRE(resumed.epoch() == 2);
  resumed.set_epoch(0);
  REQUIRE(same_batches(one_pass(resumed), a0));

  // Epoch e's order is the (e+1)-th permutation one Generator(seed) would draw.
  Generator gen(42);
  REQUIRE(ints(randperm(50, gen)) == ints(a.order(0)));
  REQUIRE(ints(randperm(50, gen)) == ints(a.order(1)));
  REQUIRE(sample_order(a1) == ints(a.order(1)));
}

TEST_CASE("DataLoader: a pass abandoned early still moves to the next epoch", "[data]") {
  DataLoader loader(numbered(20), {.batch_size = 5, .shuffle = true, .seed = 1});
  std::vector<int64_t> firsts;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (const Batch& b : loader) {
      firsts.push_back(b.index[0].item<int64_t>());
      break;
    }
  }
  REQUIRE(loader.epoch() == 3);
  REQUIRE(firsts == std::vector<int64_t>{loader.order(0)[0].item<int64_t>(), loader.order(1)[0].item<int64_t>(),
                                         loader.order(2)[0].item<int64_t>()});
}

TEST_CASE("DataLoader: next() runs one epoch, then nullopt, then the next epoch", "[data]") {
  const bool prefetch = GENERATE(false, true);
  DataLoader loader(numbered(7), {.batch_size = 3, .shuffle = true, .prefetch = prefetch});
  std::vector<int64_t> first, second;
  while (auto b = loader.next())
    for (int64_t i : ints(b->index)) first.push_back(i);
  while (auto b = loader.next())
    for (int64_t i : ints(b->index)) second.push_back(i);
  REQUIRE(first == ints(loader.order(0)));
  REQUIRE(second == ints(loader.order(1)));
}

TEST_CASE("DataLoader: prefetch on and off give identical batches", "[data]") {
  DataLoaderOptions opt{.batch_size = 6, .shuffle = true, .seed = 5, .prefetch = true};
  DataLoader on(numbered(40), opt);
  opt.prefetch = false;
  DataLoader off(numbered(40), opt);
  for (int epoch = 0; epoch < 3; ++epoch) REQUIRE(same_batches(one_pass(on), one_pass(off)));
}

TEST_CASE("DataLoader: the worker makes batch k+1 while the caller holds batch k", "[data]") {
  using namespace std::chrono_literals;
  auto ds = std::make_shared<TestDataset>(12, 30ms);
  DataLoader loader(ds, {.batch_size = 2});
  auto b0 = loader.next();
  // Within the caller's "step", the worker makes batch 1, then waits: one slot only.
  for (int i = 0; i < 200 && ds->calls < 2; ++i) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(100ms);
  REQUIRE(ds->calls == 2);

  // Overlap: with a 50 ms step per batch, the caller hardly waits for the 30 ms loads.
  while (auto b = loader.next()) std::this_thread::sleep_for(50ms);
  const LoaderStats s = loader.stats();
  REQUIRE(s.batches == 6);
  REQUIRE(s.prepare_seconds >= 6 * 0.025);
  REQUIRE(s.wait_seconds < s.prepare_seconds / 2);

  DataLoader sync(ds, {.batch_size = 2, .prefetch = false});
  while (auto b = sync.next()) std::this_thread::sleep_for(30ms);
  REQUIRE(sync.stats().wait_seconds >= 6 * 0.025);  // without prefetch the caller waits for all of it
}

TEST_CASE("DataLoader: destroying or restarting mid-epoch does not hang", "[data]") {
  using namespace std::chrono_literals;
  auto ds = std::make_shared<TestDataset>(100, 20ms);
  const auto t0 = std::chrono::steady_clock::now();
  {
    DataLoader never_iterated(ds, {.batch_size = 10});
  }
  {
    DataLoader started(ds, {.batch_size = 10});
    auto it = started.begin();  // the worker is now making batch 1
  }
  {
    DataLoader loader(ds, {.batch_size = 10, .shuffle = true});
    for (const Batch& b : loader) {
      check_consistent(b);
      break;  // abandoned; the worker waits on a full slot
    }
    auto b = loader.next();      // continues the abandoned pass
    REQUIRE(b->size() == 10);
    REQUIRE(one_pass(loader).size() == 10);  // begin() restarts cleanly
    loader.set_epoch(5);                     // abandons a pass, if any
    auto c = loader.next();
    REQUIRE(ints(c->index) == ints(loader.order(5).narrow(0, 0, 10)));
  }  // destroyed mid-epoch, worker busy or waiting
  REQUIRE(std::chrono::steady_clock::now() - t0 < 5s);

  // Many short-lived passes, each cut at a different point.
  DataLoader churn(numbered(30), {.batch_size = 4, .shuffle = true});
  for (int pass = 0; pass < 200; ++pass) {
    int taken = 0;
    for (const Batch& b : churn) {
      (void)b;
      if (++taken > pass % 9) break;
    }
  }
  REQUIRE(churn.epoch() == 200);
}

TEST_CASE("DataLoader: an exception while making a batch surfaces in the caller", "[data]") {
  const bool prefetch = GENERATE(false, true);
  auto ds = std::make_shared<TestDataset>(10, std::chrono::milliseconds(0), /*poison=*/7);
  DataLoader loader(ds, {.batch_size = 3, .prefetch = prefetch});
  auto b0 = loader.next(), b1 = loader.next();  // samples 0-5 are fine
  REQUIRE(ints(b1->index) == std::vector<int64_t>{3, 4, 5});
  REQUIRE_THROWS_AS(loader.next(), weft::Error);
  // The failed pass is over: the next call starts a new one, which fails at the same place.
  REQUIRE(ints(loader.next()->index) == std::vector<int64_t>{0, 1, 2});
  loader.next();
  REQUIRE_THROWS_WITH(loader.next(), "TestDataset: sample 7 is unreadable");
  // A range-for sees it too.
  auto iterate = [&] {
    for (const Batch& b : loader) (void)b;
  };
  REQUIRE_THROWS_WITH(iterate(), Catch::Contains("sample 7"));
}

TEST_CASE("DataLoader: a custom Dataset may leave Batch::index out", "[data]") {
  // Sample i is the single value 100 + i; get returns only x and y.
  struct Hundreds : Dataset {
    int64_t size() const override { return 5; }
    Batch get(const Tensor& indices) const override {
      Tensor v = indices + 100.0;
      return {v.to(kFloat32), v, Tensor()};
    }
  };
  DataLoader loader(std::make_shared<Hundreds>(), {.batch_size = 2, .shuffle = true, .seed = 9});
  for (const Batch& b : loader) {
    REQUIRE(b.size() == b.index.numel());
    REQUIRE(ints(b.y) == ints(b.index + 100.0));
  }
  REQUIRE(Batch{ones({3, 2}), arange(3), Tensor()}.size() == 3);
}
