// train_ddp: the MLP or the CNN trained with DistributedDataParallel on Fashion-MNIST.
//
//   train_ddp --model cnn --backend threads --replicas 2          # 2 rank threads
//   mpirun -np 2 train_ddp --model cnn --backend mpi              # 2 processes
//   train_ddp --model mlp --replicas 4 --trace ddp.json           # timeline for Perfetto
//   mpirun -np 2 train_ddp --model cnn --backend nccl             # one process per GPU
//   train_ddp --model cnn --backend nccl --replicas 1             # one GPU, no MPI needed
//   train_ddp --model cnn --comm-hook powersgd:4                  # compressed gradients
//   train_ddp --algorithm ps --staleness 2 --replicas 4           # asynchronous parameter server
//
// Every rank builds the same model, wraps it in DistributedDataParallel (which checks
// the models agree and broadcasts rank 0's parameters), and reads its own share of each
// epoch through a DistributedSampler. --batch-size is the batch of ONE rank, as in
// PyTorch: the optimizer step sees the mean gradient of world_size * batch-size samples.
// So N ranks at --batch-size B/N train exactly like one process at B (up to float
// rounding in the sums); N ranks at B process N times the samples per step (weak
// scaling: that is what train_samples_per_s measures).
//
// The loop is weft's training loop (training/loop.h), with hooks that make it the
// uneven-inputs loop of parallel/ddp.h: join() first, so that a rank out of batches
// never leaves the others waiting. Each rank runs its ops on cores / ranks-on-this-
// machine intra-op threads (--rank-threads to choose), so ranks do not fight over the
// cores. Rank 0 prints the progress and the results, and is the only rank that writes
// checkpoints -- with the unwrapped model's keys, so train_mlp or train_cnn (and a
// plain model) can load them; a PowerSGD or top-k hook's per-rank residuals ride along
// (gathered to rank 0), so --resume at the same world size goes on exactly.
//
// --comm-hook picks how DDP reduces each gradient bucket (parallel/comm_hook.h): none
// (the exact float32 all-reduce), bf16, fp16, powersgd:R (",start=N,min_rate=X" tune it)
// or topk:F; rank 0 then prints
// the bytes it sent per step next to what float32 would have sent.
//
// --algorithm ps trains without DDP, through the asynchronous parameter server
// (parallel/algorithms/async_parameter_server.h): every rank pushes its gradient to the
// server (extra threads of rank 0), which runs the recipe's optimizer, and pulls the
// parameters back; --staleness S lets a rank run at most S steps ahead of the slowest
// (-1: no bound, 0: the synchronous server). See train_rank_ps below.
//
// The last line is `test_accuracy=<a> train_samples_per_s=<s> world_size=<N>`, where s
// counts the samples of all ranks (then comm_bytes_per_step, or the staleness).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <thread>

#include "../parallel/algorithms/async_parameter_server.h"
#include "../parallel/ddp.h"
#include "../cuda/cuda.h"
#include "../parallel/comm/mpi_communicator.h"
#include "../parallel/comm/nccl_communicator.h"
#include "../parallel/trace_gather.h"
#include "../training/loop.h"
#include "common/flags.h"
#include "common/models.h"
#include "common/resume.h"
#include "common/trainer.h"

using namespace weft;
using weft::parallel::Communicator;

