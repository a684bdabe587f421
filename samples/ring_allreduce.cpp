// Ring all-reduce, watched step by step: the textbook picture, printed from a real run.
//
//   build/samples/ring_allreduce                 # 4 ranks (threads backend)
//   build/samples/ring_allreduce --ranks 5 --numel 12
//
// Rank r starts with every element equal to 2^r, so a reduced value says by its bits
// exactly whose contributions it holds: 2^0 + 2^2 = 5 is "A+C" (rank 0 is A, rank 1 is
// B, ...). Every rank's ring_allreduce (parallel/algorithms/ring_allreduce.cpp) reports
// each step to an observer; the observer looks at the rank's own tensor, and after the
// run this program prints, for each step, who sends which chunk to whom and what every
// rank then holds in every chunk:
//
//   reduce-scatter: n-1 steps; a chunk travels around the ring picking up one
//                   contribution per hop, until rank r holds chunk r+1 complete;
//   all-gather:     n-1 steps; the complete chunks travel around the ring once more,
//                   replacing the partial ones.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/algorithms/ring_allreduce.h"
#include "parallel/comm/threads_communicator.h"
#include "samples/common/flags.h"
#include "weft.h"

using namespace weft;
using namespace weft::parallel;

namespace {

// "A+C" for the value 0b101: the ranks whose contributions a reduced value holds.
std::string contributors(int64_t v) {
  std::string s;
  for (int r = 0; r < 62; ++r)
    if (v >> r & 1) s += (s.empty() ? "" : "+") + std::string(1, char('A' + r));
  return s.empty() ? "-" : s;
}

// What one rank holds in each chunk (the first element of each; "-" for an empty chunk).
std::vector<std::string> holdings(const Tensor& t, int n) {
  std::vector<std::string> out;
  for (int c = 0; c < n; ++c) {
    auto [b, e] = ring_chunk(t.numel(), n, c);
    out.push_back(b == e ? "-" : contributors(t.data<int64_t>()[b]));
  }
  return out;
}

struct Snapshot {
  RingStep step;
  std::vector<std::string> holds;  // before this step's exchange
};

void print_grid(const std::vector<std::vector<std::string>>& holds, int n, int width) {
  std::printf("          ");
  for (int c = 0; c < n; ++c) std::printf("%-*s", width, ("chunk " + std::to_string(c)).c_str());
  std::printf("\n");
  for (int r = 0; r < n; ++r) {
    std::printf("  rank %-2d ", r);
    for (int c = 0; c < n; ++c) std::printf("%-*s", width, holds[r][c].c_str());
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Ring all-reduce over send/recv, printed step by step"};
  int n = 4;
  int64_t numel = 8;
  app.add_option("--ranks", n, "world size (threads backend), 1..26")->check(samples::whole_number(1, 26));
  app.add_option("--numel", numel, "elements of the tensor")->check(samples::whole_number<int64_t>(1, int64_t(1) << 20));
  double timeout_s = kDefaultTimeout.count() / 1000.0;
  samples::add_timeout_flag(app, timeout_s);
  CLI11_PARSE(app, argc, argv);

  std::mutex mu;
  std::map<std::tuple<int, int, int>, Snapshot> seen;  // (phase, step, rank) -> snapshot
  std::vector<Tensor> tensors(n);
  for (int r = 0; r < n; ++r) tensors[r] = full({numel}, double(int64_t(1) << r), {.dtype = kInt64});
  std::vector<std::vector<std::string>> start(n), finish(n);
  for (int r = 0; r < n; ++r) start[r] = holdings(tensors[r], n);

  RingOptions opt;
  opt.observer = [&](const RingStep& s) {  // runs on rank s.rank's thread: its own tensor is stable
    auto holds = holdings(tensors[s.rank], n);
    std::lock_guard lock(mu);
    seen[{int(s.phase), s.step, s.rank}] = {s, std::move(holds)};
  };
  run_ranks(n, [&](Communicator& comm) { ring_allreduce(comm, tensors[comm.rank()], ReduceOp::Sum, opt); },
            samples::collective_timeout(timeout_s));
  for (int r = 0; r < n; ++r) finish[r] = holdings(tensors[r], n);

  const int width = std::max(9, 2 * n + 1);
  std::printf("Ring all-reduce (sum) of %lld int64 elements over %d ranks (threads backend), cut into %d chunks.\n",
              (long long)numel, n, n);
  std::printf("Rank r starts with 2^r everywhere; a cell shows whose contributions a chunk holds (rank 0 = A).\n\n");
  std::printf("start\n");
  print_grid(start, n, width);
  for (RingPhase phase : {RingPhase::ReduceScatter, RingPhase::AllGather})
    for (int step = 0; step < n - 1; ++step) {
      std::printf("\n%s step %d of %d\n", ring_phase_name(phase), step + 1, n - 1);
      for (int r = 0; r < n; ++r) {
        const RingStep& s = seen.at({int(phase), step, r}).step;
        std::printf("  rank %d sends chunk %d to rank %d, receives chunk %d from rank %d%s\n", r, s.send_chunk,
                    (r + 1) % n, s.recv_chunk, (r + n - 1) % n, phase == RingPhase::ReduceScatter ? " and adds it" : "");
      }
      // What every rank holds after this step: the snapshot taken before the next one.
      std::vector<std::vector<std::string>> after(n);
      const bool last = phase == RingPhase::AllGather && step == n - 2;
      const auto next = step < n - 2 ? std::make_tuple(int(phase), step + 1, 0) : std::make_tuple(int(RingPhase::AllGather), 0, 0);
      for (int r = 0; r < n; ++r)
        after[r] = last ? finish[r] : seen.at({std::get<0>(next), std::get<1>(next), r}).holds;
      print_grid(after, n, width);
    }
  bool ok = true;
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < numel; ++i) ok &= tensors[r].data<int64_t>()[i] == (int64_t(1) << n) - 1;
  std::printf("\nevery rank holds the full sum in every element: %s\n", ok ? "yes" : "NO");
  std::printf("each rank sent 2(n-1)/n = %.2f tensors' worth of data (%d steps of one chunk)\n",
              2.0 * (n - 1) / n, 2 * (n - 1));
  return ok ? 0 : 1;
}
