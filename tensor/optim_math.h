// The arithmetic of the SGD and Adam updates, written once for both devices.
//
// raw::sgd_step_ / raw::adam_step_ (tensor/cpu/optim.cpp on the CPU, cuda/kernels/optim.cu
// on a GPU) loop over every element of every parameter and call these WEFT_HD functions,
// so the two devices run one formula. The per-step scalars (bias corrections, the step
// size) are computed once per step, outside the element loop, in double as PyTorch's
// Python-side arithmetic does: on the host from the step count, or in the kernel from
// the lr and step it reads in device memory (so a CUDA graph replay follows the
// schedule; that lr is a float32, so a GPU step size can differ from the CPU's in its
// last bit).
//
// Internal header: not installed.
#pragma once

#include "host_device.h"

namespace weft::optim_math {

// ---- SGD with momentum, dampening, Nesterov and L2 weight decay (PyTorch's torch.optim.SGD)
//   d = g + wd w
//   b = d                          on the first step with momentum (PyTorch's rule)
//   b = momentum b + (1 - dampening) d   after that
//   d = nesterov ? d + momentum b : b
//   w -= lr d
template <class T>
struct SgdCoeffs {
  T lr, weight_decay, momentum, keep;  // keep = 1 - dampening
  bool first, nesterov;
};

// One element; `b` is its momentum buffer element, or null without momentum.
template <class T>
WEFT_HD inline void sgd_update(T& w, T g, T* b, const SgdCoeffs<T>& c) {
  T d = g + c.weight_decay * w;
  if (b) {
    *b = c.first ? d : c.momentum * *b + c.keep * d;
    d = c.nesterov ? d + c.momentum * *b : *b;
  }
  w -= c.lr * d;
}

// ---- Adam and AdamW (PyTorch's torch.optim.Adam / AdamW with foreach=False), written
// as PyTorch's single-tensor loop runs it, so that float32 rounds where PyTorch's does:
//   d = g + wd w                   (Adam, wd != 0: L2 folded into the gradient)
//   m = lerp(m, d, 1 - b1)         (exp_avg.lerp_(d, 1 - b1))
//   v = b2 v + (1 - b2) d^2        (exp_avg_sq.mul_(b2).addcmul_(d, d, value=1 - b2))
//   w = w decay - lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   decay = 1 - lr wd              (AdamW: decoupled decay, and no L2 term)
// Every scalar (1 - b1, 1 - b2, the bias corrections, lr / (1 - b1^t), sqrt(1 - b2^t),
// 1 - lr wd) is computed in double and rounded to T once, as PyTorch's Python floats
// are: 1 - b2 taken in float32 after rounding b2 = 0.999 is 1.3e-5 (relative) off, which
// made every step 6.5e-6 too large. What still differs from PyTorch is rounding inside
// the element loop: PyTorch's vectorised lerp and addcmul use fused multiply-adds, its
// vectorised sqrt (MKL's) is not correctly rounded and its AdamW decay is rounded on its
// own (param.mul_); here the compiler contracts multiply-adds where it likes (GCC with
// FMA fuses w decay - step). With GCC on an AVX-512 machine m and v come out bit for bit
// PyTorch's and w within 1 ulp (tests/golden/test_pytorch_golden.cpp).
template <class T>
struct AdamCoeffs {
  T beta2;
  T keep1, keep2;  // 1 - beta1, 1 - beta2
  T eps;
  T rate;      // lr / (1 - beta1^t)
  T sqrt_bc2;  // sqrt(1 - beta2^t)
  T decay, l2;
};

// The step's scalars, computed in double and then rounded to the parameters' type T.
// `step` is the 1-based step number t.
template <class T>
WEFT_HD inline AdamCoeffs<T> adam_coeffs(double lr, double step, double beta1, double beta2, double eps,
                                         double weight_decay, bool decoupled) {
  const double bc1 = 1 - hd::pow(beta1, step), bc2 = 1 - hd::pow(beta2, step);
  return {T(beta2),
          T(1 - beta1),
          T(1 - beta2),
          T(eps),
          T(lr / bc1),
          T(hd::sqrt(bc2)),
          decoupled ? T(1 - lr * weight_decay) : T(1),
          decoupled ? T(0) : T(weight_decay)};
}

// PyTorch's lerp(start, end, w) = start + w (end - start), computed from the end when
// w >= 0.5 (end - (1 - w) (end - start)), which keeps w = 1 exact.
template <class T>
WEFT_HD inline T lerp(T start, T end, T w) {
  return w < T(0.5) ? start + w * (end - start) : end - (end - start) * (T(1) - w);
}

// One element: weight w, gradient g, first and second moments m and v.
template <class T>
WEFT_HD inline void adam_update(T& w, T g, T& m, T& v, const AdamCoeffs<T>& c) {
  const T d = c.l2 != T(0) ? g + c.l2 * w : g;  // PyTorch skips the L2 term when wd = 0
  m = lerp(m, d, c.keep1);
  // (1 - b2) d^2 first: a compiler contracting this sum into a multiply-add then fuses
  // that product, as PyTorch's addcmul does, and rounds b2 v on its own, as its mul_ does.
  const T fresh = c.keep2 * d * d;
  v = c.beta2 * v + fresh;
  w = w * c.decay - c.rate * m / (hd::sqrt(v) / c.sqrt_bc2 + c.eps);
}

}  // namespace weft::optim_math
