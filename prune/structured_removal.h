// Structured removal: turning pruned channels into a smaller dense model.
//
// Masks make a model sparse but not smaller: a Linear with half its rows zero still does
// the full GEMM. After structured pruning (methods.h: structured) whole output rows of a
// Linear, or whole output channels of a Conv2d, are zero *with their bias*, so those
// features are exactly 0 for every input. They can be cut out:
//
//   Linear k (out_k, in) -> ReLU -> Linear k+1 (out, out_k)
//       drop row j of layer k and column j of layer k+1.
//   Conv k (K, C, kh, kw) -> ReLU -> MaxPool -> Conv k+1 (K2, K, kh, kw)
//       drop output channel j of conv k and input channel j of conv k+1.
//   Conv k (K, ...) -> ReLU -> MaxPool -> Flatten -> Linear (out, K*H*W)
//       drop channel j and the H*W flattened columns [j*H*W, (j+1)*H*W) it feeds.
//
// Why the outputs do not change: a dead feature is 0 after its layer, stays 0 through
// what sits between (ReLU, max/avg pooling, flatten, dropout and tanh all map 0 to 0),
// and then multiplies a column of the next layer -- contributing nothing. Removing the
// column removes exactly that nothing. Layers between two weight layers that do not map
// 0 to 0 (sigmoid, batch norm) block the removal: that layer's channels are all kept.
//
// A channel counts as dead when its weight row and bias are all zero, read from the
// weights themselves (call Pruner::make_permanent first, or not: the masks have already
// zeroed them). The last weight layer keeps all its outputs: they are the model's.
#pragma once

#include <memory>
#include <vector>

#include "../nn/sequential.h"

namespace weft::prune {

// A new, smaller Sequential computing the same function as `model`. Weight layers are
// fresh copies with the dead rows/channels cut out; the other layers are shared.
std::shared_ptr<nn::Sequential> remove_pruned_channels(const nn::Sequential& model);

// For each weight layer (Linear, Conv2d) of `model`, in order, its output features that
// are not dead (the rows remove_pruned_channels keeps).
std::vector<std::vector<int64_t>> live_channels(const nn::Sequential& model);

}  // namespace weft::prune
