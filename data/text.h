// Text as characters: a corpus read from disk, its vocabulary, and the token ids a
// character-level language model trains on (samples/train_charlm).
//
//   auto corpus = data::CharCorpus::load("/usr/share/games/fortunes");
//   Tensor ids = corpus.ids;                    // int64 (n,), one id per byte of text
//   std::string s = corpus.decode({5, 17, 2});  // ids -> text
//
// A "character" is a byte: plain ASCII corpora (Debian's fortunes, the default) have
// one byte per character, and any file still loads (UTF-8 text becomes its bytes). The
// vocabulary is the sorted set of bytes that occur, so the ids depend only on the text,
// and a PyTorch script reading the same files builds the same one (bench/charlm.py).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "../tensor/tensor.h"

namespace weft::data {

struct CharCorpus {
  std::string text;               // the raw bytes, every file in order
  std::vector<uint8_t> vocab;     // id -> byte, ascending
  std::array<int16_t, 256> id{};  // byte -> id, -1 where the byte never occurs
  Tensor ids;                     // int64 (text.size(),)
  std::vector<std::string> files; // what was read

  // A file, or a directory: then its fortune files -- every regular file with a ".dat"
  // index beside it (fortune's strfile output), in name order -- are concatenated.
  // Throws naming the path when it is missing, unreadable, holds no such files, or
  // the text is shorter than two characters.
  static CharCorpus load(const std::string& path);
  // From a string already in memory (tests, a corpus of your own).
  static CharCorpus from_text(std::string text);

  int64_t vocab_size() const { return int64_t(vocab.size()); }
  // ids (any integer values) -> text; throws naming an id outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids) const;
  // text -> ids; throws naming a byte the corpus never had.
  std::vector<int64_t> encode(const std::string& s) const;
};

}  // namespace weft::data
