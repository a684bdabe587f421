// The intra-op thread pool when the system refuses threads (issue 17: a pool whose
// worker could not be created deadlocked in its constructor).
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <string>

#include "../helpers.h"

using namespace weft;

namespace {
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// This process's address space in bytes (/proc/self/statm counts pages).
size_t address_space_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0;
  statm >> pages;
  return pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}
}  // namespace

TEST_CASE("a thread pool the system cannot start fails with a clear error", "[threads][errors]") {
  if (kAsan) {
    WARN("skipped under AddressSanitizer: its shadow memory needs an unlimited address space");
    return;
  }
  // A child process whose address space may grow by only 64 MiB asks for 1000 threads:
  // the 8 MiB stacks run out after a few. It sends back what happened.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    rlimit limit{};
    ::getrlimit(RLIMIT_AS, &limit);
    limit.rlim_cur = address_space_bytes() + (64u << 20);
    ::setrlimit(RLIMIT_AS, &limit);
    std::string message = "no error";
    try {
      set_num_threads(1000);
    } catch (const Error& e) {
      message = e.what();
    } catch (const std::exception& e) {
      message = std::string("another exception: ") + e.what();
    }
    (void)!::write(fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  pollfd ready{fds[0], POLLIN, 0};
  if (::poll(&ready, 1, 60'000) == 0) {  // the old pool hung here
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    FAIL("set_num_threads(1000) under an address-space limit hung for 60 s");
  }
  std::string message;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) message.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));  // it returned: no abort
  INFO(message);
  CHECK_THAT(message, Catch::StartsWith("thread pool: could not start worker thread") &&
                          Catch::Contains("of 999") && Catch::Contains("ask for fewer threads"));
}
