// Reading and writing safetensors files; safetensors.h has the layout.
//
// Reading is two steps shared by files and memory: parse_header turns the length prefix
// and the JSON into a checked list of entries (every offset proven to lie inside the
// data section), then the bytes are copied into fresh tensors. Nothing is read from the
// data section before the header has been checked against its size.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "../tensor/atomic_file.h"
#include "../tensor/half.h"
#include "../tensor/raw.h"

namespace weft::nn {

// The data section is each tensor's memory image, and the format is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");
static_assert(sizeof(bool) == 1, "safetensors BOOL elements are one byte");

namespace {

using json = nlohmann::json;

// The reference implementation's cap: a longer header is a corrupt length, not a model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// Real headers nest three deep ({"w": {"shape": [2]}}); the cap bounds hostile input.
constexpr int kMaxJsonDepth = 64;

template <class... Args>
[[noreturn]] void fail(const std::string& file, const Args&... args) {
  throw Error(detail::str(file, ": ", args...));
}

// Names and values in error messages are cut short: a hostile header can hold a
// megabyte-long name. The cut never splits a UTF-8 sequence.
std::string cut(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t at = max;
  while (at > 0 && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
  return detail::str(s.substr(0, at), "...");
}

std::string shown(std::string_view s) { return '"' + cut(s, 80) + '"'; }
std::string excerpt(const json& v) { return cut(v.dump(), 60); }
std::string tensor_ref(const std::string& name) { return "tensor " + shown(name); }

// ---- dtypes ---------------------------------------------------------------------------
const char* safetensors_dtype(DType dt) {
  switch (dt) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
    case DType::Bool: return "BOOL";
    case DType::BFloat16: return "BF16";
    case DType::Float16: return "F16";
  }
  throw Error("safetensors: unknown weft dtype");
}

std::optional<DType> weft_dtype(std::string_view s) {
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16, kInt64, kBool})
    if (s == safetensors_dtype(dt)) return dt;
  return std::nullopt;
}

// dtypes weft has no tensor type for but reads by converting each element: token ids
// are often I32. Little-endian, as the format is.
struct Converted {
  std::string_view name;
  uint64_t bytes;  // per element in the file
  DType to;
};
constexpr Converted kConverted[] = {{"I32", 4, kInt64}};
constexpr const char* kReads = "F32, F64, BF16, F16, I64 and BOOL, and I32 converted to int64";

const Converted* converted_dtype(std::string_view s) {
  for (const Converted& c : kConverted)
    if (s == c.name) return &c;
  return nullptr;
}

// dtypes the format defines that weft cannot read yet. They get their own message, so
// an F8 checkpoint reads as a missing feature rather than as a corrupt file.
bool is_other_safetensors_dtype(std::string_view s) {
  static constexpr std::string_view kOthers[] = {"I8",      "U8",      "I16",     "U16",     "U32",
                                                 "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                                 "F6_E3M2", "F4",      "C64"};
  return std::find(std::begin(kOthers), std::end(kOthers), s) != std::end(kOthers);
}

// `n` elements of file dtype `from` (I32) at `src` into `dst` (int64).
void convert(const Converted& from, const uint8_t* src, uint64_t n, void* dst) {
  WEFT_CHECK(from.name == "I32", "safetensors: no conversion from ", from.name);
  auto* out = static_cast<int64_t*>(dst);
  for (uint64_t i = 0; i < n; ++i) {
    int32_t v;
    std::memcpy(&v, src + 4 * i, 4);
    out[i] = v;
  }
}

// ---- the header -------------------------------------------------------------------------
struct Entry {
  std::string name;
  DType dtype = kFloat32;               // of the tensor weft makes
  const Converted* file = nullptr;      // the file's dtype when it is converted on load
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offset: file order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N: where the data section begins
};

// Checks that an 8-byte length prefix exists; every reader calls this before reading it.
void check_prefix(uint64_t file_size, const std::string& file) {
  if (file_size < 8)
    fail(file, "truncated: ", file_size, " bytes is too short for the 8-byte header length (not a safetensors file?)");
}

// N, the header length, read from the little-endian prefix and checked against the file.
uint64_t header_length(const uint8_t* prefix, uint64_t file_size, const std::string& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | prefix[i];
  if (n > kMaxHeaderBytes)
    fail(file, "the header length ", n, " is over the ", kMaxHeaderBytes, "-byte limit (corrupt, or not a safetensors file)");
  if (n > file_size - 8)
    fail(file, "truncated: the header length says ", n, " bytes but only ", file_size - 8, " follow the length prefix");
  return n;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest is the news.
std::string json_reason(const json::exception& e) {
  std::string_view s = e.what();
  const size_t close = s.find("] ");
  return std::string(close == std::string_view::npos ? s : s.substr(close + 2));
}

// Parses the header JSON, refusing duplicate keys (JSON parsers disagree on which copy
// wins, so two "w" entries would mean different tensors to different readers) and
// nesting deeper than any real header.
json parse_json(const uint8_t* bytes, uint64_t n, const std::string& file) {
  std::vector<std::vector<std::string>> open_objects;  // the keys seen in each open object
  auto watch = [&](int depth, json::parse_event_t event, json& value) {
    if (depth > kMaxJsonDepth) fail(file, "the header nests deeper than ", kMaxJsonDepth, " levels");
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end) open_objects.pop_back();
    if (event == json::parse_event_t::key) {
      const auto& key = value.get_ref<const std::string&>();
      auto& seen = open_objects.back();
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        if (depth == 1) fail(file, tensor_ref(key), " appears twice in the header");
        fail(file, "the key ", shown(key), " appears twice in one object of the header");
      }
      seen.push_back(key);
    }
    return true;
  };
  try {
    return json::parse(bytes, bytes + n, watch);
  } catch (const json::exception& e) {
    fail(file, "the header is not valid JSON: ", json_reason(e));
  }
}

