// The pipeline partitioner: balance_by_cost against brute force over every contiguous
// split (random real and integer costs, n up to 9 layers, p up to 5 stages), its tie
// break, the edge cases (p > n, p == n, zero costs), balance_by_count, manual boundaries
// and their errors, and the per-stage table.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "parallel/pipeline/partition.h"

using namespace weft::parallel::pipeline;
using Catch::Matchers::Contains;

namespace {

// Calls visit(first_layer) for every split of n layers into p non-empty contiguous stages.
template <class F>
void for_each_split(int n, int p, std::vector<int>& first, F visit) {
  if (static_cast<int>(first.size()) == p) return visit(first);
  const int stages_left = p - static_cast<int>(first.size());
  for (int start = first.back() + 1; start <= n - stages_left; ++start) {
    first.push_back(start);
    for_each_split(n, p, first, visit);
    first.pop_back();
  }
}

int largest_stage(const std::vector<int>& first, int n) {
  int largest = 0;
  for (size_t s = 0; s < first.size(); ++s)
    largest = std::max(largest, (s + 1 < first.size() ? first[s + 1] : n) - first[s]);
  return largest;
}

}  // namespace

TEST_CASE("pipeline balance_by_cost finds the smallest slowest stage, as brute force does", "[pipeline]") {
  std::mt19937 rng(16);
  int cases = 0;
  for (int round = 0; round < 80; ++round)
    for (int n = 1; n <= 9; ++n) {
      const int p = 1 + static_cast<int>(rng() % std::min(n, 5));
      // Half the cases real costs, half small integers: those tie often, and their sums
      // are exact, so the tie break can be checked exactly too.
      const bool integers = round % 2 == 1;
      std::vector<double> costs(n);
      std::uniform_real_distribution<double> real(0.0, 10.0);
      for (double& c : costs) c = integers ? static_cast<double>(rng() % 4) : real(rng);
      INFO("n=" << n << " p=" << p << (integers ? " integer" : " real") << " costs");

      double best = 1e300;
      int fewest = n;  // among the optimal splits: the smallest largest-stage layer count
      std::vector<int> first = {0};
      for_each_split(n, p, first, [&](const std::vector<int>& split) {
        const double slowest = evaluate_partition(costs, split).slowest();
        if (slowest < best - 1e-9) best = slowest, fewest = n;
        if (slowest <= best + 1e-9) fewest = std::min(fewest, largest_stage(split, n));
      });

      const Partition part = balance_by_cost(costs, p);
      REQUIRE(part.first_layer.size() == static_cast<size_t>(p));
      REQUIRE(part.stage_cost.size() == static_cast<size_t>(p));
      CHECK(part.slowest() == Approx(best).margin(1e-9));
      CHECK(part.stage_cost == evaluate_partition(costs, part.first_layer).stage_cost);
      if (integers) {
        CHECK(part.slowest() == best);
        CHECK(largest_stage(part.first_layer, n) == fewest);
      }
      ++cases;
    }
  CHECK(cases == 720);
}

TEST_CASE("pipeline balance_by_cost edge cases: p > n, p == n, zero and dominant costs", "[pipeline]") {
  CHECK_THROWS_WITH(balance_by_cost({1, 2}, 3), Contains("cannot cut 2 layers into 3 non-empty stages"));
  CHECK_THROWS_WITH(balance_by_cost({}, 1), Contains("cannot cut 0 layers into 1"));
  CHECK_THROWS_WITH(balance_by_cost({1, 2}, 0), Contains("at least one stage"));
  CHECK_THROWS_WITH(balance_by_cost({1, -2, 3}, 2), Contains("layer 1 has cost -2"));
  CHECK_THROWS_WITH(balance_by_cost({1, NAN}, 2), Contains("layer 1 has cost nan"));

  const Partition each = balance_by_cost({3, 1, 4, 1}, 4);  // p == n: one layer per stage
  CHECK(each.first_layer == std::vector<int>{0, 1, 2, 3});
  CHECK(each.stage_cost == std::vector<double>{3, 1, 4, 1});
  CHECK(each.slowest() == 4);

  // Every split costs 0: the tie break spreads the layers as evenly as it can.
  const Partition zeros = balance_by_cost(std::vector<double>(7, 0.0), 3);
  CHECK(zeros.slowest() == 0);
  CHECK(largest_stage(zeros.first_layer, 7) == 3);

  // One layer outweighs the rest: it gets a stage of its own, the rest share.
  const Partition heavy = balance_by_cost({1, 1, 10, 1, 1, 1}, 3);
  CHECK(heavy.slowest() == 10);
  CHECK(heavy.first_layer == std::vector<int>{0, 2, 3});

  CHECK(balance_by_cost({5}, 1).first_layer == std::vector<int>{0});
  // 1..5 | 6 7 | 8 9 costs 15, 13, 17; giving 9 a stage alone would leave 36 for two.
  const Partition nine = balance_by_cost({1, 2, 3, 4, 5, 6, 7, 8, 9}, 3);
  CHECK(nine.first_layer == std::vector<int>{0, 5, 7});
  CHECK(nine.stage_cost == std::vector<double>{15, 13, 17});
}

