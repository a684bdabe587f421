// safetensors: round trips, the exact bytes of the format, atomic saves, and a clear
// error (naming the file and the problem) for every way a file can be corrupt.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "../../nn/safetensors.h"
#include "../helpers.h"

using namespace weft;
using namespace weft::nn;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using Named = std::vector<std::pair<std::string, Tensor>>;

namespace {

using weft::test::TempDir;

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A file by hand: the 8-byte little-endian length (the header's own unless given), the
// header text, then the data section.
Bytes make_file(const std::string& header, const Bytes& data = {}, std::optional<uint64_t> length = {}) {
  const uint64_t n = length.value_or(header.size());
  Bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// The message parse_safetensors throws for these bytes, or "no error".
std::string parse_error(const Bytes& bytes) {
  try {
    parse_safetensors(bytes.data(), bytes.size(), "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// One F32 tensor "w" of shape (2) over 8 data bytes, with the entry's fields given.
std::string entry(const std::string& fields) { return R"({"w":{)" + fields + "}}"; }

Named sample_tensors() {
  Generator gen(11);
  return {{"fc1.weight", randn({3, 4}, {}, gen)},
          {"fc1.bias", randn({4}, {.dtype = kFloat64}, gen)},
          {"labels", arange(-3, 5, 1, kInt64)},
          {"mask", rand({2, 3}, {}, gen) > 0.5},
          {"step", scalar_tensor(7, {.dtype = kInt64})}};
}

void require_same(const Named& a, const Named& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << a[i].first);
    REQUIRE(a[i].first == b[i].first);
    REQUIRE(a[i].second.shape() == b[i].second.shape());
    REQUIRE(a[i].second.dtype() == b[i].second.dtype());
    REQUIRE(equal(a[i].second, b[i].second));
  }
}

}  // namespace

// ---- round trips ---------------------------------------------------------------------------

TEST_CASE("save then load gives back every dtype, shape and view", "[safetensors]") {
  TempDir dir;
  Generator gen(3);
  Tensor bools = rand({4, 3}, {}, gen) > 0.5;
  Named tensors = {
      {"f32", randn({3, 4}, {}, gen)},
      {"f64", randn({2, 3, 2}, {.dtype = kFloat64}, gen)},
      {"i64", arange(-5, 7, 1, kInt64).reshape({3, 4})},
      {"bool", bools},
      {"scalar_f32", scalar_tensor(3.5)},
      {"scalar_i64", scalar_tensor(-42, {.dtype = kInt64})},
      {"scalar_bool", scalar_tensor(1, {.dtype = kBool})},
      {"empty_f32", zeros({0})},
      {"empty_i64", zeros({3, 0, 2}, {.dtype = kInt64})},
      {"transposed", randn({4, 3}, {}, gen).t()},
      {"strided", arange(0, 20, 1, kFloat64).slice(0, 1, 20, 3)},
      {"expanded", tensor({1.f, 2.f, 3.f}).unsqueeze(0).expand({4, 3})},
      {"bool_transposed", bools.t()},
      {"narrowed_i64", arange(0, 24, 1, kInt64).reshape({4, 6}).narrow(1, 2, 3)},
      {"eight_dims", randn({1, 2, 1, 2, 1, 2, 1, 2}, {}, gen)},
  };
  REQUIRE_FALSE(tensors[9].second.is_contiguous());
  const std::map<std::string, std::string> metadata = {{"epoch", "3"}, {"step", "1200"}, {"format", "weft"}};
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, tensors, metadata);

  SafeTensors st = load_safetensors(path);
  require_same(st.tensors, tensors);  // file order is the order given to save
  REQUIRE(st.metadata == metadata);
  for (const auto& [name, t] : st.tensors) {
    // (Empty tensors are skipped: is_contiguous() says false for a (3,0,2) that empty()
    // made, because contiguous_strides counts zero dims as 1 and is_contiguous does not.)
    if (t.numel() > 0) REQUIRE(t.is_contiguous());
    REQUIRE(t.device() == kCPU);
    REQUIRE_FALSE(t.requires_grad());
  }
  REQUIRE(st.find("strided") == &st.tensors[10].second);
  REQUIRE(st.find("missing") == nullptr);
  REQUIRE(dir.listing() == std::vector<std::string>{"model.safetensors"});  // no temp file left
}

TEST_CASE("parse_safetensors of the bytes equals load_safetensors of the file", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  save_safetensors(path, sample_tensors(), {{"epoch", "1"}});
  const Bytes bytes = read_bytes(path);
  SafeTensors from_memory = parse_safetensors(bytes.data(), bytes.size(), "memory");
  SafeTensors from_file = load_safetensors(path);
  require_same(from_memory.tensors, from_file.tensors);
  REQUIRE(from_memory.metadata == from_file.metadata);
}

TEST_CASE("metadata and names survive JSON escaping and UTF-8", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  const std::map<std::string, std::string> metadata = {
      {"epoch", "12"}, {"empty", ""}, {"quote \" and \\ and \n", "tab\there"}, {"unicode \u00df", "\u2713 \U0001F600"}};
  Named tensors = {{"layer \"0\"/weight\u00e9", ones({2})}, {"", zeros({1}, {.dtype = kInt64})}};
  save_safetensors(path, tensors, metadata);
  SafeTensors st = load_safetensors(path);
  REQUIRE(st.metadata == metadata);
  require_same(st.tensors, tensors);
}

TEST_CASE("no metadata writes no __metadata__ entry and loads as empty", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("n.safetensors");
  save_safetensors(path, {{"w", ones({3})}});
  const Bytes bytes = read_bytes(path);
  REQUIRE(std::string(bytes.begin(), bytes.end()).find("__metadata__") == std::string::npos);
  REQUIRE(load_safetensors(path).metadata.empty());
  save_safetensors(path, {});  // no tensors at all is a valid file too
  SafeTensors st = load_safetensors(path);
  REQUIRE(st.tensors.empty());
  REQUIRE(read_bytes(path) == make_file("{}      "));
}

TEST_CASE("saving over an existing file replaces it", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("c.safetensors");
  save_safetensors(path, {{"w", ones({100})}}, {{"epoch", "1"}});
  save_safetensors(path, {{"v", zeros({2}, {.dtype = kInt64})}}, {{"epoch", "2"}});
  SafeTensors st = load_safetensors(path);
  REQUIRE(st.tensors.size() == 1);
  REQUIRE(st.tensors[0].first == "v");
  REQUIRE(st.metadata.at("epoch") == "2");
  REQUIRE(dir.listing() == std::vector<std::string>{"c.safetensors"});
}

TEST_CASE("CUDA tensors are saved from host copies and load on the CPU", "[safetensors][cuda]") {
  if (!cuda::is_available()) return;
  TempDir dir;
  const std::string path = dir.file("gpu.safetensors");
  Tensor host = randn({5, 7});
  save_safetensors(path, {{"w", host.to(Device("cuda:0")).t()}});
  SafeTensors st = load_safetensors(path);
  REQUIRE(st.tensors[0].second.device() == kCPU);
  REQUIRE(equal(st.tensors[0].second, host.t()));
}

// ---- the exact bytes --------------------------------------------------------------------------

TEST_CASE("the bytes on disk are the safetensors format, as the reference writes it", "[safetensors]") {
  TempDir dir;
  SECTION("length prefix, header in the reference's key order, little-endian data") {
    // The reference writer (safetensors 0.8, Python) writes these exact 160 bytes for
    // save({"b": int64 7 (0-d), "a": float32 [1, -2]}, metadata={"epoch": "3"}).
    const std::string path = dir.file("exact.safetensors");
    save_safetensors(path, {{"b", scalar_tensor(7, {.dtype = kInt64})}, {"a", tensor({1.f, -2.f})}}, {{"epoch", "3"}});
    const std::string header =
        R"({"__metadata__":{"epoch":"3"},"b":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
        R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
    REQUIRE(header.size() == 136);  // a multiple of 8: no padding
    Bytes expected = {136, 0, 0, 0, 0, 0, 0, 0};
    expected.insert(expected.end(), header.begin(), header.end());
    const Bytes data = {7, 0, 0, 0, 0, 0, 0, 0,  // int64 7
                        0, 0, 0x80, 0x3F,        // float32 1.0
                        0, 0, 0, 0xC0};          // float32 -2.0
    expected.insert(expected.end(), data.begin(), data.end());
    REQUIRE(read_bytes(path) == expected);
  }
  SECTION("the header is padded with spaces to a multiple of 8") {
    const std::string path = dir.file("padded.safetensors");
    save_safetensors(path, {{"x", tensor({1, 0, 1}).to(kBool)}});
    const std::string header = R"({"x":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})";
    REQUIRE(header.size() == 55);
    Bytes expected = {56, 0, 0, 0, 0, 0, 0, 0};
    expected.insert(expected.end(), header.begin(), header.end());
    expected.push_back(' ');
    for (uint8_t b : {1, 0, 1}) expected.push_back(b);
    REQUIRE(read_bytes(path) == expected);
  }
}

TEST_CASE("files laid out differently from weft's own writer load", "[safetensors]") {
  // Keys in any order, pretty-printed JSON, data order unlike key order, null metadata,
  // unknown extra fields (the reference reader ignores them).
  const std::string header = R"({
    "b": {"shape": [1], "data_offsets": [0, 8], "dtype": "F64", "extra": {"note": [1, 2]}},
    "__metadata__": null,
    "a": {"dtype": "I64", "data_offsets": [8, 16], "shape": []}
  })";
  Bytes data(16, 0);
  data[8] = 5;
  const double one = 1.0;
  std::memcpy(data.data(), &one, 8);
  const Bytes file = make_file(header, data);
  SafeTensors st = parse_safetensors(file.data(), file.size(), "x");
  REQUIRE(st.tensors.size() == 2);
  REQUIRE(st.tensors[0].first == "b");  // file order: by data offset
  REQUIRE(st.tensors[0].second.item<double>() == 1.0);
  REQUIRE(st.tensors[1].first == "a");
  REQUIRE(st.tensors[1].second.item<int64_t>() == 5);
  REQUIRE(st.metadata.empty());
}

