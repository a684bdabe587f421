// Linked with tensor/'s objects (and cuda/'s, its backend) and nothing else: if tensor/
// called into autograd/ or above, this would not link. It also checks that the plain
// views and kernels work on their own. Exit status 0 on success.
#include <cstdio>
#include <sstream>

#include "tensor/creation.h"
#include "tensor/raw.h"
#include "tensor/views.h"

using namespace weft;

int main() {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    if (!ok) std::printf("FAIL: %s\n", what), ++failures;
  };
  const Tensor a = views::reshape(arange(0, 6), {2, 3});  // [[0 1 2] [3 4 5]]
  const Tensor at = views::t(a);                  // (3, 2), a view
  check(at.shape() == Shape{3, 2} && at.storage() == a.storage(), "t is a view");
  const Tensor p = raw::matmul(a, at);  // [[5 14] [14 50]]
  check(p.to_vector<float>() == std::vector<float>{5, 14, 14, 50}, "matmul through a transposed view");
  check(views::select(a, 1, 2).to_vector<float>() == std::vector<float>{2, 5}, "select");
  check(views::expand(views::unsqueeze(views::select(a, 0, 0), 0), {2, 3}).to_vector<float>() ==
            std::vector<float>{0, 1, 2, 0, 1, 2},
        "unsqueeze + expand");
  const Tensor w = ones({3}, {.requires_grad = true});
  std::ostringstream os;
  os << w;
  check(w.requires_grad() && os.str().find("requires_grad") != std::string::npos, "requires_grad flag and print");
  std::printf("%s\n", failures == 0 ? "tensor_only: ok" : "tensor_only: FAILED");
  return failures == 0 ? 0 : 1;
}
