// SGD with momentum, dampening, Nesterov and (L2) weight decay, as PyTorch defines it:
//   g = grad + wd * p
//   buf = momentum * buf + (1 - dampening) * g     (buf = g on the first step)
//   g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
#pragma once

#include "optimizer.h"

namespace weft::optim {

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& opt);
  // Parameter groups (optimizer.h): each may set its own lr and weight_decay.
  SGD(std::vector<ParamGroup> groups, const SGDOptions& opt);
  const SGDOptions options;

  std::string kind() const override { return "sgd"; }
  // momentum_buffer with momentum; nothing without.
  std::vector<std::string> state_names() const override;

 protected:
  void update(const std::vector<size_t>& idx, int64_t t) override;

 private:
  void step_group(const std::vector<size_t>& idx, bool first);
};

}  // namespace weft::optim
