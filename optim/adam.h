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
  // Parameter groups (optimizer.h): each may set its own lr and weight_decay.
  Adam(std::vector<ParamGroup> groups, const AdamOptions& opt, bool decoupled_weight_decay = false);
  const AdamOptions options;
  const bool decoupled;

  std::string kind() const override { return decoupled ? "adamw" : "adam"; }
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }

 protected:
  void update(const std::vector<size_t>& idx, int64_t t) override;

 private:
  // The step count on the GPU, one per (device, parameter group) since each of those is
  // one update that increments its own, and the host's idea of what each holds.
  struct DeviceStep {
    Device device;
    size_t group = 0;
    Tensor count;
    int64_t value = -1;
  };
  const Tensor& step_on(Device dev, size_t group, int64_t t);
  std::vector<DeviceStep> step_device_;
};

// AdamW: Adam with decoupled weight decay (PyTorch's default weight_decay is 0.01).
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, const AdamOptions& opt) : Adam(std::move(params), opt, true) {}
  AdamW(std::vector<ParamGroup> groups, const AdamOptions& opt) : Adam(std::move(groups), opt, true) {}
};

}  // namespace weft::optim
