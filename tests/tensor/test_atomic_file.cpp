// AtomicFile (tensor/atomic_file.h): the file appears whole at commit() or not at all,
// the temporary never outlives the writer, and errors name the target.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../helpers.h"

#include "tensor/atomic_file.h"

using namespace weft;
namespace fs = std::filesystem;

namespace {
std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
size_t files_in(const std::string& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}
}  // namespace

TEST_CASE("AtomicFile: the target changes only at commit, and no temporary is left", "[atomic_file]") {
  test::TempDir dir;
  const std::string target = dir.file("out.json");
  write_file_atomically(target, "old");
  {
    AtomicFile f(target);
    f.write("new ", 4);
    CHECK(fs::exists(f.temp_path()));
    CHECK(read_all(target) == "old");  // not yet
    f.write("text", 4);
    f.commit();
    CHECK(!fs::exists(f.temp_path()));
    CHECK_THROWS_WITH(f.commit(), Catch::Contains("out.json: committed twice"));
  }
  CHECK(read_all(target) == "new text");
  CHECK(files_in(dir.path.string()) == 1);

  // A writer that fails before commit (an exception unwinding it) leaves the old file.
  try {
    AtomicFile f(target);
    f.write("half", 4);
    throw std::runtime_error("the disk is full");
  } catch (const std::runtime_error&) {
  }
  CHECK(read_all(target) == "new text");
  CHECK(files_in(dir.path.string()) == 1);
}

TEST_CASE("AtomicFile: a target it cannot write names the target", "[atomic_file][errors]") {
  test::TempDir dir;
  const std::string target = dir.file("no/such/dir/out.json");
  CHECK_THROWS_WITH(AtomicFile(target), Catch::Contains(target + ": cannot create the temporary file") &&
                                            Catch::Contains("No such file or directory"));
  CHECK(files_in(dir.path.string()) == 0);
}

TEST_CASE("AtomicFile refuses a target that is not a regular file; write_file_atomically writes into it",
          "[atomic_file][errors]") {
  test::TempDir dir;
  fs::create_directory(dir.file("sub"));
  CHECK_THROWS_WITH(AtomicFile(dir.file("sub")), Catch::Contains("sub: is not a regular file"));
  CHECK(fs::is_directory(dir.file("sub")));
  write_file_atomically("/dev/null", "into the device, not over it");
  CHECK(fs::is_character_file("/dev/null"));
}

TEST_CASE("AtomicFile: a commit whose rename fails removes its temporary file", "[atomic_file][errors]") {
  // A non-empty directory appears at the target after the temporary was written: the
  // rename over it fails (even for root).
  test::TempDir dir;
  const std::string target = dir.file("taken");
  {
    AtomicFile f(target);
    f.write("bytes", 5);
    fs::create_directory(target);
    std::ofstream(dir.file("taken/keep")) << "kept";
    CHECK_THROWS_WITH(f.commit(), Catch::StartsWith(target + ": renaming " + f.temp_path() + " over it failed"));
  }
  CHECK(files_in(dir.path.string()) == 1);  // the directory alone
  CHECK(read_all(dir.file("taken/keep")) == "kept");
}
