// Training-step throughput: the two sample models, timed one full step at a time.
//
//   mlp  784-512-256-10 ReLU MLP                       (samples::make_mlp)
//   cnn  conv3x3 32 (pad 1), ReLU, maxpool 2, conv3x3 64 (pad 1), ReLU, maxpool 2,
//        fc 128, ReLU, fc 10                           (samples::make_cnn)
//
// Each step is what the samples do: zero_grad, forward, cross_entropy (label smoothing
// 0.1), backward, AdamW step (lr 2e-3, weight decay 0.05), on real Fashion-MNIST batches;
// with --precision bf16 or fp16, the forward and the loss under Autocast (and for fp16
// a GradScaler), as `train_mlp --precision` runs them,
// (normalised with the training set's mean and std). The batches are prepared before the
// clock starts -- batch k is training samples [k*B, (k+1)*B), cycling over --batches of
// them -- so the data loader is not timed, and bench/train_step.py, the PyTorch twin,
// feeds exactly the same batches. The learning-rate schedule is left out (a scalar).
//
// After --warmup untimed steps, --repeats runs of --steps steps each are timed; each
// run gives samples/s (steps * B / wall time) and the median over runs is reported,
// together with per-step medians of the phases:
//   forward    model forward + loss
//   backward   loss.backward()
//   optimizer  zero_grad + step
//
//   train_step --model mlp|cnn [--threads N] [--batch-size 128] [--steps S] [--warmup W]
//              [--repeats R] [--batches K] [--data DIR] [--seed S] [--gemm auto|eigen|openblas|onednn]
//              [--precision fp32|bf16|fp16]
// prints one JSON line on stdout (for bench/run_train_bench.sh) and a readable summary
// on stderr, with the GEMM kernels that ran (tensor/kernels.h) and, with --gemm-table,
// the time of each candidate on each shape class measured.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "samples/common/models.h"
#include "weft.h"

using namespace weft;

namespace {

struct Args {
  std::string model = "mlp";
  int threads = 1;
  int64_t batch_size = 128;
  int steps = 0;   // 0: 200 for mlp, 30 for cnn
  int warmup = -1; // -1: 20 for mlp, 5 for cnn
  int repeats = 5;
  int batches = 16;
  uint64_t seed = 0;
  std::string data = data::kFashionMnistDir;
  std::string gemm;  // set_gemm_backend's argument; empty: WEFT_GEMM, else auto
  bool gemm_table = false;
  std::string precision = "fp32";  // fp32, or bf16 / fp16: forward and loss under Autocast
};

[[noreturn]] void usage(const char* msg) {
  if (msg) std::fprintf(stderr, "train_step: %s\n", msg);
  std::fprintf(stderr,
               "usage: train_step --model mlp|cnn [--threads N] [--batch-size B] [--steps S] [--warmup W]\n"
               "                  [--repeats R] [--batches K] [--data DIR] [--seed S]\n"
               "                  [--gemm auto|eigen|openblas|onednn] [--gemm-table] [--precision fp32|bf16|fp16]\n");
  std::exit(2);
}

// s with the characters JSON strings may not hold bare escaped.
std::string json_escaped(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) out += ' ';
    else out += ch;
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") usage(nullptr);
    if (flag == "--gemm-table") {
      a.gemm_table = true;
      continue;
    }
    if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
    const char* v = argv[++i];
    if (flag == "--model") a.model = v;
    else if (flag == "--threads") a.threads = std::atoi(v);
    else if (flag == "--batch-size") a.batch_size = std::atoll(v);
    else if (flag == "--steps") a.steps = std::atoi(v);
    else if (flag == "--warmup") a.warmup = std::atoi(v);
    else if (flag == "--repeats") a.repeats = std::atoi(v);
    else if (flag == "--batches") a.batches = std::atoi(v);
    else if (flag == "--data") a.data = v;
    else if (flag == "--seed") a.seed = std::strtoull(v, nullptr, 10);
    else if (flag == "--gemm") a.gemm = v;
    else if (flag == "--precision") a.precision = v;
    else usage(("unknown flag " + flag).c_str());
  }
  if (a.model != "mlp" && a.model != "cnn") usage("--model must be mlp or cnn");
  if (a.precision != "fp32" && a.precision != "bf16" && a.precision != "fp16") usage("--precision must be fp32, bf16 or fp16");
  if (a.steps <= 0) a.steps = a.model == "mlp" ? 200 : 30;
  if (a.warmup < 0) a.warmup = a.model == "mlp" ? 20 : 5;
  if (a.threads < 1 || a.batch_size < 1 || a.repeats < 1 || a.batches < 1) usage("counts must be >= 1");
  return a;
}