// ---- atomic writes ------------------------------------------------------------------------------

TEST_CASE("a save that fails mid-write leaves the old file intact and no temporary file", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", ones({4})}}, {{"epoch", "1"}});
  const Bytes before = read_bytes(path);

  // The failing save runs in a child process that may write at most 64 KiB per file, so
  // the temporary file is created and then a write fails with EFBIG, as when a disk
  // fills up; the limit cannot disturb this process's other files. The child sends back
  // the error message.
  const std::string message = test::in_child([&] {
    ::signal(SIGXFSZ, SIG_IGN);  // get EFBIG from write() rather than being killed
    rlimit limit{};
    ::getrlimit(RLIMIT_FSIZE, &limit);
    limit.rlim_cur = 64 * 1024;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      save_safetensors(path, {{"w", zeros({100000})}}, {{"epoch", "2"}});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  });

  REQUIRE_THAT(message, Catch::StartsWith(path + ": writing " + path + ".tmp.") && Catch::Contains("failed"));
  REQUIRE(read_bytes(path) == before);
  REQUIRE(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
  REQUIRE(load_safetensors(path).metadata.at("epoch") == "1");
}

TEST_CASE("a save over a directory is refused before any file is created", "[safetensors]") {
  // (A rename that fails after the write is AtomicFile's test, tests/tensor/test_atomic_file.cpp.)
  TempDir dir;
  const std::string path = dir.file("taken");
  fs::create_directory(path);
  write_bytes(dir.file("taken/keep"), {1, 2, 3});
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"w", ones({8})}}), Catch::StartsWith(path + ": is not a regular file"));
  REQUIRE(dir.listing() == std::vector<std::string>{"taken"});
  REQUIRE(read_bytes(dir.file("taken/keep")) == Bytes{1, 2, 3});
}

