#include "replicate.h"

#include "../autograd/tape.h"
#include "../tensor/generator.h"
#include "../tensor/raw.h"

namespace weft::nn {

std::shared_ptr<Module> replicate(const Module& source, const ModuleFactory& make, Device device) {
  WEFT_CHECK(make != nullptr, "replicate: the module factory is empty");
  std::shared_ptr<Module> copy = make();
  WEFT_CHECK(copy != nullptr, "replicate: the module factory returned null");
  copy->to(device);
  // load_state_dict is strict: it names every missing, unexpected or misshapen tensor, so
  // a factory that builds a different architecture fails here, not at the first step.
  try {
    copy->load_state_dict(source.state_dict());
  } catch (const Error& e) {
    throw Error(detail::str("replicate: the factory builds a module that differs from the source: ", e.what()));
  }
  copy->train(source.is_training());
  return copy;
}

std::shared_ptr<Module> Module::make_fresh() const {
  throw Error(detail::str("clone: ", repr(), " cannot build a fresh copy of itself: override make_fresh() in its ",
                          "class (return std::make_shared<YourModule>(its constructor's arguments)), or copy it with ",
                          "nn::replicate and a factory"));
}

std::shared_ptr<Module> Module::clone(Device device) const {
  // Building the copy initialises its parameters from default_generator(); put the
  // generator back, so that cloning does not change the random numbers drawn after it.
  Generator& gen = default_generator();
  const uint64_t offset = gen.offset();
  std::shared_ptr<Module> copy;
  try {
    copy = replicate(*this, [this] { return make_fresh(); }, device);
  } catch (...) {
    gen.set_offset(offset);
    throw;
  }
  gen.set_offset(offset);
  return copy;
}

void copy_state(const Module& src, Module& dst) {
  const NamedTensors from = src.state_dict();
  const NamedTensors to = dst.state_dict();
  WEFT_CHECK(from.size() == to.size(), "copy_state: the source has ", from.size(), " tensors, the destination ",
             to.size());
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < from.size(); ++i) {
    const auto& [name, s] = from[i];
    WEFT_CHECK(name == to[i].first && s.shape() == to[i].second.shape(), "copy_state: source tensor ", name, " ",
               s.shape(), " does not match destination tensor ", to[i].first, " ", to[i].second.shape());
    Tensor d = to[i].second;
    // raw::copy_ refuses to mix devices (as every op does): move first, then copy.
    raw::copy_(d, s.device() == d.device() ? s : raw::to_device(s, d.device()));
  }
}

}  // namespace weft::nn