// A JSON number that is a whole, non-negative integer (nlohmann keeps 2.0 a float).
std::optional<uint64_t> as_u64(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

const json& field(const json& entry, const char* key, const std::string& name, const std::string& file) {
  auto it = entry.find(key);
  if (it == entry.end()) fail(file, tensor_ref(name), ": the entry has no \"", key, "\"");
  return *it;
}

// Sets e.dtype, and e.file for a dtype converted on load.
void parse_dtype(const json& v, Entry& e, const std::string& file) {
  if (!v.is_string()) fail(file, tensor_ref(e.name), ": \"dtype\" must be a string, got ", excerpt(v));
  const auto& s = v.get_ref<const std::string&>();
  if (auto dt = weft_dtype(s)) {
    e.dtype = *dt;
    return;
  }
  if (const Converted* c = converted_dtype(s)) {
    e.dtype = c->to, e.file = c;
    return;
  }
  if (is_other_safetensors_dtype(s))
    fail(file, "unknown dtype ", shown(s), " for ", tensor_ref(e.name), ": weft does not support ", s, " yet (it reads ",
         kReads, ")");
  fail(file, "unknown dtype ", shown(s), " for ", tensor_ref(e.name), ": not a safetensors dtype (weft reads ", kReads,
       ")");
}

// Dims are checked with overflow-safe products. Zero dims count as 1 there, because
// weft's strides multiply the other dims even when the tensor is empty.
Shape parse_shape(const json& v, const std::string& name, const std::string& file) {
  if (!v.is_array()) fail(file, tensor_ref(name), ": \"shape\" must be a list of non-negative integers, got ", excerpt(v));
  if (v.size() > static_cast<size_t>(kMaxDims))
    fail(file, tensor_ref(name), ": shape ", excerpt(v), " has ", v.size(), " dimensions; weft allows at most ", kMaxDims);
  std::vector<int64_t> dims;
  uint64_t product = 1;
  for (const json& d : v) {
    auto n = as_u64(d);
    if (!n) fail(file, tensor_ref(name), ": \"shape\" must be a list of non-negative integers, got ", excerpt(v));
    if (__builtin_mul_overflow(product, std::max<uint64_t>(*n, 1), &product) ||
        product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(file, tensor_ref(name), ": shape ", excerpt(v), " is too large (its element count overflows 64 bits)");
    dims.push_back(static_cast<int64_t>(*n));
  }
  return Shape(dims);
}

Entry parse_entry(const std::string& name, const json& v, uint64_t data_size, const std::string& file) {
  if (!v.is_object())
    fail(file, tensor_ref(name), ": the entry must be an object with dtype, shape and data_offsets, got ", excerpt(v));
  Entry e;
  e.name = name;
  parse_dtype(field(v, "dtype", name, file), e, file);
  e.shape = parse_shape(field(v, "shape", name, file), name, file);
  const json& off = field(v, "data_offsets", name, file);
  auto begin = off.is_array() && off.size() == 2 ? as_u64(off[0]) : std::nullopt;
  auto end = off.is_array() && off.size() == 2 ? as_u64(off[1]) : std::nullopt;
  if (!begin || !end)
    fail(file, tensor_ref(name), ": \"data_offsets\" must be [begin, end], two non-negative integers, got ", excerpt(off));
  e.begin = *begin;
  e.end = *end;
  const std::string range = detail::str("data_offsets [", e.begin, ", ", e.end, "]");
  if (e.begin > e.end) fail(file, tensor_ref(name), ": ", range, " end before they begin");
  if (e.end > data_size)
    fail(file, tensor_ref(name), ": ", range, " reach past the end of the data section (", data_size,
         " bytes): the file is truncated or the header is wrong");
  // Checked too: a count that wrapped around could match a small range, and the tensor
  // would then claim more elements than its storage holds.
  uint64_t nbytes = 0, converted_bytes = 0;
  const uint64_t elem = e.file ? e.file->bytes : static_cast<uint64_t>(element_size(e.dtype));
  const std::string dtype_name = e.file ? std::string(e.file->name) : safetensors_dtype(e.dtype);
  if (__builtin_mul_overflow(static_cast<uint64_t>(e.shape.numel()), elem, &nbytes) ||
      nbytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(static_cast<uint64_t>(e.shape.numel()), uint64_t(element_size(e.dtype)), &converted_bytes) ||
      converted_bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(file, tensor_ref(name), ": ", dtype_name, " shape ", e.shape,
         " is too large (its size in bytes overflows 64 bits)");
  if (e.end - e.begin != nbytes)
    fail(file, tensor_ref(name), ": ", range, " hold ", e.end - e.begin, " bytes, but ", dtype_name, " shape ", e.shape,
         " needs ", nbytes);
  return e;
}

std::map<std::string, std::string> parse_metadata(const json& v, const std::string& file) {
  if (v.is_null()) return {};  // the reference reader accepts null for "no metadata"
  if (!v.is_object()) fail(file, "\"__metadata__\" must be an object of strings, got ", excerpt(v));
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string())
      fail(file, "\"__metadata__\" must map strings to strings, but ", shown(key), " is ", excerpt(value));
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

// The reference implementation's rule: sorted by offset, the tensors tile the data
// section exactly (no gap, no overlap, nothing left over), so every byte has one meaning.
void check_coverage(std::vector<Entry>& entries, uint64_t data_size, const std::string& file) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < covered)
      fail(file, tensor_ref(e.name), " (data_offsets [", e.begin, ", ", e.end, "]) overlaps ", tensor_ref(prev->name),
           " (data_offsets [", prev->begin, ", ", prev->end, "])");
    if (e.begin > covered)
      fail(file, "bytes [", covered, ", ", e.begin, ") of the data section belong to no tensor (a gap before ",
           tensor_ref(e.name), ")");
    covered = e.end;
    prev = &e;
  }
  if (covered != data_size)
    fail(file, "the data section has ", data_size, " bytes but the tensors cover only ", covered, " (",
         data_size - covered, " bytes belong to no tensor)");
}

