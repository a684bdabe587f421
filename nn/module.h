// Module: a layer or a model, holding named parameters, buffers and child modules.
//
// The names form a tree -- "features.0.weight" -- exactly as in PyTorch, so state dicts
// and checkpoints line up key for key with the PyTorch twin of a model:
//
//   struct Net : nn::Module {
//     std::shared_ptr<nn::Linear> fc1, fc2;
//     Net() {
//       fc1 = register_module("fc1", std::make_shared<nn::Linear>(784, 128));
//       fc2 = register_module("fc2", std::make_shared<nn::Linear>(128, 10));
//     }
//     Tensor forward(const Tensor& x) override { return (*fc2)((*fc1)(x).relu()); }
//   };
//
// SEVERAL TENSORS IN AND OUT. A module whose forward takes or returns several tensors
// overrides forward_many instead, and is called with a list:
//
//   struct Block : nn::Module {           // (x (B, T, E), mask (B, 1, T, T)) -> (y, mask)
//     Tensors forward_many(const Tensors& in) override {
//       expect_inputs(in, 2, "(x, mask)");
//       return {in[0] + attn->attend(in[0], in[0], in[0], in[1]), in[1]};
//     }
//   };
//   struct Model : nn::Module {           // x -> (logits, aux_loss)
//     Tensors forward_many(const Tensors& in) override { ...; return {logits, aux}; }
//   };
//   Tensors ya = block({x, mask});        // the Tensors overload: two tensors in
//   Tensor y = linear(x);                 // the Tensor overload
//
// The two meet in the defaults: forward_many of one tensor calls forward, and forward
// calls forward_many and wants exactly one tensor back; so a one-tensor layer works
// inside a container that passes lists (nn::Sequential), and a list-taking module can
// still be called as m(x) when it maps one tensor to one. Overriding neither is an
// error naming the module (not an endless recursion). Beware a braced list of ONE
// tensor: m({x}) calls the Tensor overload (a braced single element initialises a
// Tensor before a vector); write m(Tensors{x}) for the list.
//
// Why a name of its own rather than a second `forward` overload: in C++ a derived class
// that overrides one overload of a name hides the others (name hiding), so every layer
// overriding forward(const Tensor&) would lose forward(const Tensors&) from its
// interface, and calls on it would quietly pick the wrong one or fail to compile.
//
// Parameters are leaf tensors with requires_grad; buffers (BatchNorm's running stats,
// pruning masks) are saved and moved with the module but never trained.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../tensor/tensor.h"

namespace weft::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// Several tensors passed to or returned by a module at once: (x, mask), (logits, aux).
using Tensors = std::vector<Tensor>;

// A module given, or returning, a number of tensors it does not take. A weft::Error;
// containers catch it to add which of their children it was.
class TensorCountError : public Error {
 public:
  using Error::Error;
};

