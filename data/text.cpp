#include "text.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../tensor/error.h"

namespace weft::data {

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  WEFT_CHECK(in.good(), "CharCorpus: cannot open ", p.string());
  std::ostringstream s;
  s << in.rdbuf();
  WEFT_CHECK(!in.bad(), "CharCorpus: error reading ", p.string());
  return s.str();
}

// The fortune files of a directory: regular files with a strfile index "<name>.dat".
std::vector<fs::path> fortune_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const fs::path p = e.path();
    if (p.extension() == ".dat" || !fs::is_regular_file(p)) continue;
    if (fs::exists(fs::path(p.string() + ".dat"))) out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

CharCorpus CharCorpus::from_text(std::string text) {
  WEFT_CHECK(text.size() >= 2, "CharCorpus: the text has ", text.size(), " characters; a language model needs at least 2");
  CharCorpus c;
  c.text = std::move(text);
  std::array<bool, 256> seen{};
  for (unsigned char b : c.text) seen[b] = true;
  c.id.fill(-1);
  for (int b = 0; b < 256; ++b)
    if (seen[size_t(b)]) {
      c.id[size_t(b)] = int16_t(c.vocab.size());
      c.vocab.push_back(uint8_t(b));
    }
  c.ids = empty({int64_t(c.text.size())}, {.dtype = kInt64});
  int64_t* out = c.ids.data<int64_t>();
  for (size_t i = 0; i < c.text.size(); ++i) out[i] = c.id[static_cast<unsigned char>(c.text[i])];
  return c;
}

CharCorpus CharCorpus::load(const std::string& path) {
  const fs::path p(path);
  WEFT_CHECK(fs::exists(p), "CharCorpus: ", path, " does not exist",
             path.find("fortunes") != std::string::npos ? " (apt-get install fortunes)" : "");
  std::vector<fs::path> files;
  if (fs::is_directory(p)) {
    files = fortune_files(p);
    WEFT_CHECK(!files.empty(), "CharCorpus: ", path, " holds no fortune files (a file with a .dat index beside it); ",
               "pass a text file instead");
  } else {
    files = {p};
  }
  std::string text;
  for (const fs::path& f : files) text += read_file(f);
  WEFT_CHECK(text.size() >= 2, "CharCorpus: ", path, " holds ", text.size(), " characters; a language model needs at least 2");
  CharCorpus c = from_text(std::move(text));
  for (const fs::path& f : files) c.files.push_back(f.string());
  return c;
}

std::string CharCorpus::decode(const std::vector<int64_t>& ids_) const {
  std::string s;
  s.reserve(ids_.size());
  for (int64_t i : ids_) {
    WEFT_CHECK(i >= 0 && i < vocab_size(), "CharCorpus::decode: id ", i, " is outside the vocabulary of ", vocab_size());
    s.push_back(char(vocab[size_t(i)]));
  }
  return s;
}

std::vector<int64_t> CharCorpus::encode(const std::string& s) const {
  std::vector<int64_t> out;
  out.reserve(s.size());
  for (unsigned char b : s) {
    WEFT_CHECK(id[b] >= 0, "CharCorpus::encode: byte ", int(b), " ('", char(b), "') is not in the corpus's vocabulary");
    out.push_back(id[b]);
  }
  return out;
}

}  // namespace weft::data