// `json_bytes` are the N header bytes; `data_size` is what follows them in the file.
Header parse_header(const uint8_t* json_bytes, uint64_t n, uint64_t data_size, const std::string& file) {
  const json root = parse_json(json_bytes, n, file);
  if (!root.is_object()) fail(file, "the header is a JSON ", root.type_name(), ", not an object of tensors");
  Header h;
  h.data_start = 8 + n;
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") h.metadata = parse_metadata(value, file);
    else h.entries.push_back(parse_entry(key, value, data_size, file));
  }
  check_coverage(h.entries, data_size, file);
  return h;
}

// A bool byte other than 0 or 1 is undefined behaviour once C++ reads it as bool, so it
// is refused here rather than trusted.
void check_bools(const Entry& e, const uint8_t* bytes, const std::string& file) {
  for (uint64_t i = 0; i < e.end - e.begin; ++i)
    if (bytes[i] > 1)
      fail(file, tensor_ref(e.name), ": BOOL element ", i, " is the byte ", int(bytes[i]), ", not 0 or 1");
}

// Fresh tensors for a checked header; read(dst, nbytes, offset) fills dst with nbytes
// from `offset` in the file.
template <class Read>
SafeTensors materialise(Header h, const std::string& file, Read read) {
  SafeTensors out;
  out.metadata = std::move(h.metadata);
  out.tensors.reserve(h.entries.size());
  for (Entry& e : h.entries) {
    Tensor t = empty(e.shape, e.dtype, kCPU);
    auto* dst = static_cast<uint8_t*>(t.raw_data());
    if (e.file && e.end > e.begin) {  // the file's elements, then each converted
      std::vector<uint8_t> raw(e.end - e.begin);
      read(raw.data(), raw.size(), h.data_start + e.begin);
      convert(*e.file, raw.data(), uint64_t(t.numel()), dst);
    } else if (e.end > e.begin) {
      read(dst, e.end - e.begin, h.data_start + e.begin);
    }
    if (e.dtype == kBool && !e.file) check_bools(e, dst, file);
    out.tensors.emplace_back(std::move(e.name), std::move(t));
  }
  return out;
}

