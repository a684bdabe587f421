// The safetensors file format: named tensors plus string metadata, with no code in it.
//
// A file is three parts (https://github.com/huggingface/safetensors):
//
//   [8 bytes]  N, the header length, a little-endian uint64
//   [N bytes]  a JSON object, padded with spaces to a multiple of 8 bytes:
//                {"__metadata__": {"epoch": "3"},
//                 "fc1.weight": {"dtype": "F32", "shape": [512, 784], "data_offsets": [0, 1605632]},
//                 ...}
//   [rest]     the data section: each tensor's elements, row-major and little-endian, at
//              [begin, end) of data_offsets (relative to the start of the data section)
//
// This is the format layer only: it maps names to tensors and nothing more. Module and
// optimizer state dicts are built on top of it (and check shapes against the model there).
//
// Loading never trusts the file: a truncated file, a header whose offsets or sizes lie, a
// dtype weft does not know, or a data section with gaps or overlaps each throw weft::Error
// naming the file and the tensor, and never read out of bounds. The checks follow the
// reference implementation's (the data section must be covered exactly, in offset order).
//
// DTYPES. F32, F64, BF16, F16, I64 and BOOL load as the tensors of those dtypes (bfloat16
// and float16 bit for bit) and are what saves write. I32 loads converted to int64 (token
// ids are often I32; weft has no int32 tensor), and saves back as I64. A BF16 checkpoint
// loads into a float32 model exactly: load_state_dict converts as it copies.
//
//   weft::nn::save_safetensors("ckpt.safetensors", {{"w", w}, {"b", b}}, {{"epoch", "3"}});
//   auto st = weft::nn::load_safetensors("ckpt.safetensors");
//   const weft::Tensor* w2 = st.find("w");
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../tensor/tensor.h"

namespace weft::nn {

struct SafeTensors {
  // In file order: the order of their bytes in the data section.
  std::vector<std::pair<std::string, Tensor>> tensors;
  // The header's "__metadata__" (string to string): epoch, step, format version, ...
  std::map<std::string, std::string> metadata;

  // The tensor called `name`, or nullptr.
  const Tensor* find(const std::string& name) const;
};

// Writes `tensors` (float32, float64, int64 or bool; any strides and device) and
// `metadata` to `path`, atomically: the bytes go to a temporary file beside `path`, which
// is flushed to disk and then renamed over `path`. A reader therefore sees the old file
// or the new one, never half of one. On failure the temporary file is removed and
// weft::Error names `path`. Names must be unique and not "__metadata__". Temporary files
// left by earlier saves to `path` that were killed are removed first (check_can_save).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Throws weft::Error naming `path` when save_safetensors could not write there (its
// directory is missing or not writable, or `path` is a directory), by creating and
// removing the temporary file a save would: a program that saves after hours of work
// calls it at start. Like a save, it removes the stale temporary files of killed saves
// to `path` ("<path>.tmp.<pid>.<n>" of a process that is gone).
void check_can_save(const std::string& path);

// Reads a safetensors file into fresh contiguous tensors on the CPU.
SafeTensors load_safetensors(const std::string& path);

// Parses a whole safetensors file held in memory; errors start with `name_for_errors`.
// load_safetensors shares its checks; the fuzzer (fuzz/safetensors_fuzz.cpp) calls this.
SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& name_for_errors);

}  // namespace weft::nn
