// Weight initialisers, in place, under no-grad. The defaults of Linear and Conv2d match
// PyTorch's exactly in distribution: kaiming_uniform with a = sqrt(5), which works out to
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weights and biases alike.
#pragma once

#include "../tensor/generator.h"
#include "../tensor/tensor.h"

namespace weft::nn::init {

// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (for a
// (out, in, kh, kw) conv weight or an (out, in) linear weight).
std::pair<int64_t, int64_t> fans(const Tensor& w);

enum class Nonlinearity { Linear, ReLU, LeakyReLU, Tanh, Sigmoid };
// The gain PyTorch's calculate_gain returns (for LeakyReLU, `param` is the slope).
double gain(Nonlinearity nl, double param = 0.01);

void uniform_(Tensor& t, double lo, double hi, Generator& gen = default_generator());
void normal_(Tensor& t, double mean, double std, Generator& gen = default_generator());
void constant_(Tensor& t, double value);
void zeros_(Tensor& t);
void ones_(Tensor& t);
// U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator& gen = default_generator());
// N(0, s), s = gain * sqrt(2 / (fan_in + fan_out))
void xavier_normal_(Tensor& t, double gain = 1.0, Generator& gen = default_generator());
// U(-b, b), b = gain(nl, a) * sqrt(3 / fan), fan = fan_in (or fan_out)
void kaiming_uniform_(Tensor& t, double a = 0.0, bool fan_in = true, Nonlinearity nl = Nonlinearity::LeakyReLU,
                      Generator& gen = default_generator());
// N(0, s), s = gain(nl, a) / sqrt(fan)
void kaiming_normal_(Tensor& t, double a = 0.0, bool fan_in = true, Nonlinearity nl = Nonlinearity::LeakyReLU,
                     Generator& gen = default_generator());

}  // namespace weft::nn::init
