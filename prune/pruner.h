// Pruner: masks that hold. The machinery every pruning method and schedule stands on.
//
// A pruned parameter W (say "1.weight", shape (out, in)) gets a mask M of the same shape,
// float 0/1, registered as a buffer of the layer that owns W ("1.weight_mask"), so it
// moves with .to(), is saved in checkpoints and is loaded strictly (a checkpoint with
// masks cannot be loaded into an unpruned model, nor the other way round).
//
// WHERE THE MASK IS APPLIED. weft keeps the pruned weights zeroed *in place* (W *= M)
// rather than computing W*M in every forward. Forward then needs no extra op, the zeros
// are really in the weight (a checkpoint, SparseLinear or a structured removal sees them
// directly), and the layer code knows nothing of pruning. Three things keep W = W*M true:
//   1. set_mask zeroes W once;
//   2. a gradient-ready hook (autograd/tape.h) multiplies W.grad by M the moment it is
//      final inside backward. dL/dW at a zero weight is generally NOT zero -- the weight
//      is zero, its gradient is not -- so without this an optimizer would move it;
//   3. a post-step hook on every attached optimizer re-applies W *= M and zeroes the
//      optimizer's state (SGD momentum, Adam's moments) where M is 0.
// Why 3 is needed although 2 zeroes the gradient: state built up *before* pruning still
// pushes. SGD with momentum 0.9 keeps moving a just-pruned weight by lr*0.9^k*buf for
// many steps, and Adam's exp_avg does the same; weight decay alone cannot revive a zero
// (it scales it), but decay plus a non-zero moment can. Zeroing the state where M = 0
// removes the push; re-applying the mask makes the invariant hold whatever an optimizer
// does. (docs/pruning.md walks through the momentum example with numbers.)
//
// Dense gradients for RigL: growing connections needs |dL/dW| at pruned positions, which
// step 2 throws away. capture_dense_grads(true) makes the hook copy the gradient before
// masking it; dense_grad(i) hands it out.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../nn/module.h"
#include "../optim/optimizer.h"

namespace weft::prune {

class Pruner {
 public:
  // Prunable targets: by default every parameter named "weight" with 2 or more dims
  // (Linear, Conv2d), in registration order; or exactly the dotted names given. The
  // model must outlive the pruner.
  explicit Pruner(nn::Module& model, std::vector<std::string> targets = {});

  // ---- the targets ---------------------------------------------------------------------
  size_t size() const { return targets_.size(); }
  nn::Module& model() const { return model_; }
  const std::string& name(size_t i) const { return targets_.at(i); }
  Tensor weight(size_t i) const;  // the parameter itself (a handle)
  // Target i's mask, or all ones (a fresh tensor) when it has none yet.
  Tensor mask(size_t i) const;
  bool is_masked(const std::string& param_name) const;

  // ---- installing masks ------------------------------------------------------------------
  // Installs `mask` (0/1, the parameter's shape) on any parameter of the model, by dotted
  // name: targets, and also biases (structured pruning masks a channel's bias too). The
  // first call registers the buffer and the gradient hook; later calls replace the values.
  // Zeroes the weight where mask is 0.
  void set_mask(const std::string& param_name, const Tensor& mask);
  void set_mask(size_t target, const Tensor& m) { set_mask(name(target), m); }

  // After every step of `opt`, re-applies the masks and zeroes opt's state where pruned.
  // The hook owns what it needs, so either of the two may be destroyed first. (State of
  // a weight pruned between two steps is zeroed right after the next step, which is the
  // first step that could have used it.)
  void attach(optim::Optimizer& opt);
  // What that hook runs: W *= M for every mask, and the same for opt's state if given.
  void apply(optim::Optimizer* opt = nullptr);

  // ---- RigL's dense gradients --------------------------------------------------------------
  void capture_dense_grads(bool on);
  // The gradient of target i before masking, from the last backward while capturing.
  Tensor dense_grad(size_t i) const;

  // ---- the end -----------------------------------------------------------------------------
  // Folds the masks into the weights for good: removes the buffers and the hooks. The
  // weights keep their zeros; they are ordinary dense parameters again.
  void make_permanent();

  // ---- measuring ---------------------------------------------------------------------------
  // Elements, and active ones, over all targets. Active: mask 1 where a mask is
  // installed (a connection RigL just grew counts although its weight starts at 0),
  // else a non-zero weight.
  int64_t numel() const;
  int64_t nonzeros() const;
  int64_t nonzeros(size_t i) const;
  double sparsity() const { return numel() ? 1.0 - double(nonzeros()) / double(numel()) : 0.0; }
  // A table: name, shape, active entries, total, sparsity per target, then the total.
  std::string sparsity_report() const;

 private:
  // What the gradient hook needs, shared with it. It holds no handle to the parameter:
  // the parameter owns the hook, and a hook owning the parameter would be a cycle.
  struct GradSlot {
    Tensor mask;  // the buffer itself: set_mask writes into it, never replaces it
    Tensor dense_grad;
    bool capture = false;
  };
  struct Masked {
    std::string name;    // "1.weight"
    nn::Module* owner;   // the layer that holds it
    std::string buffer;  // "weight_mask"
    Tensor param;
    std::shared_ptr<GradSlot> slot;
    int hook = -1;
  };
  // Shared with the optimizers' post-step hooks, which must not dangle if the Pruner
  // goes first.
  struct State {
    std::vector<std::unique_ptr<Masked>> masked;
    bool capture = false;
  };

  Masked* find(const std::string& param_name) const;
  Masked& install(const std::string& param_name);
  static void apply_all(const State& s, optim::Optimizer* opt);

  nn::Module& model_;
  std::vector<std::string> targets_;
  std::shared_ptr<State> state_;
};

// Splits "features.0.weight" into {"features.0", "weight"}.
std::pair<std::string, std::string> split_param_name(const std::string& dotted);

}  // namespace weft::prune
