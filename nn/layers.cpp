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

}  // namespace weft::nn
