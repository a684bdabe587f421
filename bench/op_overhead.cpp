// Per-op overhead: what one tiny differentiable op costs beyond its arithmetic.
//
// A chain of `ops` (default 10,000) cheap ops on a 16-element float32 leaf, cycling
//   y = y * 1.0001   (mul_scalar)
//   y = y + c        (add, c a constant tensor that does not require grad)
//   y = y.relu()     (relu; values stay positive, so it passes everything through)
// and loss = y.sum(). With 16 elements the arithmetic is a few nanoseconds; everything
// else -- allocating the output, the dispatch checks, building the tape entry, the
// backward closure call, routing the gradient -- is overhead, which is what we measure:
//   forward_grad    the chain with grad mode on (each op records a tape entry), ns per op
//   backward        loss.backward() over that tape, ns per op of the chain (it frees the
//                   entries as it walks them, so tearing the graph down is included)
//   forward_nograd  the same chain under NoGradGuard (no recording), ns per op
// Each is measured `reps` times after one warm-up, in wall time and in process CPU time;
// every sample is printed so a driver (bench/run_op_overhead.sh) can interleave runs with
// PyTorch's twin, bench/op_overhead.py, and take medians over all of them.
//
//   op_overhead [--ops N] [--numel N] [--reps N]
// prints one JSON line: {"impl": "weft", ..., "wall": {"forward_grad": [ns/op, ...], ...},
// "cpu": {...}} and a human-readable summary on stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "tensor/tensor.h"

namespace {

// Wall time and this process's CPU time. On a shared, busy machine the wall time of a
// run includes the time other processes held the core; the CPU time does not, so it is
// the steadier of the two (the driver reports both).
struct Stamp {
  std::chrono::steady_clock::time_point wall;
  timespec cpu;
};

Stamp now() {
  Stamp s;
  s.wall = std::chrono::steady_clock::now();
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &s.cpu);
  return s;
}

struct Elapsed {
  double wall_ns, cpu_ns;
};

Elapsed since(const Stamp& t0) {
  const Stamp t1 = now();
  return {std::chrono::duration<double, std::nano>(t1.wall - t0.wall).count(),
          1e9 * static_cast<double>(t1.cpu.tv_sec - t0.cpu.tv_sec) + static_cast<double>(t1.cpu.tv_nsec - t0.cpu.tv_nsec)};
}

// One list of ns/op samples per phase and clock.
struct Samples {
  std::vector<double> wall, cpu;
  void add(const Elapsed& e, int ops) {
    wall.push_back(e.wall_ns / ops);
    cpu.push_back(e.cpu_ns / ops);
  }
};

// The chain itself; the same code runs with and without recording.
weft::Tensor chain(const weft::Tensor& x, const weft::Tensor& c, int ops) {
  weft::Tensor y = x;
  for (int i = 0; i < ops; ++i) {
    switch (i % 3) {
      case 0: y = y * 1.0001; break;
      case 1: y = y + c; break;
      default: y = y.relu(); break;
    }
  }
  return y;
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.1f", i ? ", " : "", v[i]);
    s += buf;
  }
  return s + "]";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  int ops = 10000, numel = 16, reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ops")) ops = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--numel")) numel = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--ops N] [--numel N] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  weft::set_num_threads(1);

  // x_i = 0.5 .. 1.5, c = 1e-4: after 10,000 ops every value is about 1.4 x_i + 0.4.
  std::vector<float> xs(numel);
  for (int i = 0; i < numel; ++i) xs[i] = 0.5f + static_cast<float>(i) / std::max(1, numel - 1);
  weft::Tensor x = weft::tensor(xs, {numel}, {.requires_grad = true});
  weft::Tensor c = weft::full({numel}, 1e-4);

  Samples fwd, bwd, nograd;
  float loss_value = 0, grad0 = 0;
  for (int r = -1; r < reps; ++r) {  // r == -1 is the warm-up
    x.set_grad({});
    Stamp t0 = now();
    weft::Tensor y = chain(x, c, ops);
    const Elapsed t_fwd = since(t0);
    weft::Tensor loss = y.sum();
    y = weft::Tensor();  // as in the Python twin: only loss holds the graph
    t0 = now();
    loss.backward();
    const Elapsed t_bwd = since(t0);
    loss_value = loss.item<float>();
    grad0 = x.grad().to_vector<float>()[0];

    Elapsed t_nograd;
    {
      weft::autograd::NoGradGuard no_grad;
      t0 = now();
      weft::Tensor z = chain(x, c, ops);
      t_nograd = since(t0);
    }
    if (r >= 0) {
      fwd.add(t_fwd, ops);
      bwd.add(t_bwd, ops);
      nograd.add(t_nograd, ops);
    }
  }
  std::fprintf(stderr, "weft: forward_grad %.0f ns/op, backward %.0f ns/op, forward_nograd %.0f ns/op "
               "(CPU time, medians of %d); tape entries left %lld\n", median(fwd.cpu), median(bwd.cpu),
               median(nograd.cpu), reps, static_cast<long long>(weft::autograd::tape_size()));
  std::printf("{\"impl\": \"weft\", \"ops\": %d, \"numel\": %d, \"loss\": %.6g, \"grad0\": %.6g, "
              "\"wall\": {\"forward_grad\": %s, \"backward\": %s, \"forward_nograd\": %s}, "
              "\"cpu\": {\"forward_grad\": %s, \"backward\": %s, \"forward_nograd\": %s}}\n",
              ops, numel, loss_value, grad0, json_list(fwd.wall).c_str(), json_list(bwd.wall).c_str(),
              json_list(nograd.wall).c_str(), json_list(fwd.cpu).c_str(), json_list(bwd.cpu).c_str(),
              json_list(nograd.cpu).c_str());
  return 0;
}