TEST_CASE("pipeline balance_by_count gives stages that differ by at most one layer", "[pipeline]") {
  CHECK(balance_by_count(10, 3) == std::vector<int>{0, 4, 7});
  CHECK(balance_by_count(9, 3) == std::vector<int>{0, 3, 6});
  CHECK(balance_by_count(4, 4) == std::vector<int>{0, 1, 2, 3});
  CHECK(balance_by_count(5, 1) == std::vector<int>{0});
  for (int n = 1; n <= 20; ++n)
    for (int p = 1; p <= n; ++p) {
      const std::vector<int> first = balance_by_count(n, p);
      REQUIRE(first.size() == static_cast<size_t>(p));
      const Partition counts = evaluate_partition(std::vector<double>(n, 1.0), first);  // checks the boundaries
      CHECK(counts.slowest() == (n + p - 1) / p);
    }
  CHECK_THROWS_WITH(balance_by_count(3, 4), Contains("cannot cut 3 layers into 4"));
}

TEST_CASE("pipeline parse_boundaries reads the first layer of stages 1..p-1", "[pipeline]") {
  CHECK(parse_boundaries("4,7", 10, 3) == std::vector<int>{0, 4, 7});
  CHECK(parse_boundaries(" 4 , 7 ", 10, 3) == std::vector<int>{0, 4, 7});
  CHECK(parse_boundaries("", 10, 1) == std::vector<int>{0});
  CHECK(parse_boundaries("1,2,3", 4, 4) == std::vector<int>{0, 1, 2, 3});

  CHECK_THROWS_WITH(parse_boundaries("4", 10, 3), Contains("gives 1 boundaries, but 3 stages need 2"));
  CHECK_THROWS_WITH(parse_boundaries("2,4,7", 10, 3), Contains("gives 3 boundaries, but 3 stages need 2"));
  CHECK_THROWS_WITH(parse_boundaries("7,4", 10, 3),
                    Contains("must increase: stage 2 starts at layer 4, stage 1 at layer 7"));
  CHECK_THROWS_WITH(parse_boundaries("4,4", 10, 3), Contains("must increase"));
  CHECK_THROWS_WITH(parse_boundaries("4,10", 10, 3), Contains("stage 2 starts at layer 10, out of range 1..9"));
  CHECK_THROWS_WITH(parse_boundaries("0,4", 10, 3), Contains("stage 1 starts at layer 0, out of range 1..9"));
  CHECK_THROWS_WITH(parse_boundaries("4,x", 10, 3), Contains("'x' in \"4,x\" is not a layer index"));
  CHECK_THROWS_WITH(parse_boundaries("4,", 10, 3), Contains("'' in \"4,\" is not a layer index"));
  CHECK_THROWS_WITH(parse_boundaries("4.5,7", 10, 3), Contains("'4.5'"));
  CHECK_THROWS_WITH(parse_boundaries("99999999999,7", 10, 3), Contains("is not a layer index"));
  CHECK_THROWS_WITH(parse_boundaries("1,2,3", 3, 4), Contains("cannot cut 3 layers into 4"));

  CHECK(evaluate_partition({1, 2, 3, 4}, {0, 3}).stage_cost == std::vector<double>{6, 4});
  CHECK_THROWS_WITH(evaluate_partition({1, 2}, {1}), Contains("stage 0 must start at layer 0"));
  CHECK_THROWS_WITH(evaluate_partition({1, 2}, {0, 2}), Contains("out of range"));
}

TEST_CASE("pipeline stage_table shows each stage's layers, parameters, ms and share", "[pipeline]") {
  const std::vector<std::string> names = {"fc1", "relu1", "fc2", "relu2", "fc3"};
  const std::vector<int64_t> params = {100480, 0, 65664, 0, 1290};
  const std::vector<double> ms = {1.2, 0.1, 0.9, 0.05, 0.3};
  CHECK(stage_table({0, 2, 3}, names, params, ms) ==
        "stage  layers         parameters         ms   share\n"
        "0      fc1 .. relu1       100480      1.300   51.0%\n"
        "1      fc2                 65664      0.900   35.3%\n"
        "2      relu2 .. fc3         1290      0.350   13.7%\n"
        "total                     167434      2.550  100.0%\n");
  // Nothing measured yet: no share to show.
  CHECK_THAT(stage_table({0}, {"a"}, {1}, {0.0}), Contains("0.000       -\n"));
  CHECK_THROWS_WITH(stage_table({0}, names, params, {1.0}), Contains("5 layer names, 5 parameter counts and 1 times"));
  CHECK_THROWS_WITH(stage_table({0, 5}, names, params, ms), Contains("stage 1 starts at layer 5, out of range 1..4"));
}
