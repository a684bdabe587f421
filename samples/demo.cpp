// A first taste of weft: fit a tiny linear model with autograd and plain gradient descent.
#include <cstdio>

#include "weft.h"

int main() {
  using namespace weft;
  manual_seed(0);
  // y = 3x - 2 with noise; learn w and b.
  Tensor x = randn({256, 1});
  Tensor y = x * 3.0 - 2.0 + randn({256, 1}) * 0.1;
  Tensor w = zeros({1, 1}, {.requires_grad = true});
  Tensor b = zeros({1}, {.requires_grad = true});
  for (int step = 0; step <= 200; ++step) {
    Tensor loss = (x.matmul(w) + b - y).pow(2).mean();
    loss.backward();
    {
      autograd::NoGradGuard no_grad;
      w.add_(w.grad(), -0.1);
      b.add_(b.grad(), -0.1);
    }
    w.set_grad({});
    b.set_grad({});
    if (step % 50 == 0) std::printf("step %3d  loss %.5f\n", step, loss.item<float>());
  }
  std::printf("w = %.3f (true 3), b = %.3f (true -2)\n", w.item<float>(), b.item<float>());
  return 0;
}
