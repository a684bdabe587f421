// Small helpers shared by the tests.
#pragma once

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <functional>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "weft.h"

namespace weft::test {

// A float64 leaf that requires grad, with values from a fixed seed.
inline Tensor leaf(const Shape& shape, uint64_t seed = 1) {
  Generator gen(seed);
  return randn(shape, {.dtype = kFloat64, .requires_grad = true}, gen);
}

// Values bounded away from zero (for log, sqrt, div, pow).
inline Tensor positive_leaf(const Shape& shape, uint64_t seed = 1) {
  Generator gen(seed);
  return uniform(shape, 0.5, 2.0, {.dtype = kFloat64, .requires_grad = true}, gen);
}

inline std::vector<double> vec(const Tensor& t) { return t.to_vector<double>(); }

// Runs `program args` through the shell, for at most `seconds`: its exit status (-1 when
// killed by a signal) and its output, stderr included.
inline std::pair<int, std::string> run_program(const std::string& program, const std::string& args,
                                               int seconds = 300) {
  const std::string cmd = "timeout " + std::to_string(seconds) + " " + program + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return {-1, "popen failed: " + cmd};
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Runs f in a forked child process and returns the message it returns, so a test can
// set process-wide limits (rlimits) there without touching the test process. Returns
// "hung" when the child has not answered within `seconds` (it is killed) and "died"
// when it ended without answering.
inline std::string in_child(const std::function<std::string()>& f, int seconds = 60) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    const std::string message = f();
    (void)!::write(fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  pollfd ready{fds[0], POLLIN, 0};
  if (::poll(&ready, 1, seconds * 1000) == 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    ::close(fds[0]);
    return "hung";
  }
  std::string message;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) message.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? message : "died";
}

// A fresh directory under the system temp dir, removed with everything in it at the end.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("weft-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

}  // namespace weft::test

// Runs gradcheck and reports the first mismatch on failure.
#define REQUIRE_GRADCHECK(f, ...)                                           \
  do {                                                                      \
    auto weft_gc_result = ::weft::autograd::gradcheck(f, __VA_ARGS__);     \
    INFO(weft_gc_result.report);                                            \
    REQUIRE(weft_gc_result.ok);                                             \
  } while (0)
