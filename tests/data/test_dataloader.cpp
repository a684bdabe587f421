// data/: TensorDataset, and the DataLoader's order, epochs, prefetch thread, shutdown and
// error propagation. (The IDX reader and the loaders are in test_idx.cpp.)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "../helpers.h"

using namespace weft;
using namespace weft::data;

namespace {
std::vector<int64_t> ints(const Tensor& t) { return t.to_vector<int64_t>(); }
}  // namespace

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
