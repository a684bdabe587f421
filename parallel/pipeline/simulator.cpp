#include "simulator.h"

#include <algorithm>
#include <optional>

#include "../../tensor/error.h"

namespace weft::parallel::pipeline {

namespace {

// The action on a neighbouring stage that `a` on stage s needs first, if any: the input
// activation for an F, the output gradient for a B, from the previous or next virtual
// stage (schedule.h) -- with one chunk per stage, simply stage s-1 or s+1. (A B's other
// need, its own F, comes earlier in the same stage's list, which validate() makes sure of.)
struct Need {
  int stage;
  Action action;
};

std::optional<Need> cross_stage_need(const Action& a, int s, const PipelineSchedule& sched) {
  if (a.kind == Action::W) return std::nullopt;  // a stage's own weights: nobody else involved
  const int p = sched.stages, from = virtual_stage(sched, s, a.chunk) + (a.kind == Action::F ? -1 : 1);
  if (from < 0 || from >= p * sched.chunks) return std::nullopt;  // the model's first F, its last B
  return Need{from % p, Action{a.kind, a.microbatch, from / p}};
}

bool has_w(const std::vector<Action>& actions) {
  return std::any_of(actions.begin(), actions.end(), [](const Action& a) { return a.kind == Action::W; });
}

void validate_stage(const PipelineSchedule& sched, int s) {
  const std::string where = detail::str("pipeline schedule '", sched.name, "': stage ", s);
  const int m = sched.microbatches, v = sched.chunks;
  // Indexed chunk * m + microbatch.
  std::vector<bool> has_f(size_t(m * v)), has_b(size_t(m * v)), has_w_(size_t(m * v));
  const bool split = has_w(sched.per_stage[s]);  // W on this stage: every B has its W
  for (const Action& a : sched.per_stage[s]) {
    const std::string what = where + ", action " + label(a);
    WEFT_CHECK(a.chunk >= 0 && a.chunk < v, what, ": chunk out of range [0, ", v, ")",
               v == 1 ? "; only interleaved schedules hold several chunks per stage" : "");
    WEFT_CHECK(a.microbatch >= 0 && a.microbatch < m, what, ": microbatch out of range [0, ", m, ")");
    const size_t i = size_t(a.chunk * m + a.microbatch);
    std::vector<bool>& seen = a.kind == Action::F ? has_f : a.kind == Action::B ? has_b : has_w_;
    WEFT_CHECK(!seen[i], what, ": runs twice; each stage runs F and B (and W, if any) exactly once per "
               "microbatch", v > 1 ? " and chunk" : "");
    WEFT_CHECK(a.kind != Action::B || has_f[i], what, ": a backward before its own forward ",
               label({Action::F, a.microbatch, a.chunk}), "; it needs the activations that F saves");
    WEFT_CHECK(a.kind != Action::W || has_b[i], what, ": a weight gradient before its own backward ",
               label({Action::B, a.microbatch, a.chunk}), "; it needs the output gradient that B receives");
    seen[i] = true;
  }
  for (int c = 0; c < v; ++c)
    for (int mb = 0; mb < m; ++mb) {
      const size_t i = size_t(c * m + mb);
      const char* once = v > 1 ? " per microbatch and chunk" : " per microbatch";
      WEFT_CHECK(has_f[i], where, ": never runs ", label({Action::F, mb, c}), "; each stage runs F and B exactly once",
                 once);
      WEFT_CHECK(has_b[i], where, ": never runs ", label({Action::B, mb, c}), "; each stage runs F and B exactly once",
                 once);
      WEFT_CHECK(!split || has_w_[i], where, ": never runs ", label({Action::W, mb, c}),
                 "; a stage that splits its backwards runs W once", once);
    }
}

// The microbatches of stage s's `kind` actions on `chunk`, in the order it runs them.
std::vector<int> order_of(const PipelineSchedule& sched, int s, int chunk, Action::Kind kind) {
  std::vector<int> order;
  for (const Action& a : sched.per_stage[size_t(s)])
    if (a.kind == kind && a.chunk == chunk) order.push_back(a.microbatch);
  return order;
}

std::string labels(const std::vector<int>& order, Action::Kind kind, int chunk) {
  std::string out;
  for (int mb : order) out += (out.empty() ? "" : " ") + label({kind, mb, chunk});
  return out;
}

// Each pair of neighbouring virtual stages: the receiver takes a chunk's activations
// (forwards) and gradients (backwards) in the order the sender sends them.
void validate_message_order(const PipelineSchedule& sched) {
  const int p = sched.stages;
  for (int vs = 0; vs + 1 < p * sched.chunks; ++vs) {
    const int s0 = vs % p, c0 = vs / p, s1 = (vs + 1) % p, c1 = (vs + 1) / p;
    const std::vector<int> sent = order_of(sched, s0, c0, Action::F), taken = order_of(sched, s1, c1, Action::F);
    WEFT_CHECK(sent == taken, "pipeline schedule '", sched.name, "': stage ", s1, " takes activations in the order ",
               labels(taken, Action::F, c1), " but stage ", s0, " sends them in the order ", labels(sent, Action::F, c0),
               "; messages between two stages arrive in the order they were sent, so both must use one order");
    const std::vector<int> back = order_of(sched, s1, c1, Action::B), got = order_of(sched, s0, c0, Action::B);
    WEFT_CHECK(back == got, "pipeline schedule '", sched.name, "': stage ", s0, " takes gradients in the order ",
               labels(got, Action::B, c0), " but stage ", s1, " sends them in the order ", labels(back, Action::B, c1),
               "; messages between two stages arrive in the order they were sent, so both must use one order");
  }
}

// When the stage's actions ran so far: end[F, B or W][stage][chunk * m + mb], -1 while
// not started.
struct Clock {
  int m;
  std::vector<std::vector<int>> f_end, b_end, w_end;
  int& end_of(int s, const Action& a) {
    return (a.kind == Action::F ? f_end : a.kind == Action::B ? b_end : w_end)[s][size_t(a.chunk * m + a.microbatch)];
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
    const Need need = *cross_stage_need(a, s, sched);
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
  WEFT_CHECK(schedule.chunks >= 1, "pipeline schedule '", schedule.name, "': needs at least one chunk per stage, got v=",
             schedule.chunks);
  for (int s = 0; s < schedule.stages; ++s) validate_stage(schedule, s);
  validate_message_order(schedule);
}

Simulation simulate(const PipelineSchedule& schedule, const Costs& costs) {
  validate(schedule);
  WEFT_CHECK(costs.forward >= 1 && costs.backward >= 1 && costs.weight >= 1,
             "simulate: costs must be at least one step, got F=", costs.forward, ", B=", costs.backward,
             ", W=", costs.weight);
  const int p = schedule.stages, m = schedule.microbatches;
  const std::vector<std::vector<int>> unset(p, std::vector<int>(size_t(m * schedule.chunks), -1));
  Clock clock{m, unset, unset, unset};
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
      const std::optional<Need> need = cross_stage_need(a, s, schedule);
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
