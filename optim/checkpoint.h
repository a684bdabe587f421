// Training checkpoints: a model's state dict and an optimizer's state in one
// safetensors file, with metadata (epoch, step, anything else) in its header.
//
// Keys are "model.<name>" and "optim.<name>", so the model part is readable by any
// safetensors tool; "extra.<name>" holds whatever else a trainer needs to go on exactly
// where it stopped (DDP's comm-hook residuals, parallel/ddp.h), which a loader that does
// not ask for it skips. The write is atomic (a temporary file renamed over the target), so a
// crash mid-save leaves the previous checkpoint intact.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include "../nn/module.h"
#include "optimizer.h"

namespace weft::optim {

using Metadata = std::map<std::string, std::string>;

// `optimizer` may be null to save the model alone.
void save_checkpoint(const std::string& path, const nn::Module& model, const Optimizer* optimizer,
                     const Metadata& metadata = {}, const nn::NamedTensors& extra = {});

// Loads into `model` (strictly: missing, unexpected and wrong-shape keys are errors that
// name the file) and, when given, `optimizer` (as strictly: Optimizer::load_state_dict);
// returns the metadata. The extra tensors go to `extra` when it is given (with their
// names as saved), and are skipped otherwise. The metadata says which kind of optimizer saved the state
// ("optimizer": sgd, adam, adamw); loading it into another kind is an error that names
// both. (Checkpoints from before it was recorded are checked by their keys alone, which
// cannot tell adam from adamw.)
Metadata load_checkpoint(const std::string& path, nn::Module& model, Optimizer* optimizer,
                         nn::NamedTensors* extra = nullptr);

// The fields of a checkpoint's metadata, read back: each error names the file, the field
// and its value ("run.safetensors: metadata field 'epoch' is 'abc', not a whole number").
// A whole number in [lo, hi]:
int64_t metadata_int(const std::string& path, const Metadata& meta, const std::string& field, int64_t lo = 0,
                     int64_t hi = std::numeric_limits<int64_t>::max());
// A whole number >= 0 of 64 bits (a generator offset):
uint64_t metadata_uint(const std::string& path, const Metadata& meta, const std::string& field);
// A finite number:
double metadata_double(const std::string& path, const Metadata& meta, const std::string& field);

}  // namespace weft::optim
