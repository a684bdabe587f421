// The IDX file format of MNIST and Fashion-MNIST, read through zlib.
//
// An IDX file is a big-endian header followed by the raw elements in row-major order:
//
//   bytes 0-1   0x00 0x00             (the magic number's zero half)
//   byte  2     element type          (0x08 = unsigned byte: all that MNIST-like sets use)
//   byte  3     ndim                  (1 for labels, 3 for images)
//   then        ndim x uint32 sizes   (60000, 28, 28)
//   then        prod(sizes) elements  (47,040,000 bytes for the training images)
//
// The files usually come gzipped (`train-images-idx3-ubyte.gz`); zlib's gz* functions
// read gzipped and plain files alike, so either works.
//
// Nothing in a corrupt or truncated file is trusted: every size is checked before it is
// used, the data must end exactly where the header says, and every error is a
// weft::Error that starts "read_idx: <path>: ..." so it says which file is bad.
#pragma once

#include <cstdint>
#include <string>

#include "../tensor/tensor.h"

namespace weft::data {

// IDX element type codes (byte 2 of the header).
inline constexpr uint8_t kIdxUByte = 0x08;

// Reads an IDX file (gzipped or plain) into a contiguous CPU tensor whose shape is the
// header's sizes and whose values are the file's bytes, unscaled (0..255), converted to
// `dtype` (int64, float32 or float64). Images as float32 (N,28,28): read_idx(p, kFloat32).
Tensor read_idx(const std::string& path, DType dtype = kInt64);

}  // namespace weft::data
