// The ASCII pictures of pipeline schedules, as golden strings: gpipe and 1f1b on 2
// stages with 2 microbatches, naive on 3 stages, a backward that spans two steps, and
// microbatch numbers wider than the step columns.
#include <catch2/catch.hpp>

#include "parallel/pipeline/render.h"

using namespace weft::parallel::pipeline;
using Catch::Matchers::Contains;

TEST_CASE("pipeline render: gpipe and 1f1b on 2 stages, 2 microbatches", "[pipeline]") {
  CHECK(render(gpipe(2, 2)) ==
        "gpipe: 2 stages, 2 microbatches, F=1 B=1 steps: makespan 6 steps\n"
        "step    | 0  1  2  3  4  5\n"
        "stage 0 | F0 F1 .  .  B0 B1\n"
        "stage 1 | .  F0 F1 B0 B1 .\n"
        "Fk/Bk: forward/backward of microbatch k, ~: still running, .: idle\n"
        "bubble: 0.333 (4 of 12 stage-steps idle)\n");
  // Same makespan and bubble; stage 1 interleaves, so it never holds two microbatches.
  CHECK(render(one_f_one_b(2, 2)) ==
        "1f1b: 2 stages, 2 microbatches, F=1 B=1 steps: makespan 6 steps\n"
        "step    | 0  1  2  3  4  5\n"
        "stage 0 | F0 F1 .  B0 .  B1\n"
        "stage 1 | .  F0 B0 F1 B1 .\n"
        "Fk/Bk: forward/backward of microbatch k, ~: still running, .: idle\n"
        "bubble: 0.333 (4 of 12 stage-steps idle)\n");
}

TEST_CASE("pipeline render: naive on 3 stages idles two thirds of the time", "[pipeline]") {
  CHECK(render(naive(3)) ==
        "naive: 3 stages, 1 microbatch, F=1 B=1 steps: makespan 6 steps\n"
        "step    | 0  1  2  3  4  5\n"
        "stage 0 | F0 .  .  .  .  B0\n"
        "stage 1 | .  F0 .  .  B0 .\n"
        "stage 2 | .  .  F0 B0 .  .\n"
        "Fk/Bk: forward/backward of microbatch k, ~: still running, .: idle\n"
        "bubble: 0.667 (12 of 18 stage-steps idle)\n");
}

TEST_CASE("pipeline render: longer actions and wider labels", "[pipeline]") {
  CHECK(render(gpipe(2, 2), {1, 2}) ==
        "gpipe: 2 stages, 2 microbatches, F=1 B=2 steps: makespan 9 steps\n"
        "step    | 0  1  2  3  4  5  6  7  8\n"
        "stage 0 | F0 F1 .  .  .  B0 ~  B1 ~\n"
        "stage 1 | .  F0 F1 B0 ~  B1 ~  .  .\n"
        "Fk/Bk: forward/backward of microbatch k, ~: still running, .: idle\n"
        "bubble: 0.333 (6 of 18 stage-steps idle)\n");
  // "F10" is three characters: every column widens so the rows stay aligned.
  const std::string wide = render(gpipe(2, 11));
  CHECK_THAT(wide, Contains("step    | 0   1   2   3 "));
  CHECK_THAT(wide, Contains("stage 0 | F0  F1  F2 "));
  CHECK_THAT(wide, Contains("F9  F10 .   "));
  CHECK_THAT(wide, Contains("makespan 24 steps"));
  // Eleven stages: "stage 10" is wider than "stage 0", and the bars still line up.
  const std::string tall = render(gpipe(11, 1));
  CHECK_THAT(tall, Contains("\nstep     | 0 "));
  CHECK_THAT(tall, Contains("\nstage 0  | F0 "));
  CHECK_THAT(tall, Contains("\nstage 10 | .  "));
  CHECK_THROWS_WITH(render(gpipe(2, 2), {0, 1}), Contains("costs must be at least one step"));
}
