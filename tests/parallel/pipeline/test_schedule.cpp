// Pipeline schedules as data, and the simulator that runs them: the action lists of
// naive, gpipe and 1f1b; the bubble (p-1)/(m+p-1) with equal F and B costs and the
// exact makespan with F=1, B=2; the activations each stage holds (m for gpipe, p-s for
// 1f1b); the timeline against the dependency rules; and the errors for broken schedules
// (missing, repeated or out-of-order actions, deadlocks).
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>

#include "parallel/pipeline/render.h"
#include "parallel/pipeline/simulator.h"
#include "tensor/error.h"

using namespace weft::parallel::pipeline;
using Catch::Matchers::Contains;

namespace {

std::string labels(const std::vector<Action>& actions) {
  std::string s;
  for (const Action& a : actions) s += (s.empty() ? "" : " ") + label(a);
  return s;
}

double textbook_bubble(int p, int m) { return static_cast<double>(p - 1) / (m + p - 1); }

// Every (p, m) the simulator tests sweep; 1f1b only where m >= p.
template <class F>
void for_each_schedule(F check) {
  for (int p = 1; p <= 6; ++p)
    for (int m = 1; m <= 12; ++m) {
      check(gpipe(p, m));
      if (m >= p) check(one_f_one_b(p, m));
    }
}

}  // namespace

TEST_CASE("pipeline schedules list the textbook actions", "[pipeline]") {
  const PipelineSchedule n = naive(3);
  CHECK(n.stages == 3);
  CHECK(n.microbatches == 1);
  for (int s = 0; s < 3; ++s) CHECK(labels(n.per_stage[s]) == "F0 B0");

  const PipelineSchedule g = gpipe(2, 3);
  CHECK(g.name == "gpipe");
  for (int s = 0; s < 2; ++s) CHECK(labels(g.per_stage[s]) == "F0 F1 F2 B0 B1 B2");

  // Stage s warms up with p-1-s forwards, alternates, then drains the backwards.
  const PipelineSchedule o = one_f_one_b(3, 5);
  CHECK(o.name == "1f1b");
  CHECK(labels(o.per_stage[0]) == "F0 F1 F2 B0 F3 B1 F4 B2 B3 B4");
  CHECK(labels(o.per_stage[1]) == "F0 F1 B0 F2 B1 F3 B2 F4 B3 B4");
  CHECK(labels(o.per_stage[2]) == "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4");

  CHECK(label(Action{Action::W, 7}) == "W7");
  CHECK(label(Action{Action::F, 2, 1}) == "F2.1");
}

TEST_CASE("pipeline make_schedule picks by name and explains bad requests", "[pipeline]") {
  CHECK(labels(make_schedule("1f1b", 2, 2).per_stage[0]) == "F0 F1 B0 B1");
  CHECK(make_schedule("gpipe", 4, 8).per_stage[3].size() == 16);
  CHECK(make_schedule("naive", 4, 1).name == "naive");

  CHECK_THROWS_WITH(make_schedule("zb", 2, 2),
                    Contains("unknown schedule 'zb'") && Contains("known: naive, gpipe, 1f1b"));
  CHECK_THROWS_WITH(one_f_one_b(4, 3), Contains("1f1b needs at least as many microbatches (m) as stages (p): "
                                                "got m=3, p=4"));
  CHECK_THROWS_WITH(make_schedule("1f1b", 4, 3), Contains("got m=3, p=4"));
  CHECK_THROWS_WITH(make_schedule("naive", 2, 4), Contains("naive") && Contains("m=4"));
  CHECK_THROWS_WITH(gpipe(0, 4), Contains("gpipe") && Contains("p=0"));
  CHECK_THROWS_WITH(gpipe(2, 0), Contains("gpipe") && Contains("m=0"));
}

TEST_CASE("pipeline simulator: gpipe holds m microbatches on every stage, 1f1b min(p - s, m)", "[pipeline]") {
  for_each_schedule([](const PipelineSchedule& sched) {
    INFO(sched.name << " p=" << sched.stages << " m=" << sched.microbatches);
    const Simulation sim = simulate(sched);
    REQUIRE(sim.peak_in_flight.size() == static_cast<size_t>(sched.stages));
    for (int s = 0; s < sched.stages; ++s) {
      const int expect = sched.name == "gpipe" ? sched.microbatches : std::min(sched.stages - s, sched.microbatches);
      CHECK(sim.peak_in_flight[s] == expect);
    }
  });
  CHECK(simulate(naive(4)).peak_in_flight == std::vector<int>{1, 1, 1, 1});
}

