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
// (-1: no bound, 0: the synchronous server). See ddp/ps_rank.cpp.
//
// The last line is `test_accuracy=<a> train_samples_per_s=<s> world_size=<N>`, where s
// counts the samples of all ranks (then comm_bytes_per_step, or the staleness).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <functional>

#include "../cuda/cuda.h"
#include "../parallel/comm/mpi_communicator.h"
#include "../parallel/comm_hook.h"
#include "common/flags.h"
#include "common/models.h"
#include "common/trainer.h"
#include "ddp/rank.h"

using namespace weft;
using weft::parallel::Communicator;
using weft::samples::ddp::DdpConfig;

namespace {

std::shared_ptr<nn::Module> make_model(const std::string& model) {
  if (model == "cnn") return samples::make_cnn();
  return samples::make_mlp();
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
    if (c.algorithm == "ps") samples::ddp::train_rank_ps(c, wrap(comm), models[comm->rank()], data);
    else samples::ddp::train_rank(c, wrap(comm), models[comm->rank()], data);
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
        if (c.algorithm == "ps") samples::ddp::train_rank_ps(c, comm, make_model(c.model), data);
        else samples::ddp::train_rank(c, comm, make_model(c.model), data);
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
