// weft::Error: the one exception type weft throws for bad input.
//
// Every message names the op first ("matmul: (3,4) @ (5,6): inner dimensions 4 and 5
// differ") so a user reading a stack-less error still knows where it came from.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace weft {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
// Concatenates anything printable with operator<<; used only on error paths.
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace weft

// WEFT_CHECK(cond, parts...): throw weft::Error(str(parts...)) when cond is false.
#define WEFT_CHECK(cond, ...)                                 \
  do {                                                        \
    if (!(cond)) throw ::weft::Error(::weft::detail::str(__VA_ARGS__)); \
  } while (0)
