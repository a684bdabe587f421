// GPU time of weft's hot raw kernels (bench/gpu_kernels.py is the PyTorch twin): each op
// runs `iters` times between two CUDA events after a warm-up; prints one line per op,
// "name us_per_call", for the script that puts the two side by side.
#include <cstdio>
#include <functional>

#include "weft.h"

using namespace weft;

namespace {
double time_us(const std::function<void()>& f, int iters = 200) {
  for (int i = 0; i < 10; ++i) f();
  const cuda::Stream s = cuda::current_stream(0);
  cuda::Event start(true), end(true);
  start.record(s);
  for (int i = 0; i < iters; ++i) f();
  end.record(s);
  end.synchronize();
  return 1000.0 * start.elapsed_ms(end) / iters;
}
}  // namespace

int main() {
  const Device g = Device::cuda(0);
  Generator gen(1);
  const Tensor a = randn({1 << 24}, {.device = g}, gen), b = randn({1 << 24}, {.device = g}, gen);
  const Tensor x = randn({65536, 512}, {.device = g}, gen), bias = randn({512}, {.device = g}, gen);
  const Tensor logits = randn({65536, 10}, {.device = g}, gen), big = randn({4096, 4096}, {.device = g}, gen);
  const Tensor conv = randn({128, 64, 28, 28}, {.device = g}, gen);
  std::vector<int64_t> y(65536);
  for (size_t i = 0; i < y.size(); ++i) y[i] = int64_t(i % 10);
  const Tensor target = tensor(y, {65536}).to(g);
  Tensor dst = empty({1 << 24}, kFloat32, g);
  std::printf("add_16M %.2f\n", time_us([&] { raw::binary(raw::Binary::Add, a, b); }));
  std::printf("axpy_16M %.2f\n", time_us([&] { raw::axpy_(dst, 0.5, a); }));
  std::printf("bias_add_65536x512 %.2f\n", time_us([&] { raw::binary(raw::Binary::Add, x, bias); }));
  std::printf("relu_65536x512 %.2f\n", time_us([&] { raw::unary(raw::Unary::Relu, x); }));
  std::printf("transpose_copy_4096 %.2f\n", time_us([&] { raw::contiguous(big.t()); }));
  std::printf("colsum_65536x512 %.2f\n", time_us([&] { raw::reduce(raw::Reduce::Sum, x, {0}, false); }));
  std::printf("rowsum_65536x512 %.2f\n", time_us([&] { raw::reduce(raw::Reduce::Sum, x, {1}, false); }));
  std::printf("sum_all_16M %.2f\n", time_us([&] { raw::reduce(raw::Reduce::Sum, a, {}, false); }));
  std::printf("conv_bias_grad_128x64x28x28 %.2f\n", time_us([&] { raw::reduce(raw::Reduce::Sum, conv, {0, 2, 3}, false); }));
  std::printf("softmax_65536x10 %.2f\n", time_us([&] { raw::softmax(logits, 1); }));
  std::printf("softmax_4096x4096 %.2f\n", time_us([&] { raw::softmax(big, 1); }));
  std::printf("cross_entropy_65536x10 %.2f\n", time_us([&] { raw::cross_entropy(logits, target, 0.1); }));
  std::printf("argmax_65536x10 %.2f\n", time_us([&] { raw::argreduce(true, logits, 1, false); }));
  std::printf("bernoulli_16M %.2f\n", time_us([&] { raw::bernoulli_(dst, 0.5, gen); }));
}
