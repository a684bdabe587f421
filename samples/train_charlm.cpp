// train_charlm: a small GPT-style transformer (samples/common/charlm.h) trained to
// predict the next character of Debian's fortune cookies, then asked to write some.
//
//   train_charlm                                      # one process, all cores
//   train_charlm --replicas 2                         # DDP, 2 rank threads
//   mpirun -np 2 train_charlm --backend mpi           # DDP, 2 processes
//   train_charlm --stages 2 --microbatches 4          # pipeline: 2 stages (threads)
//   train_charlm --stages 3 --balance time            # cut where the measured times balance
//   train_charlm --save-init init.safetensors         # the initial weights, for bench/charlm.py
//
// THE CORPUS. The `fortunes` package (/usr/share/games/fortunes, about 2.4 MB of plain
// English: quotations, jokes, poems, definitions) -- in Debian main, plain ASCII text, and
// about twice the size of the "tiny Shakespeare" that character models usually learn
// from. Its first 90% is for training, the rest for validation (data/text.h).
//
// THE STEPS. Each step takes --batch-size windows of --seq-len + 1 characters at
// positions drawn from a splitmix64 stream seeded by --seed (charlm::WindowSampler), so
// the batches do not depend on how the work is split: under DDP every rank draws the
// whole batch and keeps its share of rows (--batch-size is the global batch); in a
// pipeline stage 0 feeds the inputs and the last stage the targets. AdamW with weight
// decay on the matrices only (optim::decay_groups), gradient clipping at --clip, a
// linear warm-up then cosine decay (optim::CosineWarmupLR). bench/charlm.py does the
// same in PyTorch from the same initial weights, which is how the benchmark compares
// the two step for step.
//
// The last line is `val_loss=<v> train_tokens_per_s=<v> steps=<n>`.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "../parallel/comm/mpi_communicator.h"
#include "../parallel/pipeline/pipeline.h"
#include "../training/progress.h"
#include "common/charlm.h"
#include "common/flags.h"
#include "common/trainer.h"

using namespace weft;
using weft::parallel::Communicator;
namespace lm = weft::samples::charlm;
namespace pp = weft::parallel::pipeline;

namespace {

struct LmConfig {
  lm::Config model;
  std::string corpus = "/usr/share/games/fortunes";
  int64_t steps = 2000, batch_size = 16;
  double lr = 2e-3, weight_decay = 0.1, clip = 1.0;
  int64_t warmup = 30;
  uint64_t seed = 0;
  int threads = 0;
  int64_t val_windows = 64, eval_every = 0, log_every = 0;
  int64_t sample_length = 400, top_k = 0;
  double temperature = 0.8;
  std::string prompt = "The ", save_init, checkpoint;
  std::string backend = "threads";
  int replicas = 1, stages = 1, microbatches = 4;
  std::string schedule = "1f1b";
  std::string balance = "params";  // how --stages cuts the layers (parallel::Balance::parse)
};

struct Corpus {
  data::CharCorpus text;
  Tensor train, val;  // int64 ids: the first 90%, the rest
};

Corpus load_corpus(const std::string& path) {
  Corpus c{data::CharCorpus::load(path), {}, {}};
  const int64_t n = c.text.ids.numel(), n_train = n * 9 / 10;
  c.train = c.text.ids.narrow(0, 0, n_train);
  c.val = c.text.ids.narrow(0, n_train, n - n_train);
  return c;
}

// Everything one rank (or the one process) trains with.
struct Trainer {
  const LmConfig& c;
  std::shared_ptr<nn::Sequential> model;
  std::unique_ptr<optim::AdamW> opt;
  std::unique_ptr<optim::CosineWarmupLR> schedule;

