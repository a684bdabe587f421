// Pruning under data parallelism: every rank must hold the same sparse model.
//
// prune/ knows nothing of communicators (it sits below parallel/), so the one step that
// needs one lives here.
#pragma once

#include "../prune/pruner.h"
#include "comm/communicator.h"

namespace weft::parallel {

// Broadcasts every mask of `pruner`, and the parameter it masks, from `root`, so that
// all ranks hold the same sparse model. Call it on every rank right after each pruning
// step: random pruning with different seeds, or magnitude ties on replicas whose weights
// drifted apart by rounding, would otherwise prune different weights on each rank. The
// parameters go too because a rank that applied its own mask first has already zeroed
// weights that root keeps. Ranks must have masked the same targets; one that has not
// gets an error naming the first target that differs (not a silent mix-up of masks).
void sync_masks(prune::Pruner& pruner, Communicator& comm, int root = 0);

}  // namespace weft::parallel
