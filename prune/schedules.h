// Pruning schedules: when to prune, and how much.
//
//   one-shot   train (or load) a dense model, prune once to the final sparsity, then
//              fine-tune. Just a call to a method (methods.h) at one step; no class.
//   gradual    Zhu & Gupta, "To prune, or not to prune" (2017): starting at step t0,
//              every dt steps for n pruning steps, raise the sparsity to
//                  s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
//              The cubic prunes fast while there are many redundant weights and slows
//              down near s_f, leaving the network time to recover between steps.
//   lottery    iterative magnitude pruning with rewinding (Frankle & Carbin 2019,
//              "The Lottery Ticket Hypothesis"; rewinding to step k: Frankle et al.
//              2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis"):
//              train, remove a fraction p of the *remaining* weights by magnitude,
//              reset the surviving weights to their values at step 0 (or k), train
//              again. After r rounds the sparsity is 1 - (1 - p)^r.
#pragma once

#include <cstdint>

#include "pruner.h"

namespace weft::prune {

// ---- gradual magnitude pruning ------------------------------------------------------------
struct GradualOptions {
  double initial_sparsity = 0.0;  // s_i
  double final_sparsity = 0.9;    // s_f
  int64_t begin_step = 0;         // t0
  int64_t num_prunings = 10;      // n
  int64_t interval = 100;         // dt, steps between prunings
  bool global = false;            // one threshold over all targets, or per layer
};

// s_t from the formula above, clamped to s_i before t0 and to s_f after t0 + n dt.
double gradual_sparsity(const GradualOptions& o, int64_t step);

class GradualPruning {
 public:
  GradualPruning(Pruner& pruner, const GradualOptions& options);
  // Call after every optimizer step with the number of steps taken so far. On a pruning
  // step (t0, t0 + dt, ..., t0 + n dt) it prunes to gradual_sparsity(step) and returns
  // true.
  bool step(int64_t step);
  // Whether `step` is one of those pruning steps (for code that prunes its own way).
  bool is_pruning_step(int64_t step) const;
  int64_t last_step() const { return options.begin_step + options.num_prunings * options.interval; }
  const GradualOptions options;

 private:
  Pruner& pruner_;
};

// ---- iterative magnitude pruning with rewinding (the lottery ticket) -----------------------
struct LotteryOptions {
  double fraction_per_round = 0.2;  // p: the share of the remaining weights each round removes
  bool global = true;               // one threshold over all targets (as Frankle & Carbin do)
};

class LotteryTicket {
 public:
  LotteryTicket(Pruner& pruner, const LotteryOptions& options);
  // Saves every parameter of the model as the rewinding point: call it at step 0 for
  // "rewind to init", or after k steps for "rewind to step k".
  void save_rewind_point();
  bool has_rewind_point() const { return !rewind_.empty(); }
  // Ends a round: prunes fraction p of the remaining weights by their trained magnitude,
  // then resets all parameters to the rewinding point (the masks keep the pruned ones
  // at zero). Returns the new sparsity target 1 - (1 - p)^rounds.
  double prune_and_rewind();
  int rounds() const { return rounds_; }
  // The sparsity after r rounds: 1 - (1 - p)^r.
  double sparsity_after(int r) const;
  const LotteryOptions options;

 private:
  Pruner& pruner_;
  nn::NamedTensors rewind_;
  int rounds_ = 0;
};

}  // namespace weft::prune