  Trainer(const LmConfig& cfg, std::shared_ptr<nn::Sequential> m, const std::vector<optim::ParamGroup>& groups)
      : c(cfg), model(std::move(m)) {
    opt = std::make_unique<optim::AdamW>(groups, optim::AdamOptions{.lr = c.lr, .weight_decay = c.weight_decay});
    schedule = std::make_unique<optim::CosineWarmupLR>(*opt, c.warmup, c.steps);
  }
};

// Rows [r n / R, (r + 1) n / R) of a batch: rank r's share.
Tensor share(const Tensor& t, int r, int R) {
  const int64_t n = t.size(0), begin = r * n / R, end = (r + 1) * n / R;
  return t.narrow(0, begin, end - begin);
}

// The training loop of one data-parallel rank (comm == nullptr: the only process).
// Returns tokens per second over all ranks, leaving out the first 5 steps (warm-up).
double train_ranks(const LmConfig& c, const Corpus& data, std::shared_ptr<nn::Sequential> model,
                   std::shared_ptr<Communicator> comm) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  const bool lead = rank == 0;
  // Ranks share the cores (threads, or processes on this machine): each gets its part.
  ThreadLimit limit(c.threads > 0 ? c.threads : std::max(1, num_threads() / world));
  std::unique_ptr<parallel::DistributedDataParallel> ddp;
  if (comm) ddp = std::make_unique<parallel::DistributedDataParallel>(model, comm, parallel::DDPOptions{.bucket_cap_mb = 1});
  Trainer t(c, model, optim::decay_groups(*model, c.weight_decay));
  lm::WindowSampler sampler(data.train, c.model.seq_len, c.seed);
  training::ProgressBar bar("train", c.steps, {.unit = "tokens"});
  const int64_t skip = std::min<int64_t>(5, c.steps - 1);
  std::chrono::steady_clock::time_point start;
  for (int64_t step = 0; step < c.steps; ++step) {
    if (step == skip) start = std::chrono::steady_clock::now();
    const Tensor w = share(sampler.next(c.batch_size), rank, world);  // (b, T + 1)
    const Tensor x = w.narrow(1, 0, c.model.seq_len).contiguous(), y = w.narrow(1, 1, c.model.seq_len).contiguous();
    t.opt->zero_grad();
    const Tensor loss = lm::lm_loss(ddp ? (*ddp)(x) : (*model)(x), y);
    loss.backward();
    if (ddp) ddp->synchronize();
    optim::clip_grad_norm(model->parameters(), c.clip);
    t.opt->step();
    t.schedule->step();
    const double l = loss.item<double>();  // rank 0's share of the batch
    if (lead) bar.update(c.batch_size * c.model.seq_len, l);
    if (lead && c.log_every > 0 && (step % c.log_every == 0 || step + 1 == c.steps))
      std::printf("\nstep=%lld loss=%.6f\n", static_cast<long long>(step), l);
    if (lead && c.eval_every > 0 && (step + 1) % c.eval_every == 0 && step + 1 < c.steps)
      std::printf("\nstep %lld: val_loss=%.4f\n", static_cast<long long>(step + 1),
                  lm::evaluate(*model, data.val, c.model.seq_len, c.val_windows, c.batch_size, kCPU));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (lead) bar.finish();
  return double((c.steps - skip) * c.batch_size * c.model.seq_len) / seconds;
}

// ---- pipeline ------------------------------------------------------------------------

// One stage of --stages, on logical device cpu:s. Returns tokens/s (on the last stage).
double train_stage(const LmConfig& c, const Corpus& data, parallel::ShardedSequential& sharded,
                   std::shared_ptr<Communicator> comm, int threads) {
  const int s = comm->rank(), p = comm->size();
  const bool first = s == 0, last = s == p - 1;
  const Device dev = sharded.device(size_t(s));
  auto block = sharded.stage(size_t(s));
  pp::PipelineStage stage(comm, block, dev, threads);
  auto groups = optim::decay_groups(*block, c.weight_decay);
  optim::AdamW opt(groups, {.lr = c.lr, .weight_decay = c.weight_decay});
  optim::CosineWarmupLR schedule(opt, c.warmup, c.steps);
  const Tensor tied = first ? std::dynamic_pointer_cast<lm::Embed>((*block)[0])->tok_emb->weight
                            : last ? lm::head_of(*sharded.model())->weight() : Tensor();
  const pp::PipelineSchedule schedule_ = pp::make_schedule(c.schedule, p, c.microbatches);
  lm::WindowSampler sampler(data.train, c.model.seq_len, c.seed);
  training::ProgressBar bar("train", c.steps, {.unit = "tokens"});
  auto loss_fn = [](const Tensor& out, const Tensor& y) { return lm::lm_loss(out, y); };
  const int64_t skip = std::min<int64_t>(5, c.steps - 1);
  std::chrono::steady_clock::time_point start;
  for (int64_t step = 0; step < c.steps; ++step) {
    if (step == skip) start = std::chrono::steady_clock::now();
    const Tensor w = sampler.next(c.batch_size);  // every stage draws it; the ends use it
    const Tensor x = w.narrow(1, 0, c.model.seq_len).contiguous().to(dev);
    const Tensor y = w.narrow(1, 1, c.model.seq_len).contiguous().to(dev);
    opt.zero_grad();
    const double loss = stage.train_step(schedule_, first ? x : Tensor(), last ? y : Tensor(), loss_fn);
    if (tied.defined()) lm::exchange_tied_grad(*comm, tied);
    // Clipping needs the norm over the whole model: the stages' squared norms, summed.
    double sq = 0;
    for (const Tensor& param : block->parameters()) {
      if (!param.grad().defined() || (last && param.is_same(tied))) continue;  // the tied copy counts once
      const Tensor g = param.grad().to(kFloat64);
      sq += (g * g).sum().item<double>();
    }
    Tensor total = full({1}, sq, {.dtype = kFloat64});
    comm->allreduce(total);
    const double norm = std::sqrt(total.item<double>());
    if (norm > c.clip) {
      autograd::NoGradGuard no_grad;
      for (const Tensor& g : block->parameters())
        if (g.grad().defined()) g.grad().mul_(c.clip / (norm + 1e-6));
    }
    opt.step();
    schedule.step();
    if (last) bar.update(c.batch_size * c.model.seq_len, loss);
    if (last && c.log_every > 0 && (step % c.log_every == 0 || step + 1 == c.steps))
      std::printf("\nstep=%lld loss=%.6f\n", static_cast<long long>(step), loss);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (last) bar.finish();
  return double((c.steps - skip) * c.batch_size * c.model.seq_len) / seconds;
}

double run_pipeline(const LmConfig& c, const Corpus& data, std::shared_ptr<nn::Sequential> model) {
  std::vector<Device> devices;
  for (int s = 0; s < c.stages; ++s) devices.push_back(Device::cpu(s));
  parallel::Balance balance = parallel::Balance::parse(c.balance);
  if (balance.kind == parallel::Balance::Kind::Time) {  // timed on a batch of training windows
    lm::WindowSampler sampler(data.train, c.model.seq_len, c.seed);
    balance.sample = {sampler.next(c.batch_size).narrow(1, 0, c.model.seq_len).contiguous()};
  }
  const auto first = parallel::stage_boundaries(*model, size_t(c.stages), balance);
  parallel::ShardedSequential sharded(model, devices, first);
  lm::head_of(*model)->untie();  // Embed (stage 0) and Head (the last stage) are apart
  const int threads = c.threads > 0 ? c.threads : std::max(1, num_threads() / c.stages);
  std::string cuts;
  for (size_t f : first) cuts += (cuts.empty() ? "" : ",") + std::to_string(f);
  std::printf("pipeline: %d stages (first layers %s, balance %s), schedule %s, %d microbatches, %d thread%s per stage\n",
              c.stages, cuts.c_str(), c.balance.c_str(), c.schedule.c_str(), c.microbatches, threads,
              threads == 1 ? "" : "s");
  std::vector<double> tps(size_t(c.stages));
  parallel::run_ranks(c.stages, [&](const std::shared_ptr<Communicator>& comm) {
    tps[size_t(comm->rank())] = train_stage(c, data, sharded, comm, threads);
  });
  // Back on one device for evaluation and sampling (the head keeps its copy: equal values).
  model->to(kCPU);
  return tps.back();
}

}  // namespace

int main(int argc, char** argv) {
  LmConfig c;
  CLI::App app{"train_charlm: a character-level transformer trained on Debian's fortunes"};
  app.add_option("--corpus", c.corpus, "a text file, or a directory of fortune files")->capture_default_str();
  app.add_option("--steps", c.steps, "optimizer steps")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--batch-size", c.batch_size, "windows per step (all ranks together)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seq-len", c.model.seq_len, "characters of context")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--dim", c.model.dim, "model width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--layers", c.model.layers, "transformer blocks")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--heads", c.model.heads, "attention heads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", c.lr, "peak learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", c.warmup, "warm-up steps")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "AdamW's, on matrices only")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--clip", c.clip, "gradient norm clipping")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", c.seed, "weights and batches")->capture_default_str();
  app.add_option("--threads", c.threads, "intra-op threads (per rank or stage); 0: all cores shared out")->check(CLI::NonNegativeNumber);
  app.add_option("--val-windows", c.val_windows, "validation windows")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--eval-every", c.eval_every, "print the validation loss every N steps (0: at the end only)")->capture_default_str();
  app.add_option("--log-every", c.log_every, "print `step=N loss=L` every N steps (0: never)")->check(CLI::NonNegativeNumber);
  app.add_option("--sample-length", c.sample_length, "characters to generate at the end (0: none)")->capture_default_str();
  app.add_option("--temperature", c.temperature, "of the sampling")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--top-k", c.top_k, "sample among the k likeliest characters (0: all)")->capture_default_str();
  app.add_option("--prompt", c.prompt, "the start of the generated text")->capture_default_str();
  app.add_option("--save-init", c.save_init, "write the initial weights to this safetensors file");
  app.add_option("--checkpoint", c.checkpoint, "write the trained weights to this safetensors file");
  app.add_option("--backend", c.backend, "threads or mpi (data parallel)")->check(CLI::IsMember({"threads", "mpi"}))->capture_default_str();
  app.add_option("--replicas", c.replicas, "data-parallel rank threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--stages", c.stages, "pipeline stages (threads on cpu:0, cpu:1, ...)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--schedule", c.schedule, "pipeline schedule")->check(CLI::IsMember({"gpipe", "1f1b", "zb1"}))->capture_default_str();
  app.add_option("--microbatches", c.microbatches, "pipeline microbatches per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--balance", c.balance, "how --stages cuts the layers: layers, params, time or manual:i,j,...")
      ->check(samples::balance_spec())
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    WEFT_CHECK(c.stages == 1 || (c.replicas == 1 && c.backend == "threads"),
               "--stages runs the stages as threads; it does not combine with --replicas or --backend mpi here");
    WEFT_CHECK(c.warmup < c.steps, "--warmup ", c.warmup, " must be below --steps ", c.steps,
               " (the learning rate warms up, then decays over the remaining steps)");
    std::shared_ptr<Communicator> mpi;
    if (c.backend == "mpi") mpi = samples::mpi_world();
    const bool lead = !mpi || mpi->rank() == 0;
    const Corpus data = load_corpus(c.corpus);
    c.model.vocab = data.text.vocab_size();
    default_generator().manual_seed(c.seed);
    auto model = lm::make_model(c.model);
    if (lead) {
      std::printf("train_charlm: %zu files, %lld characters (%lld train, %lld validation), vocabulary %lld\n",
                  data.text.files.size(), static_cast<long long>(data.text.ids.numel()),
                  static_cast<long long>(data.train.numel()), static_cast<long long>(data.val.numel()),
                  static_cast<long long>(c.model.vocab));
      std::printf("%s\n", nn::summary(*model).c_str());
    }
    if (!c.save_init.empty() && lead) nn::save_safetensors(c.save_init, model->state_dict());

