// train_pipeline: the MLP, the CNN or a deep MLP trained with its layers split into
// pipeline stages (parallel/pipeline/), on Fashion-MNIST.
//
//   train_pipeline --model deep-mlp --stages 2 --schedule 1f1b --microbatches 8
//   train_pipeline --model cnn --stages 3 --balance time --print-schedule
//   train_pipeline --model mlp --stages 2 --trace pipe.json          # timeline for Perfetto
//   mpirun -np 2 train_pipeline --model deep-mlp --backend mpi       # stages as processes
//   train_pipeline --schedule interleaved --virtual 2                # 2 chunks per stage
//   train_pipeline --stages 2 --replicas 2                           # 2-D: 2 pipelines x 2 stages
//   mpirun -np 4 train_pipeline --backend mpi --replicas 2           # the same as processes
//   train_pipeline --backend nccl --stages 2                         # stages on cuda:0, cuda:1
//   train_pipeline --devices cpu:0,cuda:0                            # one GPU and the CPU
//
// The model is cut into --stages contiguous blocks (--balance: layers, params, time or
// manual:i,j,...), stage s on the logical device cpu:s (--devices to choose; cuda:s with
// --backend nccl). With --virtual V it is cut into stages x V chunks instead, stage s
// holding chunks s, s + stages, ... (the interleaved schedule). Each stage runs on its
// own thread (--backend threads or nccl) or process (--backend mpi) with --stage-threads
// intra-op threads, and walks its list of the --schedule (naive, gpipe, 1f1b, zb1,
// interleaved) over each batch cut into --microbatches pieces. Stage 0 reads the images,
// the last stage the labels; each stage has its own optimizer over its own parameters,
// which is one optimizer over the model (the updates are per parameter). Every stage
// reads the same batches (the loader's shuffle depends only on the seed and the epoch).
//
// --replicas R runs R such pipelines side by side (R x stages ranks, rank = replica x
// stages + stage): replica r trains on its R-th of every batch, and each stage averages
// its gradients with the same stage of the other replicas (DDP over
// Communicator::split's groups) after the step's last backward. Replica 0 evaluates,
// reports and writes the checkpoint.
//
// After each epoch the last stage prints the test accuracy and the measured bubble,
// 1 - (sum of the stages' busy time) / (stages x wall time), next to the textbook
// (p-1)/(m+p-1), with each stage's busy share, its peak of microbatches held, and its
// peak bytes during a step. The last line is
// `test_accuracy=<v> train_samples_per_s=<v> bubble=<v> stages=<P>`.
//
// --checkpoint (threads backend) writes, after each epoch, the weights under the
// unsharded keys and the stages' optimizer states merged into what one optimizer over
// the whole model would hold (parallel::merge_stage_states): train_mlp/train_cnn resume
// from it, and --resume takes theirs, or this sample's at another stage count.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>

#include "../cuda/cuda.h"
#include "../parallel/comm/mpi_communicator.h"
#include "../parallel/pipeline/pipeline.h"
#include "../parallel/trace_gather.h"
#include "../training/loop.h"
#include "common/flags.h"
#include "common/models.h"
#include "common/resume.h"
#include "common/trainer.h"

using namespace weft;
using weft::parallel::Communicator;
namespace pp = weft::parallel::pipeline;

