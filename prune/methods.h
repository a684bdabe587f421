// Pruning methods: which weights to remove. Each computes 0/1 masks from the current
// weights and installs them through a Pruner (pruner.h), which makes them hold.
//
//   magnitude            per layer: zero the fraction `sparsity` of smallest |w| in each
//                        target (every layer ends up equally sparse)
//   global_magnitude     one threshold over all targets: the smallest |w| anywhere go
//                        first, so layers with many redundant weights (the 784x512 input
//                        layer of the MLP) end up sparser than small ones (the classifier)
//   structured           whole output rows (Linear) / output channels (Conv2d) with the
//                        smallest L1 or L2 norm, together with their bias entries, so that
//                        a pruned channel outputs exactly 0 and can be physically removed
//                        (structured_removal.h)
//   n_m                  N:M: in every group of M consecutive weights along the input
//                        dimension keep the N largest (2:4 is what sparse tensor cores run)
//   random               a uniformly random set of the active weights (the baseline every
//                        method must beat)
//   erk                  random, with per-layer sparsities from the Erdos-Renyi-Kernel rule
//                        of RigL (Evci et al. 2020): layer l keeps a fraction proportional to
//                        sum(dims) / prod(dims) of its weight (n_in + n_out over n_in n_out
//                        for a Linear), so large layers are sparser and small ones (the
//                        classifier) stay denser or dense. RigL and SET start from it.
//   Pruner::set_mask     any custom mask
//
// Masks only ever shrink: a weight already pruned scores below every active one, and
// asking for a lower sparsity than a layer has keeps its mask as it is. So repeated calls
// with a rising sparsity (gradual and iterative schedules) remove weights step by step.
// Ties go to the lower flat index, which makes every method deterministic.
#pragma once

#include "pruner.h"

namespace weft::prune {

// ---- masks from tensors (no Pruner; what the methods below are made of) ----------------
// A 0/1 float tensor shaped like `scores` with ones at the k highest scores. Entries
// scoring -infinity are never kept (k is lowered to the count of the others).
Tensor keep_top_k(const Tensor& scores, int64_t k);
// |w| where mask is 1, -infinity where it is 0: the score of magnitude pruning.
Tensor magnitude_scores(const Tensor& w, const Tensor& mask);
// w (R, ...) viewed as (R, C): each group of m consecutive entries of a row keeps its n
// largest |w|. C must be a multiple of m.
Tensor n_m_mask(const Tensor& w, int64_t n, int64_t m);
// w (R, ...): the Lp norm (p = 1 or 2) of each row -> (R).
Tensor row_norms(const Tensor& w, int p);

// ---- methods on a Pruner's targets -----------------------------------------------------------
void magnitude(Pruner& pruner, double sparsity);
void global_magnitude(Pruner& pruner, double sparsity);
// Prunes floor(sparsity * rows) rows of each target; p = 1 (L1) or 2 (L2).
void structured(Pruner& pruner, double sparsity, int p = 1);
void n_m(Pruner& pruner, int64_t n, int64_t m);
void random(Pruner& pruner, double sparsity, Generator& gen = default_generator());
// The per-layer densities (kept fractions) ERK gives weights of these shapes at an
// overall `sparsity`: eps * sum(dims) / prod(dims), each capped at 1, with eps chosen so
// that the kept weights add up to (1 - sparsity) of all of them.
std::vector<double> erk_densities(const std::vector<Shape>& shapes, double sparsity);
void erk(Pruner& pruner, double sparsity, Generator& gen = default_generator());

}  // namespace weft::prune
