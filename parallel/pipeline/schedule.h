// PipelineSchedule: the order in which each pipeline stage runs its forward (F) and
// backward (B) passes over the microbatches of one training step, written as plain data.
//
// PIPELINE PARALLELISM. A model is cut into p consecutive stages, one per device. A
// batch flows through stage 0, 1, ..., p-1 (each stage sends its output activation to
// the next), then its gradient flows back from p-1 to 0. With one batch only one stage
// works at a time; the others wait. To keep them busy the batch is split into m
// microbatches: while stage 1 runs the forward of microbatch 0, stage 0 already runs
// microbatch 1. Gradients of the m microbatches are accumulated, so the step computes
// the same thing as one big batch.
//
// THE BUBBLE. Even with microbatches, a stage idles while the pipeline fills (stage
// p-1 waits for p-1 forwards before its first one) and while it drains. That idle
// time, as a share of all stage-time, is the bubble. For GPipe with equal F and B
// times it is (p-1)/(m+p-1): more microbatches, smaller bubble.
//
// THE SCHEDULES HERE, for p = 2 stages and m = 2 microbatches (one column per step):
//
//   naive (m = 1)        gpipe                    1f1b
//   stage 0 | F0 .  .  B0   stage 0 | F0 F1 .  .  B0 B1   stage 0 | F0 F1 .  B0 .  B1
//   stage 1 | .  F0 B0 .    stage 1 | .  F0 F1 B0 B1 .    stage 1 | .  F0 B0 F1 B1 .
//
// - naive: no microbatching; the textbook picture of why pipelining needs microbatches.
// - gpipe (Huang et al. 2019): every stage runs all m forwards, then all m backwards.
//   A stage holds the activations of all m microbatches at once (F done, B not yet).
// - 1f1b (PipeDream-flush, Narayanan et al. 2021): stage s runs p-1-s forwards to fill
//   the pipeline, then alternates one forward, one backward, then drains the remaining
//   backwards. Each backward frees a microbatch's activations before the next forward
//   stores new ones, so stage s holds at most p-s microbatches, not m: same bubble as
//   GPipe, far less activation memory when m is much larger than p.
//
// DEPENDENCIES implied by every schedule (what the simulator in simulator.h checks):
//   F(mb) on stage s  needs F(mb) on stage s-1           (its input activation)
//   B(mb) on stage s  needs B(mb) on stage s+1 and F(mb) on stage s itself
//   B(mb) on the last stage needs only its own F(mb)   (the loss is computed there)
// With model chunks (interleaved), read "stage" as virtual stage (below).
//
// MESSAGE ORDER. A stage receives one neighbour's activations in the order it sends
// them (messages of one sender and tag arrive in order), so the two must list a chunk's
// forwards in the same microbatch order, and its backwards too: validate() checks it.
//
// A schedule is a pure function of (p, m): no tensors, no threads. The simulator checks
// one before anything runs and render.h prints it; a stage executor then walks its
// stage's list, doing real sends and receives.
#pragma once

#include <string>
#include <vector>

namespace weft::parallel::pipeline {

// One step of one stage's work. W is the weight-gradient half of a split backward
// (zero_bubble_h1); chunk is which of the stage's model chunks it runs (interleaved
// schedules; 0 for every other schedule, whose stages hold one block of layers).
struct Action {
  enum Kind { F, B, W } kind;
  int microbatch;
  int chunk = 0;

  bool operator==(const Action&) const = default;
};

// "F3", "B0", "W2"; "F3.1" for chunk 1.
std::string label(const Action& a);

struct PipelineSchedule {
  std::string name;
  int stages = 0;        // p
  int microbatches = 0;  // m
  std::vector<std::vector<Action>> per_stage;  // per_stage[s]: stage s's actions, in order
  int chunks = 1;        // v: model chunks per stage (interleaved; 1 for the others)
};

// VIRTUAL STAGES. An interleaved schedule cuts the model into p * v consecutive chunks
// and gives stage s the chunks s, s + p, s + 2p, ...: its chunk c is virtual stage
// c * p + s. Activations flow through the virtual stages in order, so they go round
// the stages v times (stage p-1's chunk c feeds stage 0's chunk c + 1), and gradients
// come back the same way. Every other schedule is the case v = 1.
inline int virtual_stage(const PipelineSchedule& sched, int stage, int chunk) { return chunk * sched.stages + stage; }

// No microbatching (m = 1): F on stage 0 .. p-1, then B on stage p-1 .. 0.
PipelineSchedule naive(int stages);

// All forwards F0 .. F(m-1), then all backwards B0 .. B(m-1), on every stage.
PipelineSchedule gpipe(int stages, int microbatches);

// PipeDream-flush: min(p-1-s, m) warm-up forwards on stage s, then one forward / one
// backward in turn, then the remaining backwards. Needs m >= p.
PipelineSchedule one_f_one_b(int stages, int microbatches);

// ZB-H1 (zero bubble, Qi et al. 2023): 1F1B with each backward split into B (the input
// gradient, which the previous stage waits for) and W (the weight gradients, which
// nobody waits for; autograd::backward_deferring). Each stage keeps 1F1B's order of F
// and B and runs a W where 1F1B would idle (and one before a new F when it already owes
// two, so activations do not pile up). With F = B = W the bubble falls to about a third
// of 1F1B's. Needs m >= p.
PipelineSchedule zero_bubble_h1(int stages, int microbatches);

// Interleaved 1F1B (Megatron-LM's virtual pipeline, Narayanan et al. 2021): each stage
// holds v chunks (above) and runs 1F1B over its v * m (microbatch, chunk) pairs. The
// microbatches go in rounds of about p: a stage runs a round's forwards on chunk 0, then
// on chunk 1, ..., and its backwards on chunk v-1 first. Its warm-up is
// (v-1) * (first round's size) + 2 (p-1-s) forwards, as in Megatron-LM. A chunk takes 1/v of a stage's
// time, so the fill and drain shrink v times: the bubble falls from 1F1B's
// (p-1)/(m+p-1) towards (p-1)/(v m+p-1), for v times the activation messages. With
// v = 1 it is 1F1B itself. Unlike 1F1B it also runs m < p (one round of m microbatches),
// never slower than GPipe there in the simulator, so a short last batch needs no other
// schedule.
PipelineSchedule interleaved_1f1b(int stages, int microbatches, int chunks);

// By name: "naive" (microbatches must be 1), "gpipe", "1f1b", "zb1" or "interleaved"
// (with `chunks` per stage; every other schedule needs chunks == 1).
PipelineSchedule make_schedule(const std::string& name, int stages, int microbatches, int chunks = 1);

}  // namespace weft::parallel::pipeline
