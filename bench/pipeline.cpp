// Pipeline parallelism on the CPU, measured side by side in one run (issues 16 and 18).
//
//   build/bench/pipeline [--model deep-mlp|mlp|cnn] [--batch-size 128] [--steps 12] [--rounds 3]
//                        [--only RUN]     RUN: one row's name, e.g. "pipeline 1f1b m=8" (to profile it)
//
// On synthetic batches (random images, labels 0..9; the data loader is not timed), each
// round runs, one after the other so that a burst of load hits all alike:
//   one device, 1 intra-op thread      the baseline
//   one device, 2 intra-op threads     the same cores used by intra-op parallelism
//   DDP, 2 rank threads x 1 thread     the same cores used by data parallelism
//   pipeline, 2 stages x 1 thread      gpipe, 1f1b and zb1 at m = 4, 8 (naive at m = 1),
//                                      interleaved with v = 2 chunks per stage (the
//                                      model cut into 4 by parameters), and 1f1b and
//                                      gpipe at m = 8 with --recompute always
// and reports the median samples/s of each, its ratio to the baseline, and for the
// pipelines the measured bubble -- 1 - (sum of stage busy time) / (stages x wall) -- next
// to (p-1)/(m+p-1) (interleaved: (p-1)/(vm+p-1)) and to what the schedule alone gives with the stages' measured
// (unequal) busy times ("uneven": (m-1) max t + sum t of wall), the microbatches each
// stage held at most, each stage's activation bytes at its peak -- the device's peak
// during a step above its start (tensor/memory.h), less the transposed weights Linear
// keeps for the step; .grad buffers persist between steps here, so this is activations
// and backward temporaries -- and each stage's busy ms per step.
// Then a balance check: an uneven model (one layer 4x wider than the rest) cut into 2
// stages by layer count and by measured time, each stage's measured busy time and the
// step's speed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "samples/common/models.h"
#include "weft.h"

using namespace weft;
namespace pp = weft::parallel::pipeline;

namespace {

struct Args {
  std::string model = "deep-mlp";
  int64_t batch = 128;
  int steps = 12, rounds = 3;
  std::string only;  // run only the row of this name (and skip the balance check)
};

struct Batch {
  Tensor x, y;
};
Batch synthetic(int64_t n, uint64_t seed) {
  Generator g(seed);
  Tensor x = randn({n, 1, 28, 28}, {}, g);
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = (i * 7 + int64_t(seed)) % 10;
  return {x, tensor(y)};
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Tensor ce(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }

// samples/s of `steps` steps of one model on one device with `threads` threads.
double one_device(const Args& a, int threads, const std::vector<Batch>& data) {
  ThreadLimit limit(threads);
  auto model = samples::make_model(a.model);
  optim::AdamW opt(model->parameters(), {});
  auto step = [&](const Batch& b) {
    opt.zero_grad();
    ce((*model)(b.x), b.y).backward();
    opt.step();
  };
  step(data[0]);  // warm-up: GEMM measurement, allocator cache
  const double t0 = now_s();
  for (int i = 0; i < a.steps; ++i) step(data[size_t(i) % data.size()]);
  return double(a.steps * a.batch) / (now_s() - t0);
}

double ddp(const Args& a, const std::vector<Batch>& data) {
  double rate = 0;
  parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    ThreadLimit limit(1);
    auto model = samples::make_model(a.model);
    parallel::DistributedDataParallel d(model, comm, {.bucket_cap_mb = 1});
    optim::AdamW opt(model->parameters(), {});
    const int64_t half = a.batch / 2, r = comm->rank();
    auto step = [&](const Batch& b) {  // each rank half of the batch: the same global batch
      opt.zero_grad();
      d.backward(ce(d(b.x.narrow(0, r * half, half)), b.y.narrow(0, r * half, half)));
      d.synchronize();
      opt.step();
    };
    step(data[0]);
    comm->barrier();
    const double t0 = now_s();
    for (int i = 0; i < a.steps; ++i) step(data[size_t(i) % data.size()]);
    comm->barrier();
    if (r == 0) rate = double(a.steps * a.batch) / (now_s() - t0);
  });
  return rate;
}

// One pipeline row: its schedule, microbatches, chunks per stage and recomputation.
struct Pipe {
  std::string schedule;
  int m = 1, v = 1;
  pp::Recompute recompute = pp::Recompute::Never;

  std::string key() const {
    std::string k = "pipeline " + schedule + (v > 1 ? " v=" + std::to_string(v) : "") + " m=" + std::to_string(m);
    return recompute == pp::Recompute::Always ? k + " recompute" : k;
  }
  double textbook(int p) const { return double(p - 1) / double(v * m + p - 1); }
};

struct PipeResult {
  double rate = 0, bubble = 0;
  double uneven = 0;  // the bubble the schedule alone gives with these stage times (below)
  std::vector<int> held;
  std::vector<int64_t> peak_bytes;
  std::vector<double> busy_ms;
};