    double tokens_per_s = 0;
    if (c.stages > 1) {
      tokens_per_s = run_pipeline(c, data, model);
    } else if (mpi) {
      tokens_per_s = train_ranks(c, data, model, mpi);
    } else if (c.replicas > 1) {
      std::vector<std::shared_ptr<nn::Sequential>> models{model};
      for (int r = 1; r < c.replicas; ++r) models.push_back(lm::make_model(c.model));  // DDP broadcasts rank 0's
      parallel::run_ranks(c.replicas, [&](const std::shared_ptr<Communicator>& comm) {
        const double tps = train_ranks(c, data, models[size_t(comm->rank())], comm);
        if (comm->rank() == 0) tokens_per_s = tps;
      });
    } else {
      tokens_per_s = train_ranks(c, data, model, nullptr);
    }
    if (!lead) return 0;
    const double val = lm::evaluate(*model, data.val, c.model.seq_len, c.val_windows, c.batch_size, kCPU);
    if (!c.checkpoint.empty()) {
      // Under the unpipelined keys: a pipeline's head copy of the tied weight (equal to
      // the embedding's) is left out, so any run of this sample loads the file.
      nn::NamedTensors state;
      for (const auto& kv : model->state_dict())
        if (lm::head_of(*model)->tied() || !kv.second.is_same(lm::head_of(*model)->weight())) state.push_back(kv);
      nn::save_safetensors(c.checkpoint, state);
    }
    if (c.sample_length > 0) {
      Generator gen(c.seed + 1);
      std::printf("\n---- sample (temperature %.2f) ----\n%s\n----\n", c.temperature,
                  lm::generate(*model, data.text, c.prompt, c.sample_length, c.model.seq_len, c.temperature, c.top_k,
                               gen, kCPU)
                      .c_str());
    }
    std::printf("val_loss=%.4f train_tokens_per_s=%.1f steps=%lld\n", val, tokens_per_s,
                static_cast<long long>(c.steps));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_charlm: %s\n", e.what());
    return 1;
  }
  return 0;
}
