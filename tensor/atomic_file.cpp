#include "atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "error.h"

namespace weft {

namespace {

template <class... Args>
[[noreturn]] void fail(const std::string& file, const Args&... args) {
  throw Error(detail::str(file, ": ", args...));
}

std::string errno_text() { return std::strerror(errno); }

// The temporary files this process is writing now (saves may run on several threads),
// so that removing stale ones never removes a save in progress.
std::mutex live_temps_mutex;
std::set<std::string> live_temps;

// The process that wrote `name`, if it is `prefix` followed by "<pid>.<n>": the name
// of a temporary file of a save (AtomicFile).
std::optional<pid_t> temp_owner(const std::string& name, const std::string& prefix) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string rest = name.substr(prefix.size());
  const auto dot = rest.find('.');
  const auto digits = [](const std::string& s) {
    return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  if (dot == std::string::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1))) return std::nullopt;
  return static_cast<pid_t>(std::stol(rest.substr(0, dot)));
}

// A save killed between creating its temporary file and the rename leaves
// "<target>.tmp.<pid>.<n>" beside the target, the size of a checkpoint. The next save to
// the same target removes those of processes that are gone, and this process's own that
// no save is writing (a container often gives a rerun the dead run's pid). Best effort:
// what cannot be listed or removed stays. (A process of another machine sharing the
// directory looks gone: its save then fails at the rename, cleanly.) The caller holds
// live_temps_mutex.
void remove_stale_temps(const std::string& target) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(target).parent_path().empty() ? fs::path(".") : fs::path(target).parent_path();
  const std::string file = fs::path(target).filename().string(), prefix = file + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::optional<pid_t> pid = temp_owner(name, prefix);
    if (!pid) continue;
    const bool gone = *pid == ::getpid() ? !live_temps.contains(target + name.substr(file.size()))
                                         : ::kill(*pid, 0) != 0 && errno == ESRCH;
    std::error_code ignored;
    if (gone) fs::remove(it->path(), ignored);
  }
}

// True when `path` names something that exists and is not a regular file (a device such
// as /dev/stdout, a pipe, a directory): the rename would replace it, not write into it.
bool exists_but_not_regular(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
}

// All n bytes to fd (write may take fewer at a time, or be interrupted); an error names
// `target` and the file written.
void write_all(int fd, const void* data, uint64_t n, const std::string& target, const std::string& written) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t put = ::write(fd, p, std::min<uint64_t>(n, 1u << 30));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) fail(target, "writing ", written, " failed: ", errno_text());
    p += put;
    n -= static_cast<uint64_t>(put);
  }
}

// Makes a rename in the target's directory durable. Best effort: some file systems
// refuse it, and the file is complete either way.
void sync_directory(const std::string& target) {
  const std::string dir = std::filesystem::path(target).parent_path().string();
  UniqueFd d(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() >= 0) (void)::fsync(d.get());
}

}  // namespace

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::release() { return std::exchange(fd_, -1); }

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

AtomicFile::AtomicFile(const std::string& target) : target_(target) {
  if (exists_but_not_regular(target))
    fail(target, "is not a regular file (a directory, a device or a pipe): a file is saved under this name by "
                 "writing a temporary and renaming it over the old one");
  static std::atomic<uint64_t> counter{0};
  std::lock_guard lock(live_temps_mutex);
  remove_stale_temps(target);
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    path_ = detail::str(target, ".tmp.", ::getpid(), ".", counter++);
    // 0666 and O_EXCL rather than mkstemp: the file gets the umask's usual permissions.
    fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) fail(target_, "cannot create the temporary file ", path_, ": ", errno_text());
  fd_.reset(fd);
  live_temps.insert(path_);
}

AtomicFile::~AtomicFile() {
  fd_.reset(-1);
  std::lock_guard lock(live_temps_mutex);
  if (!committed_) ::unlink(path_.c_str());
  live_temps.erase(path_);
}

void AtomicFile::write(const void* data, uint64_t n) {
  WEFT_CHECK(fd_.get() >= 0, target_, ": write after commit");
  write_all(fd_.get(), data, n, target_, path_);
}

void AtomicFile::commit() {
  WEFT_CHECK(fd_.get() >= 0, target_, ": committed twice");
  if (::fsync(fd_.get()) != 0) fail(target_, "flushing ", path_, " to disk failed: ", errno_text());
  if (::close(fd_.release()) != 0) fail(target_, "closing ", path_, " failed: ", errno_text());
  if (::rename(path_.c_str(), target_.c_str()) != 0) fail(target_, "renaming ", path_, " over it failed: ", errno_text());
  committed_ = true;
  sync_directory(target_);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  if (exists_but_not_regular(path)) {  // /dev/stdout, a pipe: written into, as it is
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) fail(path, "cannot open for writing: ", errno_text());
    write_all(fd.get(), text.data(), text.size(), path, path);
    return;
  }
  AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

}  // namespace weft