TEST_CASE("bad tensors to save are refused before any file is created", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("s.safetensors");
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"w", ones({2})}, {"b", ones({1})}, {"w", ones({3})}}),
                      path + ": tensor \"w\" appears twice in the list to save");
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"__metadata__", ones({2})}}),
                      Catch::StartsWith(path + ": \"__metadata__\" is reserved"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"w", Tensor()}}), path + ": tensor \"w\" is undefined");
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"bad \xff name", ones({2})}}),
                      Catch::StartsWith(path + ": cannot write the header") && Catch::Contains("UTF-8"));
  REQUIRE(dir.listing().empty());
  REQUIRE_THROWS_WITH(save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"w", ones({2})}}),
                      Catch::StartsWith(dir.file("no/such/dir/x.safetensors") + ": cannot create the temporary file") &&
                          Catch::Contains("No such file or directory"));
}

// ---- corrupt files -------------------------------------------------------------------------------

TEST_CASE("load errors name the file", "[safetensors]") {
  TempDir dir;
  const std::string missing = dir.file("missing.safetensors");
  REQUIRE_THROWS_WITH(load_safetensors(missing), missing + ": cannot open: No such file or directory");
  REQUIRE_THROWS_WITH(load_safetensors(dir.path.string()), dir.path.string() + ": not a regular file");
  const std::string bad = dir.file("bad.safetensors");
  write_bytes(bad, make_file(entry(R"("dtype":"I8","shape":[2],"data_offsets":[0,2])"), Bytes(2, 0)));
  REQUIRE_THROWS_WITH(load_safetensors(bad), Catch::StartsWith(bad + ": unknown dtype \"I8\" for tensor \"w\""));
}

