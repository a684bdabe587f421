// render: a pipeline schedule as an ASCII picture, one row per stage, one column per
// time step, as the simulator (simulator.h) runs it. gpipe(2, 2) with unit costs:
//
//   gpipe: 2 stages, 2 microbatches, F=1 B=1 steps: makespan 6 steps
//   step    | 0  1  2  3  4  5
//   stage 0 | F0 F1 .  .  B0 B1
//   stage 1 | .  F0 F1 B0 B1 .
//   Fk/Bk: forward/backward of microbatch k, ~: still running, .: idle
//   bubble: 0.333 (4 of 12 stage-steps idle)
//
// Reading one: the dots are the bubble. The staircase of F's on the left is the
// pipeline filling, the one of B's on the right is it draining; 1f1b's rows show the
// forwards and backwards interleaving in the middle.
//
// Unit costs (one step per action) by default, the textbook picture where each step is
// one cell; with longer costs an action's first cell shows its label and the following
// ones "~".
#pragma once

#include <string>

#include "simulator.h"

namespace weft::parallel::pipeline {

// Simulates `schedule` with `costs` (throws as simulate() does) and draws the result.
std::string render(const PipelineSchedule& schedule, const Costs& costs = {1, 1});

}  // namespace weft::parallel::pipeline
