#include "layers.h"

namespace weft::nn {

namespace {
Pool2dParams square(int64_t k, int64_t s, int64_t p) {
  WEFT_CHECK(k > 0 && s >= 0 && p >= 0, "pooling: kernel ", k, ", stride ", s, ", padding ", p, " must be positive");
  const int64_t st = s == 0 ? k : s;  // PyTorch: stride defaults to the kernel size
  return {.kernel = {k, k}, .stride = {st, st}, .padding = {p, p}};
}
std::string pool_repr(const char* name, const Pool2dParams& p) {
  return detail::str(name, "(kernel_size=", p.kernel[0], ", stride=", p.stride[0], ", padding=", p.padding[0], ")");
}
}  // namespace

GELU::GELU(std::string approximate) : approximate(std::move(approximate)) {
  WEFT_CHECK(this->approximate == "none" || this->approximate == "tanh",
             "GELU: approximate must be 'none' or 'tanh', got '", this->approximate, "'");
}
std::string LeakyReLU::repr() const { return detail::str("LeakyReLU(negative_slope=", negative_slope, ")"); }
std::string Softplus::repr() const { return detail::str("Softplus(beta=", beta, ", threshold=", threshold, ")"); }

MaxPool2d::MaxPool2d(int64_t k, int64_t s, int64_t p) : params(square(k, s, p)) {}
std::string MaxPool2d::repr() const { return pool_repr("MaxPool2d", params); }
AvgPool2d::AvgPool2d(int64_t k, int64_t s, int64_t p) : params(square(k, s, p)) {}
std::string AvgPool2d::repr() const { return pool_repr("AvgPool2d", params); }

Dropout::Dropout(double p, Generator& gen) : p(p), gen_(gen) {
  WEFT_CHECK(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got ", p);
}
std::string Dropout::repr() const { return detail::str("Dropout(p=", p, ")"); }

Dropout2d::Dropout2d(double p, Generator& gen) : p(p), gen_(gen) {
  WEFT_CHECK(p >= 0 && p <= 1, "Dropout2d: p must be in [0, 1], got ", p);
}

Tensor Dropout2d::forward(const Tensor& x) {
  WEFT_CHECK(x.dim() >= 3, "Dropout2d: input ", x.shape(), " must be (N, C, H, W) or at least (N, C, L)");
  if (!is_training() || p == 0) return x;
  // One keep-and-scale factor per (n, c), broadcast over the channel's positions:
  // dropout of a ones tensor of shape (N, C, 1, ...) is exactly that mask.
  std::vector<int64_t> per_channel(size_t(x.dim()), 1);
  per_channel[0] = x.size(0), per_channel[1] = x.size(1);
  const Tensor mask = weft::dropout(ones(Shape(per_channel), {.dtype = x.dtype(), .device = x.device()}), p, true, gen_);
  return x * mask;
}

std::string Dropout2d::repr() const { return detail::str("Dropout2d(p=", p, ")"); }

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t h, int64_t w) : out_h(h), out_w(w) {
  WEFT_CHECK(h > 0 && w > 0, "AdaptiveAvgPool2d: output size must be positive, got (", h, ", ", w, ")");
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  WEFT_CHECK(x.dim() == 4, "AdaptiveAvgPool2d: input ", x.shape(), " must be (N, C, H, W)");
  const int64_t H = x.size(2), W = x.size(3);
  if (out_h == 1 && out_w == 1) return x.mean({2, 3}, true);
  if (H % out_h == 0 && W % out_w == 0) {  // equal bins, side by side: one pooling
    const int64_t kh = H / out_h, kw = W / out_w;
    return weft::avg_pool2d(x, {.kernel = {kh, kw}, .stride = {kh, kw}, .padding = {0, 0}});
  }
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < out_h; ++i) {
    const int64_t r0 = i * H / out_h, r1 = ((i + 1) * H + out_h - 1) / out_h;
    std::vector<Tensor> cells;
    for (int64_t j = 0; j < out_w; ++j) {
      const int64_t c0 = j * W / out_w, c1 = ((j + 1) * W + out_w - 1) / out_w;
      cells.push_back(x.narrow(2, r0, r1 - r0).narrow(3, c0, c1 - c0).mean({2, 3}, true));  // (N, C, 1, 1)
    }
    rows.push_back(weft::cat(cells, 3));  // (N, C, 1, out_w)
  }
  return weft::cat(rows, 2);  // (N, C, out_h, out_w)
}

std::string AdaptiveAvgPool2d::repr() const { return detail::str("AdaptiveAvgPool2d(output_size=(", out_h, ", ", out_w, "))"); }

}  // namespace weft::nn
