// prune/: removing weights from a model, and making that pay off.
//
//   pruner.h              masks as buffers, held through backward and every optimizer step
//   methods.h             magnitude (per layer, global), structured, N:M, random
//   schedules.h           gradual (Zhu & Gupta), lottery ticket (iterative, rewinding)
//   dynamic_sparse.h      RigL and SET: fixed sparsity, moving connections
//   sparse_linear.h       CSR inference layer: speed from unstructured sparsity
//   structured_removal.h  a smaller dense model from pruned channels
//
// Everything lives in namespace weft::prune. docs/pruning.md teaches the ideas.
#pragma once

#include "dynamic_sparse.h"
#include "methods.h"
#include "pruner.h"
#include "schedules.h"
#include "sparse_linear.h"
#include "structured_removal.h"
