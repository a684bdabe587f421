// Optimizer: updates parameters from their .grad, keeping per-parameter state.
//
// Each step is one fused raw op per device (raw::sgd_step_, raw::adam_step_: read grad,
// update state, write param in one pass, every parameter of the device in one call)
// rather than a chain of tensor ops, so an update touches memory once and a GPU step is
// one launch. The optimizers here only gather tensors and hyper-parameters; the
// arithmetic, the same on every device, is in tensor/optim_math.h. Steps run under
// no-grad. State (momentum buffers, Adam moments, the step count) is exposed as named
// tensors so a checkpoint can save it and a resumed run continues bit for bit.
//
// PARAMETER GROUPS (PyTorch's param_groups). An optimizer may take its parameters in
// groups, each with its own learning rate and weight decay; a group that sets neither
// uses the optimizer's. The usual one: no weight decay on biases and norm scales,
//
//   optim::AdamW opt(optim::decay_groups(*model, 0.1), {.lr = 3e-4});
//
// A group's learning rate keeps its ratio to the optimizer's: set_lr(x) (what every
// scheduler calls) sets each group to x * (group lr / optimizer lr at construction).
// That is what PyTorch's multiplicative schedules do per group (LambdaLR, StepLR, cosine
// to 0); a schedule with a floor (CosineWarmupLR's min_lr) scales the floor too, where
// PyTorch would give every group the same floor. The groups' settings are hyper-
// parameters, not state: a checkpoint holds the per-parameter state, indexed over all
// groups' parameters in order, and the program makes the same groups again.
//
// 16-BIT PARAMETERS (float32 master weights). A bfloat16 or float16 parameter is updated
// through a float32 copy the optimizer keeps (its "master" state): the update reads the
// gradient widened to float32, changes the master copy, and the parameter receives the
// master rounded to 16 bits. Updating the 16-bit value itself would lose every step
// smaller than half its last bit (lr * grad below 2^-9 of a bfloat16 weight vanishes).
// The state buffers (momentum, Adam moments) of such a parameter are float32 too. When
// the parameter changes outside the optimizer (loaded, pruned), the master copy starts
// again from it. A model kept in float32 under Autocast (autograd/autocast.h) needs none
// of this: its parameters are the master weights.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../nn/module.h"