TEST_CASE("a truncated or oversized length prefix is a clear error", "[safetensors]") {
  CHECK(parse_error({}) == "bad.safetensors: truncated: 0 bytes is too short for the 8-byte header length "
                           "(not a safetensors file?)");
  CHECK_THAT(parse_error({1, 2, 3}), Catch::StartsWith("bad.safetensors: truncated: 3 bytes is too short"));
  CHECK(parse_error(make_file("{}", {}, 200'000'000)) ==
        "bad.safetensors: the header length 200000000 is over the 100000000-byte limit (corrupt, or not a "
        "safetensors file)");
  CHECK(parse_error(make_file("{}", {}, ~uint64_t{0})) != "no error");
  CHECK(parse_error(make_file("{}      ", {}, 100)) ==
        "bad.safetensors: truncated: the header length says 100 bytes but only 8 follow the length prefix");
}

TEST_CASE("a header that is not a JSON object of entries is a clear error", "[safetensors]") {
  CHECK_THAT(parse_error(make_file("{not json")), Catch::StartsWith("bad.safetensors: the header is not valid JSON: "));
  CHECK_THAT(parse_error(make_file("")), Catch::StartsWith("bad.safetensors: the header is not valid JSON: "));
  CHECK_THAT(parse_error(make_file("{} trailing")), Catch::StartsWith("bad.safetensors: the header is not valid JSON"));
  CHECK_THAT(parse_error(make_file("{\"w\xff\": 1}")), Catch::Contains("not valid JSON") && Catch::Contains("UTF-8"));
  CHECK(parse_error(make_file("[1, 2]")) == "bad.safetensors: the header is a JSON array, not an object of tensors");
  CHECK(parse_error(make_file(R"({"w": 3})")) ==
        "bad.safetensors: tensor \"w\": the entry must be an object with dtype, shape and data_offsets, got 3");
  CHECK(parse_error(make_file(std::string(100, '[') + std::string(100, ']'))) ==
        "bad.safetensors: the header nests deeper than 64 levels");
  const std::string dup = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"( "w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  CHECK(parse_error(make_file(dup, Bytes(8, 0))) == "bad.safetensors: tensor \"w\" appears twice in the header");
  CHECK(parse_error(make_file(entry(R"("dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4])"), Bytes(4, 0))) ==
        "bad.safetensors: the key \"dtype\" appears twice in one object of the header");
}

TEST_CASE("missing fields and wrong JSON types name the tensor and the field", "[safetensors]") {
  const Bytes data(8, 0);
  auto err = [&](const std::string& fields) { return parse_error(make_file(entry(fields), data)); };
  CHECK(err(R"("shape":[2],"data_offsets":[0,8])") == "bad.safetensors: tensor \"w\": the entry has no \"dtype\"");
  CHECK(err(R"("dtype":"F32","data_offsets":[0,8])") == "bad.safetensors: tensor \"w\": the entry has no \"shape\"");
  CHECK(err(R"("dtype":"F32","shape":[2])") == "bad.safetensors: tensor \"w\": the entry has no \"data_offsets\"");
  CHECK(err(R"("dtype":5,"shape":[2],"data_offsets":[0,8])") ==
        "bad.safetensors: tensor \"w\": \"dtype\" must be a string, got 5");
  const std::string bad_shape = "bad.safetensors: tensor \"w\": \"shape\" must be a list of non-negative integers, got ";
  CHECK(err(R"("dtype":"F32","shape":"2","data_offsets":[0,8])") == bad_shape + "\"2\"");
  CHECK(err(R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])") == bad_shape + "[-2]");
  CHECK(err(R"("dtype":"F32","shape":[2.0],"data_offsets":[0,8])") == bad_shape + "[2.0]");
  CHECK(err(R"("dtype":"F32","shape":[[2]],"data_offsets":[0,8])") == bad_shape + "[[2]]");
  CHECK(err(R"("dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8])") ==
        "bad.safetensors: tensor \"w\": shape [1,1,1,1,1,1,1,1,2] has 9 dimensions; weft allows at most 8");
  const std::string bad_offsets = "bad.safetensors: tensor \"w\": \"data_offsets\" must be [begin, end], two "
                                  "non-negative integers, got ";
  CHECK(err(R"("dtype":"F32","shape":[2],"data_offsets":[8])") == bad_offsets + "[8]");
  CHECK(err(R"("dtype":"F32","shape":[2],"data_offsets":[0,8,8])") == bad_offsets + "[0,8,8]");
  CHECK(err(R"("dtype":"F32","shape":[2],"data_offsets":[-1,7])") == bad_offsets + "[-1,7]");
  CHECK(err(R"("dtype":"F32","shape":[2],"data_offsets":"0:8")") == bad_offsets + "\"0:8\"");
  CHECK(err(R"("dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616])") ==
        bad_offsets + "[0,1.8446744073709552e+19]");
}

