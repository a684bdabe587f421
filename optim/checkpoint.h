// Training checkpoints: a model's state dict and an optimizer's state in one
// safetensors file, with metadata (epoch, step, anything else) in its header.
//
// Keys are "model.<name>" and "optim.<name>", so the model part is readable by any
// safetensors tool. The write is atomic (a temporary file renamed over the target), so a
// crash mid-save leaves the previous checkpoint intact.
#pragma once

#include <map>
#include <string>

#include "../nn/module.h"
#include "optimizer.h"

namespace weft::optim {

using Metadata = std::map<std::string, std::string>;

// `optimizer` may be null to save the model alone.
void save_checkpoint(const std::string& path, const nn::Module& model, const Optimizer* optimizer,
                     const Metadata& metadata = {});

// Loads into `model` (strictly: missing, unexpected and wrong-shape keys are errors that
// name the file) and, when given, `optimizer`; returns the metadata.
Metadata load_checkpoint(const std::string& path, nn::Module& model, Optimizer* optimizer);

}  // namespace weft::optim
