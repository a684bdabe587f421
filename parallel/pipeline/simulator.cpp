#include "simulator.h"

#include <algorithm>
#include <optional>

#include "../../tensor/error.h"

namespace weft::parallel::pipeline {

namespace {

// The action on a neighbouring stage that `a` on stage s needs first, if any: the input
// activation for an F, the output gradient for a B. (A B's other need, its own F, comes
// earlier in the same stage's list, which validate() makes sure of.)
struct Need {
  int stage;
  Action action;
};

std::optional<Need> cross_stage_need(const Action& a, int s, int stages) {
  if (a.kind == Action::W) return std::nullopt;  // a stage's own weights: nobody else involved
  if (a.kind == Action::F) return s > 0 ? std::optional<Need>(Need{s - 1, a}) : std::nullopt;
  return s < stages - 1 ? std::optional<Need>(Need{s + 1, a}) : std::nullopt;
}

bool has_w(const std::vector<Action>& actions) {
  return std::any_of(actions.begin(), actions.end(), [](const Action& a) { return a.kind == Action::W; });
}

void validate_stage(const PipelineSchedule& sched, int s) {
  const std::string where = detail::str("pipeline schedule '", sched.name, "': stage ", s);
  std::vector<bool> has_f(sched.microbatches), has_b(sched.microbatches), has_w_(sched.microbatches);
  const bool split = has_w(sched.per_stage[s]);  // W on this stage: every B has its W
  for (const Action& a : sched.per_stage[s]) {
    const std::string what = where + ", action " + label(a);
    WEFT_CHECK(a.chunk == 0, what, ": model chunks (interleaved schedules) are not simulated yet; use chunk 0");
    WEFT_CHECK(a.microbatch >= 0 && a.microbatch < sched.microbatches, what, ": microbatch out of range [0, ",
               sched.microbatches, ")");
    std::vector<bool>& seen = a.kind == Action::F ? has_f : a.kind == Action::B ? has_b : has_w_;
    WEFT_CHECK(!seen[a.microbatch], what, ": runs twice; each stage runs F and B (and W, if any) exactly once per "
               "microbatch");
    WEFT_CHECK(a.kind != Action::B || has_f[a.microbatch], what, ": a backward before its own forward F",
               a.microbatch, "; it needs the activations that F saves");
    WEFT_CHECK(a.kind != Action::W || has_b[a.microbatch], what, ": a weight gradient before its own backward B",
               a.microbatch, "; it needs the output gradient that B receives");
    seen[a.microbatch] = true;
  }
  for (int mb = 0; mb < sched.microbatches; ++mb) {
    WEFT_CHECK(has_f[mb], where, ": never runs F", mb, "; each stage runs F and B exactly once per microbatch");
    WEFT_CHECK(has_b[mb], where, ": never runs B", mb, "; each stage runs F and B exactly once per microbatch");
    WEFT_CHECK(!split || has_w_[mb], where, ": never runs W", mb, "; a stage that splits its backwards runs W once "
               "per microbatch");
  }
}

// When the stage's actions ran so far: end[F or B][mb], -1 while not started.
struct Clock {
  std::vector<std::vector<int>> f_end, b_end, w_end;  // [stage][microbatch]
  int& end_of(int s, const Action& a) {
    return (a.kind == Action::F ? f_end : a.kind == Action::B ? b_end : w_end)[s][a.microbatch];
  }
  bool done_by(int s, const Action& a, int t) {
    const int e = end_of(s, a);
    return e >= 0 && e <= t;
  }
};

std::string deadlock_message(const PipelineSchedule& sched, const std::vector<size_t>& next, int t, int left) {
  std::string msg = detail::str("pipeline schedule '", sched.name, "' deadlocks at step ", t, " with ", left,
                                " actions left, no stage able to start one:");
  for (int s = 0; s < sched.stages; ++s) {
    if (next[s] == sched.per_stage[s].size()) continue;  // finished
    const Action& a = sched.per_stage[s][next[s]];
    // Never empty: stage 0's F and the last stage's B need nothing from a neighbour,
    // so they are never blocked, and a B's own F ran earlier on the same stage.
    const Need need = *cross_stage_need(a, s, sched.stages);
    msg += detail::str(" stage ", s, " is at ", label(a), ", waiting for ", label(need.action), " on stage ",
                       need.stage, ";");
  }
  msg.back() = '.';
  return msg;
}

// Most microbatches with F done and B not yet (W not yet, on a stage that splits its
// backwards: W still needs the layers' inputs), over the stage's run. A stage runs its
// list in order, so counting along the list is enough.
int peak_in_flight(const std::vector<Action>& actions) {
  const Action::Kind last = has_w(actions) ? Action::W : Action::B;
  int held = 0, peak = 0;
  for (const Action& a : actions) {
    held += a.kind == Action::F ? 1 : a.kind == last ? -1 : 0;
    peak = std::max(peak, held);
  }
  return peak;
}

int cost_of(const Action& a, const Costs& costs) {
  return a.kind == Action::F ? costs.forward : a.kind == Action::B ? costs.backward : costs.weight;
}

}  // namespace

void validate(const PipelineSchedule& schedule) {
  WEFT_CHECK(schedule.stages >= 1, "pipeline schedule '", schedule.name, "': needs at least one stage, got p=",
             schedule.stages);
  WEFT_CHECK(schedule.microbatches >= 1, "pipeline schedule '", schedule.name,
             "': needs at least one microbatch, got m=", schedule.microbatches);
  WEFT_CHECK(schedule.per_stage.size() == static_cast<size_t>(schedule.stages), "pipeline schedule '",
             schedule.name, "': has action lists for ", schedule.per_stage.size(), " stages, but p=", schedule.stages);
  for (int s = 0; s < schedule.stages; ++s) validate_stage(schedule, s);
}

Simulation simulate(const PipelineSchedule& schedule, const Costs& costs) {
  validate(schedule);
  WEFT_CHECK(costs.forward >= 1 && costs.backward >= 1 && costs.weight >= 1,
             "simulate: costs must be at least one step, got F=", costs.forward, ", B=", costs.backward,
             ", W=", costs.weight);
  const int p = schedule.stages, m = schedule.microbatches;
  const std::vector<std::vector<int>> unset(p, std::vector<int>(m, -1));
  Clock clock{unset, unset, unset};
  Simulation sim;
  sim.timeline.resize(p);
  std::vector<size_t> next(p, 0);  // index of each stage's next action
  std::vector<int> free_at(p, 0);  // the step at which each stage is idle again
  int left = 0;
  for (const auto& actions : schedule.per_stage) left += int(actions.size());
  for (int t = 0; left > 0; ++t) {
    bool working = false;
    for (int s = 0; s < p; ++s) {
      if (free_at[s] > t) {
        working = true;
        continue;
      }
      if (next[s] == schedule.per_stage[s].size()) continue;
      const Action& a = schedule.per_stage[s][next[s]];
      const std::optional<Need> need = cross_stage_need(a, s, p);
      // Started at t means ending after t, so whatever another stage starts in this
      // same step can never count as done: the order of this loop does not matter.
      if (need && !clock.done_by(need->stage, need->action, t)) continue;
      const int end = t + cost_of(a, costs);
      clock.end_of(s, a) = end;
      sim.timeline[s].push_back({a, t, end});
      free_at[s] = end;
      ++next[s];
      --left;
      working = true;
    }
    // Nothing running and nothing started: no later step can differ from this one.
    if (!working) throw Error(deadlock_message(schedule, next, t, left));
  }
  long total_busy = 0;
  for (int s = 0; s < p; ++s) {
    sim.makespan = std::max(sim.makespan, free_at[s]);
    int busy = 0;
    for (const Action& a : schedule.per_stage[s]) busy += cost_of(a, costs);
    sim.busy.push_back(busy);
    total_busy += sim.busy.back();
    sim.peak_in_flight.push_back(peak_in_flight(schedule.per_stage[s]));
  }
  sim.bubble = 1.0 - static_cast<double>(total_busy) / (static_cast<double>(p) * sim.makespan);
  return sim;
}

}  // namespace weft::parallel::pipeline