TEST_CASE("unknown dtypes are named, and the format's other dtypes say weft lacks them", "[safetensors]") {
  const Bytes data(8, 0);
  const std::string i8 = R"({"fc1.weight":{"dtype":"I8","shape":[8],"data_offsets":[0,8]}})";
  CHECK(parse_error(make_file(i8, data)) ==
        "bad.safetensors: unknown dtype \"I8\" for tensor \"fc1.weight\": weft does not support I8 yet "
        "(it reads F32, F64, BF16, F16, I64 and BOOL, and I32 converted to int64)");
  CHECK_THAT(parse_error(make_file(entry(R"("dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8])"), data)),
             Catch::Contains("unknown dtype \"F8_E4M3\" for tensor \"w\": weft does not support F8_E4M3 yet"));
  CHECK(parse_error(make_file(entry(R"("dtype":"Q7","shape":[4],"data_offsets":[0,8])"), data)) ==
        "bad.safetensors: unknown dtype \"Q7\" for tensor \"w\": not a safetensors dtype (weft reads F32, F64, "
        "BF16, F16, I64 and BOOL, and I32 converted to int64)");
  CHECK_THAT(parse_error(make_file(entry(R"("dtype":"f32","shape":[2],"data_offsets":[0,8])"), data)),
             Catch::Contains("unknown dtype \"f32\""));  // dtype names are case-sensitive
}

namespace {
// Little-endian bytes of 16- and 32-bit words.
Bytes le16(const std::vector<uint16_t>& words) {
  Bytes out;
  for (uint16_t w : words) out.push_back(uint8_t(w)), out.push_back(uint8_t(w >> 8));
  return out;
}
Bytes le32(const std::vector<int32_t>& words) {
  Bytes out;
  for (int32_t w : words)
    for (int i = 0; i < 4; ++i) out.push_back(uint8_t(uint32_t(w) >> (8 * i)));
  return out;
}
}  // namespace

// Issue 19: published checkpoints are often bf16 (and token ids int32).
TEST_CASE("BF16 and F16 load as bfloat16 and float16 tensors, I32 as int64, exactly", "[safetensors]") {
  const float inf = std::numeric_limits<float>::infinity();
  // bf16 is a float's top 16 bits: 1, -2.5, inf, the smallest subnormal (2^-133), NaN.
  Bytes data = le16({0x3F80, 0xC020, 0x7F80, 0x0001, 0x7FC0});
  // half: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), 1023 x 2^-24 (largest
  // subnormal), 2^-14 (smallest normal), -inf, -0, NaN.
  const Bytes halves = le16({0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0xFC00, 0x8000, 0x7E00});
  const Bytes ints = le32({-1, 2147483647, int32_t(-2147483647 - 1), 7});
  data.insert(data.end(), halves.begin(), halves.end());
  data.insert(data.end(), ints.begin(), ints.end());
  const std::string header = R"({"b":{"dtype":"BF16","shape":[5],"data_offsets":[0,10]},)"
                             R"("h":{"dtype":"F16","shape":[3,3],"data_offsets":[10,28]},)"
                             R"("i":{"dtype":"I32","shape":[2,2],"data_offsets":[28,44]}})";
  const Bytes file = make_file(header, data);
  const SafeTensors st = parse_safetensors(file.data(), file.size(), "ok");
  const Tensor& b = *st.find("b");
  CHECK(b.dtype() == kBFloat16);
  const auto bv = b.to_vector<float>();
  CHECK(bv[0] == 1.0f);
  CHECK(bv[1] == -2.5f);
  CHECK(bv[2] == inf);
  CHECK(bv[3] == std::ldexp(1.0f, -133));
  CHECK(std::isnan(bv[4]));
  const Tensor& h = *st.find("h");
  CHECK(h.dtype() == kFloat16);
  CHECK(h.shape() == Shape({3, 3}));
  const auto hv = h.to_vector<float>();
  CHECK(hv[0] == 1.0f);
  CHECK(hv[1] == -2.0f);
  CHECK(hv[2] == 65504.0f);
  CHECK(hv[3] == std::ldexp(1.0f, -24));
  CHECK(hv[4] == 1023 * std::ldexp(1.0f, -24));
  CHECK(hv[5] == std::ldexp(1.0f, -14));
  CHECK(hv[6] == -inf);
  CHECK((hv[7] == 0.0f && std::signbit(hv[7])));
  CHECK(std::isnan(hv[8]));
  const Tensor& i = *st.find("i");
  CHECK(i.dtype() == kInt64);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{-1, 2147483647, -2147483648LL, 7});
  // Sizes are checked in the file's element size: 3 BF16 elements are 6 bytes.
  CHECK(parse_error(make_file(entry(R"("dtype":"BF16","shape":[3],"data_offsets":[0,8])"), Bytes(8, 0))) ==
        "bad.safetensors: tensor \"w\": data_offsets [0, 8] hold 8 bytes, but BF16 shape (3) needs 6");
  // Every half against the rule: (-1)^s 2^(e-15) (1 + f/1024), or 2^-14 f/1024 for e = 0.
  std::vector<uint16_t> all;
  for (uint32_t w = 0; w < 0x10000; ++w) all.push_back(uint16_t(w));
  const Bytes every = make_file(R"({"w":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}})", le16(all));
  const auto got = parse_safetensors(every.data(), every.size(), "ok").find("w")->to_vector<float>();
  int wrong = 0;
  for (uint32_t w = 0; w < 0x10000; ++w) {
    const int e = int(w >> 10 & 0x1f), f = int(w & 0x3ff);
    const float mag = e == 31 ? (f ? NAN : inf) : e ? std::ldexp(1.0f + f / 1024.0f, e - 15) : std::ldexp(f / 1024.0f, -14);
    const float want = (w & 0x8000) ? -mag : mag;
    const bool ok = std::isnan(want) ? std::isnan(got[w]) : got[w] == want && std::signbit(got[w]) == std::signbit(want);
    wrong += !ok;
  }
  CHECK(wrong == 0);
}