namespace {

struct PipeConfig {
  samples::Config t;
  std::string model = "deep-mlp";
  int stages = 2;
  std::string schedule = "1f1b";
  int microbatches = 8;
  std::string recompute = "never";
  int chunks = 1;    // --virtual: model chunks per stage (interleaved)
  int replicas = 1;  // --replicas: data-parallel copies of the pipeline
  std::string devices;  // --devices: the stages' devices, comma-separated
  std::string balance = "time";
  std::string backend = "threads";
  int stage_threads = 0;  // intra-op threads per stage; 0: cores / stages on this machine
  std::string trace;
  int trace_steps = 20;
  bool print_schedule = false;
  double timeout_s = parallel::kDefaultTimeout.count() / 1000.0;  // --timeout: of every send, recv, collective
};

// The schedule for a batch of `rows`: --microbatches pieces, fewer for a last batch
// too small to cut that often (and GPipe then, when 1F1B would need more pieces).
const pp::PipelineSchedule& schedule_for(const PipeConfig& c, int64_t rows) {
  static thread_local std::map<int, pp::PipelineSchedule> cache;
  const int m = static_cast<int>(std::min<int64_t>(c.microbatches, rows));
  auto it = cache.find(m);
  if (it == cache.end()) {
    const std::string name = (c.schedule == "1f1b" || c.schedule == "zb1") && m < c.stages ? "gpipe" : c.schedule;
    it = cache.emplace(m, pp::make_schedule(name, c.stages, m, c.chunks)).first;
    pp::validate(it->second);  // the simulator checks it before any tensor moves
  }
  return it->second;
}

// The paper's bubble for p stages, m microbatches (and v chunks).
double textbook_bubble(const PipeConfig& c, int m) {
  return double(c.stages - 1) / double(c.chunks * m + c.stages - 1);
}

// "Linear(in_features=784, ...)" -> "Linear"
std::string short_name(const nn::Module& m) {
  const std::string r = m.repr();
  return r.substr(0, r.find('('));
}

// The partition table and the ASCII schedule, before training.
void print_plan(const PipeConfig& c, nn::Sequential& model, const std::vector<size_t>& first, const nn::Tensors& sample) {
  std::vector<std::string> names;
  std::vector<int64_t> params;
  for (size_t i = 0; i < model.size(); ++i)
    names.push_back(std::to_string(i) + ":" + short_name(*model[i])), params.push_back(model[i]->num_parameters());
  const std::vector<double> ms = parallel::layer_time_costs(model, sample);
  std::printf("%s\n", pp::stage_table(std::vector<int>(first.begin(), first.end()), names, params, ms).c_str());
  const pp::PipelineSchedule& s = schedule_for(c, c.t.r.batch_size);
  // A backward costs two forwards; split (zb1), that is B = 1 and W = 1.
  const bool split = c.schedule == "zb1";
  const pp::Costs costs = split ? pp::Costs{1, 1, 1} : pp::Costs{1, 2};
  std::printf("%s\n", pp::render(s, costs).c_str());
  const pp::Simulation sim = pp::simulate(s, costs);
  std::printf("simulated with backward = 2 x forward%s: bubble %.3f, textbook %s = %.3f\n\n",
              split ? " (B and W one each)" : "", sim.bubble, c.chunks > 1 ? "(p-1)/(vm+p-1)" : "(p-1)/(m+p-1)",
              textbook_bubble(c, s.microbatches));
}

// Per epoch, every stage's busy and wall milliseconds, gathered to all stages.
struct EpochTimes {
  std::vector<double> busy, wall;
  std::vector<int> peak_in_flight;
  std::vector<int64_t> peak_bytes, sent_bytes;
};
EpochTimes gather_times(Communicator& comm, double busy, double wall, int in_flight, int64_t bytes, int64_t sent,
                        Device dev) {
  const int p = comm.size();
  constexpr int k = 5;  // values per stage
  Tensor mine =
      tensor(std::vector<double>{busy, wall, double(in_flight), double(bytes), double(sent)}, {k}, {.dtype = kFloat64})
          .to(dev);
  Tensor all = empty({int64_t(p) * k}, kFloat64, dev);
  comm.allgather(mine, all);
  const std::vector<double> v = all.to(kCPU).to_vector<double>();
  EpochTimes t;
  for (int s = 0; s < p; ++s) {
    const double* x = v.data() + size_t(k * s);
    t.busy.push_back(x[0]), t.wall.push_back(x[1]), t.peak_in_flight.push_back(int(x[2]));
    t.peak_bytes.push_back(int64_t(x[3])), t.sent_bytes.push_back(int64_t(x[4]));
  }
  return t;
}

// What the stage threads share (the threads and nccl backends): replica 0's stages'
// optimizers, for the checkpoint, and the state a --resume brings.
struct Shared {
  std::vector<optim::Optimizer*> opts;  // replica 0's stage s's optimizer, set by its thread
  nn::NamedTensors resume_state;        // one optimizer's state over the whole model
  optim::Metadata resume_meta;          // and its metadata (the fp16 loss scale)
  std::optional<samples::ResumePoint> resumed;  // where --resume continues
  int start_epoch = 0;
};

// Rank 0, with every stage at the end of the same epoch: the weights under the unsharded
// keys and the stages' optimizer states merged into one optimizer's, so train_mlp,
// train_cnn or train_pipeline with any stage count can resume from it.
void save(const PipeConfig& c, parallel::ShardedSequential& sharded, const Shared& shared, int epochs_done,
          const optim::CosineWarmupLR& schedule, int64_t steps_per_epoch, const optim::GradScaler& scaler) {
  std::vector<nn::NamedTensors> states;
  for (const optim::Optimizer* o : shared.opts) states.push_back(o->state_dict());
  auto whole = samples::make_optimizer(c.t.r, sharded.parameters());
  whole->load_state_dict(parallel::merge_stage_states(sharded, states));
  optim::Metadata meta = samples::checkpoint_metadata("train_pipeline", epochs_done, schedule, steps_per_epoch);
  meta["stages"] = std::to_string(c.stages);
  samples::save_scaler(scaler, meta);  // fp16: every stage's scale is the same
  optim::save_checkpoint(c.t.checkpoint, sharded, whole.get(), meta);
}

// One rank of the grid: stage `pipe->rank()` of replica `data->rank()`.
struct Rank {
  std::shared_ptr<Communicator> world, pipe, data;  // data: nullptr with one replica
  int replica = 0;
};

// Rows [r n / R, (r + 1) n / R) of a batch: replica r's share.
Tensor replica_rows(const Tensor& t, int r, int replicas) {
  const int64_t n = t.size(0), begin = r * n / replicas, end = (r + 1) * n / replicas;
  return t.narrow(0, begin, end - begin);
}

// What one stage does, start to end.
void train_stage(const PipeConfig& c, const Rank& me, parallel::ShardedSequential& sharded,
                 const samples::FashionMnist& data, int threads, Shared& shared) {
  const int s = me.pipe->rank(), p = me.pipe->size();
  const bool last = s == p - 1, lead = me.replica == 0;  // replica 0 evaluates and reports
  const samples::Recipe& r = c.t.r;
  const Device dev = sharded.device(size_t(s));
  if (dev.is_cuda()) cuda::set_device(dev.index);  // this thread's kernels run there
  const auto chunks = parallel::stage_chunks(sharded, size_t(p), size_t(s));
  pp::PipelineStage stage(me.pipe, chunks, dev, threads);
  stage.set_recompute(pp::parse_recompute(c.recompute));
  stage.set_precision(c.t.precision);  // bf16: activations and gradients cross stages in 16 bits
  if (me.data) stage.set_data_parallel(me.data);
  std::vector<Tensor> params;  // the stage's chunks, in chunk order
  for (const auto& chunk : chunks)
    for (const Tensor& t : chunk->parameters()) params.push_back(t);
  auto opt = samples::make_optimizer(r, params);
  data::DataLoader loader(data.train, {.batch_size = r.batch_size, .shuffle = true, .seed = c.t.seed});
  optim::CosineWarmupLR schedule = samples::make_schedule(r, *opt, loader.num_batches());
  if (lead) shared.opts[size_t(s)] = opt.get();
  if (!shared.resume_state.empty()) {
    opt->load_state_dict(parallel::stage_state(sharded, size_t(s), shared.resume_state, size_t(p)));
    const std::string warning =
        samples::resume_schedule(*shared.resumed, schedule, opt->steps_taken(), loader.num_batches());
    if (s == 0 && lead && !warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
  }
  // fp16: one loss scale for all stages and replicas. The last stage's loss function
  // scales the loss; each stage unscales its own gradients, and one all-reduce of the
  // found-inf flags makes every stage skip, or every stage step (GradScalerOptions::agree).
  optim::GradScaler scaler({.enabled = c.t.precision == kFloat16, .agree = [&](bool found_inf) {
                              Tensor flag = full({}, found_inf ? 1.0 : 0.0).to(dev);
                              me.world->allreduce(flag, parallel::ReduceOp::Max);
                              return flag.to(kCPU).item<float>() > 0;
                            }});
  if (shared.resumed) samples::load_scaler(c.t.resume, shared.resume_meta, scaler);
  auto loss_fn = [&](const Tensor& out, const Tensor& y) {
    return scaler.scale(nn::cross_entropy(out, y, r.label_smoothing));
  };

  training::Loop loop{.opt = *opt, .schedule = schedule, .loader = loader, .device = kCPU, .epochs = r.epochs,
                   .stop_after_epoch = c.t.stop_after_epoch,
                   .show_progress = last && lead};
  double busy = 0, wall = 0, allreduce = 0;
  int in_flight = 0;
  int64_t bytes = 0, steps = 0, sent = 0;
  loop.step = [&](const std::optional<data::Batch>& b) {
    if (!c.trace.empty() && steps++ == c.trace_steps) parallel::trace::enable(false);
    opt->zero_grad();
    const Tensor x = replica_rows(b->x, me.replica, c.replicas), y = replica_rows(b->y, me.replica, c.replicas);
    const double loss = stage.train_step(schedule_for(c, x.size(0)), x, y, loss_fn) /
                        (scaler.is_enabled() ? scaler.get_scale() : 1.0);
    scaler.step(*opt);  // fp16: skips, on every stage, a step whose gradients overflowed anywhere
    scaler.update();
    const pp::StageStats& st = stage.last_stats();
    busy += st.busy_ms, wall += st.wall_ms, allreduce += st.allreduce_ms;
    in_flight = std::max(in_flight, st.peak_in_flight), bytes = std::max(bytes, st.peak_step_bytes);
    sent = std::max(sent, st.sent_bytes);
    return last ? full({}, loss) : Tensor();  // replica 0's loss on the progress bar
  };
  loop.epoch_begin = [&](int) {
    me.world->barrier();  // start the clock together
    busy = wall = allreduce = 0;
  };
  double acc = 0, bubble = 0;
  // Evaluation through replica 0's pipeline, forward only (every stage of replica 0
  // calls it); sets acc on its last stage.
  auto evaluate = [&] {
    data::DataLoader test(data.test, {.batch_size = 1000});
    int64_t correct = 0;
    for (const auto& chunk : chunks) chunk->eval();
    while (auto b = test.next()) {
      Tensor out = stage.forward(b->x, int(std::min<int64_t>(c.microbatches, b->size())));
      if (last) correct += out.argmax(1).to(kCPU).eq(b->y).to(kInt64).sum().item<int64_t>();
    }
    for (const auto& chunk : chunks) chunk->train();
    if (last) acc = double(correct) / double(data.test.size());
  };
  loop.epoch_end = [&](int epoch) {
    const EpochTimes t = gather_times(*me.pipe, busy, wall, in_flight, bytes, sent, dev);
    double busy_sum = 0, wall_max = 0;
    for (int k = 0; k < p; ++k) busy_sum += t.busy[size_t(k)], wall_max = std::max(wall_max, t.wall[size_t(k)]);
    bubble = wall_max > 0 ? 1 - busy_sum / (p * wall_max) : 0;
    if (!lead) return;
    evaluate();
    if (!last) return;
    const pp::PipelineSchedule& sched = schedule_for(c, r.batch_size / c.replicas);
    std::printf("epoch %d: test_accuracy=%.4f lr=%.2e bubble=%.3f (textbook %s = %.3f)%s\n", epoch + 1, acc,
                opt->lr(), bubble, c.chunks > 1 ? "(p-1)/(vm+p-1)" : "(p-1)/(m+p-1)",
                textbook_bubble(c, sched.microbatches), samples::scaler_text(scaler).c_str());
    for (int k = 0; k < p; ++k)
      std::printf("  stage %d: busy %.0f%% of %.2f s, at most %d microbatches held, step peak %s, sends %s a step\n",
                  k, 100 * t.busy[size_t(k)] / std::max(1e-9, t.wall[size_t(k)]), t.wall[size_t(k)] / 1000,
                  t.peak_in_flight[size_t(k)], format_bytes(t.peak_bytes[size_t(k)]).c_str(),
                  format_bytes(t.sent_bytes[size_t(k)]).c_str());
    if (c.replicas > 1)
      std::printf("  last stage: %.2f s waiting for the replicas' all-reduce after the last backward\n",
                  allreduce / 1000);
  };
  if (!c.t.checkpoint.empty()) {  // after the report: every stage has stepped this epoch
    const auto report = loop.epoch_end;
    loop.epoch_end = [&, report](int epoch) {
      report(epoch);
      me.world->barrier();
      if (s == 0 && lead) save(c, sharded, shared, epoch + 1, schedule, loader.num_batches(), scaler);
      me.world->barrier();  // nobody runs ahead while the checkpoint is being read
    };
  }
  const training::Throughput tp = loop.run(shared.start_epoch);
  if (lead && shared.start_epoch >= loop.end_epoch()) evaluate();  // resumed at the end: nothing trained
  if (last && lead)
    std::printf("test_accuracy=%.4f train_samples_per_s=%.1f bubble=%.4f stages=%d replicas=%d\n", acc,
                tp.samples_per_s() * c.replicas, bubble, p, c.replicas);
}

// The stages' devices for replica r: --devices (one replica only), else cpu:(r p + s),
// or cuda:(r p + s) with --backend nccl.
std::vector<Device> devices_for(const PipeConfig& c, int replica) {
  std::vector<Device> devices;
  if (!c.devices.empty()) {
    std::stringstream list(c.devices);
    for (std::string d; std::getline(list, d, ',');) devices.push_back(Device(d));
    WEFT_CHECK(int(devices.size()) == c.stages, "--devices: ", devices.size(), " devices for ", c.stages, " stages");
    return devices;
  }
  for (int s = 0; s < c.stages; ++s) {
    const int k = replica * c.stages + s;
    devices.push_back(c.backend == "nccl" ? Device::cuda(k) : Device::cpu(k));
  }
  return devices;
}

// The pipeline and data-parallel groups of a world of replicas x stages ranks.
Rank grid_rank(const PipeConfig& c, std::shared_ptr<Communicator> world) {
  Rank me;
  me.replica = world->rank() / c.stages;
  const int s = world->rank() % c.stages;
  me.world = world;
  if (c.replicas == 1) {
    me.pipe = world;
  } else {
    me.pipe = world->split(me.replica, s);
    me.data = world->split(s, me.replica);
  }
  return me;
}

}  // namespace

int main(int argc, char** argv) {
  PipeConfig c;
  CLI::App app{"train_pipeline: pipeline-parallel training on Fashion-MNIST (parallel/pipeline/)"};
  c.t.r = samples::deep_mlp_recipe();
  samples::add_flags(app, c.t);
  // Each flag checked as it is read (common/flags.h).
  app.add_option("--model", c.model, "mlp, cnn or deep-mlp (each with its recipe)")
      ->check(CLI::IsMember({"mlp", "cnn", "deep-mlp"}))
      ->capture_default_str();
  app.add_option("--stages", c.stages, "pipeline stages (stage s on cpu:s)")
      ->check(samples::whole_number(1))
      ->capture_default_str();
  app.add_option("--schedule", c.schedule,
                 "naive, gpipe, 1f1b, zb1 (zero bubble: split backward) or interleaved (with --virtual)")
      ->check(CLI::IsMember({"naive", "gpipe", "1f1b", "zb1", "interleaved"}))
      ->capture_default_str();
  app.add_option("--virtual", c.chunks, "model chunks per stage (the interleaved schedule)")
      ->check(samples::whole_number(1))
      ->capture_default_str();
  app.add_option("--microbatches", c.microbatches, "microbatches per batch")
      ->check(samples::whole_number(1))
      ->capture_default_str();
  app.add_option("--replicas", c.replicas, "data-parallel copies of the pipeline (2-D parallelism)")
      ->check(samples::whole_number(1))
      ->capture_default_str();
  app.add_option("--recompute", c.recompute,
                 "never, except_last or always: keep only each microbatch's input and run its forward again "
                 "before its backward (less memory, one more forward)")
      ->check(CLI::IsMember({"never", "except_last", "always"}))
      ->capture_default_str();
  app.add_option("--balance", c.balance, "layers, params, time or manual:i,j,...")
      ->check(samples::balance_spec())
      ->capture_default_str();
  app.add_option("--backend", c.backend,
                 "threads (stages as threads), mpi (run under mpirun) or nccl (stages as threads on GPUs)")
      ->check(CLI::IsMember({"threads", "mpi", "nccl"}))
      ->capture_default_str();
  app.add_option("--devices", c.devices, "the stages' devices, e.g. cpu:0,cuda:0 (one replica, threads backend)");
  app.add_option("--stage-threads", c.stage_threads, "intra-op threads per stage (default: cores / stages)")
      ->check(samples::whole_number(0));
  app.add_option("--trace", c.trace, "write a Chrome trace (Perfetto): one row per stage")
      ->check(samples::savable_file());
  app.add_option("--trace-steps", c.trace_steps, "steps the trace records")
      ->check(samples::whole_number(0))
      ->capture_default_str();
  app.add_flag("--print-schedule", c.print_schedule, "print the partition table and the schedule first");
  samples::add_timeout_flag(app, c.timeout_s);
  CLI11_PARSE(app, argc, argv);
  try {
    samples::apply_recipe(app, samples::recipe_for(c.model), c.t.r);
    WEFT_CHECK(c.t.device == "cpu", "train_pipeline: --device ", c.t.device,
               " is not supported; the stages are the devices (--devices, or --backend nccl for GPUs)");
    WEFT_CHECK(!c.t.cuda_graph, "train_pipeline: --cuda-graph is not supported");
    WEFT_CHECK(c.schedule != "naive" || c.microbatches == 1, "--schedule naive runs whole batches: --microbatches 1");
    WEFT_CHECK(c.chunks == 1 || c.schedule == "interleaved", "--virtual ", c.chunks,
               ": only the interleaved schedule holds several chunks per stage (--schedule interleaved)");
    WEFT_CHECK(c.devices.empty() || (c.replicas == 1 && c.backend == "threads"),
               "--devices: for one replica over the threads backend (nccl puts stage s on cuda:s)");
    WEFT_CHECK(c.backend != "nccl" || c.chunks == 1, "--backend nccl: NCCL's send/recv have no tags, and an "
               "interleaved stage receives two chunks' messages from one neighbour; use --virtual 1");
    WEFT_CHECK(c.t.r.batch_size >= c.replicas, "--replicas ", c.replicas, ": more replicas than rows in a batch (",
               c.t.r.batch_size, ")");
    if (c.backend == "nccl") samples::check_nccl();
    if (c.t.threads > 0) set_num_threads(c.t.threads);
    manual_seed(c.t.seed);
    if (!c.trace.empty()) parallel::trace::enable();
    std::shared_ptr<Communicator> world;
    if (c.backend == "mpi") {
      world = samples::mpi_world();
      world->set_timeout(samples::collective_timeout(c.timeout_s));
      WEFT_CHECK(world->size() % c.replicas == 0, "train_pipeline: ", world->size(), " processes do not make ",
                 c.replicas, " replicas of equal pipelines");
      c.stages = world->size() / c.replicas;
      WEFT_CHECK(c.t.checkpoint.empty() && c.t.resume.empty(), "train_pipeline: --checkpoint and --resume need "
                 "--backend threads (with mpi every process holds only its own stage's optimizer)");
    }
    const samples::FashionMnist data = samples::load_data(c.t);
    auto model = samples::make_model(c.model);  // the same weights in every process (same seed)
    parallel::Balance balance = parallel::Balance::parse(c.balance);
    balance.sample = {data.train.x().narrow(0, 0, std::min<int64_t>(c.t.r.batch_size, data.train.size()))};
    // stages x chunks blocks; chunk k on stage k % stages (shard.h, INTERLEAVED SCHEDULES).
    std::vector<size_t> first = parallel::stage_boundaries(*model, size_t(c.stages * c.chunks), balance);
    if (world) {  // measured times differ between processes: rank 0's cut is everyone's
      Tensor f = tensor(std::vector<int64_t>(first.begin(), first.end()));
      world->broadcast(f, 0);
      const auto v = f.to_vector<int64_t>();
      first.assign(v.begin(), v.end());
    }
    const bool lead = !world || world->rank() == 0;
    if (lead) {
      std::printf("train_pipeline: %s, %lld parameters, %d stages%s (%s)%s, schedule %s, %d microbatches, "
                  "balance %s\n",
                  c.model.c_str(), static_cast<long long>(model->num_parameters()), c.stages,
                  c.chunks > 1 ? detail::str(" x ", c.chunks, " chunks").c_str() : "", c.backend.c_str(),
                  c.replicas > 1 ? detail::str(", ", c.replicas, " replicas").c_str() : "", c.schedule.c_str(),
                  c.microbatches, c.balance.c_str());
      if (c.print_schedule) print_plan(c, *model, first, balance.sample);
    }
    // One sharded copy of the model per replica in this process (DDP then broadcasts
    // replica 0's weights to the others); chunk k on the replica's stage k % stages.
    auto shard_replica = [&](int replica, std::shared_ptr<nn::Sequential> m) {
      std::vector<Device> per_chunk;
      for (int k = 0; k < c.chunks; ++k)
        for (const Device& d : devices_for(c, replica)) per_chunk.push_back(d);
      return std::make_shared<parallel::ShardedSequential>(std::move(m), per_chunk, first);
    };
    std::vector<std::shared_ptr<parallel::ShardedSequential>> replicas;
    const int local_replicas = world ? 1 : c.replicas;
    for (int k = 0; k < local_replicas; ++k) {
      const int replica = world ? world->rank() / c.stages : k;
      replicas.push_back(shard_replica(replica, k == 0 ? model : std::dynamic_pointer_cast<nn::Sequential>(
                                                                     model->clone(kCPU))));
    }
    Shared shared;
    shared.opts.resize(size_t(c.stages));
    if (!c.t.resume.empty()) {  // a checkpoint of any sample: one optimizer over the whole model
      auto whole = samples::make_optimizer(c.t.r, replicas[0]->parameters());
      shared.resume_meta = optim::load_checkpoint(c.t.resume, *replicas[0], whole.get());
      shared.resumed = samples::read_resume_point(c.t.resume, shared.resume_meta);
      shared.resume_state = whole->state_dict();
      shared.start_epoch = shared.resumed->epoch;
      if (shared.resumed->generator_offset) default_generator().set_offset(*shared.resumed->generator_offset);
      std::printf("resumed from %s at epoch %d\n", c.t.resume.c_str(), shared.start_epoch);
    }
    const int ranks_here = world ? 1 : c.stages * c.replicas;
    const int threads = c.stage_threads > 0 ? c.stage_threads : std::max(1, num_threads() / ranks_here);
    if (world) {
      const Rank me = grid_rank(c, world);
      train_stage(c, me, *replicas[0], data, threads, shared);
      if (!c.trace.empty()) parallel::gather_chrome_trace(*world, c.trace);
    } else {
      parallel::run_ranks(c.stages * c.replicas, [&](const std::shared_ptr<Communicator>& boot) {
        std::shared_ptr<Communicator> comm = boot;
        if (c.backend == "nccl") {
          comm = samples::nccl_over(boot, devices_for(c, boot->rank() / c.stages)[size_t(boot->rank() % c.stages)].index);
          comm->set_timeout(boot->timeout());
        }
        const Rank me = grid_rank(c, comm);
        train_stage(c, me, *replicas[size_t(me.replica)], data, threads, shared);
      }, samples::collective_timeout(c.timeout_s));
      if (!c.trace.empty()) parallel::trace::write_chrome_json(c.trace);
    }
    if (!c.trace.empty() && lead) std::printf("trace written to %s (open it at https://ui.perfetto.dev)\n", c.trace.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_pipeline: error: %s\n", e.what());
    return 1;
  }
}
