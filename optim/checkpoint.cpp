#include "checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "../nn/safetensors.h"

namespace weft::optim {

namespace {
constexpr const char* kModel = "model.";
constexpr const char* kOptim = "optim.";
constexpr const char* kExtra = "extra.";
constexpr const char* kFormat = "weft-checkpoint-1";

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// The field's text; an error naming the file when it is absent.
const std::string& field_text(const std::string& path, const Metadata& meta, const std::string& field) {
  auto it = meta.find(field);
  WEFT_CHECK(it != meta.end(), path, ": the checkpoint's metadata has no '", field, "' field");
  return it->second;
}

// Parses all of `text` as a T (from_chars: no sign but '-', no spaces, no trailing junk).
template <class T>
bool parse_all(const std::string& text, T& out) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

// Refuses what load_checkpoint cannot trust before anything is loaded: another format,
// or an optimizer state saved by another kind of optimizer.
void check_metadata(const std::string& path, const Metadata& meta, const Optimizer* optimizer) {
  auto format = meta.find("format");
  WEFT_CHECK(format == meta.end() || format->second == kFormat, path, ": metadata field 'format' is '",
             format->second, "', expected '", kFormat, "'");
  auto kind = meta.find("optimizer");
  WEFT_CHECK(!optimizer || kind == meta.end() || kind->second == optimizer->kind(), path,
             ": the checkpoint holds the state of an optimizer of kind '", kind->second,
             "', which cannot be loaded into one of kind '", optimizer->kind(),
             "' (resume with the optimizer it was saved with)");
}
}  // namespace

void save_checkpoint(const std::string& path, const nn::Module& model, const Optimizer* optimizer,
                     const Metadata& metadata, const nn::NamedTensors& extra) {
  nn::NamedTensors all;
  for (auto& [name, t] : model.state_dict()) all.emplace_back(kModel + name, t);
  if (optimizer)
    for (auto& [name, t] : optimizer->state_dict()) all.emplace_back(kOptim + name, t);
  for (auto& [name, t] : extra) all.emplace_back(kExtra + name, t);
  Metadata meta = metadata;
  meta["format"] = kFormat;
  if (optimizer) meta["optimizer"] = optimizer->kind();
  nn::save_safetensors(path, all, meta);
}

Metadata load_checkpoint(const std::string& path, nn::Module& model, Optimizer* optimizer,
                         nn::NamedTensors* extra) {
  nn::SafeTensors file = nn::load_safetensors(path);
  check_metadata(path, file.metadata, optimizer);
  nn::NamedTensors model_state, optim_state;
  if (extra) extra->clear();
  for (auto& [name, t] : file.tensors) {
    if (starts_with(name, kModel)) model_state.emplace_back(name.substr(std::strlen(kModel)), t);
    else if (starts_with(name, kOptim)) optim_state.emplace_back(name.substr(std::strlen(kOptim)), t);
    else if (starts_with(name, kExtra)) {
      if (extra) extra->emplace_back(name.substr(std::strlen(kExtra)), t);
    } else {
      throw Error(detail::str(path, ": tensor '", name, "' is not model.*, optim.* or extra.*; not a weft checkpoint"));
    }
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

int64_t metadata_int(const std::string& path, const Metadata& meta, const std::string& field, int64_t lo, int64_t hi) {
  const std::string& text = field_text(path, meta, field);
  int64_t v = 0;
  WEFT_CHECK(parse_all(text, v), path, ": metadata field '", field, "' is '", text, "', not a whole number");
  WEFT_CHECK(v >= lo && v <= hi, path, ": metadata field '", field, "' is ", v, ", outside [", lo, ", ", hi, "]");
  return v;
}

uint64_t metadata_uint(const std::string& path, const Metadata& meta, const std::string& field) {
  const std::string& text = field_text(path, meta, field);
  uint64_t v = 0;
  WEFT_CHECK(parse_all(text, v), path, ": metadata field '", field, "' is '", text,
             "', not a whole number >= 0 of 64 bits");
  return v;
}

double metadata_double(const std::string& path, const Metadata& meta, const std::string& field) {
  const std::string& text = field_text(path, meta, field);
  double v = 0;
  WEFT_CHECK(parse_all(text, v) && std::isfinite(v), path, ": metadata field '", field, "' is '", text,
             "', not a finite number");
  return v;
}

}  // namespace weft::optim
