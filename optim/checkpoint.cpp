#include "checkpoint.h"

#include "../nn/safetensors.h"

namespace weft::optim {

namespace {
constexpr const char* kModel = "model.";
constexpr const char* kOptim = "optim.";

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

void save_checkpoint(const std::string& path, const nn::Module& model, const Optimizer* optimizer,
                     const Metadata& metadata) {
  nn::NamedTensors all;
  for (auto& [name, t] : model.state_dict()) all.emplace_back(kModel + name, t);
  if (optimizer)
    for (auto& [name, t] : optimizer->state_dict()) all.emplace_back(kOptim + name, t);
  Metadata meta = metadata;
  meta["format"] = "weft-checkpoint-1";
  nn::save_safetensors(path, all, meta);
}

Metadata load_checkpoint(const std::string& path, nn::Module& model, Optimizer* optimizer) {
  nn::SafeTensors file = nn::load_safetensors(path);
  nn::NamedTensors model_state, optim_state;
  for (auto& [name, t] : file.tensors) {
    if (starts_with(name, kModel)) model_state.emplace_back(name.substr(6), t);
    else if (starts_with(name, kOptim)) optim_state.emplace_back(name.substr(6), t);
    else throw Error(detail::str(path, ": tensor '", name, "' is neither model.* nor optim.*; not a weft checkpoint"));
  }
  try {
    model.load_state_dict(model_state);
    if (optimizer) {
      WEFT_CHECK(!optim_state.empty(), "the checkpoint holds no optimizer state");
      optimizer->load_state_dict(optim_state);
    }
  } catch (const Error& e) {
    throw Error(detail::str(path, ": ", e.what()));
  }
  return file.metadata;
}

}  // namespace weft::optim
