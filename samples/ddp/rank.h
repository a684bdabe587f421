// One rank of train_ddp (train_ddp.cpp has the flags and starts the ranks): its
// configuration, what its two algorithms share, and the algorithms themselves --
//   ddp_rank.cpp  train_rank: DistributedDataParallel (parallel/ddp.h), with comm hooks
//   ps_rank.cpp   train_rank_ps: the asynchronous parameter server
//                 (parallel/algorithms/async_parameter_server.h)
// Each returns on every rank at the same time.
#pragma once

#include <memory>
#include <string>

#include "../../optim/checkpoint.h"
#include "../../parallel/comm/communicator.h"
#include "../common/trainer.h"

namespace weft::samples::ddp {

using parallel::Communicator;

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

// Intra-op threads for each rank: --rank-threads, or this machine's cores shared among
// the ranks it runs.
int rank_threads(const DdpConfig& c, const Communicator& comm);

// The test set scored by all ranks: each its slice, one all-reduce adds the counts.
struct ShardedTest {
  data::TensorDataset mine;
  int64_t total;
  ShardedTest(const data::TensorDataset& test, int rank, int world)
      : mine(test.slice(test.size() * rank / world, test.size() * (rank + 1) / world)), total(test.size()) {}
  double accuracy(Communicator& comm, nn::Module& model, Device device) const;
};

// A checkpoint of --algorithm ps holds the server's optimizer, whose steps count
// gradients (world per clock unless staleness is 0), not DDP's steps: each algorithm
// resumes only its own checkpoints (one without the field is DDP's, or train_mlp's).
void check_resume_algorithm(const std::string& path, const optim::Metadata& meta, const std::string& algorithm);

// DistributedDataParallel training (ddp_rank.cpp).
void train_rank(const DdpConfig& c, std::shared_ptr<Communicator> comm, std::shared_ptr<nn::Module> model,
                const FashionMnist& data);
// --algorithm ps (ps_rank.cpp).
void train_rank_ps(const DdpConfig& c, std::shared_ptr<Communicator> comm, std::shared_ptr<nn::Module> model,
                   const FashionMnist& data);

}  // namespace weft::samples::ddp
