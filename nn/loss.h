// Losses. All return the mean over the batch as a 0-d tensor.
#pragma once

#include "../tensor/tensor.h"

namespace weft::nn {

// logits (N, C), target (N) int64 -> mean of -log softmax(logits)[target], computed in one
// fused pass (log-softmax and NLL together, numerically stable). With label smoothing e
// the target is (1-e) one-hot + e/C uniform.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);
// log_probs (N, C), target (N) int64 -> mean of -log_probs[target]
Tensor nll_loss(const Tensor& log_probs, const Tensor& target);
// mean of (input - target)^2 over every element
Tensor mse_loss(const Tensor& input, const Tensor& target);

}  // namespace weft::nn
