// replicate: copies of a module on other devices, for data parallelism.
//
// DataParallel needs N identical models, one per device. C++ has no reflection, and a
// Module subclass holds typed handles to its layers (`std::shared_ptr<Linear> fc1`) that
// no generic deep copy could rebind, so weft never copies an object member by member.
// It builds a fresh module of the same architecture instead -- Module::clone asks the
// module (make_fresh(): the built-in layers and Sequential know how; a module of your own
// overrides it), replicate() takes a factory, the same function that built the original
// -- checks that it has exactly the same parameter and buffer names and shapes as the
// source, moves it to the target device and copies the source's values in (through
// state_dict, the same path checkpoints use).
//
//   auto model = samples::make_cnn();
//   auto copy = model->clone(Device::cpu(1));                  // same values, on cpu:1
//   auto make = [] { return samples::make_cnn(); };
//   auto copy2 = nn::replicate(*model, make, Device::cpu(1));  // the same, by a factory
#pragma once

#include <functional>
#include <memory>

#include "module.h"

namespace weft::nn {

using ModuleFactory = std::function<std::shared_ptr<Module>()>;

// A new module from `make`, on `device`, holding the values of `source`'s parameters and
// buffers. Throws weft::Error (listing the names) when `make` builds a module whose state
// does not match `source` key for key and shape for shape.
std::shared_ptr<Module> replicate(const Module& source, const ModuleFactory& make, Device device);

// Copies every parameter and buffer value of `src` into `dst` (same names and shapes,
// possibly on another device), in place: handles held elsewhere -- an optimizer's, a
// bucket's -- keep seeing the copied values. Never recorded on the tape.
void copy_state(const Module& src, Module& dst);

}  // namespace weft::nn
