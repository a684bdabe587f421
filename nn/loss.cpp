#include "loss.h"

#include "../autograd/functions.h"
#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::nn {

// The backward is (softmax - q) / N, from the probabilities the forward kept.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double eps) {
  auto [loss, probs] = raw::cross_entropy(logits, target, eps);
  if (!autograd::needs_recording(logits)) return loss;
  return autograd::record("cross_entropy", loss, {logits}, {probs, target},
                          [eps](const autograd::BackwardArgs& g) -> std::vector<Tensor> {
                            return {raw::cross_entropy_backward(g.grad, g.saved[0], g.saved[1], eps)};
                          });
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target) {
  WEFT_CHECK(log_probs.dim() == 2, "nll_loss: log_probs must be (N, C), got ", log_probs.shape());
  WEFT_CHECK(target.dtype() == kInt64 && target.dim() == 1 && target.shape()[0] == log_probs.shape()[0],
             "nll_loss: targets ", target.shape(), " (", target.dtype(), ") must be int64 (", log_probs.shape()[0], ")");
  return -log_probs.gather(1, target.unsqueeze(1)).mean();
}

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  WEFT_CHECK(input.shape() == target.shape(), "mse_loss: input ", input.shape(), " and target ", target.shape(),
             " differ");
  return (input - target).pow(2.0).mean();
}

}  // namespace weft::nn