TEST_CASE("pipeline simulator: with equal F and B costs the bubble is (p-1)/(m+p-1)", "[pipeline]") {
  for (int cost : {1, 2, 3})
    for_each_schedule([cost](const PipelineSchedule& sched) {
      const int p = sched.stages, m = sched.microbatches;
      INFO(sched.name << " p=" << p << " m=" << m << " F=B=" << cost);
      const Simulation sim = simulate(sched, {cost, cost});
      CHECK(sim.makespan == 2 * cost * (m + p - 1));
      CHECK(sim.bubble == Approx(textbook_bubble(p, m)).epsilon(1e-12));
    });
  CHECK(simulate(naive(3), {1, 1}).bubble == Approx(2.0 / 3));
}

TEST_CASE("pipeline simulator: with F=1, B=2 the makespan is 3(m+p-1), the bubble the same (p-1)/(m+p-1)",
          "[pipeline]") {
  // Exact, not just asymptotic: both schedules keep the last stage busy from its first
  // forward to its last backward, and the first stage's last backward leaves p-1
  // backward hops after it. So makespan = (p-1)F + m(F+B) + (p-1)B = (F+B)(m+p-1).
  struct Case {
    int p, m, makespan;
  };
  for (const Case c : {Case{2, 1, 6}, Case{2, 4, 15}, Case{2, 8, 27}, Case{4, 4, 21}, Case{4, 8, 33}})
    for (const char* name : {"gpipe", "1f1b"}) {
      if (c.m < c.p) continue;
      INFO(name << " p=" << c.p << " m=" << c.m);
      const Simulation sim = simulate(make_schedule(name, c.p, c.m));
      CHECK(sim.makespan == c.makespan);
      CHECK(sim.busy == std::vector<int>(c.p, 3 * c.m));
      CHECK(sim.bubble == Approx(textbook_bubble(c.p, c.m)).epsilon(1e-12));
    }
  CHECK(simulate(gpipe(2, 1)).makespan == 6);  // 1f1b needs m >= p; gpipe does not
  // And for any costs, in the whole sweep.
  for (int f = 1; f <= 3; ++f)
    for (int b = 1; b <= 4; ++b)
      for_each_schedule([f, b](const PipelineSchedule& sched) {
        INFO(sched.name << " p=" << sched.stages << " m=" << sched.microbatches << " F=" << f << " B=" << b);
        CHECK(simulate(sched, {f, b}).makespan == (f + b) * (sched.microbatches + sched.stages - 1));
      });
}

TEST_CASE("pipeline simulator: the timeline keeps every dependency and never overlaps a stage", "[pipeline]") {
  for_each_schedule([](const PipelineSchedule& sched) {
    const int p = sched.stages;
    INFO(sched.name << " p=" << p << " m=" << sched.microbatches);
    const Costs costs{1, 2};
    const Simulation sim = simulate(sched, costs);
    // end[s][{kind, mb}] from the timeline, to look dependencies up.
    std::vector<std::map<std::pair<int, int>, int>> end(p);
    for (int s = 0; s < p; ++s)
      for (const TimedAction& ta : sim.timeline[s]) end[s][{ta.action.kind, ta.action.microbatch}] = ta.end;
    for (int s = 0; s < p; ++s) {
      REQUIRE(sim.timeline[s].size() == sched.per_stage[s].size());
      int free_at = 0;
      for (size_t k = 0; k < sim.timeline[s].size(); ++k) {
        const TimedAction& ta = sim.timeline[s][k];
        const int mb = ta.action.microbatch;
        CHECK(ta.action == sched.per_stage[s][k]);  // in the listed order
        CHECK(ta.start >= free_at);
        CHECK(ta.end - ta.start == (ta.action.kind == Action::F ? costs.forward : costs.backward));
        free_at = ta.end;
        if (ta.action.kind == Action::F && s > 0) CHECK(end[s - 1].at({Action::F, mb}) <= ta.start);
        if (ta.action.kind == Action::B) {
          CHECK(end[s].at({Action::F, mb}) <= ta.start);
          if (s < p - 1) CHECK(end[s + 1].at({Action::B, mb}) <= ta.start);
        }
      }
    }
  });
}

