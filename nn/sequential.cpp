#include "sequential.h"

#include <sstream>
#include <typeinfo>

#include "layers.h"

namespace weft::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> layers) {
  for (const auto& l : layers) push_back(l);
}

void Sequential::push_back(std::shared_ptr<Module> layer) {
  add_child(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
}

namespace {
// The MaxPool2d when layers a, b are exactly a ReLU and a MaxPool2d, else null.
const MaxPool2d* relu_then_pool(const Module& a, const Module& b) {
  if (typeid(a) != typeid(ReLU) || typeid(b) != typeid(MaxPool2d)) return nullptr;
  return static_cast<const MaxPool2d*>(&b);
}
}  // namespace

Tensor Sequential::forward(const Tensor& x) {
  Tensors out = forward_many({x});
  if (out.size() != 1)
    throw TensorCountError(detail::str("Sequential: forward(x) returns one tensor, but its last layer (", size() - 1,
                                       ", ", layers_.back()->type_name(), ") returned ", out.size(),
                                       "; call forward_many (or seq(Tensors{...})) to get them all"));
  return out[0];
}

Tensors Sequential::forward_many(const Tensors& inputs) {
  Tensors h = inputs;
  for (size_t i = 0; i < layers_.size(); ++i) {
    // CPU tensors only: on a GPU relu_max_pool2d runs the two kernels anyway, and its
    // backward would compute relu(x) a second time.
    const MaxPool2d* pool = fuse_ && h.size() == 1 && h[0].device().is_cpu() && i + 1 < layers_.size()
                                ? relu_then_pool(*layers_[i], *layers_[i + 1])
                                : nullptr;
    if (pool) {
      h = {relu_max_pool2d(h[0], pool->params)};
      ++i;  // the MaxPool2d ran too
      continue;
    }
    try {
      h = layers_[i]->forward_many(h);
    } catch (const TensorCountError& e) {  // which child, for a deep stack of blocks
      throw TensorCountError(detail::str("Sequential layer ", i, " (", layers_[i]->type_name(), "): ", e.what()));
    }
  }
  return h;
}

std::shared_ptr<Module> Sequential::make_fresh() const {
  auto fresh = std::make_shared<Sequential>();
  for (const auto& layer : layers_) fresh->push_back(layer->make_fresh());
  fresh->fuse_ = fuse_;
  return fresh;
}

std::string Sequential::repr() const {
  std::ostringstream os;
  os << "Sequential(\n";
  for (size_t i = 0; i < layers_.size(); ++i) os << "  (" << i << "): " << layers_[i]->repr() << "\n";
  os << ")";
  return os.str();
}

}  // namespace weft::nn