// A trainable tensor: a detached leaf with requires_grad on.
inline Tensor Parameter(const Tensor& data) { return data.detach().requires_grad_(true); }

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Layers hand out references to their registered tensors: copying would dangle them.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Most layers map one tensor to one and override this. The default calls
  // forward_many({x}) and requires exactly one tensor back.
  virtual Tensor forward(const Tensor& x);
  // Modules taking or returning several tensors override this (see above). The default
  // takes exactly one tensor and returns {forward(inputs[0])}.
  virtual Tensors forward_many(const Tensors& inputs);
  Tensor operator()(const Tensor& x) { return forward(x); }
  Tensors operator()(const Tensors& inputs) { return forward_many(inputs); }

  // "Linear(in_features=784, out_features=512, bias=true)"; containers print their tree.
  // By default the class name and, indented, each child's repr: a module of your own
  // prints as "ResNet(\n  (conv1): Conv2d(...)\n ...)" like PyTorch's.
  virtual std::string repr() const;
  // The class's own name, without namespaces: "ResNet", "Linear".
  std::string type_name() const;

  // ---- the tree ----------------------------------------------------------------------
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  int64_t num_parameters() const;  // total element count

  // ---- modes and devices -------------------------------------------------------------
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Clears every parameter's .grad (set_to_none) or zeroes it in place.
  void zero_grad(bool set_to_none = true);
  // Moves parameters and buffers to `device` in place: a Tensor handle held elsewhere
  // (an optimizer's) sees the move. Call it before building the optimizer all the same.
  void to(Device device);
  // Converts floating-point parameters and buffers (and their .grad) to `dtype` in place,
  // the same way: module.to(kFloat64) lets a whole model be gradchecked in double.
  // Integer buffers (BatchNorm's num_batches_tracked) keep their dtype, as in PyTorch.
  void to(DType dtype);

  // ---- copies ------------------------------------------------------------------------
  // A new module of the same architecture on `device`, holding this one's parameter and
  // buffer values, in the same training mode: what DataParallel makes its replicas with.
  // The built-in layers and Sequential know how to build a fresh copy of themselves
  // (make_fresh); a module of your own overrides make_fresh -- usually one line,
  // `return std::make_shared<MyNet>(same arguments);` -- or is copied with a factory
  // (nn::replicate). Building the copy does not advance default_generator().
  std::shared_ptr<Module> clone(Device device) const;
  // A freshly built module of the same architecture (clone() copies the values in). The
  // default throws, naming repr(): C++ cannot copy an arbitrary subclass by itself.
  virtual std::shared_ptr<Module> make_fresh() const;

  // ---- state -------------------------------------------------------------------------
  // Parameters then buffers, in registration order, keyed by their dotted names.
  NamedTensors state_dict() const;
  // Copies values in. Strict: missing keys, unexpected keys and wrong shapes are each
  // listed by name in the error, and nothing is modified when any is found.
  void load_state_dict(const NamedTensors& state, bool strict = true);

  // ---- buffers added from outside the layer ------------------------------------------
  // Pruning hangs a mask ("weight_mask") on any layer without the layer knowing. A
  // removed buffer leaves an empty slot (skipped everywhere) rather than being erased:
  // layers hold references into the buffer list, and erasing would dangle them.
  // add_buffer refills an empty slot of the same name.
  Tensor& add_buffer(const std::string& name, const Tensor& t);
  void remove_buffer(const std::string& name);
  bool has_buffer(const std::string& name) const;
  // The child at a dotted path ("features.0"); the empty path is this module. Throws
  // naming the path when there is none.
  Module& submodule(const std::string& path);

 protected:
  Tensor& register_parameter(const std::string& name, const Tensor& t);
  Tensor& register_buffer(const std::string& name, const Tensor& t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  // Called by train(); layers with train/eval behaviour need nothing more.
  virtual void on_train(bool) {}
  // For a forward_many: throws TensorCountError naming this module, the count and, when
  // given, what it takes ("(x, mask)") unless there are exactly n inputs.
  void expect_inputs(const Tensors& inputs, size_t n, const std::string& what = "") const;

 private:
  void collect(const std::string& prefix, bool recurse, bool buffers, NamedTensors& out) const;

  // deques: register_* returns references that must survive later registrations.
  std::deque<std::pair<std::string, Tensor>> params_;
  std::deque<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A table of every leaf module and every module that holds parameters of its own
// (dotted name, type, its own parameter count), then the total and its bytes: what a
// model is made of, at a glance.
std::string summary(const Module& model);

// Prints repr().
std::ostream& operator<<(std::ostream& os, const Module& m);

// While a RecomputeGuard is alive on a thread, the forward passes run on that thread
// repeat ones that already ran (activation recomputation: a pipeline stage re-running a
// microbatch's forward before its backward). Side effects must not happen twice:
// BatchNorm does not update its running statistics again.
class RecomputeGuard {
 public:
  RecomputeGuard();
  ~RecomputeGuard();
  RecomputeGuard(const RecomputeGuard&) = delete;
  RecomputeGuard& operator=(const RecomputeGuard&) = delete;

 private:
  bool previous_;
};
bool is_recomputing();

}  // namespace weft::nn
