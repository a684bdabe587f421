// data/distributed_sampler: the ranks' shares cover the dataset exactly once per epoch
// (plus the wrap-around padding, or minus the drop_last tail), reshuffle each epoch
// identically on every rank, and drive a DataLoader.
#include <map>
#include <set>

#include "../helpers.h"

using namespace weft;
using namespace weft::data;

namespace {

std::vector<int64_t> ints(const Tensor& t) { return t.to_vector<int64_t>(); }

// How often each sample appears across all ranks' shares of `epoch`.
std::map<int64_t, int> coverage(int64_t n, int ranks, int64_t epoch, const DistributedSamplerOptions& opt) {
  std::map<int64_t, int> seen;
  for (int r = 0; r < ranks; ++r)
    for (int64_t i : ints(DistributedSampler(n, ranks, r, opt).indices(epoch))) ++seen[i];
  return seen;
}

}  // namespace

TEST_CASE("DistributedSampler shares cover the dataset exactly once when the rank count divides it", "[ddp][data]") {
  for (int ranks : {1, 2, 3, 4}) {
    const int64_t n = 12;
    auto seen = coverage(n, ranks, 0, {.seed = 7});
    CHECK(seen.size() == static_cast<size_t>(n));
    for (auto& [i, count] : seen) CHECK(count == 1);
    CHECK(DistributedSampler(n, ranks, 0).num_samples() == n / ranks);
  }
}

TEST_CASE("DistributedSampler pads by wrapping around, or drops the tail", "[ddp][data]") {
  const int64_t n = 10;
  SECTION("padding: every sample at least once, total a multiple of the rank count") {
    auto seen = coverage(n, 4, 0, {.shuffle = false});
    CHECK(seen.size() == 10u);
    int total = 0;
    for (auto& [i, count] : seen) total += count;
    CHECK(total == 12);
    // Unshuffled, rank r takes r, r+4, r+8 (mod 10): the padding is samples 0 and 1 again.
    CHECK(ints(DistributedSampler(n, 4, 2, {.shuffle = false}).indices(0)) == std::vector<int64_t>{2, 6, 0});
    CHECK(ints(DistributedSampler(n, 4, 3, {.shuffle = false}).indices(0)) == std::vector<int64_t>{3, 7, 1});
  }
  SECTION("drop_last: each sample at most once, 2 per rank") {
    auto seen = coverage(n, 4, 0, {.seed = 3, .drop_last = true});
    CHECK(seen.size() == 8u);
    for (auto& [i, count] : seen) CHECK(count == 1);
    CHECK(DistributedSampler(n, 4, 1, {.drop_last = true}).num_samples() == 2);
  }
  SECTION("more ranks than samples wraps more than once") {
    CHECK(ints(DistributedSampler(2, 5, 4, {.shuffle = false}).indices(0)) == std::vector<int64_t>{0});
  }
}

TEST_CASE("DistributedSampler reshuffles per epoch, identically on every rank", "[ddp][data]") {
  const int64_t n = 50;
  DistributedSampler a(n, 2, 0, {.seed = 11}), b(n, 2, 1, {.seed = 11});
  CHECK(equal(a.global_order(3), b.global_order(3)));  // both ranks agree on the order
  CHECK(!equal(a.indices(0), a.indices(1)));           // a new epoch, a new order
  CHECK(equal(a.indices(2), DistributedSampler(n, 2, 0, {.seed = 11}).indices(2)));  // and it is reproducible
  // One rank with shuffle gives exactly the plain shuffled loader's order.
  DataLoader plain(TensorDataset(zeros({n, 1}), arange(n)), {.shuffle = true, .seed = 11});
  CHECK(equal(DistributedSampler(n, 1, 0, {.seed = 11}).indices(4), plain.order(4)));
}

TEST_CASE("A DataLoader with a DistributedSampler yields the rank's share, per epoch", "[ddp][data]") {
  const int64_t n = 20;
  TensorDataset ds(arange(0.0, static_cast<double>(n)).reshape({n, 1}), arange(n));
  std::set<int64_t> all;
  for (int r = 0; r < 2; ++r) {
    auto sampler = std::make_shared<DistributedSampler>(n, 2, r, DistributedSamplerOptions{.seed = 5});
    DataLoader loader(ds, {.batch_size = 4, .sampler = sampler});
    CHECK(loader.num_batches() == 3);  // 10 samples per rank: 4 + 4 + 2
    loader.set_epoch(1);
    std::vector<int64_t> got;
    for (const Batch& batch : loader)
      for (int64_t i : ints(batch.y)) got.push_back(i);
    CHECK(got == ints(sampler->indices(1)));
    all.insert(got.begin(), got.end());
  }
  CHECK(all.size() == static_cast<size_t>(n));
  REQUIRE_THROWS_WITH(DataLoader(ds, {.shuffle = true, .sampler = std::make_shared<DistributedSampler>(n, 2, 0)}),
                      Catch::Contains("shuffle and sampler"));
  REQUIRE_THROWS_WITH(DistributedSampler(n, 2, 2), Catch::Contains("rank 2 is outside [0, 2)"));
}
