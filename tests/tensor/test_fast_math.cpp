// exp_fast and erf_fast (tensor/host_device.h), the vectorised float exp and erf under
// the CPU softmax and GELU: their accuracy over the whole range and their special values.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "../../tensor/host_device.h"
#include "../../weft.h"

using namespace weft;

TEST_CASE("exp_fast is within 1.01 ulp of exp over the normal range", "[tensor][fast_math]") {
  double worst = 0;
  for (float x = -87.0f; x < 88.7f; x += 0.00173f) {
    const double want = std::exp(double(x));
    const float w = float(want);
    const double ulp = double(std::nextafter(w, INFINITY)) - double(w);
    worst = std::max(worst, std::fabs(double(hd::exp_fast(x)) - want) / ulp);
  }
  INFO("worst " << worst << " ulp");
  REQUIRE(worst < 1.01);
  // Subnormal results keep fewer bits but stay close; below them, 0.
  REQUIRE(hd::exp_fast(-100.0f) == Approx(std::exp(-100.0)).epsilon(0.02));
  REQUIRE(hd::exp_fast(-104.0f) == 0.0f);
}

TEST_CASE("exp_fast and erf_fast: special values", "[tensor][fast_math]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  REQUIRE(hd::exp_fast(-inf) == 0.0f);
  REQUIRE(hd::exp_fast(inf) == inf);
  REQUIRE(hd::exp_fast(89.0f) == inf);
  REQUIRE(std::isfinite(hd::exp_fast(88.72f)));
  REQUIRE(std::isnan(hd::exp_fast(nan)));
  REQUIRE(hd::exp_fast(0.0f) == 1.0f);
  REQUIRE(hd::erf_fast(inf) == 1.0f);
  REQUIRE(hd::erf_fast(-inf) == -1.0f);
  REQUIRE(std::isnan(hd::erf_fast(nan)));
  REQUIRE(std::fabs(hd::erf_fast(0.0f)) < 1e-7f);
  // double stays libm's.
  REQUIRE(hd::exp_fast(1.5) == std::exp(1.5));
  REQUIRE(hd::erf_fast(0.3) == std::erf(0.3));
}

TEST_CASE("erf_fast is within 5.1e-7 of erf (Abramowitz-Stegun 7.1.26, as PyTorch's CPU kernel)", "[tensor][fast_math]") {
  double worst = 0;
  for (float x = -6.0f; x < 6.0f; x += 0.00037f) worst = std::max(worst, std::fabs(hd::erf_fast(x) - std::erf(double(x))));
  INFO("worst " << worst);
  REQUIRE(worst < 5.1e-7);
  REQUIRE(hd::erf_fast(-0.7f) == -hd::erf_fast(0.7f));  // odd
}

TEST_CASE("float softmax through exp_fast: masked entries are exactly 0, rows sum to 1", "[tensor][fast_math]") {
  const float inf = std::numeric_limits<float>::infinity();
  // 37 columns: two full 16-lane blocks and a tail.
  std::vector<float> v(2 * 37);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(std::sin(double(i))) * 4.0f;
  for (size_t j = 20; j < 37; ++j) v[j] = -inf;  // row 0: a causal-style mask
  const Tensor x = tensor(v, {2, 37});
  const std::vector<float> y = x.softmax(1).to_vector<float>();
  const std::vector<double> want = x.to(kFloat64).softmax(1).to_vector<double>();
  double sum0 = 0;
  for (size_t j = 0; j < 37; ++j) sum0 += y[j];
  REQUIRE(sum0 == Approx(1.0).epsilon(1e-6));
  for (size_t j = 20; j < 37; ++j) REQUIRE(y[j] == 0.0f);
  for (size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(want[i]).epsilon(2e-6).margin(1e-9));
  const std::vector<float> ly = x.log_softmax(1).to_vector<float>();
  const std::vector<double> lwant = x.to(kFloat64).log_softmax(1).to_vector<double>();
  for (size_t i = 0; i < ly.size(); ++i)
    if (std::isfinite(lwant[i])) REQUIRE(ly[i] == Approx(lwant[i]).epsilon(2e-6).margin(2e-6));
    else REQUIRE(ly[i] == -inf);
}