namespace weft::optim {

struct ParamGroup {
  std::vector<Tensor> params;
  std::optional<double> lr;            // unset: the optimizer's
  std::optional<double> weight_decay;  // unset: the optimizer's
};

// Two groups of `model`'s parameters: those of two or more dimensions (weight matrices,
// convolution kernels, embeddings) with `weight_decay`, and the rest (biases, norm
// scales and shifts) with none -- the split GPT-2-style training uses.
std::vector<ParamGroup> decay_groups(const nn::Module& model, double weight_decay);

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, double lr);
  // Parameter groups (above); a parameter may be in one group only.
  Optimizer(std::vector<ParamGroup> groups, double lr);
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient.
  void step();
  void zero_grad(bool set_to_none = true);

  double lr() const { return lr_; }
  // Also updates the device copy of the rate that fused GPU updates (and CUDA graphs
  // replaying them) read, so a scheduler keeps working under --cuda-graph.
  void set_lr(double lr);
  int64_t steps_taken() const { return step_count_; }
  // Every group's parameters, in group order: what state indices refer to.
  const std::vector<Tensor>& params() const { return params_; }
  size_t num_groups() const { return groups_.size(); }
  // Group g's learning rate now, and its weight decay (`fallback`: the optimizer's).
  double group_lr(size_t g) const { return lr_ * groups_.at(g).lr_ratio; }
  double group_weight_decay(size_t g, double fallback) const { return groups_.at(g).weight_decay.value_or(fallback); }

  // What kind of optimizer this is ("sgd", "adam", "adamw"): checkpoints record it, so
  // that one optimizer's state is never loaded into another kind.
  virtual std::string kind() const = 0;
  // The state buffers a parameter gets once it has taken a step (SGD with momentum:
  // momentum_buffer; Adam: exp_avg and exp_avg_sq). load_state_dict checks against it.
  virtual std::vector<std::string> state_names() const = 0;

  // "step" plus "<i>.<buffer>" for each parameter i's state buffers.
  nn::NamedTensors state_dict() const;
  // Strict, like Module::load_state_dict: nothing is loaded unless "step" is a count >= 0
  // and every other key is "<i>.<name>" with i a parameter and name one of
  // state_names(), of the parameter's shape. A parameter's buffers come all or none (none:
  // it has not stepped yet), and a state that has stepped holds some. The error lists
  // every unexpected and missing key.
  void load_state_dict(const nn::NamedTensors& state);

  // The state buffers (momentum, Adam moments) of parameter `param`, as handles that
  // share storage: pruning zeroes them where a weight is pruned, so no optimizer state
  // can revive it. Empty when the parameter has no state yet or is not one of ours.
  std::vector<Tensor> state_of(const Tensor& param) const;
  // A step replayed from a CUDA graph ran the update on the GPU without calling step():
  // this counts it on the host (the GPU-side counters advanced themselves).
  void count_replayed_step() { ++step_count_; }

  // Called after each step with the parameters (pruning re-applies its masks here).
  void add_post_step_hook(std::function<void(Optimizer&)> hook) { post_step_.push_back(std::move(hook)); }

 protected:
  // Updates the parameters params()[i] for i in `idx` in place from their gradients: all
  // of them have a gradient, live on one device and belong to one group. `t` is the
  // 1-based step number.
  virtual void update(const std::vector<size_t>& idx, int64_t t) = 0;
  // The group of parameter i, its learning rate and weight decay (`fallback`: the
  // optimizer's own option).
  size_t group_of(size_t i) const { return group_of_[i]; }
  double lr_of(size_t i) const { return group_lr(group_of_[i]); }
  double weight_decay_of(size_t i, double fallback) const { return group_weight_decay(group_of_[i], fallback); }
  // Parameter i's learning rate as a 1-element float32 tensor on `device`, kept equal to
  // lr_of(i): a GPU kernel reads it there, so a replayed CUDA graph follows set_lr().
  const Tensor& lr_on(Device device, size_t i);
  // What update() reads and writes for parameter i: the parameter itself, or the float32
  // master copy of a 16-bit parameter (above).
  const Tensor& param(size_t i) const { return master_[i].value.defined() ? master_[i].value : params_[i]; }
  // Parameter i's gradient, widened to float32 for a 16-bit parameter.
  Tensor grad(size_t i) const;
  // A zero-initialised state buffer for parameter i (float32 for a 16-bit parameter),
  // created on first use.
  Tensor& state(size_t i, const std::string& name);
  bool has_state(size_t i, const std::string& name) const;

 private:
  // Throws the one error of load_state_dict that lists every bad key, if there is one.
  void check_state_keys(const std::vector<std::string>& unexpected, const std::vector<std::string>& missing,
                        const std::vector<std::string>& wrong) const;

  struct Group {
    double lr_ratio = 1;                 // group lr / optimizer lr
    std::optional<double> weight_decay;
    Tensor lr_device;                    // lr_on's tensor for this group
  };

  std::vector<Tensor> params_;
  std::vector<size_t> group_of_;  // per parameter
  std::vector<Group> groups_;
  std::vector<std::vector<std::pair<std::string, Tensor>>> state_;
  // A 16-bit parameter's float32 copy, and the parameter's storage and version when the
  // two last agreed (another storage or version: the parameter was changed outside --
  // loaded, pruned, converted by Module::to -- so start again from it).
  struct Master {
    Tensor value;
    std::weak_ptr<Storage> storage;
    uint64_t version = 0;
  };
  std::vector<Master> master_;  // per parameter; undefined for float32 and float64 ones
  void refresh_masters(const std::vector<size_t>& idx);
  void write_back_masters(const std::vector<size_t>& idx);
  std::vector<std::function<void(Optimizer&)>> post_step_;
  double lr_;
  int64_t step_count_ = 0;
};

}  // namespace weft::optim
