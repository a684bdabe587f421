// The intra-op thread pool when the system refuses threads (issue 17: a pool whose
// worker could not be created deadlocked in its constructor).
#include <sys/resource.h>
#include <unistd.h>

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
  // the 8 MiB stacks run out after a few. Before the fix it hung ("hung" here).
  const std::string message = test::in_child([] {
    rlimit limit{};
    ::getrlimit(RLIMIT_AS, &limit);
    limit.rlim_cur = address_space_bytes() + (64u << 20);
    ::setrlimit(RLIMIT_AS, &limit);
    try {
      set_num_threads(1000);
    } catch (const Error& e) {
      return std::string(e.what());
    } catch (const std::exception& e) {
      return std::string("another exception: ") + e.what();
    }
    return std::string("no error");
  });
  INFO(message);
  CHECK_THAT(message, Catch::StartsWith("thread pool: could not start worker thread") &&
                          Catch::Contains("of 999") && Catch::Contains("ask for fewer threads"));
}