TEST_CASE("bfloat16 and float16 tensors save as BF16 and F16 and load back bit for bit", "[safetensors]") {
  Generator g(3);
  const Tensor b = randn({4, 5}, {}, g).to(kBFloat16), h = randn({7}, {}, g).to(kFloat16);
  TempDir dir;
  const std::string path = dir.file("half.safetensors");
  save_safetensors(path, {{"b", b}, {"h", h}});
  const SafeTensors st = load_safetensors(path);
  CHECK(st.find("b")->dtype() == kBFloat16);
  CHECK(st.find("h")->dtype() == kFloat16);
  CHECK(st.find("b")->to_vector<float>() == b.to_vector<float>());
  CHECK(st.find("h")->to_vector<float>() == h.to_vector<float>());
  // a bfloat16 checkpoint loads into a float32 model, converted exactly
  nn::Linear fc(5, 4);
  fc.load_state_dict({{"weight", b}, {"bias", zeros({4}).to(kBFloat16)}});
  CHECK(fc.weight.dtype() == kFloat32);
  CHECK(fc.weight.to_vector<float>() == b.to_vector<float>());
}

TEST_CASE("shapes whose element count overflows are refused", "[safetensors]") {
  const Bytes data(8, 0);
  CHECK(parse_error(make_file(entry(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8])"), data)) ==
        "bad.safetensors: tensor \"w\": shape [4294967296,4294967296] is too large (its element count overflows 64 "
        "bits)");
  CHECK_THAT(parse_error(make_file(entry(R"("dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8])"), data)),
             Catch::Contains("is too large"));
  // An empty tensor may not hide an overflow either: weft's strides multiply the other dims.
  CHECK_THAT(parse_error(make_file(entry(R"("dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0])"))),
             Catch::Contains("is too large"));
  // Nor may the byte count: 2^61 F64 elements are 2^64 bytes, which would wrap to 0.
  CHECK(parse_error(make_file(entry(R"("dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0])"))) ==
        "bad.safetensors: tensor \"w\": F64 shape (2305843009213693952) is too large (its size in bytes overflows 64 "
        "bits)");
  // A huge byte count that is not an overflow is just a size mismatch.
  CHECK_THAT(parse_error(make_file(entry(R"("dtype":"F64","shape":[576460752303423488],"data_offsets":[0,8])"), data)),
             Catch::Contains("hold 8 bytes, but F64 shape (576460752303423488) needs 4611686018427387904"));
}

TEST_CASE("offsets that lie about the data section are refused", "[safetensors]") {
  const Bytes data(12, 0);
  auto err = [&](const std::string& header) { return parse_error(make_file(header, data)); };
  CHECK(err(entry(R"("dtype":"F32","shape":[1],"data_offsets":[8,4])")) ==
        "bad.safetensors: tensor \"w\": data_offsets [8, 4] end before they begin");
  CHECK(err(entry(R"("dtype":"F32","shape":[100],"data_offsets":[0,400])")) ==
        "bad.safetensors: tensor \"w\": data_offsets [0, 400] reach past the end of the data section (12 bytes): the "
        "file is truncated or the header is wrong");
  CHECK(err(entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,12])")) ==
        "bad.safetensors: tensor \"w\": data_offsets [0, 12] hold 12 bytes, but F32 shape (2,3) needs 24");
  // Gaps, overlaps and left-over bytes: the tensors must tile the data section exactly.
  CHECK(err(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})") ==
        "bad.safetensors: bytes [4, 8) of the data section belong to no tensor (a gap before tensor \"b\")");
  CHECK(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})") ==
        "bad.safetensors: tensor \"b\" (data_offsets [4, 12]) overlaps tensor \"a\" (data_offsets [0, 8])");
  CHECK(err(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})") ==
        "bad.safetensors: tensor \"b\" (data_offsets [0, 12]) overlaps tensor \"a\" (data_offsets [0, 12])");
  CHECK(err(entry(R"("dtype":"F32","shape":[2],"data_offsets":[4,12])")) ==
        "bad.safetensors: bytes [0, 4) of the data section belong to no tensor (a gap before tensor \"w\")");
  CHECK(err(entry(R"("dtype":"F32","shape":[2],"data_offsets":[0,8])")) ==
        "bad.safetensors: the data section has 12 bytes but the tensors cover only 8 (4 bytes belong to no tensor)");
  CHECK(err("{}") == "bad.safetensors: the data section has 12 bytes but the tensors cover only 0 (12 bytes belong "
                     "to no tensor)");
  // An empty tensor between two others, at a shared offset, is fine.
  CHECK(err(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
            R"("b":{"dtype":"F64","shape":[1],"data_offsets":[4,12]}})") == "no error");
}

