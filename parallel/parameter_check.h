// verify_same_parameters: do all ranks hold the same model?
//
// Data parallelism all-reduces gradients position by position in a flat buffer. If one
// rank built a different model -- a layer of 128 units where the others have 256, a
// layer missing, two layers registered in another order -- the buffers no longer line
// up, and the result is either a size-mismatch error deep inside a collective or, worse,
// silently mixed-up gradients. So DistributedDataParallel checks at construction:
//
//   1. every rank hashes its parameter list (names, shapes, order) and the ranks
//      allgather (count, hash): one small collective, the common case ends here;
//   2. only if some hash differs, every rank allgathers its full description and each
//      rank compares every other rank's list with rank 0's, so the error says exactly
//      what differs:
//        "rank 1 has parameter fc2.weight of shape [10,128], rank 0 has [10,256]"
//        "rank 2 has no parameter fc3.bias (rank 0 has [10])"
//
// Every rank reaches the same verdict from the same gathered data, so all of them
// throw the same error together: none is left waiting in a later collective.
#pragma once

#include "../nn/module.h"
#include "comm/communicator.h"

namespace weft::parallel {

// Collective: every rank of `comm` must call it. Returns when all ranks' parameters
// have the same names, shapes and order; otherwise throws weft::Error listing, for each
// rank that differs from rank 0, how it differs.
void verify_same_parameters(const nn::Module& module, Communicator& comm);

}  // namespace weft::parallel
