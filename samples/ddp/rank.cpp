// train_ddp's helpers shared by both algorithms (rank.h).
#include "rank.h"

#include <algorithm>
#include <cstdlib>

namespace weft::samples::ddp {

namespace {
// Ranks that share this machine's cores: the threads backend's replicas, or what
// mpirun says runs on this node.
int local_ranks(const DdpConfig& c, const Communicator& comm) {
  if (c.backend == "threads") return comm.size();
  if (const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) return std::max(1, std::atoi(s));
  return comm.size();
}
}  // namespace

int rank_threads(const DdpConfig& c, const Communicator& comm) {
  return c.rank_threads > 0 ? c.rank_threads : std::max(1, num_threads() / local_ranks(c, comm));
}

double ShardedTest::accuracy(Communicator& comm, nn::Module& model, Device device) const {
  Tensor correct = tensor(std::vector<int64_t>{count_correct(model, mine, device)});
  comm.allreduce(correct, parallel::ReduceOp::Sum);
  return static_cast<double>(correct.item<int64_t>()) / static_cast<double>(total);
}

void check_resume_algorithm(const std::string& path, const optim::Metadata& meta, const std::string& algorithm) {
  const auto it = meta.find("algorithm");
  const std::string saved = it == meta.end() ? "ddp" : it->second;
  WEFT_CHECK(saved == algorithm, path, ": saved by train_ddp --algorithm ", saved, ", so this --algorithm ",
             algorithm, " run cannot resume it (resume with --algorithm ", saved, ")");
}

}  // namespace weft::samples::ddp
