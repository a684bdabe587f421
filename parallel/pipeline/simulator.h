// The pipeline simulator: runs a PipelineSchedule's dependency rules on a clock, with no
// tensors, to check the schedule and to measure it before any real work runs.
//
// HOW IT RUNS. Time advances in whole steps. At each step every idle stage looks at the
// next action in its list and starts it if everything it depends on (schedule.h:
// F(mb) on s needs F(mb) on s-1; B(mb) on s needs B(mb) on s+1 and its own F(mb))
// finished at an EARLIER step: sending an activation or a gradient is taken as free,
// but nothing is received in the step it is produced. An F occupies its stage for
// costs.forward steps, a B for costs.backward steps, a W (zero-bubble schedules: the
// weight-gradient half of a backward, needing only its own B) for costs.weight steps.
// A stage never reorders its list:
// if its next action is not ready, it waits, even when a later one could run.
//
// WHAT IT REPORTS.
// - the timeline: when each stage started and ended each action;
// - the makespan: the step at which the last action ends;
// - the bubble: the idle share of all stage-time, 1 - sum(busy) / (p * makespan);
// - the peak in-flight microbatches per stage: how many microbatches a stage has run
//   F for but not yet B (not yet W, where it has W), at most. Each one's saved
//   activations stay in that stage's memory until its backward, so this is the
//   schedule's activation memory. With chunks it counts (microbatch, chunk) pairs, each
//   holding a chunk's activations: 1/v of a stage's.
//
// WHY F=1, B=2 BY DEFAULT. A backward computes two products per layer (the gradient of
// the input and of the weights) where the forward computes one, so it takes about
// twice as long. With equal costs GPipe's and 1F1B's bubble is exactly (p-1)/(m+p-1).
//
// WHAT IT REJECTS (a weft::Error naming the stage, the action and the reason):
// a stage that misses or repeats an action (each stage runs F and B exactly once per
// microbatch), a microbatch out of range, a B listed before its own F, and a schedule
// that deadlocks: actions remain but no stage can ever start one (the message says what
// each blocked stage waits for), and on a stage with W actions one missing or listed
// before its own B; a chunk out of range; two neighbours that list a chunk's
// microbatches in different orders (schedule.h, MESSAGE ORDER). Interleaved schedules'
// chunks run as virtual stages (schedule.h): an F of chunk c on stage 0 waits for chunk
// c-1 on stage p-1.
#pragma once

#include <vector>

#include "schedule.h"

namespace weft::parallel::pipeline {

// How many steps each kind of action occupies its stage; at least 1 each. `weight` is
// a W's (the weight-gradient half of a split backward); a schedule with W actions then
// runs B as the input-gradient half alone, so compare {1, 2} for 1F1B with {1, 1, 1}.
struct Costs {
  int forward = 1;
  int backward = 2;
  int weight = 1;
};

// One action as it ran: it occupied its stage for steps start .. end-1.
struct TimedAction {
  Action action;
  int start = 0;
  int end = 0;
};

struct Simulation {
  std::vector<std::vector<TimedAction>> timeline;  // per stage, in the order run
  int makespan = 0;                                // steps until the last action ends
  std::vector<int> busy;                           // per stage: steps spent working
  double bubble = 0.0;                             // 1 - sum(busy) / (p * makespan)
  std::vector<int> peak_in_flight;                 // per stage: most microbatches with F done, B not
};

// The static checks alone (sizes, every action exactly once, B after its own F);
// throws weft::Error naming what is wrong.
void validate(const PipelineSchedule& schedule);

// Validates, then runs the schedule on the clock; throws weft::Error on a deadlock.
Simulation simulate(const PipelineSchedule& schedule, const Costs& costs = {});

}  // namespace weft::parallel::pipeline
