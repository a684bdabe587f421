// GPU training-step throughput of the two sample models, eager or as a CUDA graph.
//
// The step is the samples' (zero_grad, forward, cross_entropy with label smoothing 0.1,
// backward, AdamW lr 2e-3 wd 0.05) on real Fashion-MNIST batches already on the GPU
// (batch k = training samples [k*B, (k+1)*B), cycling over --batches), so neither the
// data loader nor host-to-device copies are timed -- bench/gpu_train_step.py feeds
// PyTorch exactly the same. In graph mode each batch is first copied (on the GPU) into
// the captured step's static input, as the samples' --cuda-graph does.
//
// After --warmup steps, --repeats runs of --steps steps are timed, each ending with a
// device synchronise; the median samples/s is printed as one JSON line on stdout, with
// the cudaMalloc calls made during the timed steps (0 in steady state).
//
//   gpu_train_step --model mlp|cnn [--graph] [--batch-size 128] [--steps S] [--warmup W]
//                  [--repeats R] [--batches K] [--data DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "samples/common/models.h"
#include "weft.h"

using namespace weft;

namespace {

struct Args {
  std::string model = "mlp";
  bool graph = false;
  std::string precision = "fp32";  // bf16 / fp16: forward and loss under Autocast (eager only)
  int64_t batch_size = 128;
  int steps = 200, warmup = 20, repeats = 5, batches = 16;
  std::string data = data::kFashionMnistDir;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--graph") {
      a.graph = true;
      continue;
    }
    if (i + 1 >= argc) throw Error("gpu_train_step: missing value after " + f);
    const char* v = argv[++i];
    if (f == "--model") a.model = v;
    else if (f == "--batch-size") a.batch_size = std::atoll(v);
    else if (f == "--steps") a.steps = std::atoi(v);
    else if (f == "--warmup") a.warmup = std::atoi(v);
    else if (f == "--repeats") a.repeats = std::atoi(v);
    else if (f == "--batches") a.batches = std::atoi(v);
    else if (f == "--data") a.data = v;
    else if (f == "--precision") a.precision = v;
    else throw Error("gpu_train_step: unknown flag " + f);
  }
  WEFT_CHECK(a.model == "mlp" || a.model == "cnn", "gpu_train_step: --model must be mlp or cnn");
  WEFT_CHECK(a.precision == "fp32" || a.precision == "bf16" || a.precision == "fp16",
             "gpu_train_step: --precision must be fp32, bf16 or fp16");
  WEFT_CHECK(!a.graph || a.precision == "fp32", "gpu_train_step: --graph runs the float32 step only");
  return a;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    WEFT_CHECK(cuda::is_available(), "gpu_train_step: no CUDA GPU visible");
    const Device dev = Device::cuda(0);
    manual_seed(0);
    const data::Normalize norm{data::kFashionMnistMean, data::kFashionMnistStd};
    const data::TensorDataset train = data::load_fashion_mnist(a.data, true, norm);
    const int64_t B = a.batch_size;
    std::vector<Tensor> xs, ys;
    for (int64_t k = 0; k < a.batches; ++k) {
      data::Batch b = train.get(arange(k * B, (k + 1) * B, 1, kInt64));
      xs.push_back(b.x.to(dev));
      ys.push_back(b.y.to(dev));
    }
    auto model = a.model == "mlp" ? samples::make_mlp() : samples::make_cnn();
    model->to(dev);
    optim::AdamW opt(model->parameters(), {.lr = 2e-3, .weight_decay = 0.05});
    const DType precision = parse_dtype(a.precision);
    optim::GradScaler scaler({.enabled = precision == kFloat16});
    auto step = [&](const Tensor& x, const Tensor& y) {
      opt.zero_grad();
      Tensor loss;
      {
        const Autocast ac = autocast::for_precision(precision);
        loss = nn::cross_entropy((*model)(x), y, 0.1);
      }
      scaler.scale(loss).backward();
      scaler.step(opt);
      scaler.update();
      return loss;
    };

    // Graph mode: static inputs, a warmed-up capture, then copy + replay per step.
    Tensor sx = xs[0].clone(), sy = ys[0].clone(), loss;
    cuda::Graph graph;
    int64_t k = 0;
    auto one = [&] {
      const Tensor &x = xs[k % a.batches], &y = ys[k % a.batches];
      ++k;
      if (!a.graph) return step(x, y);
      sx.copy_(x);
      sy.copy_(y);
      graph.replay();
      return loss;
    };
    if (a.graph) {
      for (int i = 0; i < 3; ++i) step(sx, sy);
      cuda::synchronize();
      graph.capture_begin();
      loss = step(sx, sy);
      graph.capture_end();
    }
    for (int i = 0; i < a.warmup; ++i) loss = one();
    cuda::synchronize();

    std::vector<double> rates;
    const int64_t mallocs0 = cuda::memory_stats().malloc_calls;
    for (int r = 0; r < a.repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < a.steps; ++i) loss = one();
      cuda::synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rates.push_back(double(a.steps * B) / s);
    }
    const int64_t mallocs = cuda::memory_stats().malloc_calls - mallocs0;
    std::printf("{\"impl\": \"weft\", \"model\": \"%s\", \"mode\": \"%s\", \"precision\": \"%s\", \"batch_size\": %lld, \"samples_per_s\": %.1f, "
                "\"step_us\": %.2f, \"cudaMalloc_calls_timed\": %lld, \"graph_nodes\": %zu, \"loss\": %.5f}\n",
                a.model.c_str(), a.graph ? "graph" : "eager", a.precision.c_str(), static_cast<long long>(B), median(rates),
                1e6 * B / median(rates), static_cast<long long>(mallocs), graph.num_nodes(), loss.item<double>());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_train_step: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