// ---- files --------------------------------------------------------------------------------
std::string errno_text() { return std::strerror(errno); }

void read_exact(int fd, uint8_t* dst, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, dst, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(path, "read failed: ", errno_text());
    if (got == 0) fail(path, "truncated: the file ended at byte ", offset, " (did it change while loading?)");
    dst += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

// ---- writing ------------------------------------------------------------------------------
void check_savable(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& path) {
  std::vector<std::string_view> names;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail(path, "\"__metadata__\" is reserved for metadata and cannot name a tensor");
    if (!t.defined()) fail(path, tensor_ref(name), " is undefined");
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end()) fail(path, tensor_ref(std::string(*dup)), " appears twice in the list to save");
}

uint64_t nbytes_of(const Tensor& t) { return static_cast<uint64_t>(t.numel() * element_size(t.dtype())); }

// The header, in the reference writer's order: "__metadata__" first, then the tensors in
// data order, each as dtype, shape, data_offsets; padded with spaces to a multiple of 8
// bytes so the data section starts aligned. Equal inputs give byte-identical files.
std::string header_json(const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata, const std::string& path) {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) root["__metadata__"] = metadata;
  uint64_t at = 0;
  for (const auto& [name, t] : tensors) {
    nlohmann::ordered_json e;
    e["dtype"] = safetensors_dtype(t.dtype());
    e["shape"] = t.shape().vec();
    e["data_offsets"] = {at, at + nbytes_of(t)};
    root[name] = std::move(e);
    at += nbytes_of(t);
  }
  std::string s;
  try {
    s = root.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    fail(path, "cannot write the header (tensor names and metadata must be UTF-8): ", json_reason(e));
  }
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

// The bytes of a tensor as the file stores them: contiguous, in host memory.
Tensor host_contiguous(const Tensor& t) {
  return raw::contiguous(t.device().is_cuda() ? raw::to_device(t, kCPU) : t);
}

}  // namespace

// ---- the API --------------------------------------------------------------------------------
const Tensor* SafeTensors::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& name_for_errors) {
  const std::string& file = name_for_errors;
  check_prefix(size, file);
  const uint64_t n = header_length(data, size, file);
  Header h = parse_header(data + 8, n, size - 8 - n, file);
  return materialise(std::move(h), file, [&](uint8_t* dst, uint64_t nbytes, uint64_t offset) {
    std::memcpy(dst, data + offset, nbytes);  // parse_header proved offset + nbytes <= size
  });
}

SafeTensors load_safetensors(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail(path, "cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail(path, "cannot stat: ", errno_text());
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  // The header is read on its own and checked before any tensor is allocated, and each
  // tensor is read straight into its storage: a checkpoint is never held twice in memory.
  const auto size = static_cast<uint64_t>(st.st_size);
  check_prefix(size, path);
  uint8_t prefix[8];
  read_exact(fd.get(), prefix, 8, 0, path);
  const uint64_t n = header_length(prefix, size, path);
  std::vector<uint8_t> header(n);
  read_exact(fd.get(), header.data(), n, 8, path);
  Header h = parse_header(header.data(), n, size - 8 - n, path);
  return materialise(std::move(h), path, [&](uint8_t* dst, uint64_t nbytes, uint64_t offset) {
    read_exact(fd.get(), dst, nbytes, offset, path);
  });
}

void check_can_save(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory; a file is saved under this name");
  AtomicFile probe(path);  // created the way a save creates it, and removed again (never committed)
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Everything that can be checked is checked before a file exists.
  check_savable(tensors, path);
  const std::string header = header_json(tensors, metadata, path);
  AtomicFile tmp(path);
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  tmp.write(prefix, 8);
  tmp.write(header.data(), header.size());
  for (const auto& [name, t] : tensors) {
    Tensor host;
    try {
      host = host_contiguous(t);  // one tensor at a time: at most one extra copy alive
    } catch (const Error& e) {
      fail(path, tensor_ref(name), ": ", e.what());
    }
    if (nbytes_of(host) > 0) tmp.write(host.raw_data(), nbytes_of(host));
  }
  tmp.commit();
}

}  // namespace weft::nn
