// Partitioning: which layers of a sequential model go to which pipeline stage.
//
// A pipeline's stages run concurrently, so once the pipeline is full every step waits
// for the SLOWEST stage: a split with stage times 1, 1, 4 ms runs no faster than 4, 4, 4
// and wastes two thirds of the first two devices. The partitioner therefore cuts the
// model's n layers into p contiguous stages (stage s gets layers first[s] ..
// first[s+1]-1, nobody skips or reorders a layer, because activations flow through them
// in order) so that the largest stage cost is as small as possible.
//
// THE ALGORITHM (dynamic programming, O(p n^2)). Let best(k, i) be the smallest
// possible slowest stage when the first i layers are cut into k stages. The last of
// those k stages holds layers j .. i-1 for some j, and the other k-1 stages split the
// first j layers as well as they can, so
//     best(k, i) = min over j of  max(best(k-1, j), cost(j .. i-1))
// with best(1, i) = cost(0 .. i-1). best(p, n) is the answer; remembering which j won
// gives the boundaries. Trying every split instead would cost C(n-1, p-1) evaluations.
//
// What a "cost" is, is up to the caller: parameter bytes (balances memory), measured
// milliseconds per layer (balances time), or 1 per layer (balance_by_count). Manual
// boundaries ("4,7") are there for experiments and for checking the partitioner.
//
// Boundaries everywhere here are the first layer of each stage: {0, 4, 7} for 10 layers
// in 3 stages means layers 0-3, 4-6 and 7-9.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace weft::parallel::pipeline {

struct Partition {
  std::vector<int> first_layer;    // per stage: its first layer; first_layer[0] == 0
  std::vector<double> stage_cost;  // per stage: the sum of its layers' costs
  double slowest() const;          // the largest stage cost: what the pipeline runs at
};

// The contiguous split of `layer_costs` (each >= 0) into `stages` non-empty stages with
// the smallest slowest stage; among the splits that reach it, the one whose largest
// stage has the fewest layers. Throws weft::Error when stages > layers.
Partition balance_by_cost(const std::vector<double>& layer_costs, int stages);

// `layers` layers in `stages` stages of equal size, the first layers % stages stages
// one layer larger: balance_by_count(10, 3) == {0, 4, 7}.
std::vector<int> balance_by_count(int layers, int stages);

// Manual boundaries: "4,7" is the first layer of stages 1 .. p-1 (stage 0 always starts
// at layer 0), so it gives {0, 4, 7}; "" for one stage. Throws weft::Error naming the
// problem: not a number, a wrong count, not increasing, or out of range 1 .. layers-1.
std::vector<int> parse_boundaries(const std::string& text, int layers, int stages);

// Each stage's cost under the given boundaries (checked as parse_boundaries does).
Partition evaluate_partition(const std::vector<double>& layer_costs, const std::vector<int>& first_layer);

// A table to print: one row per stage with its layers (first .. last name), parameter
// count, measured ms and share of the total ms, then a total row. names, params and ms
// hold one entry per layer.
std::string stage_table(const std::vector<int>& first_layer, const std::vector<std::string>& names,
                        const std::vector<int64_t>& params, const std::vector<double>& ms);

}  // namespace weft::parallel::pipeline