// The sample models (samples/common/models.h), so the benchmark always measures the
// networks the samples train.
std::shared_ptr<nn::Module> make_model(const std::string& name) {
  if (name == "mlp") return samples::make_mlp();
  return samples::make_cnn();
}

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.2f", i ? ", " : "", v[i]);
    s += buf;
  }
  return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    set_num_threads(a.threads);
    if (!a.gemm.empty()) set_gemm_backend(a.gemm);
    manual_seed(a.seed);
    const data::Normalize norm{data::kFashionMnistMean, data::kFashionMnistStd};
    const data::TensorDataset train = data::load_fashion_mnist(a.data, true, norm);
    const int64_t B = a.batch_size;
    const int64_t nb = std::min<int64_t>(a.batches, train.size() / B);
    if (nb < 1) usage("--batch-size larger than the training set");
    std::vector<data::Batch> batches;
    for (int64_t k = 0; k < nb; ++k) batches.push_back(train.get(arange(k * B, (k + 1) * B, 1, kInt64)));

    std::shared_ptr<nn::Module> model = make_model(a.model);
    optim::AdamW opt(model->parameters(), {.lr = 2e-3, .weight_decay = 0.05});
    const double label_smoothing = 0.1;
    const DType precision = parse_dtype(a.precision);
    optim::GradScaler scaler({.enabled = precision == kFloat16});

    double fwd_ms = 0, bwd_ms = 0, opt_ms = 0;
    double last_loss = 0;
    int64_t step = 0;
    auto train_step = [&] {
      const data::Batch& b = batches[static_cast<size_t>(step++ % nb)];
      const auto t0 = Clock::now();
      opt.zero_grad();
      const auto t1 = Clock::now();
      Tensor loss;
      {
        const Autocast ac = autocast::for_precision(precision);
        loss = nn::cross_entropy((*model)(b.x), b.y, label_smoothing);
      }
      const auto t2 = Clock::now();
      scaler.scale(loss).backward();
      const auto t3 = Clock::now();
      scaler.step(opt);
      scaler.update();
      const auto t4 = Clock::now();
      fwd_ms = ms_between(t1, t2);
      bwd_ms = ms_between(t2, t3);
      opt_ms = ms_between(t0, t1) + ms_between(t3, t4);
      return loss;
    };

    Tensor loss;
    for (int i = 0; i < a.warmup; ++i) loss = train_step();

    std::vector<double> rates, cpu_ms_per_step, fwd, bwd, upd;
    for (int r = 0; r < a.repeats; ++r) {
      const double c0 = cpu_seconds();
      const auto t0 = Clock::now();
      for (int i = 0; i < a.steps; ++i) {
        loss = train_step();
        fwd.push_back(fwd_ms);
        bwd.push_back(bwd_ms);
        upd.push_back(opt_ms);
      }
      const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
      rates.push_back(static_cast<double>(a.steps * B) / wall_s);
      cpu_ms_per_step.push_back(1e3 * (cpu_seconds() - c0) / a.steps);
    }
    last_loss = loss.item<double>();

    const double rate = median(rates);
    std::printf(
        "{\"impl\": \"weft\", \"version\": \"%s\", \"model\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"batch_size\": %lld, "
        "\"steps\": %d, \"repeats\": %d, \"samples_per_s\": %.2f, \"samples_per_s_all\": %s, "
        "\"step_ms\": %.4f, \"cpu_ms_per_step\": %.4f, \"forward_ms\": %.4f, \"backward_ms\": %.4f, "
        "\"optimizer_ms\": %.4f, \"loss\": %.6f, \"gemm\": \"%s\"}\n",
        WEFT_VERSION, a.model.c_str(), a.precision.c_str(), num_threads(), static_cast<long long>(B), a.steps, a.repeats, rate,
        json_list(rates).c_str(), 1e3 * static_cast<double>(B) / rate, median(cpu_ms_per_step), median(fwd),
        median(bwd), median(upd), last_loss, json_escaped(gemm_report()).c_str());
    std::fprintf(stderr,
                 "weft %s %s %s, %d thread(s), batch %lld: %.0f samples/s (%.2f ms/step; runs: %s)\n"
                 "  per step (median): forward %.3f ms, backward %.3f ms, optimizer %.3f ms; "
                 "process CPU %.3f ms; last loss %.4f\n  %s\n",
                 WEFT_VERSION, a.model.c_str(), a.precision.c_str(), num_threads(), static_cast<long long>(B), rate,
                 1e3 * static_cast<double>(B) / rate, json_list(rates).c_str(), median(fwd), median(bwd), median(upd),
                 median(cpu_ms_per_step), last_loss, gemm_report().c_str());
    if (a.gemm_table) std::fprintf(stderr, "%s", gemm_decision_table().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_step: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
