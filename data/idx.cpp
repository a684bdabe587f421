// read_idx: the IDX header, checked field by field, then the data streamed through zlib
// in chunks straight into the output tensor (no second full-size buffer).
#include "idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "../tensor/creation.h"

namespace weft::data {

namespace {

// Every error says which file: "read_idx: <path>: <what>".
template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... what) {
  throw Error(detail::str("read_idx: ", path, ": ", what...));
}

// A header describing more than this is corrupt, not a dataset: refusing it keeps one
// flipped bit in a size from asking for terabytes before the data is even read.
constexpr int64_t kMaxDataBytes = int64_t{1} << 32;
constexpr int kMaxIdxDims = 4;
constexpr int64_t kChunkBytes = int64_t{1} << 20;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

GzFile open_gz(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "no such file");
  if (fs::is_directory(path, ec)) fail(path, "is a directory, not an IDX file");
  errno = 0;
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) fail(path, "cannot open: ", errno ? std::strerror(errno) : "out of memory");
  gzbuffer(f.get(), 128 * 1024);  // fewer, larger reads: the default 8 KiB is slow here
  return f;
}

// zlib's description of the stream's error state, e.g. "corrupt gzip data (invalid
// distance too far back)".
std::string gz_error_text(gzFile_s* f) {
  int code = Z_OK;
  const char* msg = gzerror(f, &code);
  if (code == Z_ERRNO) return detail::str("read error: ", std::strerror(errno));
  if (code == Z_BUF_ERROR) return "the gzip stream ends early (unexpected end of file)";
  return detail::str("corrupt gzip data (", msg ? msg : "unknown zlib error", ")");
}

// Reads up to n bytes; fewer only at the end of the data. A zlib error -- corrupt
// deflate data, a bad CRC, a gzip stream cut short -- throws naming the file.
int64_t read_some(gzFile_s* f, const std::string& path, uint8_t* buf, int64_t n) {
  const int got = gzread(f, buf, static_cast<unsigned>(n));
  int code = Z_OK;
  gzerror(f, &code);
  if (got < 0 || (code != Z_OK && code != Z_STREAM_END)) fail(path, gz_error_text(f));
  return got;
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

const char* idx_type_name(uint8_t code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "not an IDX type";
  }
}

// Magic (00 00 type ndim) and the sizes -> the shape, with every field checked.
Shape read_header(gzFile_s* f, const std::string& path) {
  uint8_t magic[4];
  const int64_t got = read_some(f, path, magic, 4);
  if (got < 4) fail(path, "too short for an IDX header: ", got, " bytes");
  if (magic[0] != 0 || magic[1] != 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08X", big_endian_u32(magic));
    fail(path, "bad magic number ", hex, ": an IDX file starts with two zero bytes (is this an IDX file?)");
  }
  if (magic[2] != kIdxUByte) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", magic[2]);
    fail(path, "unsupported IDX element type ", hex, " (", idx_type_name(magic[2]),
         "): only 0x08 (unsigned byte, as in MNIST and Fashion-MNIST) is supported");
  }
  const int ndim = magic[3];
  if (ndim < 1 || ndim > kMaxIdxDims)
    fail(path, "the header gives ", ndim, " dims; expected 1 to ", kMaxIdxDims, " (labels 1, images 3)");

  uint8_t sizes[4 * kMaxIdxDims];
  if (read_some(f, path, sizes, 4 * ndim) < 4 * ndim) fail(path, "truncated in the header's ", ndim, " sizes");
  Shape shape;
  int64_t bytes = 1;
  for (int d = 0; d < ndim; ++d) {
    const int64_t n = big_endian_u32(sizes + 4 * d);
    if (n == 0) fail(path, "size ", d, " in the header is 0");
    if (n > kMaxDataBytes / bytes)
      fail(path, "the header's sizes describe more than ", kMaxDataBytes, " bytes of data: corrupt header?");
    bytes *= n;
    shape.push_back(n);
  }
  return shape;
}

// Streams shape.numel() bytes into a new tensor of `dtype`, converting each byte.
Tensor read_data(gzFile_s* f, const std::string& path, const Shape& shape, DType dtype) {
  Tensor out = empty(shape, dtype);
  const int64_t want = shape.numel();
  std::vector<uint8_t> chunk(static_cast<size_t>(std::min(want, kChunkBytes)));
  dispatch_numeric(dtype, "read_idx", [&]<class T>() {
    T* dst = out.data<T>();
    for (int64_t done = 0; done < want;) {
      const int64_t n = read_some(f, path, chunk.data(), std::min(want - done, kChunkBytes));
      if (n == 0) fail(path, "truncated: expected ", want, " bytes of data after the header, got ", done);
      std::copy(chunk.begin(), chunk.begin() + n, dst + done);
      done += n;
    }
  });
  return out;
}

// The data must end exactly where the header says: extra bytes mean the header and the
// data disagree, and reading on also lets zlib verify the gzip CRC at the stream's end.
void check_at_end(gzFile_s* f, const std::string& path, int64_t data_bytes) {
  uint8_t buf[4096];
  int64_t extra = 0;
  for (int64_t n; (n = read_some(f, path, buf, sizeof buf)) > 0;) extra += n;
  if (extra > 0)
    fail(path, extra, " trailing bytes after the ", data_bytes, " bytes of data the header describes");
}

}  // namespace

Tensor read_idx(const std::string& path, DType dtype) {
  WEFT_CHECK(dtype != kBool, "read_idx: ", path, ": cannot read into a bool tensor; use int64 or float32");
  GzFile f = open_gz(path);
  const Shape shape = read_header(f.get(), path);
  Tensor out = read_data(f.get(), path, shape, dtype);
  check_at_end(f.get(), path, shape.numel());
  return out;
}

}  // namespace weft::data
