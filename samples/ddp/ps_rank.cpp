// train_ddp, one rank of the asynchronous parameter server's training (rank.h).
#include <cstdio>
#include <optional>

#include "../../parallel/algorithms/async_parameter_server.h"
#include "../../parallel/trace_gather.h"
#include "../../training/loop.h"
#include "../common/flags.h"
#include "../common/resume.h"
#include "rank.h"

namespace weft::samples::ddp {

namespace {
// The server's optimizer for --algorithm ps (rank 0 only): the recipe's (AdamW with warmup
// and cosine decay), over its own copy of the parameters, applied by the server under
// its lock. Each update moves the parameters count/world of a step: one step of the mean
// gradient when a whole clock arrives together (staleness 0: exactly the synchronous
// step), a 1/world step per gradient otherwise, so that any bound S makes the same
// progress per epoch. The schedule follows the clocks: after k * world gradients, step
// k's rate. Made before the server starts, so that --resume can load its state.
//
// --precision fp16: each worker scales its own loss, unscales its gradient and pushes it
// even when it overflowed; parallel::skip_nonfinite keeps such a sum from apply().
struct ServerOptimizer {
  std::vector<Tensor> master;  // leaves the optimizer steps, in the model's parameter order
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::CosineWarmupLR> schedule;
  int64_t gradients = 0;  // applied so far (skipped ones included: the schedule moves on)
  int64_t skipped = 0;    // updates not applied: an inf or NaN in the sum

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
  // A gradient sum parallel::skip_nonfinite kept from apply(): the schedule moves on.
  void skip(int count) {
    ++skipped;
    gradients += count;
  }
};

// fp16: every worker's loss scale in rank 0's checkpoint, as the fields
// "grad_scale.rank<r>" and "grad_scale_growth_tracker.rank<r>" (collective: an
// allgather of each worker's two numbers).
void save_worker_scales(Communicator& comm, const optim::GradScaler& scaler, optim::Metadata& meta) {
  if (!scaler.is_enabled()) return;
  Tensor mine = tensor(std::vector<double>{scaler.get_scale(), double(scaler.growth_tracker())}, {2}, {.dtype = kFloat64});
  Tensor all = empty({2 * comm.size()}, {.dtype = kFloat64});
  comm.allgather(mine, all);
  const std::vector<double> v = all.to_vector<double>();
  for (int q = 0; q < comm.size(); ++q)
    samples::save_scale(v[2 * q], static_cast<int64_t>(v[2 * q + 1]), meta, ".rank" + std::to_string(q));
}
}  // namespace

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
  optim::GradScaler scaler({.enabled = c.t.precision == kFloat16});  // this worker's own loss scale
  int start_epoch = 0;
  if (!c.t.resume.empty()) {  // rank 0 loads the optimizer's state into the server's
    const optim::Metadata meta = optim::load_checkpoint(c.t.resume, *model, lead ? server->opt.get() : nullptr);
    check_resume_algorithm(c.t.resume, meta, "ps");
    samples::load_scaler(c.t.resume, meta, scaler, ".rank" + std::to_string(rank));
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
  parallel::ServerUpdate update = parallel::skip_nonfinite(
      [server](const std::vector<Tensor>& p, const std::vector<Tensor>& g, int count, int n) {
        server->apply(p, g, count, n);
      },
      [server](int count) { server->skip(count); });
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
      const Autocast ac = autocast::for_precision(c.t.precision);  // bf16/fp16: forward and loss in autocast
      loss = nn::cross_entropy((*model)(b->x), b->y, r.label_smoothing);
    }
    scaler.scale(loss).backward();
    scaler.unscale_(*opt);  // fp16: the true gradient (opt: over the model's parameters, never stepped)
    std::vector<Tensor> grads;
    for (const Tensor& p : params) grads.push_back(p.grad().defined() ? p.grad() : zeros_like(p));
    // Push; the pull writes the server's parameters into the model. An overflowed gradient
    // is pushed all the same (the server's skip_nonfinite drops it) and backs this
    // worker's scale off.
    const auto push = [&] { ps.step(grads); };
    if (!scaler.step(push)) push();
    scaler.update();
    return loss;
  };
  loop.epoch_begin = [&](int) { comm->barrier(); };
  double acc = 0;
  parallel::StalenessStats before;
  const auto skipped_updates = [&] {  // read under the server's lock: its threads write it
    int64_t n = 0;
    ps.with_server_locked([&] { n = server->skipped; });
    return n;
  };
  loop.epoch_end = [&](int epoch) {
    comm->barrier();  // every rank's last gradient is in
    ps.pull();
    acc = accuracy();
    if (lead) {
      const parallel::StalenessStats now = ps.stats(), e = now.since(before);
      before = now;
      std::printf("epoch %d: test_accuracy=%.4f staleness mean %.2f max %lld over %lld gradients%s\n", epoch + 1,
                  acc, e.mean(), static_cast<long long>(e.max), static_cast<long long>(e.count),
                  scaler.is_enabled() ? detail::str(" loss_scale(rank 0)=", scaler.get_scale(), " skipped_updates=",
                                                    skipped_updates()).c_str()
                                      : "");
    }
    optim::Metadata meta;
    if (!c.t.checkpoint.empty()) save_worker_scales(*comm, scaler, meta);  // collective
    if (lead && !c.t.checkpoint.empty()) {
      // The model holds the server's parameters (just pulled); the optimizer's state is
      // read under the server's lock, though between epochs nobody pushes.
      const optim::Metadata fields = samples::checkpoint_metadata("train_ddp", epoch + 1, schedule, loader.num_batches());
      meta.insert(fields.begin(), fields.end());
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

}  // namespace weft::samples::ddp
