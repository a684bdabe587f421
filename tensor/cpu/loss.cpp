// Fused cross-entropy: log-softmax and the negative log-likelihood in one pass per row.
//
// logits (N, C), target (N) int64. With label smoothing e the target distribution is
// q = (1-e) onehot(y) + e/C, and loss_i = -sum_j q_j log p_ij. The gradient of the mean
// loss with respect to the logits is (p - q) / N, so the forward keeps p for backward.
//
// On a GPU (cuda/kernels/softmax.cu) a warp per row does the same; the targets are not
// range-checked there, since reading them back would stall the stream every step.
#include <cmath>

#include "../backend.h"
#include "../raw.h"
#include "../thread_pool.h"

namespace weft::raw {

namespace {
void check_ce(const char* op, const Tensor& logits, const Tensor& target, double eps) {
  WEFT_CHECK(logits.defined() && target.defined(), op, ": an input tensor is undefined");
  WEFT_CHECK(target.device() == logits.device(), op, ": targets are on ", target.device(), ", logits on ",
             logits.device());
  WEFT_CHECK(logits.dim() == 2, op, ": logits must be (N, C), got ", logits.shape());
  WEFT_CHECK(target.dtype() == kInt64, op, ": targets must be int64 class indices, got ", target.dtype());
  WEFT_CHECK(target.dim() == 1 && target.shape()[0] == logits.shape()[0], op, ": targets ", target.shape(),
             " do not match logits ", logits.shape(), " (expected (", logits.shape()[0], "))");
  WEFT_CHECK(eps >= 0 && eps <= 1, op, ": label_smoothing must be in [0, 1], got ", eps);
}
}  // namespace

std::pair<Tensor, Tensor> cross_entropy(const Tensor& logits_in, const Tensor& target_in, double eps) {
  check_ce("cross_entropy", logits_in, target_in, eps);
  const Tensor logits = contiguous(logits_in), target = contiguous(target_in);
  const int64_t n = logits.shape()[0], c = logits.shape()[1];
  Tensor probs = empty(logits.shape(), logits.dtype(), logits.device());
  Tensor loss = empty({}, logits.dtype(), logits.device());
  if (routed(logits)) {
    backend_for(logits).cross_entropy(loss, probs, logits, target, eps);
    return {loss, probs};
  }
  const int64_t* y = target.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    WEFT_CHECK(y[i] >= 0 && y[i] < c, "cross_entropy: target ", y[i], " at row ", i, " is not a class in [0, ", c, ")");
  dispatch_floating(logits.dtype(), "cross_entropy", [&]<class T>() {
    const T* x = logits.data<T>();
    T* p = probs.data<T>();
    std::vector<double> row_loss(n);
    parallel_for(0, n, std::max<int64_t>(1, 4096 / std::max<int64_t>(c, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* xi = x + i * c;
        T mx = xi[0];
        for (int64_t j = 1; j < c; ++j) mx = std::max(mx, xi[j]);
        double sum = 0, sum_shifted = 0;
        for (int64_t j = 0; j < c; ++j) {
          sum += std::exp(double(xi[j] - mx));
          sum_shifted += double(xi[j] - mx);
        }
        const double log_sum = std::log(sum);
        for (int64_t j = 0; j < c; ++j) p[i * c + j] = static_cast<T>(std::exp(double(xi[j] - mx)) / sum);
        // log p_j = (x_j - max) - log_sum
        const double logp_y = double(xi[y[i]] - mx) - log_sum;
        const double mean_logp = sum_shifted / c - log_sum;
        row_loss[i] = -((1 - eps) * logp_y + eps * mean_logp);
      }
    });
    double total = 0;
    for (double l : row_loss) total += l;  // a fixed order: the loss is deterministic
    *loss.data<T>() = static_cast<T>(n ? total / n : 0.0);
  });
  return {loss, probs};
}

Tensor cross_entropy_backward(const Tensor& grad, const Tensor& probs, const Tensor& target, double eps) {
  check_ce("cross_entropy_backward", probs, target, eps);
  const int64_t n = probs.shape()[0], c = probs.shape()[1];
  Tensor gi = empty(probs.shape(), probs.dtype(), probs.device());
  if (routed(probs)) {
    WEFT_CHECK(grad.defined() && grad.numel() == 1, "cross_entropy_backward: the gradient must hold one value");
    backend_for(probs).cross_entropy_backward(gi, to_device(grad, probs.device()), probs, target, eps);
    return gi;
  }
  const Tensor tc = contiguous(target);
  const int64_t* y = tc.data<int64_t>();
  dispatch_floating(probs.dtype(), "cross_entropy_backward", [&]<class T>() {
    const T scale = static_cast<T>(grad.item<double>() / std::max<int64_t>(n, 1));
    const T off = static_cast<T>(eps / c), on = static_cast<T>(1 - eps + eps / c);
    const T* p = probs.data<T>();
    T* g = gi.data<T>();
    parallel_for(0, n, std::max<int64_t>(1, 4096 / std::max<int64_t>(c, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t j = 0; j < c; ++j) g[i * c + j] = scale * (p[i * c + j] - (j == y[i] ? on : off));
    });
  });
  return gi;
}

}  // namespace weft::raw
