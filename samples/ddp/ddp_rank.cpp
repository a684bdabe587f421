// train_ddp, one rank of DistributedDataParallel training (rank.h).
#include <cstdio>
#include <optional>

#include "../../parallel/comm/nccl_communicator.h"
#include "../../parallel/ddp.h"
#include "../../parallel/trace_gather.h"
#include "../../training/loop.h"
#include "../common/flags.h"
#include "../common/resume.h"
#include "rank.h"

namespace weft::samples::ddp {

namespace {
// The bucket layout the hook's memory is laid out in: each bucket's element count.
std::string bucket_layout(const parallel::DistributedDataParallel& ddp) {
  std::string out;
  for (const auto& b : ddp.buckets()) out += (out.empty() ? "" : ",") + std::to_string(b.numel());
  return out;
}

// What a checkpoint's comm hook memory needs to match, in its metadata.
void save_comm_hook_fields(parallel::DistributedDataParallel& ddp, optim::Metadata& meta) {
  meta["comm_hook"] = ddp.comm_hook().name();
  meta["comm_hook_buckets"] = bucket_layout(ddp);
}

// --resume with a comm hook that remembers (PowerSGD, top-k): each rank takes its own
// residuals back from the checkpoint, when it was saved by the same hook, at the same
// world size, over the same buckets (--bucket-mb); otherwise the hook starts from zero,
// and rank 0 says what is dropped.
void resume_comm_hook(const std::string& path, const optim::Metadata& meta, const nn::NamedTensors& saved,
                      parallel::DistributedDataParallel& ddp) {
  const auto field = [&](const char* name) {
    auto it = meta.find(name);
    return it == meta.end() ? std::string("(not recorded)") : it->second;
  };
  const std::string hook = ddp.comm_hook().name(), world = std::to_string(ddp.comm().size());
  if (field("comm_hook") == hook && field("world_size") == world && field("comm_hook_buckets") == bucket_layout(ddp)) {
    try {
      ddp.load_comm_hook_state(saved);
    } catch (const Error& e) {
      throw Error(detail::str(path, ": rank ", ddp.comm().rank(), ": ", e.what()));
    }
    return;
  }
  if (ddp.comm().rank() == 0 && (!saved.empty() || ddp.comm_hook().keeps_state()))
    std::fprintf(stderr,
                 "note: %s was saved with comm hook %s at world size %s over buckets of %s values, this run has %s "
                 "at %s over %s, so %s\n",
                 path.c_str(), field("comm_hook").c_str(), field("world_size").c_str(),
                 field("comm_hook_buckets").c_str(), hook.c_str(), world.c_str(), bucket_layout(ddp).c_str(),
                 ddp.comm_hook().keeps_state() ? "this hook's memory (its residuals) starts at zero"
                                               : "the saved residuals go unused");
}
}  // namespace

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
      save_comm_hook_fields(ddp, meta);
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

}  // namespace weft::samples::ddp