// `first`: the first layer of each of p * pipe.v chunks (chunk k on stage k % p).
PipeResult pipeline(const Args& a, std::shared_ptr<nn::Sequential> model, const std::vector<size_t>& first,
                    const Pipe& pipe, const std::vector<Batch>& data) {
  const int p = int(first.size()) / pipe.v, m = pipe.m;
  std::vector<Device> devs, per_chunk;
  for (int s = 0; s < p; ++s) devs.push_back(Device::cpu(s));
  for (size_t k = 0; k < first.size(); ++k) per_chunk.push_back(devs[k % size_t(p)]);
  auto sharded = std::make_shared<parallel::ShardedSequential>(model, per_chunk, first);
  const pp::PipelineSchedule sched = pp::make_schedule(pipe.schedule, p, m, pipe.v);
  PipeResult res;
  res.held.resize(size_t(p)), res.peak_bytes.resize(size_t(p)), res.busy_ms.resize(size_t(p));
  std::vector<double> wall(static_cast<size_t>(p));
  parallel::run_ranks(p, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    const int s = comm->rank();
    const auto chunks = parallel::stage_chunks(*sharded, size_t(p), size_t(s));
    pp::PipelineStage stage(comm, chunks, devs[size_t(s)], 1);
    stage.set_recompute(pipe.recompute);
    std::vector<Tensor> params;
    for (const auto& c : chunks)
      for (const Tensor& t : c->parameters()) params.push_back(t);
    optim::AdamW opt(params, {});
    auto step = [&](const Batch& b) {
      opt.zero_grad(/*set_to_none=*/false);  // .grad buffers persist: a step's peak is its activations
      stage.train_step(sched, b.x, b.y, ce);
      ThreadLimit one(1);
      opt.step();
    };
    step(data[0]);
    comm->barrier();
    double busy = 0, w = 0;
    const double t0 = now_s();
    for (int i = 0; i < a.steps; ++i) {
      step(data[size_t(i) % data.size()]);
      busy += stage.last_stats().busy_ms, w += stage.last_stats().wall_ms;
      res.held[size_t(s)] = std::max(res.held[size_t(s)], stage.last_stats().peak_in_flight);
      const pp::StageStats& st = stage.last_stats();
      res.peak_bytes[size_t(s)] = std::max(res.peak_bytes[size_t(s)], st.peak_step_bytes - st.transposed_bytes);
    }
    comm->barrier();
    if (s == 0) res.rate = double(a.steps * a.batch) / (now_s() - t0);
    res.busy_ms[size_t(s)] = busy / a.steps, wall[size_t(s)] = w / a.steps;
  });
  double busy_sum = 0, wall_max = 0;
  for (int s = 0; s < p; ++s) busy_sum += res.busy_ms[size_t(s)], wall_max = std::max(wall_max, wall[size_t(s)]);
  res.bubble = 1 - busy_sum / (p * wall_max);
  // GPipe and 1F1B with stage s taking t_s per microbatch (forward + backward) need at
  // least (m - 1) * max t + sum t: the slowest stage's m microbatches, plus filling and
  // draining through the others. With equal t this is the textbook (p-1)/(m+p-1); with
  // unequal stages the faster ones also wait for the slowest, which is imbalance, not
  // the schedule.
  double t_max = 0;
  for (double b : res.busy_ms) t_max = std::max(t_max, b / m);
  res.uneven = 1 - busy_sum / (p * ((m - 1) * t_max + busy_sum / m));
  return res;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// An uneven model for the balance check: 8 layers, layer 1 four times as wide.
