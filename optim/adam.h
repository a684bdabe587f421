// Adam and AdamW.
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// Adam folds weight decay into the gradient (g += wd p, L2 regularisation); AdamW
// decays the weight directly (p *= 1 - lr wd), which is what makes it work well with
// adaptive steps (Loshchilov & Hutter, "Decoupled Weight Decay Regularization").
#pragma once

#include "optimizer.h"

namespace weft::optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& opt, bool decoupled_weight_decay = false);
  const AdamOptions options;
  const bool decoupled;

  std::string kind() const override { return decoupled ? "adamw" : "adam"; }
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }

 protected:
  void update(const std::vector<size_t>& idx, int64_t t) override;

 private:
  // The step count on the GPU, incremented there by every (possibly replayed) update,
  // and the host's idea of what it holds.
  const Tensor& step_on(Device dev, int64_t t);
  Tensor step_device_;
  int64_t step_device_value_ = -1;
};

// AdamW: Adam with decoupled weight decay (PyTorch's default weight_decay is 0.01).
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, const AdamOptions& opt) : Adam(std::move(params), opt, true) {}
};

}  // namespace weft::optim