TEST_CASE("pipeline simulator: 1f1b on 2 stages, 2 microbatches, step by step", "[pipeline]") {
  const Simulation sim = simulate(one_f_one_b(2, 2), {1, 1});
  auto starts = [&](int s) {
    std::string out;
    for (const TimedAction& ta : sim.timeline[s]) out += label(ta.action) + "@" + std::to_string(ta.start) + " ";
    return out;
  };
  CHECK(starts(0) == "F0@0 F1@1 B0@3 B1@5 ");  // B0 waits for stage 1's B0 (step 2)
  CHECK(starts(1) == "F0@1 B0@2 F1@3 B1@4 ");
  CHECK(sim.makespan == 6);
  CHECK(sim.busy == std::vector<int>{4, 4});
}

TEST_CASE("pipeline simulator rejects schedules that miss, repeat or misorder actions", "[pipeline]") {
  PipelineSchedule missing = gpipe(2, 3);
  missing.per_stage[1].pop_back();
  CHECK_THROWS_WITH(simulate(missing), Contains("stage 1: never runs B2"));

  PipelineSchedule repeated = gpipe(2, 2);
  repeated.per_stage[0][1] = {Action::F, 0};
  CHECK_THROWS_WITH(simulate(repeated), Contains("stage 0, action F0: runs twice"));

  PipelineSchedule early = gpipe(3, 2);
  std::swap(early.per_stage[2][1], early.per_stage[2][2]);  // F0 B0 F1 B1 is fine...
  CHECK_NOTHROW(simulate(early));
  std::swap(early.per_stage[2][0], early.per_stage[2][1]);  // ...B0 F0 F1 B1 is not
  CHECK_THROWS_WITH(simulate(early), Contains("stage 2, action B0: a backward before its own forward F0"));

  PipelineSchedule range = gpipe(2, 2);
  range.per_stage[0][0].microbatch = 5;
  CHECK_THROWS_WITH(simulate(range), Contains("stage 0, action F5: microbatch out of range [0, 2)"));

  PipelineSchedule lists = gpipe(3, 2);
  lists.per_stage.pop_back();
  CHECK_THROWS_WITH(simulate(lists), Contains("action lists for 2 stages, but p=3"));

  PipelineSchedule early_w = zero_bubble_h1(2, 2);
  auto& last = early_w.per_stage[1];
  const auto b0 = std::find(last.begin(), last.end(), Action{Action::B, 0});
  std::iter_swap(b0, std::find(last.begin(), last.end(), Action{Action::W, 0}));  // W0 before B0
  CHECK_THROWS_WITH(simulate(early_w), Contains("stage 1, action W0: a weight gradient before its own backward B0"));
  PipelineSchedule no_w = zero_bubble_h1(2, 2);
  no_w.per_stage[0].pop_back();
  CHECK_THROWS_WITH(simulate(no_w), Contains("stage 0: never runs W1"));

  CHECK_THROWS_WITH(simulate(gpipe(2, 2), {1, 0}), Contains("costs must be at least one step") && Contains("B=0"));
}

TEST_CASE("pipeline simulator names what every blocked stage waits for in a deadlock", "[pipeline]") {
  // Stage 0 wants to go backward on microbatch 0 before sending microbatch 1 forward;
  // stage 1 wants microbatch 1 forward before going backward on microbatch 0.
  PipelineSchedule sched{"crossed", 2, 2, {}};
  sched.per_stage = {{{Action::F, 0}, {Action::B, 0}, {Action::F, 1}, {Action::B, 1}},
                     {{Action::F, 0}, {Action::F, 1}, {Action::B, 0}, {Action::B, 1}}};
  CHECK_THROWS_WITH(simulate(sched), Contains("pipeline schedule 'crossed' deadlocks at step 2 with 6 actions left") &&
                                         Contains("stage 0 is at B0, waiting for B0 on stage 1") &&
                                         Contains("stage 1 is at F1, waiting for F1 on stage 0"));

  // Three stages, each blocked on a neighbour: stage 1 never gets F1 because stage 0
  // insists on B0 first, and stage 2 waits for stage 1.
  PipelineSchedule three = gpipe(3, 2);
  std::swap(three.per_stage[0][1], three.per_stage[0][2]);  // stage 0: F0 B0 F1 B1
  try {
    simulate(three);
    FAIL("no deadlock reported");
  } catch (const weft::Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Contains("stage 0 is at B0, waiting for B0 on stage 1"));
    CHECK_THAT(msg, Contains("stage 1 is at F1, waiting for F1 on stage 0"));
    CHECK_THAT(msg, Contains("stage 2 is at F1, waiting for F1 on stage 1"));
  }
}

