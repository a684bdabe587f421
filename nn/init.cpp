#include "init.h"

#include <cmath>

#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::nn::init {

std::pair<int64_t, int64_t> fans(const Tensor& w) {
  WEFT_CHECK(w.dim() >= 2, "init: fan in/out need a tensor with at least 2 dims, got ", w.shape());
  int64_t field = 1;
  for (int64_t d = 2; d < w.dim(); ++d) field *= w.shape()[d];
  return {w.shape()[1] * field, w.shape()[0] * field};
}

double gain(Nonlinearity nl, double param) {
  switch (nl) {
    case Nonlinearity::Linear:
    case Nonlinearity::Sigmoid: return 1.0;
    case Nonlinearity::ReLU: return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU: return std::sqrt(2.0 / (1 + param * param));
    case Nonlinearity::Tanh: return 5.0 / 3;
  }
  return 1.0;
}

void uniform_(Tensor& t, double lo, double hi, Generator& gen) { raw::uniform_(t, lo, hi, gen); }
void normal_(Tensor& t, double mean, double std, Generator& gen) { raw::normal_(t, mean, std, gen); }
void constant_(Tensor& t, double value) { raw::fill_(t, value); }
void zeros_(Tensor& t) { raw::fill_(t, 0.0); }
void ones_(Tensor& t) { raw::fill_(t, 1.0); }

void xavier_uniform_(Tensor& t, double g, Generator& gen) {
  const auto [in, out] = fans(t);
  const double b = g * std::sqrt(6.0 / static_cast<double>(in + out));
  uniform_(t, -b, b, gen);
}

void xavier_normal_(Tensor& t, double g, Generator& gen) {
  const auto [in, out] = fans(t);
  normal_(t, 0.0, g * std::sqrt(2.0 / static_cast<double>(in + out)), gen);
}

void kaiming_uniform_(Tensor& t, double a, bool fan_in, Nonlinearity nl, Generator& gen) {
  const auto [in, out] = fans(t);
  const double b = gain(nl, a) * std::sqrt(3.0 / static_cast<double>(fan_in ? in : out));
  uniform_(t, -b, b, gen);
}

void kaiming_normal_(Tensor& t, double a, bool fan_in, Nonlinearity nl, Generator& gen) {
  const auto [in, out] = fans(t);
  normal_(t, 0.0, gain(nl, a) / std::sqrt(static_cast<double>(fan_in ? in : out)), gen);
}

}  // namespace weft::nn::init
