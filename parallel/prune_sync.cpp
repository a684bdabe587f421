#include "prune_sync.h"

#include "../tensor/creation.h"
#include "../tensor/error.h"

namespace weft::parallel {

void sync_masks(prune::Pruner& pruner, Communicator& comm, int root) {
  // Which targets are masked, here and on root: the broadcasts below pair up by order,
  // so the two lists must agree.
  std::vector<int64_t> mine(pruner.size());
  for (size_t i = 0; i < pruner.size(); ++i) mine[i] = pruner.is_masked(pruner.name(i)) ? 1 : 0;
  Tensor roots = tensor(mine);
  comm.broadcast(roots, root);
  const std::vector<int64_t> theirs = roots.to_vector<int64_t>();
  size_t differs = mine.size();
  for (size_t i = 0; i < mine.size() && differs == mine.size(); ++i)
    if (mine[i] != theirs[i]) differs = i;
  // Every rank stops, not only those that differ: the others would wait in the
  // broadcasts below for ever.
  Tensor any = tensor(std::vector<int64_t>{differs < mine.size() ? 1 : 0});
  comm.allreduce(any, ReduceOp::Max);
  if (differs < mine.size())
    throw Error(detail::str("sync_masks: rank ", comm.rank(), (mine[differs] ? " has" : " has no"), " mask on '",
                            pruner.name(differs), "' but rank ", root, (theirs[differs] ? " has one" : " has none"),
                            " (every rank must mask the same targets before syncing)"));
  WEFT_CHECK(any.item<int64_t>() == 0, "sync_masks: another rank masked different targets than rank ", root,
             " (every rank must mask the same targets before syncing)");
  for (size_t i = 0; i < pruner.size(); ++i) {
    if (!mine[i]) continue;
    Tensor mask = pruner.mask(i);  // the mask buffer itself: broadcast writes into it
    comm.broadcast(mask, root);
    comm.broadcast(pruner.weight(i).detach(), root);
  }
}

}  // namespace weft::parallel