TEST_CASE("metadata must map strings to strings", "[safetensors]") {
  CHECK(parse_error(make_file(R"({"__metadata__":[1]})")) ==
        "bad.safetensors: \"__metadata__\" must be an object of strings, got [1]");
  CHECK(parse_error(make_file(R"({"__metadata__":{"epoch":3}})")) ==
        "bad.safetensors: \"__metadata__\" must map strings to strings, but \"epoch\" is 3");
  CHECK(parse_error(make_file(R"({"__metadata__":{"epoch":"3"}})")) == "no error");
}

TEST_CASE("BOOL bytes other than 0 and 1 are refused", "[safetensors]") {
  const Bytes file = make_file(entry(R"("dtype":"BOOL","shape":[3],"data_offsets":[0,3])"), {1, 2, 0});
  CHECK(parse_error(file) == "bad.safetensors: tensor \"w\": BOOL element 1 is the byte 2, not 0 or 1");
  TempDir dir;
  write_bytes(dir.file("b.safetensors"), file);
  CHECK_THROWS_WITH(load_safetensors(dir.file("b.safetensors")), Catch::Contains("BOOL element 1 is the byte 2"));
}

TEST_CASE("long names in errors are cut short", "[safetensors]") {
  const std::string name(5000, 'n');
  const std::string msg =
      parse_error(make_file(R"({")" + name + R"(":{"dtype":"X","shape":[],"data_offsets":[0,0]}})"));
  CHECK_THAT(msg, Catch::Contains("unknown dtype \"X\" for tensor \"nnnn") && Catch::Contains("n...\""));
  CHECK(msg.size() < 300);
}

TEST_CASE("every truncation of a valid file is an error, never a crash", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("full.safetensors");
  save_safetensors(path, sample_tensors(), {{"epoch", "4"}, {"step", "900"}});
  const Bytes full = read_bytes(path);
  REQUIRE(full.size() > 200);
  const std::string cut = dir.file("cut.safetensors");
  for (size_t len = 0; len < full.size(); ++len) {
    INFO("truncated to " << len << " of " << full.size() << " bytes");
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    // Each prefix in its own heap block, so AddressSanitizer sees any read past its end.
    auto exact = std::make_unique<uint8_t[]>(std::max<size_t>(len, 1));
    std::copy(prefix.begin(), prefix.end(), exact.get());
    CHECK_THROWS_AS(parse_safetensors(exact.get(), len, "cut"), Error);
    write_bytes(cut, prefix);
    CHECK_THROWS_WITH(load_safetensors(cut), Catch::StartsWith(cut + ": "));
  }
  REQUIRE_NOTHROW(load_safetensors(path));
}
