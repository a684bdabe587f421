#include "loss.h"

#include "../autograd/autocast.h"
#include "../autograd/functions.h"
#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::nn {

// The backward is (softmax - q) / N, from the probabilities the forward kept.
// cross_entropy, nll_loss and mse_loss are on autocast's float32 list.
Tensor cross_entropy(const Tensor& logits_in, const Tensor& target, double eps) {
  const Tensor logits = autocast::to_float32(logits_in);
  auto [loss, probs] = raw::cross_entropy(logits, target, eps);
  if (!autograd::needs_recording(logits)) return loss;
  return autograd::record("cross_entropy", loss, {logits}, {probs, target},
                          [eps](const autograd::BackwardArgs& g) -> std::vector<Tensor> {
                            return {raw::cross_entropy_backward(g.grad, g.saved[0], g.saved[1], eps)};
                          });
}

Tensor nll_loss(const Tensor& log_probs_in, const Tensor& target) {
  const Tensor log_probs = autocast::to_float32(log_probs_in);
  WEFT_CHECK(log_probs.dim() == 2, "nll_loss: log_probs must be (N, C), got ", log_probs.shape());
  WEFT_CHECK(target.dtype() == kInt64 && target.dim() == 1 && target.shape()[0] == log_probs.shape()[0],
             "nll_loss: targets ", target.shape(), " (", target.dtype(), ") must be int64 (", log_probs.shape()[0], ")");
  return -log_probs.gather(1, target.unsqueeze(1)).mean();
}

Tensor mse_loss(const Tensor& input_in, const Tensor& target_in) {
  const Tensor input = autocast::to_float32(input_in), target = autocast::to_float32(target_in);
  WEFT_CHECK(input.shape() == target.shape(), "mse_loss: input ", input.shape(), " and target ", target.shape(),
             " differ");
  return (input - target).pow(2.0).mean();
}

}  // namespace weft::nn
