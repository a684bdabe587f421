#include "render.h"

#include <algorithm>
#include <cstdio>

#include "../../tensor/error.h"

namespace weft::parallel::pipeline {

namespace {

// Left-aligns `text` in a cell of `width` characters plus one space between cells.
void put_cell(std::string& row, const std::string& text, size_t width) {
  row += text;
  row.append(width + 1 - text.size(), ' ');
}

// Trailing spaces make golden strings fragile and diffs noisy.
std::string trimmed(std::string row) {
  row.erase(row.find_last_not_of(' ') + 1);
  return row;
}

}  // namespace

std::string render(const PipelineSchedule& schedule, const Costs& costs) {
  const Simulation sim = simulate(schedule, costs);
  const int p = schedule.stages;

  // The grid: cells[s][t] is what stage s shows at step t.
  std::vector<std::vector<std::string>> cells(p, std::vector<std::string>(sim.makespan, "."));
  size_t width = std::to_string(sim.makespan - 1).size();  // the step numbers fit too
  for (int s = 0; s < p; ++s)
    for (const TimedAction& ta : sim.timeline[s]) {
      cells[s][ta.start] = label(ta.action);
      for (int t = ta.start + 1; t < ta.end; ++t) cells[s][t] = "~";
      width = std::max(width, cells[s][ta.start].size());
    }

  // "stage 10 |" is wider than "stage 0 |": pad every row's name to the widest.
  const size_t name_width = std::string("stage ").size() + std::to_string(p - 1).size();
  auto row_start = [&](const std::string& name) { return name + std::string(name_width - name.size(), ' ') + " | "; };

  const int m = schedule.microbatches;
  bool split = false;  // any W: say what W costs and means
  for (const auto& actions : schedule.per_stage)
    for (const Action& a : actions) split = split || a.kind == Action::W;
  const std::string chunks = schedule.chunks > 1 ? detail::str(" x ", schedule.chunks, " chunks") : std::string();
  std::string out = detail::str(schedule.name, ": ", p, p == 1 ? " stage" : " stages", chunks, ", ", m,
                                m == 1 ? " microbatch, " : " microbatches, ", "F=", costs.forward,
                                " B=", costs.backward, split ? detail::str(" W=", costs.weight) : std::string(),
                                " steps: makespan ", sim.makespan, " steps\n");
  std::string steps = row_start("step");
  for (int t = 0; t < sim.makespan; ++t) put_cell(steps, std::to_string(t), width);
  out += trimmed(steps) + "\n";
  for (int s = 0; s < p; ++s) {
    std::string row = row_start("stage " + std::to_string(s));
    for (const std::string& cell : cells[s]) put_cell(row, cell, width);
    out += trimmed(row) + "\n";
  }
  out += split ? "Fk/Bk/Wk: forward/input gradient/weight gradient of microbatch k, ~: still running, .: idle\n"
               : "Fk/Bk: forward/backward of microbatch k, ~: still running, .: idle\n";
  if (schedule.chunks > 1) out += "Fk.c/Bk.c: of chunk c (stage s's chunk c is virtual stage c*p+s); no suffix: chunk 0\n";

  long busy = 0;
  for (int b : sim.busy) busy += b;
  const long total = static_cast<long>(p) * sim.makespan;
  char bubble[96];
  std::snprintf(bubble, sizeof bubble, "bubble: %.3f (%ld of %ld stage-steps idle)\n", sim.bubble, total - busy,
                total);
  return out + bubble;
}

}  // namespace weft::parallel::pipeline