TEST_CASE("pipeline validate: neighbours must list a chunk's microbatches in one order", "[pipeline]") {
  // Messages of one sender and tag arrive in the order sent: a receiver listing F1
  // before F0 would take microbatch 0's activation for microbatch 1's.
  PipelineSchedule crossed = gpipe(3, 2);
  std::swap(crossed.per_stage[2][0], crossed.per_stage[2][1]);  // stage 2: F1 F0 B0 B1
  CHECK_THROWS_WITH(validate(crossed), Contains("stage 2 takes activations in the order F1 F0 but stage 1 sends them "
                                                "in the order F0 F1"));
  PipelineSchedule back = gpipe(2, 2);
  std::swap(back.per_stage[0][2], back.per_stage[0][3]);  // stage 0: F0 F1 B1 B0
  CHECK_THROWS_WITH(validate(back), Contains("stage 0 takes gradients in the order B1 B0 but stage 1 sends them in the "
                                             "order B0 B1"));
  // Across chunks: stage 1's chunk 0 feeds stage 0's chunk 1.
  PipelineSchedule chunks = interleaved_1f1b(2, 2, 2);
  auto& first = chunks.per_stage[0];
  std::iter_swap(std::find(first.begin(), first.end(), Action{Action::F, 0, 1}),
                 std::find(first.begin(), first.end(), Action{Action::F, 1, 1}));
  CHECK_THROWS_WITH(validate(chunks), Contains("stage 0 takes activations in the order F1.1 F0.1 but stage 1 sends "
                                               "them in the order F0 F1"));
  PipelineSchedule range = gpipe(2, 2);
  range.per_stage[1][0].chunk = 1;
  CHECK_THROWS_WITH(validate(range), Contains("stage 1, action F0.1: chunk out of range [0, 1)") &&
                                         Contains("only interleaved schedules hold several chunks"));
}

// Issue 18: ZB-H1 splits each backward into B (input gradient) and W (weights), and
// runs W where 1F1B idles.
TEST_CASE("zb1: every stage runs F, B and W once per microbatch, with a third of 1F1B's bubble", "[pipeline]") {
  for (int p = 1; p <= 8; ++p)
    for (int m = p; m <= 16; ++m) {
      INFO("p=" << p << " m=" << m);
      const PipelineSchedule zb = zero_bubble_h1(p, m);
      const Simulation sim = simulate(zb, {1, 1, 1});  // validates: each action once, W after B
      for (int s = 0; s < p; ++s) CHECK(zb.per_stage[size_t(s)].size() == size_t(3 * m));
      // Same work as 1F1B with B = 2 (input and weight halves together), less idle.
      const Simulation base = simulate(one_f_one_b(p, m), {1, 2});
      CHECK(sim.makespan <= base.makespan);
      CHECK(sim.bubble <= base.bubble);
      if (p == 2 && m >= 4) CHECK(sim.bubble <= base.bubble / 2.5);  // the paper's third, nearly
      // Activations stay until W: at most p - s + 1 microbatches on stage s (1F1B: p - s).
      for (int s = 0; s < p; ++s) CHECK(sim.peak_in_flight[size_t(s)] <= p - s + 1);
    }
  CHECK_THROWS_WITH(zero_bubble_h1(3, 2), Contains("zb1 needs at least as many microbatches"));
  CHECK(render(zero_bubble_h1(2, 4), {1, 1, 1}) ==
        "zb1: 2 stages, 4 microbatches, F=1 B=1 W=1 steps: makespan 13 steps\n"
        "step    | 0  1  2  3  4  5  6  7  8  9  10 11 12\n"
        "stage 0 | F0 F1 .  B0 F2 B1 W0 F3 B2 W1 W2 B3 W3\n"
        "stage 1 | .  F0 B0 F1 B1 W0 F2 B2 W1 F3 B3 W2 W3\n"
        "Fk/Bk/Wk: forward/input gradient/weight gradient of microbatch k, ~: still running, .: idle\n"
        "bubble: 0.077 (2 of 26 stage-steps idle)\n");
}

