// The arithmetic of the SGD and Adam updates, written once for both devices.
//
// raw::sgd_step_ / raw::adam_step_ (tensor/cpu/optim.cpp on the CPU, cuda/kernels/optim.cu
// on a GPU) loop over every element of every parameter and call these WEFT_HD functions,
// so the two devices run one formula. The per-step scalars (bias corrections, the step
// size) are computed once per step, outside the element loop: on the host in double from
// the step count, as PyTorch's Python-side arithmetic does, or in the kernel in float
// from values it reads in device memory (so a CUDA graph replay follows the schedule).
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

// ---- Adam and AdamW (PyTorch's torch.optim.Adam / AdamW)
//   d = g + wd w                   (Adam: L2 folded into the gradient)
//   m = b1 m + (1 - b1) d;  v = b2 v + (1 - b2) d^2
//   w = w decay - lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   decay = 1 - lr wd              (AdamW: decoupled decay, and no L2 term)
template <class T>
struct AdamCoeffs {
  T beta1, beta2, eps;
  T rate;          // lr / (1 - beta1^t)
  T inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^t)
  T decay, l2;
};

// The step's scalars, computed in S (double on the host, float in a kernel) and then
// rounded to the parameters' type T. `step` is the 1-based step number t.
template <class T, class S>
WEFT_HD inline AdamCoeffs<T> adam_coeffs(S lr, S step, S beta1, S beta2, S eps, S weight_decay, bool decoupled) {
  const S bc1 = S(1) - hd::pow(beta1, step), bc2 = S(1) - hd::pow(beta2, step);
  return {T(beta1),
          T(beta2),
          T(eps),
          T(lr / bc1),
          T(S(1) / hd::sqrt(bc2)),
          decoupled ? T(S(1) - lr * weight_decay) : T(1),
          decoupled ? T(0) : T(weight_decay)};
}

// One element: weight w, gradient g, first and second moments m and v.
template <class T>
WEFT_HD inline void adam_update(T& w, T g, T& m, T& v, const AdamCoeffs<T>& c) {
  const T d = g + c.l2 * w;
  m = c.beta1 * m + (1 - c.beta1) * d;
  v = c.beta2 * v + (1 - c.beta2) * d * d;
  w = w * c.decay - c.rate * m / (hd::sqrt(v) * c.inv_sqrt_bc2 + c.eps);
}

}  // namespace weft::optim_math
