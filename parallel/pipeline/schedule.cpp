#include "schedule.h"

#include <algorithm>

#include "../../tensor/error.h"

namespace weft::parallel::pipeline {

namespace {

Action forward(int mb) { return {Action::F, mb}; }
Action backward(int mb) { return {Action::B, mb}; }

void check_sizes(const char* who, int stages, int microbatches) {
  WEFT_CHECK(stages >= 1, who, ": needs at least one stage, got p=", stages);
  WEFT_CHECK(microbatches >= 1, who, ": needs at least one microbatch, got m=", microbatches);
}

PipelineSchedule empty(const char* name, int stages, int microbatches) {
  return {name, stages, microbatches, std::vector<std::vector<Action>>(stages)};
}

}  // namespace

std::string label(const Action& a) {
  const char kind = a.kind == Action::F ? 'F' : a.kind == Action::B ? 'B' : 'W';
  std::string s = kind + std::to_string(a.microbatch);
  if (a.chunk != 0) s += "." + std::to_string(a.chunk);
  return s;
}

PipelineSchedule naive(int stages) {
  check_sizes("naive", stages, 1);
  // Each stage's list is just F0, B0: the dependencies alone make stage s wait for the
  // forward to reach it and, later, for the gradient to come back.
  PipelineSchedule sched = empty("naive", stages, 1);
  for (auto& actions : sched.per_stage) actions = {forward(0), backward(0)};
  return sched;
}

PipelineSchedule gpipe(int stages, int microbatches) {
  check_sizes("gpipe", stages, microbatches);
  // Backwards run in the order 0 .. m-1, as PyTorch's ScheduleGPipe does. The last
  // stage can start B0 as soon as its last forward ends (F0 finished long before), so
  // this costs nothing against m-1 .. 0, and it accumulates every stage's gradients in
  // microbatch order: the same additions, in the same order, as a loop over the
  // microbatches on one device, which is what makes a pipelined step reproducible.
  PipelineSchedule sched = empty("gpipe", stages, microbatches);
  for (auto& actions : sched.per_stage) {
    for (int mb = 0; mb < microbatches; ++mb) actions.push_back(forward(mb));
    for (int mb = 0; mb < microbatches; ++mb) actions.push_back(backward(mb));
  }
  return sched;
}

PipelineSchedule one_f_one_b(int stages, int microbatches) {
  check_sizes("1f1b", stages, microbatches);
  // With m < p the steady phase never starts on the first stages: the schedule would
  // be GPipe under another name, so ask for what the user meant instead.
  WEFT_CHECK(microbatches >= stages, "1f1b needs at least as many microbatches (m) as stages (p): got m=",
             microbatches, ", p=", stages, "; use more microbatches or the gpipe schedule");
  PipelineSchedule sched = empty("1f1b", stages, microbatches);
  for (int s = 0; s < stages; ++s) {
    // Stage s must have p-1-s forwards in flight before its first backward can arrive:
    // that many microbatches are still on their way to the last stage and back.
    const int warmup = std::min(stages - 1 - s, microbatches);
    auto& actions = sched.per_stage[s];
    int next_f = 0, next_b = 0;
    while (next_f < warmup) actions.push_back(forward(next_f++));
    while (next_f < microbatches) {  // steady state: one forward, one backward
      actions.push_back(forward(next_f++));
      actions.push_back(backward(next_b++));
    }
    while (next_b < microbatches) actions.push_back(backward(next_b++));  // cool-down
  }
  return sched;
}

PipelineSchedule make_schedule(const std::string& name, int stages, int microbatches) {
  if (name == "naive") {
    WEFT_CHECK(microbatches == 1, "make_schedule: naive runs the whole batch as one microbatch (m=1), got m=",
               microbatches, "; use gpipe or 1f1b for microbatches");
    return naive(stages);
  }
  if (name == "gpipe") return gpipe(stages, microbatches);
  if (name == "1f1b") return one_f_one_b(stages, microbatches);
  throw Error(detail::str("make_schedule: unknown schedule '", name, "'; known: naive, gpipe, 1f1b"));
}

}  // namespace weft::parallel::pipeline