namespace {

// The interleaved schedule with 1F1B's shorter warm-up, p-1-s + (v-1) * (first round),
// over the same order of forwards and backwards: with equal action times it is as fast
// (the extra warm-up only pays for unequal chunks and messages that take time, which the
// simulator does not model) and holds fewer microbatches.
PipelineSchedule short_warmup(const PipelineSchedule& ours) {
  PipelineSchedule theirs = ours;
  const int p = ours.stages, m = ours.microbatches, v = ours.chunks, first_round = m / (m / p) + (m % (m / p) ? 1 : 0);
  for (int s = 0; s < p; ++s) {
    std::vector<Action> f, b;
    for (const Action& a : ours.per_stage[size_t(s)]) (a.kind == Action::F ? f : b).push_back(a);
    const size_t warmup = size_t(std::min((p - 1 - s) + (v - 1) * first_round, m * v));
    auto& out = theirs.per_stage[size_t(s)];
    out.clear();
    size_t nf = 0, nb = 0;
    while (nf < warmup) out.push_back(f[nf++]);
    while (nf < f.size()) out.push_back(f[nf++]), out.push_back(b[nb++]);
    while (nb < b.size()) out.push_back(b[nb++]);
  }
  return theirs;
}

}  // namespace

// Issue 18: Megatron-LM's interleaved 1F1B, v model chunks per stage.
TEST_CASE("interleaved 1f1b: v chunks per stage cut the bubble towards (p-1)/(vm+p-1)", "[pipeline]") {
  for (int p = 2; p <= 8; ++p)
    for (int m = p; m <= 16; ++m)
      for (int v = 1; v <= 3; ++v) {
        INFO("p=" << p << " m=" << m << " v=" << v);
        const PipelineSchedule il = interleaved_1f1b(p, m, v);
        CHECK(il.chunks == v);
        // A chunk is 1/v of a stage: F = 1, B = 2 per chunk against F = v, B = 2v per
        // stage for 1F1B over the same model.
        const Simulation sim = simulate(il, {1, 2});
        const Simulation base = simulate(one_f_one_b(p, m), {v, 2 * v});
        for (int s = 0; s < p; ++s) CHECK(il.per_stage[size_t(s)].size() == size_t(2 * m * v));
        CHECK(sim.bubble <= base.bubble + 1e-12);
        const double formula = double(p - 1) / double(v * m + p - 1);
        if (m % p == 0) CHECK(sim.bubble == Approx(formula).margin(1e-9));  // rounds of exactly p
        else CHECK(sim.bubble <= 2 * formula);
        if (v == 1) CHECK(il.per_stage == one_f_one_b(p, m).per_stage);
        // 1F1B's shorter warm-up: the same makespan with equal action times, never more held.
        const Simulation shorter = simulate(short_warmup(il), {1, 2});
        CHECK(shorter.makespan == sim.makespan);
        for (int s = 0; s < p; ++s) CHECK(shorter.peak_in_flight[size_t(s)] <= sim.peak_in_flight[size_t(s)]);
      }
  CHECK(make_schedule("interleaved", 2, 4, 2).per_stage == interleaved_1f1b(2, 4, 2).per_stage);
  // m < p (a short last batch): one round, no slower than GPipe over the same model.
  for (int p = 2; p <= 8; ++p)
    for (int m = 1; m < p; ++m)
      for (int v = 1; v <= 3; ++v) {
        INFO("m < p: p=" << p << " m=" << m << " v=" << v);
        CHECK(simulate(interleaved_1f1b(p, m, v), {1, 2}).makespan <= simulate(gpipe(p, m), {v, 2 * v}).makespan);
      }
  CHECK_THROWS_WITH(interleaved_1f1b(2, 2, 0), Contains("at least one chunk per stage, got v=0"));
  CHECK_THROWS_WITH(make_schedule("1f1b", 2, 4, 2), Contains("only the interleaved schedule holds several chunks"));
  CHECK(render(interleaved_1f1b(2, 4, 2)) ==
        "interleaved: 2 stages x 2 chunks, 4 microbatches, F=1 B=1 steps: makespan 18 steps\n"
        "step    | 0    1    2    3    4    5    6    7    8    9    10   11   12   13   14   15   16   17\n"
        "stage 0 | F0   F1   F0.1 F1.1 F2   B0.1 F3   B1.1 F2.1 B0   F3.1 B1   .    B2.1 .    B3.1 B2   B3\n"
        "stage 1 | .    F0   F1   F0.1 B0.1 F1.1 B1.1 F2   B0   F3   B1   F2.1 B2.1 F3.1 B3.1 B2   B3   .\n"
        "Fk/Bk: forward/backward of microbatch k, ~: still running, .: idle\n"
        "Fk.c/Bk.c: of chunk c (stage s's chunk c is virtual stage c*p+s); no suffix: chunk 0\n"
        "bubble: 0.111 (4 of 36 stage-steps idle)\n");
}
