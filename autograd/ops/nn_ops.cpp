// matmul, softmax, log_softmax, gather, index_select and their backward.
#include "../../tensor/creation.h"
#include "../autocast.h"
#include "../functions.h"
#include "../tape.h"

namespace weft {

using autograd::BackwardArgs;
using autograd::needs_recording;
using autograd::record;
using Grads = std::vector<Tensor>;

namespace {
// The transpose of the last two dims (a no-copy view).
Tensor mT(const Tensor& t) { return t.detach().transpose(-2, -1); }
}  // namespace

// a (..., n, k) @ b (..., k, m) -> (..., n, m);  da = g @ b^T,  db = a^T @ g
// 1-D operands are promoted to (1, k) / (k, 1) for the formulas and folded back after.
Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = autocast::lower(a_in), b = autocast::lower(b_in);  // autocast's lower-precision list
  Tensor out = raw::matmul(a, b);
  if (!needs_recording(a, b)) return out;
  return record("matmul", out, {a, b}, {a, b}, [](const BackwardArgs& g) -> Grads {
    Tensor a = g.saved[0], b = g.saved[1], grad = g.grad;
    const Shape sa = a.shape(), sb = b.shape();
    if (a.dim() == 1) a = a.unsqueeze(0);
    if (b.dim() == 1) b = b.unsqueeze(1);
    // Put back the dims a 1-D operand dropped: grad becomes (batch..., n, m).
    Shape full = broadcast_shapes("matmul", Shape(std::span(a.shape().begin(), a.dim() - 2)),
                                  Shape(std::span(b.shape().begin(), b.dim() - 2)));
    full.push_back(a.size(-2));
    full.push_back(b.size(-1));
    grad = grad.reshape(full);
    Tensor ga, gb;
    if (g.needs_grad[0]) ga = raw::sum_to(raw::matmul(grad, mT(b)), a.shape()).reshape(sa);
    if (g.needs_grad[1]) gb = raw::sum_to(raw::matmul(mT(a), grad), b.shape()).reshape(sb);
    return {ga, gb};
  });
}

// x (..., in), w (out, in), b (out) -> (..., out)
// dx = g @ w,  dw = g^T @ x,  db = sum of g over rows: one tape entry, three GEMM-sized ops.
// When w already has a .grad (a later microbatch), dw is added into it by the GEMM.
Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Tensor& w_t_in) {
  // Autocast's lower-precision list; a cached float32 transpose of w no longer fits then.
  const Tensor x = autocast::lower(x_in), w = autocast::lower(w_in), b = autocast::lower(b_in);
  const Tensor w_t = w.is_same(w_in) ? w_t_in : Tensor();
  Tensor out = raw::linear(x, w, b, w_t);
  if (!autograd::needs_recording({&x, &w, &b})) return out;
  return record("linear", out, {x, w, b}, {x, w}, [](const BackwardArgs& g) -> Grads {
    const Tensor &x = g.saved[0], &w = g.saved[1];
    const int64_t in = w.shape()[1], out_f = w.shape()[0];
    const Tensor g2 = g.grad.reshape({-1, out_f}), x2 = x.reshape({-1, in});
    Tensor gx, gw, gb;
    if (g.needs_grad[0]) gx = raw::matmul(g2, w).view(x.shape());
    if (g.needs_grad[1]) {
      if (g.grad_into.size() > 1 && g.grad_into[1].defined()) raw::addmm_(g.grad_into[1], g2.t(), x2);  // .grad += g^T x
      else gw = raw::matmul(g2.t(), x2);
    }
    if (g.needs_grad[2]) gb = raw::reduce(raw::Reduce::Sum, g2, {0}, false);
    return {gx, gw, gb};
  });
}

Tensor fused_layer_norm(const Tensor& x_in, int64_t n, const Tensor& w, const Tensor& b, double eps) {
  const Tensor x = autocast::to_float32(x_in);  // autocast's float32 list
  raw::LayerNormOut out = raw::layer_norm(x, n, w, b, eps);
  if (!autograd::needs_recording({&x, &w, &b})) return out.y;
  return record("layer_norm", out.y, {x, w, b}, {x, w, out.mean, out.rstd}, [n](const BackwardArgs& g) -> Grads {
    const Tensor &x = g.saved[0], &w = g.saved[1], &mean = g.saved[2], &rstd = g.saved[3];
    raw::LayerNormGrads d = raw::layer_norm_backward(g.grad, x, n, w, mean, rstd, g.needs_grad[0], g.needs_grad[1],
                                                     g.needs_grad[2]);
    return {d.dx, d.dw, d.db};
  });
}

Tensor softmax(const Tensor& a_in, int64_t dim) {
  const Tensor a = autocast::to_float32(a_in);  // autocast's float32 list
  Tensor out = raw::softmax(a, dim);
  if (!needs_recording(a)) return out;
  return record("softmax", out, {a}, {out}, [dim](const BackwardArgs& g) -> Grads {
    return {raw::softmax_backward(g.grad, g.saved[0], dim)};
  });
}

Tensor log_softmax(const Tensor& a_in, int64_t dim) {
  const Tensor a = autocast::to_float32(a_in);  // autocast's float32 list
  Tensor out = raw::log_softmax(a, dim);
  if (!needs_recording(a)) return out;
  return record("log_softmax", out, {a}, {out}, [dim](const BackwardArgs& g) -> Grads {
    return {raw::log_softmax_backward(g.grad, g.saved[0], dim)};
  });
}

// out[i][j] = a[index[i][j]][j] (dim 0);  da = scatter_add of g at the same places
Tensor gather(const Tensor& a, int64_t dim, const Tensor& index) {
  Tensor out = raw::gather(a, dim, index);
  if (!needs_recording(a)) return out;
  return record("gather", out, {a}, {index}, [dim, in = a.shape()](const BackwardArgs& g) -> Grads {
    return {raw::scatter_add(in, dim, g.saved[0], g.grad)};
  });
}

Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  Tensor out = raw::index_select(a, dim, index);
  if (!needs_recording(a)) return out;
  return record("index_select", out, {a}, {index}, [dim, in = a.shape()](const BackwardArgs& g) -> Grads {
    return {raw::index_add(in, dim, g.saved[0], g.grad)};
  });
}

Tensor Tensor::matmul(const Tensor& o) const { return weft::matmul(*this, o); }
Tensor Tensor::softmax(int64_t dim) const { return weft::softmax(*this, dim); }
Tensor Tensor::log_softmax(int64_t dim) const { return weft::log_softmax(*this, dim); }
Tensor Tensor::gather(int64_t dim, const Tensor& index) const { return weft::gather(*this, dim, index); }
Tensor Tensor::index_select(int64_t dim, const Tensor& index) const { return weft::index_select(*this, dim, index); }

}  // namespace weft
