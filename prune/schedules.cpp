#include "schedules.h"

#include <cmath>

#include "../autograd/tape.h"
#include "../tensor/raw.h"
#include "methods.h"

namespace weft::prune {

double gradual_sparsity(const GradualOptions& o, int64_t step) {
  if (step <= o.begin_step) return o.initial_sparsity;
  const double span = static_cast<double>(o.num_prunings * o.interval);
  const double progress = std::min(1.0, static_cast<double>(step - o.begin_step) / span);
  return o.final_sparsity + (o.initial_sparsity - o.final_sparsity) * std::pow(1.0 - progress, 3);
}

GradualPruning::GradualPruning(Pruner& pruner, const GradualOptions& o) : options(o), pruner_(pruner) {
  WEFT_CHECK(o.initial_sparsity >= 0 && o.initial_sparsity <= o.final_sparsity && o.final_sparsity <= 1,
             "GradualPruning: need 0 <= initial <= final <= 1, got ", o.initial_sparsity, " and ", o.final_sparsity);
  WEFT_CHECK(o.num_prunings >= 1 && o.interval >= 1 && o.begin_step >= 0,
             "GradualPruning: need num_prunings >= 1, interval >= 1, begin_step >= 0");
}

bool GradualPruning::is_pruning_step(int64_t t) const {
  return t >= options.begin_step && t <= last_step() && (t - options.begin_step) % options.interval == 0;
}

bool GradualPruning::step(int64_t t) {
  if (!is_pruning_step(t)) return false;
  const double s = gradual_sparsity(options, t);
  if (options.global) global_magnitude(pruner_, s);
  else magnitude(pruner_, s);
  return true;
}

LotteryTicket::LotteryTicket(Pruner& pruner, const LotteryOptions& o) : options(o), pruner_(pruner) {
  WEFT_CHECK(o.fraction_per_round > 0 && o.fraction_per_round < 1, "LotteryTicket: fraction_per_round must be in (0, 1), got ",
             o.fraction_per_round);
}

void LotteryTicket::save_rewind_point() {
  rewind_.clear();
  for (const auto& [name, p] : pruner_.model().named_parameters()) rewind_.emplace_back(name, raw::clone(p));
}

double LotteryTicket::sparsity_after(int r) const { return 1.0 - std::pow(1.0 - options.fraction_per_round, r); }

double LotteryTicket::prune_and_rewind() {
  WEFT_CHECK(has_rewind_point(), "LotteryTicket: call save_rewind_point() before the first prune_and_rewind()");
  ++rounds_;
  const double s = sparsity_after(rounds_);
  // Prune by the *trained* magnitudes: these decide which weights won the lottery.
  if (options.global) global_magnitude(pruner_, s);
  else magnitude(pruner_, s);
  // Then rewind the survivors; the masks zero the losers again.
  autograd::NoGradGuard no_grad;
  const auto params = pruner_.model().named_parameters();
  for (size_t i = 0; i < params.size(); ++i) raw::copy_(params[i].second, rewind_.at(i).second);
  pruner_.apply();
  return s;
}

}  // namespace weft::prune
