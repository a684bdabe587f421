#include "sequential.h"

#include <sstream>

namespace weft::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> layers) {
  for (const auto& l : layers) push_back(l);
}

void Sequential::push_back(std::shared_ptr<Module> layer) {
  add_child(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& l : layers_) h = l->forward(h);
  return h;
}

std::string Sequential::repr() const {
  std::ostringstream os;
  os << "Sequential(\n";
  for (size_t i = 0; i < layers_.size(); ++i) os << "  (" << i << "): " << layers_[i]->repr() << "\n";
  os << ")";
  return os.str();
}

}  // namespace weft::nn
