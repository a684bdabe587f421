// Sequential: children applied in order; they are named "0", "1", ... like PyTorch's.
//
// Children may pass several tensors along (nn/module.h, forward_many): the list each
// child returns is the next child's input, so a stack of transformer blocks mapping
// (x, mask) -> (y, mask) chains like any other layers, and a one-tensor layer (Linear)
// takes a list of exactly one. seq(x) puts one tensor in and wants one out;
// seq(Tensors{x, mask}) passes the list and returns the last child's list. A child given
// the wrong number of tensors fails with an error naming its index and type.
//
// One fusion: on the CPU, a ReLU directly followed by a MaxPool2d (the conv -> relu ->
// pool block of nearly every CNN) runs as relu_max_pool2d, one pass instead of two. The
// values and gradients are bit for bit those of the two layers (relu is applied to each
// pixel as the window reads it), but relu(x) is never written out: that saves a read and
// a write of the block's largest activation in forward, and two reads and a write in
// backward. Only the exact nn::ReLU and nn::MaxPool2d classes fuse (a subclass may do
// anything in its forward). Visible differences: an error inside names relu_max_pool2d,
// and the tape saves the ReLU's input rather than its output. set_fusion(false) turns it
// off for this Sequential (not for Sequentials nested in it), to compare or to debug.
#pragma once

#include <concepts>
#include <initializer_list>
#include <memory>
#include <utility>

#include "module.h"

namespace weft::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> layers);
  // Sequential(std::make_shared<Linear>(784, 512), std::make_shared<ReLU>(), ...): any
  // shared_ptrs to modules, without spelling out an initializer_list of base pointers.
  template <class... Ms>
    requires(sizeof...(Ms) > 0 && (std::derived_from<Ms, Module> && ...))
  explicit Sequential(std::shared_ptr<Ms>... layers) {
    (push_back(std::move(layers)), ...);
  }
  void push_back(std::shared_ptr<Module> layer);
  // Builds a layer in place and appends it; returns it, for a handle to keep:
  //   auto net = std::make_shared<nn::Sequential>();
  //   net->add<nn::Linear>(784, 512);
  //   net->add<nn::ReLU>();
  template <class M, class... Args>
    requires std::derived_from<M, Module>
  std::shared_ptr<M> add(Args&&... args) {
    auto m = std::make_shared<M>(std::forward<Args>(args)...);
    push_back(m);
    return m;
  }
  Tensor forward(const Tensor& x) override;  // forward_many({x}), which must give one tensor
  Tensors forward_many(const Tensors& inputs) override;
  std::string repr() const override;
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const { return layers_.at(i); }
  void set_fusion(bool on) { fuse_ = on; }

  std::shared_ptr<Module> make_fresh() const override;

 private:
  std::vector<std::shared_ptr<Module>> layers_;
  bool fuse_ = true;
};

}  // namespace weft::nn
