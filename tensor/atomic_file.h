// AtomicFile: a file that appears whole or not at all -- what checkpoints and traces are
// written through, so that a crash (or a full disk) mid-write never leaves a
// half-written file under the name a later run will read.
//
//   AtomicFile f("run.safetensors");   // creates "run.safetensors.tmp.<pid>.<n>" beside it
//   f.write(bytes, n);                 // ... as often as needed
//   f.commit();                        // fsync, rename over the target, fsync the directory
//
// Until commit() succeeds the destructor removes the temporary file, so every failure
// path, exceptions included, cleans up and the previous file stays intact. The
// temporary sits in the target's directory, so the rename cannot cross file systems.
// A save killed before its rename leaves its temporary behind; the next AtomicFile for
// the same target removes those of processes that are gone (and this process's own that
// no live AtomicFile is writing: a container often gives a rerun the dead run's pid).
// Errors are weft::Error naming the target, then what failed and errno's text.
#pragma once

#include <cstdint>
#include <string>

namespace weft {

// A file descriptor that closes itself (-1: none).
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  int release();        // gives up ownership: the caller closes it
  void reset(int fd);   // closes the one it holds, then holds fd

 private:
  int fd_;
};

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, uint64_t n);
  // Flushes the bytes to disk, then renames the temporary over the target. Flushing
  // first matters: otherwise a crash could leave the new name on an empty file, which is
  // worse than the old one.
  void commit();
  const std::string& temp_path() const { return path_; }

 private:
  std::string target_, path_;
  UniqueFd fd_{-1};
  bool committed_ = false;
};

// The whole of `text` written to `path` through an AtomicFile; where `path` exists and
// is not a regular file (/dev/stdout, a pipe), written straight into it. (AtomicFile
// itself refuses such a target: a rename would replace it.)
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace weft