namespace {

struct DdpConfig {
  samples::Config t;
  std::string model = "mlp";  // mlp | cnn
  std::string backend = "threads";
  int replicas = 2;           // threads backend: how many rank threads
  int rank_threads = 0;       // intra-op threads per rank; 0: cores / local ranks
  bool no_overlap = false;    // all-reduce after backward instead of during it
  bool deterministic = false;
  // 1 MiB, not DDP's 25 MiB default: both models hold about 2 MB of gradients, so a
  // 25 MiB bucket would take them all and nothing could be sent before backward ends.
  // (PyTorch likewise caps its first bucket at 1 MiB.)
  double bucket_mb = 1;
  std::string trace;          // Chrome trace output
  int trace_steps = 40;       // how many steps of the first epoch to record
  bool mpi_polled = false;    // MPI: non-blocking collectives polled by weft (see mpi_communicator.h)
  double timeout_s = parallel::kDefaultTimeout.count() / 1000.0;  // --timeout: of every collective
  std::string comm_hook = "none";  // parallel::make_comm_hook's spelling
  std::string algorithm = "ddp";   // ddp | ps
  int staleness = -1;              // ps: the bound S (-1 none, 0 synchronous)
};

std::shared_ptr<nn::Module> make_model(const std::string& model) {
  if (model == "cnn") return samples::make_cnn();
  return samples::make_mlp();
}

// Ranks that share this machine's cores: the threads backend's replicas, or what
// mpirun says runs on this node.
int local_ranks(const DdpConfig& c, const Communicator& comm) {
  if (c.backend == "threads") return comm.size();
  if (const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) return std::max(1, std::atoi(s));
  return comm.size();
}

// Intra-op threads for each rank: --rank-threads, or this machine's cores shared among
// the ranks it runs.
int rank_threads(const DdpConfig& c, const Communicator& comm) {
  return c.rank_threads > 0 ? c.rank_threads : std::max(1, num_threads() / local_ranks(c, comm));
}

// The test set scored by all ranks: each its slice, one all-reduce adds the counts.
struct ShardedTest {
  data::TensorDataset mine;
  int64_t total;
  ShardedTest(const data::TensorDataset& test, int rank, int world)
      : mine(test.slice(test.size() * rank / world, test.size() * (rank + 1) / world)), total(test.size()) {}
  double accuracy(Communicator& comm, nn::Module& model, Device device) const {
    Tensor correct = tensor(std::vector<int64_t>{samples::count_correct(model, mine, device)});
    comm.allreduce(correct, parallel::ReduceOp::Sum);
    return static_cast<double>(correct.item<int64_t>()) / static_cast<double>(total);
  }
};

// A checkpoint of --algorithm ps holds the server's optimizer, whose steps count
// gradients (world per clock unless staleness is 0), not DDP's steps: each algorithm
// resumes only its own checkpoints (one without the field is DDP's, or train_mlp's).
void check_resume_algorithm(const std::string& path, const optim::Metadata& meta, const std::string& algorithm) {
  const auto it = meta.find("algorithm");
  const std::string saved = it == meta.end() ? "ddp" : it->second;
  WEFT_CHECK(saved == algorithm, path, ": saved by train_ddp --algorithm ", saved, ", so this --algorithm ",
             algorithm, " run cannot resume it (resume with --algorithm ", saved, ")");
}

// --resume with a comm hook that remembers (PowerSGD, top-k): each rank takes its own
// residuals back from the checkpoint, when it was saved by the same hook at the same
// world size; otherwise the hook starts from zero, and rank 0 says what is dropped.
void resume_comm_hook(const std::string& path, const optim::Metadata& meta, const nn::NamedTensors& saved,
                      parallel::DistributedDataParallel& ddp) {
  const auto field = [&](const char* name) {
    auto it = meta.find(name);
    return it == meta.end() ? std::string("none") : it->second;
  };
  const std::string hook = ddp.comm_hook().name(), world = std::to_string(ddp.comm().size());
  if (field("comm_hook") == hook && field("world_size") == world) {
    ddp.load_comm_hook_state(saved);
    return;
  }
  if (ddp.comm().rank() == 0 && (!saved.empty() || ddp.comm_hook().keeps_state()))
    std::fprintf(stderr, "note: %s was saved with comm hook %s at world size %s, this run has %s at %s, so %s\n",
                 path.c_str(), field("comm_hook").c_str(), field("world_size").c_str(), hook.c_str(), world.c_str(),
                 ddp.comm_hook().keeps_state() ? "this hook's memory (its residuals) starts at zero"
                                               : "the saved residuals go unused");
}

// What one rank does, start to end. Returns on every rank at the same time.
void train_rank(const DdpConfig& c, std::shared_ptr<Communicator> comm, std::shared_ptr<nn::Module> model,
                const samples::FashionMnist& data) {
  comm->set_timeout(samples::collective_timeout(c.timeout_s));  // nccl: its own communicator's too
  const int rank = comm->rank(), world = comm->size();
  const bool lead = rank == 0;
  const int threads = rank_threads(c, *comm);
  ThreadLimit limit(threads);
  const samples::Recipe& r = c.t.r;
  // nccl: the model, its gradients and each batch live on this rank's GPU.
  const Device device = c.backend == "nccl"
                            ? Device::cuda(static_cast<const parallel::NcclCommunicator&>(*comm).device())
                            : kCPU;
  model->to(device);

  parallel::DistributedDataParallel ddp(model, comm,
                                        {.bucket_cap_mb = c.bucket_mb,
                                         .overlap = !c.no_overlap,
                                         .deterministic = c.deterministic,
                                         // one per rank; none: DDP's own exact all-reduce
                                         .comm_hook = c.comm_hook == "none" ? nullptr
                                                                            : parallel::make_comm_hook(c.comm_hook)});
  auto opt = samples::make_optimizer(r, model->parameters());
  auto sampler = std::make_shared<data::DistributedSampler>(data.train.size(), world, rank,
                                                            data::DistributedSamplerOptions{.seed = c.t.seed});
  data::DataLoader loader(data.train, {.batch_size = r.batch_size, .sampler = sampler});
  optim::CosineWarmupLR schedule = samples::make_schedule(r, *opt, loader.num_batches());
  if (lead)
    std::printf("train_ddp: %s, %lld parameters, backend %s, world_size %d, %d intra-op thread%s per rank, "
                "batch %lld per rank (global %lld), %zu gradient bucket%s, overlap %s%s, comm hook %s\n",
                c.model.c_str(), static_cast<long long>(model->num_parameters()), comm->backend().c_str(), world,
                threads, threads == 1 ? "" : "s", static_cast<long long>(r.batch_size),
                static_cast<long long>(r.batch_size * world), ddp.buckets().size(), ddp.buckets().size() == 1 ? "" : "s",
                c.no_overlap || c.deterministic || !ddp.comm_hook().asynchronous() ? "off" : "on",
                c.deterministic ? ", deterministic" : "", ddp.comm_hook().name().c_str());

  optim::GradScaler scaler({.enabled = c.t.precision == kFloat16});  // --precision fp16's loss scale
  int start_epoch = 0;
  if (!c.t.resume.empty()) {  // every rank reads the same file: same parameters, optimizer state, loss scale
    nn::NamedTensors hook_state;  // every rank's comm-hook memory: each takes its own
    const optim::Metadata meta = optim::load_checkpoint(c.t.resume, ddp.module(), opt.get(), &hook_state);
    check_resume_algorithm(c.t.resume, meta, "ddp");
    resume_comm_hook(c.t.resume, meta, hook_state, ddp);
    samples::load_scaler(c.t.resume, meta, scaler);
    const samples::ResumePoint rp = samples::read_resume_point(c.t.resume, meta);
    start_epoch = rp.epoch;
    const std::string warning = samples::resume_schedule(rp, schedule, opt->steps_taken(), loader.num_batches());
    if (lead && !warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
    if (lead) std::printf("resumed from %s at epoch %d\n", c.t.resume.c_str(), start_epoch);
  }

  // Each rank scores its slice of the test set; one all-reduce adds the counts.
  const ShardedTest test(data.test, rank, world);
  auto accuracy = [&] {
    const Autocast ac = autocast::for_precision(c.t.precision);  // evaluated in the precision it trains in
    return test.accuracy(*comm, ddp.module(), device);
  };

  training::Loop loop{.opt = *opt, .schedule = schedule, .loader = loader, .device = device, .epochs = r.epochs,
                   .stop_after_epoch = c.t.stop_after_epoch,
                   .show_progress = lead};
  int64_t traced = 0;  // steps so far, for --trace-steps
  // Every rank joins every step, batch or not; 0 ranks with a batch ends the epoch on all.
  loop.ranks_in_step = [&](bool has_batch) {
    if (!c.trace.empty() && traced++ == c.trace_steps) parallel::trace::enable(false);
    return ddp.join(has_batch);
  };
  // A rank out of data skips forward and backward but still synchronizes (adding zeros
  // to the all-reduces) and steps, so its parameters stay the same as the others'.
  // --precision bf16/fp16: the forward under Autocast; fp16 scales the loss. Every rank
  // sees the same averaged gradients, so all skip an overflowing step together.
  loop.step = [&](const std::optional<data::Batch>& b) {
    opt->zero_grad();
    Tensor loss;
    if (b) {
      {
        const Autocast ac = autocast::for_precision(c.t.precision);
        loss = nn::cross_entropy(ddp(b->x), b->y, r.label_smoothing);
      }
      ddp.backward(scaler.scale(loss));  // the buckets' all-reduces start during backward
    }
    ddp.synchronize();  // every .grad is now the mean over the ranks that had a batch
    scaler.step(*opt);
    scaler.update();
    return loss;
  };
  loop.epoch_begin = [&](int) { comm->barrier(); };  // start the clock together
  double acc = 0;
  loop.epoch_end = [&](int epoch) {
    acc = accuracy();
    if (lead)
      std::printf("epoch %d: test_accuracy=%.4f lr=%.2e%s\n", epoch + 1, acc, opt->lr(),
                  samples::scaler_text(scaler).c_str());
    if (lead && epoch == start_epoch && !device.is_cuda()) std::printf("%s\n", gemm_report().c_str());
    // The comm hook's memory differs per rank: every rank hands it over (collective).
    const nn::NamedTensors hook_state = c.t.checkpoint.empty() ? nn::NamedTensors{} : ddp.gather_comm_hook_state();
    if (lead && !c.t.checkpoint.empty()) {  // with what train_mlp/train_cnn --resume expect
      optim::Metadata meta = samples::checkpoint_metadata("train_ddp", epoch + 1, schedule, loader.num_batches());
      meta["world_size"] = std::to_string(world);
      meta["comm_hook"] = ddp.comm_hook().name();
      samples::save_scaler(scaler, meta);
      optim::save_checkpoint(c.t.checkpoint, ddp.module(), opt.get(), meta, hook_state);
    }
    comm->barrier();  // nobody races ahead of (or resumes from) a half-written checkpoint
  };
  const training::Throughput t = loop.run(start_epoch);
  if (start_epoch >= loop.end_epoch()) acc = accuracy();
  if (!c.trace.empty()) {
    parallel::gather_chrome_trace(*comm, c.trace);
    if (lead) std::printf("trace of the first %d steps written to %s (open it at https://ui.perfetto.dev)\n",
                          c.trace_steps, c.trace.c_str());
  }
  if (lead) {
    const parallel::CommStats& cs = ddp.comm_hook().stats();
    if (c.deterministic) {  // the rank-order allgather bypasses the hooks and their counts
      std::printf("test_accuracy=%.4f train_samples_per_s=%.1f world_size=%d deterministic=1\n", acc,
                  t.samples_per_s(), world);
    } else {
      std::printf("test_accuracy=%.4f train_samples_per_s=%.1f world_size=%d comm_hook=%s comm_bytes_per_step=%.0f "
                  "float32_bytes_per_step=%.0f compression=%.2f\n",
                  acc, t.samples_per_s(), world, ddp.comm_hook().name().c_str(), cs.bytes_per_step(),
                  cs.steps ? static_cast<double>(cs.float32_bytes) / static_cast<double>(cs.steps) : 0.0,
                  cs.compression());
    }
  }
}

// The server's optimizer for --algorithm ps (rank 0 only): the recipe's (AdamW with warmup
// and cosine decay), over its own copy of the parameters, applied by the server under
// its lock. Each update moves the parameters count/world of a step: one step of the mean
// gradient when a whole clock arrives together (staleness 0: exactly the synchronous
// step), a 1/world step per gradient otherwise, so that any bound S makes the same
// progress per epoch. The schedule follows the clocks: after k * world gradients, step
// k's rate. Made before the server starts, so that --resume can load its state.
struct ServerOptimizer {
  std::vector<Tensor> master;  // leaves the optimizer steps, in the model's parameter order
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::CosineWarmupLR> schedule;
  int64_t gradients = 0;  // applied so far

  ServerOptimizer(const samples::Recipe& r, const std::vector<Tensor>& params, int64_t steps_per_epoch) {
    for (const Tensor& p : params) master.push_back(p.detach().clone().requires_grad_());
    opt = samples::make_optimizer(r, master);
    schedule = std::make_unique<optim::CosineWarmupLR>(samples::make_schedule(r, *opt, steps_per_epoch));
  }
  // After a checkpoint was loaded into the model (params) and into opt: start from its
  // parameters, `clocks` steps into the schedule.
  void resume(const std::vector<Tensor>& params, int64_t clocks, int world) {
    for (size_t i = 0; i < params.size(); ++i) std::copy_n(params[i].data<float>(), params[i].numel(), master[i].data<float>());
    gradients = clocks * world;
  }
  void apply(const std::vector<Tensor>& params, const std::vector<Tensor>& grad_sum, int count, int world) {
    ThreadLimit limit(1);  // the server shares rank 0's cores with its training
    opt->set_lr(schedule->lr_at(gradients / world) * count / world);
    for (size_t i = 0; i < params.size(); ++i) master[i].set_grad(grad_sum[i] * (1.0 / count));
    opt->step();
    gradients += count;
    for (size_t i = 0; i < params.size(); ++i) {  // the server's parameters, as sgd_update writes them
      std::copy_n(master[i].data<float>(), params[i].numel(), params[i].data<float>());
      params[i].storage()->bump_version();
    }
  }
};

// --algorithm ps: each rank trains on its own batches and, instead of DDP's all-reduce,
// pushes its gradient to the parameter server and pulls the server's parameters back
// (AsyncParameterServer::step). The ranks meet only at the ends of epochs (a barrier,
// then every rank pulls the same parameters and scores its slice of the test set, and
// rank 0 checkpoints the server's parameters and optimizer state).
void train_rank_ps(const DdpConfig& c, std::shared_ptr<Communicator> comm, std::shared_ptr<nn::Module> model,
                   const samples::FashionMnist& data) {
  comm->set_timeout(samples::collective_timeout(c.timeout_s));
  const int rank = comm->rank(), world = comm->size();
  const bool lead = rank == 0;  // and the server
  ThreadLimit limit(rank_threads(c, *comm));
  const samples::Recipe& r = c.t.r;
  auto sampler = std::make_shared<data::DistributedSampler>(data.train.size(), world, rank,
                                                            data::DistributedSamplerOptions{.seed = c.t.seed});
  data::DataLoader loader(data.train, {.batch_size = r.batch_size, .sampler = sampler});
  const std::vector<Tensor> params = model->parameters();
  // The loop's optimizer and schedule: this rank's, never stepped by it (the server steps
  // its own); they keep the bar's learning rate and the loop's step count.
  auto opt = samples::make_optimizer(r, params);
  optim::CosineWarmupLR schedule = samples::make_schedule(r, *opt, loader.num_batches());
  std::shared_ptr<ServerOptimizer> server;
  if (lead) server = std::make_shared<ServerOptimizer>(r, params, loader.num_batches());
  int start_epoch = 0;
  if (!c.t.resume.empty()) {  // rank 0 loads the optimizer's state into the server's
    const optim::Metadata meta = optim::load_checkpoint(c.t.resume, *model, lead ? server->opt.get() : nullptr);
    check_resume_algorithm(c.t.resume, meta, "ps");
    const samples::ResumePoint rp = samples::read_resume_point(c.t.resume, meta);
    start_epoch = rp.epoch;
    const std::string warning = samples::resume_schedule(rp, schedule, start_epoch * loader.num_batches(),
                                                         loader.num_batches());
    if (lead) {
      server->resume(params, schedule.last_step(), world);
      if (!warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
      std::printf("resumed from %s at epoch %d\n", c.t.resume.c_str(), start_epoch);
    }
  }
  // Only the server rank's update runs (its server is non-null there).
  parallel::ServerUpdate update = [server](const std::vector<Tensor>& p, const std::vector<Tensor>& g, int count,
                                           int n) { server->apply(p, g, count, n); };
  parallel::AsyncParameterServer ps(*comm, params, update, {.staleness = c.staleness});
  ps.pull();  // every rank starts from the server's (rank 0's) parameters
  if (lead)
    std::printf("train_ddp: %s, %lld parameters, parameter server on rank 0, world_size %d, staleness %s, "
                "batch %lld per rank\n",
                c.model.c_str(), static_cast<long long>(model->num_parameters()), world,
                c.staleness < 0 ? "unbounded (asynchronous)" : std::to_string(c.staleness).c_str(),
                static_cast<long long>(r.batch_size));

  const ShardedTest test(data.test, rank, world);
  auto accuracy = [&] {
    const Autocast ac = autocast::for_precision(c.t.precision);  // evaluated as it trains
    return test.accuracy(*comm, *model, kCPU);
  };
  training::Loop loop{.opt = *opt, .schedule = schedule, .loader = loader, .device = kCPU, .epochs = r.epochs,
                      .stop_after_epoch = c.t.stop_after_epoch,
                      .show_progress = lead};
  loop.ranks_in_step = [&](bool has_batch) { return has_batch ? world : 0; };  // samples of all ranks
  loop.step = [&](const std::optional<data::Batch>& b) {
    model->zero_grad();
    Tensor loss;
    {
      const Autocast ac = autocast::for_precision(c.t.precision);  // bf16: forward and loss in autocast
      loss = nn::cross_entropy((*model)(b->x), b->y, r.label_smoothing);
    }
    loss.backward();
    std::vector<Tensor> grads;
    for (const Tensor& p : params) grads.push_back(p.grad().defined() ? p.grad() : zeros_like(p));
    ps.step(grads);  // push; the pull writes the server's parameters into the model
    return loss;
  };
  loop.epoch_begin = [&](int) { comm->barrier(); };
  double acc = 0;
  parallel::StalenessStats before;
  loop.epoch_end = [&](int epoch) {
    comm->barrier();  // every rank's last gradient is in
    ps.pull();
    acc = accuracy();
    if (lead) {
      const parallel::StalenessStats now = ps.stats(), e = now.since(before);
      before = now;
      std::printf("epoch %d: test_accuracy=%.4f staleness mean %.2f max %lld over %lld gradients\n", epoch + 1, acc,
                  e.mean(), static_cast<long long>(e.max), static_cast<long long>(e.count));
    }
    if (lead && !c.t.checkpoint.empty()) {
      // The model holds the server's parameters (just pulled); the optimizer's state is
      // read under the server's lock, though between epochs nobody pushes.
      optim::Metadata meta = samples::checkpoint_metadata("train_ddp", epoch + 1, schedule, loader.num_batches());
      meta["world_size"] = std::to_string(world);
      meta["algorithm"] = "ps";
      ps.with_server_locked([&] { optim::save_checkpoint(c.t.checkpoint, *model, server->opt.get(), meta); });
    }
    comm->barrier();  // nobody races ahead of (or resumes from) a half-written checkpoint
  };
  training::Throughput t;
  try {
    t = loop.run(start_epoch);
  } catch (const std::exception& e) {
    // Before ps unwinds: the other ranks and rank 0's server threads wait for this rank's
    // messages; aborting tells them why, at once (MPI: ends the job with this message).
    if (world > 1) comm->abort(e.what());
    throw;
  }
  if (start_epoch >= loop.end_epoch()) acc = accuracy();  // resumed at the end: nothing trained
  ps.finish();
  if (!c.trace.empty()) {
    parallel::gather_chrome_trace(*comm, c.trace);
    if (lead) std::printf("trace written to %s (ps_apply spans carry each gradient's staleness)\n", c.trace.c_str());
  }
  if (lead) {
    const parallel::StalenessStats s = ps.stats();
    std::string hist;
    for (size_t k = 0; k < s.histogram.size(); ++k) hist += detail::str(k ? "," : "", k, ":", s.histogram[k]);
    std::printf("test_accuracy=%.4f train_samples_per_s=%.1f world_size=%d algorithm=ps staleness_bound=%d "
                "staleness_mean=%.3f staleness_max=%lld staleness_histogram=%s\n",
                acc, t.samples_per_s(), world, c.staleness, s.mean(), static_cast<long long>(s.max), hist.c_str());
  }
}

// `replicas` rank threads in this process (--backend threads, or nccl without mpirun:
// one thread per GPU). `wrap` turns a rank's threads communicator into the one it trains
// with, inside its thread. A rank that fails is marked gone by run_ranks, so the others
// stop at once instead of at the timeout; its error is the one reported.
using Wrap = std::function<std::shared_ptr<Communicator>(std::shared_ptr<Communicator>)>;
void run_threads(const DdpConfig& c, const samples::FashionMnist& data, const Wrap& wrap) {
  WEFT_CHECK(c.replicas >= 1, "--replicas must be at least 1, got ", c.replicas);
  // Models are built here, one after another, because initialisation draws from the
  // process-wide generator (DDP then overwrites ranks 1.. with rank 0's values anyway).
  std::vector<std::shared_ptr<nn::Module>> models;
  for (int r = 0; r < c.replicas; ++r) models.push_back(make_model(c.model));
  parallel::run_ranks(c.replicas, [&](const std::shared_ptr<Communicator>& comm) {
    if (c.algorithm == "ps") train_rank_ps(c, wrap(comm), models[comm->rank()], data);
    else train_rank(c, wrap(comm), models[comm->rank()], data);
  }, samples::collective_timeout(c.timeout_s));
}

std::shared_ptr<Communicator> mpi_world(const DdpConfig& c) {
  auto comm = samples::mpi_world();
  comm->set_polled_collectives(c.mpi_polled);
  comm->set_timeout(samples::collective_timeout(c.timeout_s));
  return comm;
}

// --backend nccl: one rank per GPU. Under mpirun, one process per GPU with MPI as the
// bootstrap (it carries NCCL's id and the CPU control messages), each process driving
// the GPU of its local rank on this node; otherwise --replicas rank threads of this
// process, thread r driving GPU r, bootstrapped over the threads backend
// (samples::check_nccl and samples::nccl_over, common/trainer.h).
bool under_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }
std::shared_ptr<Communicator> nccl_world(const DdpConfig& c) {
  auto boot = mpi_world(c);
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  return samples::nccl_over(boot, local ? std::atoi(local) : 0);
}

}  // namespace

int main(int argc, char** argv) {
  DdpConfig c;
  CLI::App app{"train_ddp: data-parallel training on Fashion-MNIST with weft's DistributedDataParallel"};
  c.t.r = samples::mlp_recipe();  // --model's recipe replaces it below
  samples::add_flags(app, c.t);
  // Each flag checked as it is read (common/flags.h).
  app.add_option("--model", c.model, "mlp or cnn (each with its sample's default recipe)")
      ->check(CLI::IsMember({"mlp", "cnn"}))
      ->capture_default_str();
  app.add_option("--backend", c.backend, "threads, mpi (run under mpirun) or nccl")
      ->check(CLI::IsMember({"threads", "mpi", "nccl"}))
      ->capture_default_str();
  app.add_option("--replicas", c.replicas, "threads backend, or nccl without mpirun (one GPU each): number of ranks")
      ->check(samples::whole_number(1))
      ->capture_default_str();
  app.add_option("--rank-threads", c.rank_threads, "intra-op threads per rank (default: cores / ranks on this machine)")
      ->check(samples::whole_number(0));
  app.add_flag("--no-overlap", c.no_overlap, "all-reduce the gradients after backward, not during it");
  app.add_flag("--deterministic", c.deterministic, "rank-order gradient sum, bit-reproducible (slower)");
  app.add_option("--bucket-mb", c.bucket_mb, "gradient bucket size in MiB")
      ->check(samples::real_number(0, 1 << 20, /*lo_open=*/true))
      ->capture_default_str();
  app.add_option("--trace", c.trace, "write a Chrome trace (Perfetto) of compute and communication per rank")
      ->check(samples::savable_file());
  app.add_option("--trace-steps", c.trace_steps, "steps of the first epoch the trace records")
      ->check(samples::whole_number(0))
      ->capture_default_str();
  app.add_flag("--mpi-polled", c.mpi_polled, "mpi: MPI_Iallreduce polled by weft instead of MPI_Allreduce");
  app.add_option("--comm-hook", c.comm_hook,
                 "how gradients are reduced: none, bf16, fp16, powersgd:R[,start=N][,min_rate=X], topk:F")
      ->check([](const std::string& spec) {
        try {
          parallel::make_comm_hook(spec);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      })
      ->capture_default_str();
  app.add_option("--algorithm", c.algorithm, "ddp (all-reduce) or ps (asynchronous parameter server on rank 0)")
      ->check(CLI::IsMember({"ddp", "ps"}))
      ->capture_default_str();
  app.add_option("--staleness", c.staleness, "ps: a rank runs at most S steps ahead of the slowest (-1: no bound, "
                 "0: synchronous)")
      ->check(CLI::Range(-1, 1 << 30))
      ->capture_default_str();
  samples::add_timeout_flag(app, c.timeout_s);
  CLI11_PARSE(app, argc, argv);
  if (c.comm_hook.empty()) c.comm_hook = "none";
  try {
    // The recipe follows --model unless a flag set it.
    samples::apply_recipe(app, samples::recipe_for(c.model), c.t.r);
    WEFT_CHECK(!c.t.cuda_graph, "train_ddp: --cuda-graph is not supported here (the all-reduces run between "
               "steps on the host); train_mlp and train_cnn take it");
    WEFT_CHECK(c.t.device == "cpu", "train_ddp: --device ", c.t.device,
               " is not supported; the ranks are the devices (threads/mpi on the CPU, nccl on GPUs)");
    WEFT_CHECK(c.comm_hook == "none" || c.backend != "nccl", "train_ddp: --comm-hook ", c.comm_hook,
               " works on CPU buckets only; with --backend nccl use none");
    WEFT_CHECK(c.comm_hook == "none" || !c.deterministic, "train_ddp: --comm-hook ", c.comm_hook,
               " and --deterministic do not combine (deterministic mode makes its own rank-order sum)");
    WEFT_CHECK(c.algorithm == "ddp" || c.backend != "nccl", "train_ddp: --algorithm ps runs on the CPU backends "
               "(threads or mpi), not nccl");
    WEFT_CHECK(c.algorithm == "ps" || app.count("--staleness") == 0, "train_ddp: --staleness needs --algorithm ps");
    WEFT_CHECK(c.algorithm != "ps" || c.t.precision != kFloat16, "--precision fp16: train_ddp --algorithm ps trains ",
               "in fp32 or bf16 (float16 needs a loss scale, and the server would have to skip the overflowing ",
               "pushes of each worker)");
    for (const char* ddp_only : {"--comm-hook", "--deterministic", "--no-overlap", "--bucket-mb"})
      WEFT_CHECK(c.algorithm == "ddp" || app.count(ddp_only) == 0, "train_ddp: ", ddp_only,
                 " is a DDP flag; --algorithm ps sends whole gradients to the server");
    if (c.t.threads > 0) set_num_threads(c.t.threads);
    manual_seed(c.t.seed);
    if (!c.trace.empty()) parallel::trace::enable();
    if (c.backend == "nccl") samples::check_nccl();
    if (c.backend == "threads" || (c.backend == "nccl" && !under_mpirun())) {
      const samples::FashionMnist data = samples::load_data(c.t);
      if (c.backend == "threads") run_threads(c, data, [](auto comm) { return comm; });
      else run_threads(c, data, [](auto boot) { return samples::nccl_over(boot, boot->rank()); });
    } else if (c.backend == "mpi" || c.backend == "nccl") {
      auto comm = c.backend == "mpi" ? mpi_world(c) : nccl_world(c);
      try {
        const samples::FashionMnist data = samples::load_data(c.t);
        if (c.algorithm == "ps") train_rank_ps(c, comm, make_model(c.model), data);
        else train_rank(c, comm, make_model(c.model), data);
      } catch (const std::exception& e) {
        // An error on this rank alone (it cannot read the data, say) must not leave the
        // others waiting in their next collective until the timeout: tell them, naming
        // this rank and the reason, and end the job. (A rank that failed because a peer
        // left prints that, naming the peer, and ends the job too.)
        if (comm->size() > 1) comm->abort(e.what());
        throw;
      }
    } else {
      throw Error(detail::str("--backend: unknown backend '", c.backend, "' (use threads, mpi or nccl)"));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_ddp: error: %s\n", e.what());
    return 1;
  }
}
