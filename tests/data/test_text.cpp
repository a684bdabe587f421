// data::CharCorpus: the vocabulary, ids, encode/decode, and what a bad corpus says.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "../../data/text.h"

using namespace weft;
using data::CharCorpus;
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("weft_text_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
}  // namespace

TEST_CASE("CharCorpus: the vocabulary is the sorted set of bytes, ids index it", "[data][text]") {
  const CharCorpus c = CharCorpus::from_text("hello, world");
  REQUIRE(c.vocab == std::vector<uint8_t>{' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w'});
  REQUIRE(c.vocab_size() == 9);
  REQUIRE(c.ids.dtype() == kInt64);
  REQUIRE(c.ids.to_vector<int64_t>() == std::vector<int64_t>{4, 3, 5, 5, 6, 1, 0, 8, 6, 7, 5, 2});
  REQUIRE(c.decode(c.ids.to_vector<int64_t>()) == "hello, world");
  REQUIRE(c.encode("old") == std::vector<int64_t>{6, 5, 2});
  REQUIRE(c.id['z'] == -1);
}

TEST_CASE("CharCorpus: bad input is named", "[data][text]") {
  const CharCorpus c = CharCorpus::from_text("abc");
  REQUIRE_THROWS_WITH(c.decode({0, 3}), Catch::Contains("id 3 is outside the vocabulary of 3"));
  REQUIRE_THROWS_WITH(c.encode("abz"), Catch::Contains("byte 122 ('z') is not in the corpus's vocabulary"));
  REQUIRE_THROWS_WITH(CharCorpus::from_text("a"), Catch::Contains("needs at least 2"));
  REQUIRE_THROWS_WITH(CharCorpus::load("/nonexistent/weft/corpus.txt"), Catch::Contains("/nonexistent/weft/corpus.txt does not exist"));
  const fs::path d = fresh_dir("empty");
  write(d / "notes", "no index beside me");
  REQUIRE_THROWS_WITH(CharCorpus::load(d.string()), Catch::Contains("holds no fortune files"));
  write(d / "empty.txt", "");
  REQUIRE_THROWS_WITH(CharCorpus::load((d / "empty.txt").string()), Catch::Contains("holds 0 characters"));
  fs::remove_all(d);
}

TEST_CASE("CharCorpus: a directory gives its fortune files (those with a .dat), in name order", "[data][text]") {
  const fs::path d = fresh_dir("dir");
  write(d / "zeta", "Z1\n%\n");
  write(d / "zeta.dat", "binary index");
  write(d / "alpha", "A1\n%\nA2\n");
  write(d / "alpha.dat", "binary index");
  write(d / "README", "not a fortune file: no .dat");
  const CharCorpus c = CharCorpus::load(d.string());
  REQUIRE(c.text == "A1\n%\nA2\nZ1\n%\n");
  REQUIRE(c.files.size() == 2);
  REQUIRE(fs::path(c.files[0]).filename() == "alpha");
  REQUIRE(fs::path(c.files[1]).filename() == "zeta");
  // One file loads as itself.
  REQUIRE(CharCorpus::load((d / "README").string()).text == "not a fortune file: no .dat");
  fs::remove_all(d);
}