std::shared_ptr<nn::Sequential> uneven() {
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Flatten>();
  net->add<nn::Linear>(784, 2048), net->add<nn::ReLU>();
  net->add<nn::Linear>(2048, 512), net->add<nn::ReLU>();
  net->add<nn::Linear>(512, 512), net->add<nn::ReLU>();
  net->add<nn::Linear>(512, 10);
  return net;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) a.model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--batch-size")) a.batch = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps")) a.steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) a.rounds = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--only")) a.only = argv[i + 1];
  }
  std::vector<Batch> data;
  for (int k = 0; k < 4; ++k) data.push_back(synthetic(a.batch, uint64_t(k)));
  auto model = samples::make_model(a.model);
  const std::vector<size_t> first = parallel::stage_boundaries(*model, 2, parallel::Balance::parse("layers"));
  // Interleaved: 4 chunks of about equal parameters (layer counts would give chunks of
  // very different work: the first holds the 784-wide input layer).
  const std::vector<size_t> first4 = parallel::stage_boundaries(*model, 4, parallel::Balance::parse("params"));
  std::printf("pipeline bench: %s, batch %lld, %d steps x %d rounds, stages cut at layer %zu, 4 chunks at %zu, %zu, "
              "%zu; %s\n", a.model.c_str(), static_cast<long long>(a.batch), a.steps, a.rounds, first[1], first4[1],
              first4[2], first4[3], gemm_report().c_str());

  using R = pp::Recompute;
  const std::vector<Pipe> pipes = {{"naive", 1},          {"gpipe", 4},           {"gpipe", 8},
                                   {"1f1b", 4},           {"1f1b", 8},            {"zb1", 4},
                                   {"zb1", 8},            {"interleaved", 4, 2},  {"interleaved", 8, 2},
                                   {"1f1b", 8, 1, R::Always}, {"gpipe", 8, 1, R::Always}};
  std::map<std::string, std::vector<double>> rates;
  std::map<std::string, PipeResult> last;
  auto wanted = [&](const std::string& key) { return a.only.empty() || a.only == key; };
  for (int r = 0; r < a.rounds; ++r) {
    if (wanted("one device, 1 thread")) rates["one device, 1 thread"].push_back(one_device(a, 1, data));
    if (wanted("one device, 2 threads")) rates["one device, 2 threads"].push_back(one_device(a, 2, data));
    if (wanted("DDP, 2 ranks x 1 thread")) rates["DDP, 2 ranks x 1 thread"].push_back(ddp(a, data));
    for (const Pipe& pipe : pipes) {
      const std::string key = pipe.key();
      if (!wanted(key)) continue;
      PipeResult res = pipeline(a, samples::make_model(a.model), pipe.v > 1 ? first4 : first, pipe, data);
      rates[key].push_back(res.rate);
      last[key] = res;
    }
  }
  if (!a.only.empty()) {
    WEFT_CHECK(!rates.empty(), "--only: no run is called '", a.only, "'");
    std::printf("%s: %.0f samples/s", a.only.c_str(), median(rates.begin()->second));
    if (auto it = last.find(a.only); it != last.end())
      std::printf(", bubble %.3f, busy %.1f / %.1f ms per step", it->second.bubble, it->second.busy_ms[0],
                  it->second.busy_ms[1]);
    std::printf("\n");
    return 0;
  }
  const double base = median(rates["one device, 1 thread"]);
  std::printf("\n%-38s %10s %7s %8s %9s %7s  %s\n", "run (2 cores)", "samples/s", "ratio", "bubble", "textbook",
              "uneven", "held per stage / activation bytes at the peak per stage; busy ms per stage");
  auto row = [&](const std::string& key, const Pipe* pipe) {
    std::printf("%-38s %10.0f %6.2fx", key.c_str(), median(rates[key]), median(rates[key]) / base);
    if (auto it = last.find(key); it != last.end()) {
      std::printf(" %8.3f %9.3f ", it->second.bubble, pipe->textbook(2));
      if (pipe->v == 1) std::printf("%7.3f  ", it->second.uneven);
      else std::printf("%7s  ", "-");
      for (size_t s = 0; s < it->second.held.size(); ++s)
        std::printf("%s%d / %s", s ? ", " : "", it->second.held[s], format_bytes(it->second.peak_bytes[s]).c_str());
      std::printf(";");
      for (double b : it->second.busy_ms) std::printf(" %.1f", b);
    }
    std::printf("\n");
  };
  for (const char* k : {"one device, 1 thread", "one device, 2 threads", "DDP, 2 ranks x 1 thread"}) row(k, nullptr);
  for (const Pipe& pipe : pipes) row(pipe.key(), &pipe);

  // Balance: layer count against measured time, on a model whose layers are uneven.
  std::printf("\nbalance, uneven 8-layer MLP (784-2048-512-512-10), 2 stages, 1f1b m=8:\n");
  Tensor sample = data[0].x;
  for (const char* how : {"layers", "time"}) {
    auto net = uneven();
    parallel::Balance b = parallel::Balance::parse(how);
    b.sample = {sample};
    const auto cut = parallel::stage_boundaries(*net, 2, b);
    const std::vector<double> costs = parallel::layer_time_costs(*net, {sample});
    const pp::Partition best = pp::balance_by_cost(costs, 2);
    const pp::Partition mine = pp::evaluate_partition(costs, std::vector<int>(cut.begin(), cut.end()));
    std::vector<double> r;
    PipeResult res;
    for (int k = 0; k < a.rounds; ++k) {
      res = pipeline(a, uneven(), cut, {"1f1b", 8}, data);
      r.push_back(res.rate);
    }
    std::printf("  --balance %-6s cut at %zu: slowest stage %.2f ms of layer time (best split %.2f, %+.0f%%), "
                "measured busy %.2f / %.2f ms per step, %.0f samples/s\n",
                how, cut[1], mine.slowest(), best.slowest(), 100 * (mine.slowest() / best.slowest() - 1),
                res.busy_ms[0], res.busy_ms[1], median(r));
  }
  return 0;
}
