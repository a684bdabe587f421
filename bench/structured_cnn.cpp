// Structured pruning made real: the sample CNN with half its channels physically
// removed, against the dense CNN, at inference.
//
// The CNN of samples/train_cnn.cpp (conv 32, pool, conv 64, pool, fc 128, fc 10) is
// pruned with prune::structured to --sparsity (default 0.5) of the output channels of
// both convolutions and of the rows of fc 128 (not the classifier: its rows are the
// classes), by L1 norm; prune::remove_pruned_channels then builds the smaller dense model
// (conv 16, conv 32, fc 64 at 50%). Both are timed on the same input, interleaved round
// by round, under NoGradGuard in eval mode; the median time per forward over the rounds
// and the ratio dense / removed (> 1: the smaller model is faster) are printed. The two
// outputs are checked to agree first -- removal must not change what the model computes.
//
// Trained weights are not needed for speed (the arithmetic is the same), so the model is
// freshly initialised; the accuracy side is measured by samples/train_pruned.
//
//   structured_cnn [--sparsity 0.5] [--threads 1] [--rounds 11] [--batches 1,64,256]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "samples/common/models.h"
#include "weft.h"

using namespace weft;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_calls(F&& fn, int reps) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  double sparsity = 0.5, min_ms = 50;
  int threads = 1, rounds = 11;
  std::vector<int64_t> batches{1, 64, 256};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    if (f == "--sparsity") sparsity = std::atof(argv[i + 1]);
    else if (f == "--threads") threads = std::atoi(argv[i + 1]);
    else if (f == "--rounds") rounds = std::atoi(argv[i + 1]);
    else if (f == "--min-ms") min_ms = std::atof(argv[i + 1]);
    else if (f == "--batches") {
      batches.clear();
      std::stringstream ss(argv[i + 1]);
      for (std::string item; std::getline(ss, item, ',');) batches.push_back(std::stoll(item));
    } else {
      std::fprintf(stderr, "usage: structured_cnn [--sparsity S] [--threads N] [--rounds R] [--batches 1,64]\n");
      return 2;
    }
  }
  set_num_threads(threads);
  manual_seed(0);
  auto dense = samples::make_cnn();
  prune::Pruner pruner(*dense, {"0.weight", "3.weight", "7.weight"});
  prune::structured(pruner, sparsity, 1);
  auto small = prune::remove_pruned_channels(*dense);
  dense->eval();
  small->eval();
  std::printf("structured_cnn: %.0f%% of the channels of conv1, conv2 and fc1 removed; %lld -> %lld parameters; "
              "%d thread(s), median of %d rounds\n",
              100 * sparsity, static_cast<long long>(dense->num_parameters()),
              static_cast<long long>(small->num_parameters()), num_threads(), rounds);
  std::printf("  batch   dense ms   removed ms   ratio\n");
  autograd::NoGradGuard no_grad;
  for (int64_t batch : batches) {
    const Tensor x = randn({batch, 1, 28, 28});
    WEFT_CHECK(allclose((*dense)(x), (*small)(x), 1e-4, 1e-4), "structured_cnn: the smaller model disagrees");
    auto run_dense = [&] { (void)(*dense)(x); };
    auto run_small = [&] { (void)(*small)(x); };
    const double one = time_calls(run_dense, 3);
    time_calls(run_small, 3);
    const int reps = std::max(3, static_cast<int>(min_ms * 1e-3 / std::max(one, 1e-9)));
    std::vector<double> d, s;
    for (int r = 0; r < rounds; ++r) {
      d.push_back(time_calls(run_dense, reps));
      s.push_back(time_calls(run_small, reps));
    }
    const double dm = 1e3 * median(d), sm = 1e3 * median(s);
    std::printf("  %5lld  %9.3f  %11.3f  %5.2fx\n", static_cast<long long>(batch), dm, sm, dm / sm);
    std::fflush(stdout);
  }
  return 0;
}
