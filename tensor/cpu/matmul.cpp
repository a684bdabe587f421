// matmul and linear on the CPU, over the one GEMM kernel of gemm.h (OpenBLAS or Eigen).
//
// A 2-D operand with strides (s, 1) is a row-major matrix and one with strides (1, s) a
// column-major one, that is a row-major matrix transposed: both go to gemm without a
// copy, so the transposes that backward is full of (grad @ W^T) cost nothing. Other
// layouts are copied first.
#include "../views.h"
#include "../backend.h"
#include "../raw.h"
#include "../thread_pool.h"
#include "gemm.h"

namespace weft::raw {

namespace {

// A 2-D view as gemm takes it: row-major, or the transpose of a row-major one.
struct Operand {
  Tensor t;         // the (possibly copied) tensor
  bool transposed;  // column-major: stored as the transpose, row stride ld
  int64_t ld;       // leading dimension (outer stride)

  template <class T>
  const T* rows_from(int64_t r0) const {  // the operand without its first r0 rows
    return t.template data<T>() + (transposed ? r0 : r0 * ld);
  }
};

Operand as_operand(const Tensor& m) {
  const int64_t r = m.shape()[0], c = m.shape()[1];
  if (m.strides()[1] == 1 && m.strides()[0] >= std::max<int64_t>(c, 1)) return {m, false, m.strides()[0]};
  if (m.strides()[0] == 1 && m.strides()[1] >= std::max<int64_t>(r, 1)) return {m, true, m.strides()[1]};
  // A single column or row: its one stride is the leading dimension (a stride-0
  // broadcast, or anything else, is copied below).
  if (c == 1 && m.strides()[0] >= 1) return {m, false, m.strides()[0]};
  if (r == 1 && m.strides()[1] >= 1) return {m, true, m.strides()[1]};
  Tensor cm = clone(m);
  return {cm, false, std::max<int64_t>(c, 1)};
}

// Rows per thread-pool chunk: enough work each (~64^3 multiply-adds) to beat the hand-off.
int64_t row_grain(int64_t k, int64_t m) { return std::max<int64_t>(8, (64 * 64 * 64) / std::max<int64_t>(k * m, 1)); }

// out (n x m, contiguous) = a (n x k) @ b (k x m), or += with accumulate, splitting rows
// across threads.
template <class T>
void gemm_rows(const Tensor& a2, const Tensor& b2, T* out, bool parallel, bool accumulate = false) {
  const int64_t n = a2.shape()[0], k = a2.shape()[1], m = b2.shape()[1];
  if (n == 0 || m == 0) return;
  if (k == 0) {
    if (!accumulate) std::fill(out, out + n * m, T(0));
    return;
  }
  const Operand a = as_operand(a2), b = as_operand(b2);
  auto block = [&](int64_t r0, int64_t r1) {
    cpu::gemm<T>(a.transposed, b.transposed, r1 - r0, m, k, T(1), a.rows_from<T>(r0), a.ld, b.rows_from<T>(0), b.ld,
                 T(accumulate ? 1 : 0), out + r0 * m, m);
  };
  if (parallel) parallel_for(0, n, row_grain(k, m), block);
  else block(0, n);
}

// Drops the dim that a 1-D operand was promoted with.
Shape result_shape(Shape batch, int64_t n, int64_t m, bool a_vec, bool b_vec) {
  if (!a_vec) batch.push_back(n);
  if (!b_vec) batch.push_back(m);
  return batch;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  check_same("matmul", a_in, b_in);
  WEFT_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: ", a_in.shape(), " @ ", b_in.shape(),
             ": both operands need at least 1 dimension");
  const bool a_vec = a_in.dim() == 1, b_vec = b_in.dim() == 1;
  const Tensor a = a_vec ? views::unsqueeze(a_in, 0) : a_in.detach();
  const Tensor b = b_vec ? views::unsqueeze(b_in, 1) : b_in.detach();
  const int64_t n = a.size(-2), k = a.size(-1), k2 = b.size(-2), m = b.size(-1);
  WEFT_CHECK(k == k2, "matmul: ", a_in.shape(), " @ ", b_in.shape(), ": inner dimensions ", k, " and ", k2, " differ");
  Shape ba, bb;
  for (int64_t d = 0; d + 2 < a.dim(); ++d) ba.push_back(a.shape()[d]);
  for (int64_t d = 0; d + 2 < b.dim(); ++d) bb.push_back(b.shape()[d]);
  const Shape batch = broadcast_shapes("matmul", ba, bb);
  Shape full = batch;
  full.push_back(n);
  full.push_back(m);
  Tensor out = empty(full, a.dtype(), a.device());
  // Broadcast both operands to batch + their matrix dims, then walk the batch.
  Shape ea = batch, eb = batch;
  ea.push_back(n), ea.push_back(k), eb.push_back(k), eb.push_back(m);
  const Tensor A = views::reshape(views::expand(a, ea), {-1, n, k}), B = views::reshape(views::expand(b, eb), {-1, k, m});
  const int64_t nb = batch.numel();
  if (routed(a)) {
    for (int64_t i = 0; i < nb; ++i) backend_for(a).gemm(views::select(views::view(out, {nb, n, m}), 0, i), views::select(A, 0, i), views::select(B, 0, i));
    return views::view(out, result_shape(batch, n, m, a_vec, b_vec));
  }
  dispatch_floating(a.dtype(), "matmul", [&]<class T>() {
    T* o = out.data<T>();
    if (nb == 1) {
      gemm_rows<T>(views::select(A, 0, 0), views::select(B, 0, 0), o, true);
      return;
    }
    parallel_for(0, nb, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) gemm_rows<T>(views::select(A, 0, i), views::select(B, 0, i), o + i * n * m, false);
    });
  });
  return views::view(out, result_shape(batch, n, m, a_vec, b_vec));
}

void addmm_(const Tensor& c, const Tensor& a, const Tensor& b) {
  check_same("addmm_", c, a);
  check_same("addmm_", a, b);
  WEFT_CHECK(a.dim() == 2 && b.dim() == 2 && c.dim() == 2 && a.size(1) == b.size(0) && c.size(0) == a.size(0) &&
                 c.size(1) == b.size(1),
             "addmm_: ", c.shape(), " += ", a.shape(), " @ ", b.shape(), ": the shapes do not fit");
  WEFT_CHECK(c.is_contiguous(), "addmm_: the destination ", c.shape(), " must be contiguous");
  check_writable("addmm_", c);
  if (routed(c)) {  // no fused form on other devices yet: a product, then a sum
    // A 16-bit c: the product in float32 (axpy_ takes it into c), so c + a @ b rounds once.
    if (is_half(c.dtype())) axpy_(c, 1.0, matmul(to_dtype(a, kFloat32), to_dtype(b, kFloat32)));
    else axpy_(c, 1.0, matmul(a, b));
    return;
  }
  dispatch_floating(c.dtype(), "addmm_", [&]<class T>() { gemm_rows<T>(a.detach(), b.detach(), c.data<T>(), true, true); });
  c.storage()->bump_version();
}

Tensor linear(const Tensor& x_in, const Tensor& w, const Tensor& bias, const Tensor& w_t) {
  check_same("linear", x_in, w);
  WEFT_CHECK(x_in.dim() >= 1 && w.dim() == 2, "linear: input ", x_in.shape(), " and weight ", w.shape(),
             ": the weight must be 2-D (out, in)");
  const int64_t in = w.shape()[1], out_f = w.shape()[0];
  WEFT_CHECK(x_in.size(-1) == in, "linear: input ", x_in.shape(), " has ", x_in.size(-1), " features, weight ",
             w.shape(), " expects ", in);
  if (bias.defined()) {
    check_same("linear", x_in, bias);
    WEFT_CHECK(bias.dim() == 1 && bias.shape()[0] == out_f, "linear: bias ", bias.shape(), " does not match weight ",
               w.shape(), " (expected (", out_f, "))");
  }
  if (w_t.defined()) {
    check_same("linear", x_in, w_t);
    WEFT_CHECK((w_t.shape() == Shape{in, out_f}) && w_t.is_contiguous(), "linear: the transposed weight ", w_t.shape(),
               " must be a contiguous (", in, ", ", out_f, ") copy of the weight ", w.shape(), "'s transpose");
  }
  const Tensor x = views::reshape(x_in, {-1, in});  // leading dims flatten into rows
  const int64_t n = x.shape()[0];
  Tensor out = empty({n, out_f}, x.dtype(), x.device());
  // (in, out): the caller's row-major copy, or a column-major view of w (no copy)
  const Tensor wt = w_t.defined() ? w_t.detach() : views::t(w);
  if (routed(x)) {
    backend_for(x).linear(out, x, w.detach(), bias.defined() ? bias.detach() : Tensor());
  } else dispatch_floating(x.dtype(), "linear", [&]<class T>() {
    T* o = out.data<T>();
    const Operand a = as_operand(x), b = as_operand(wt);
    const Tensor bc = bias.defined() ? contiguous(bias) : Tensor();
    // Each row of out starts as the bias (or 0), then gemm adds x @ W^T (beta = 1).
    auto block = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (bc.defined()) std::copy_n(bc.data<T>(), out_f, o + r * out_f);
        else std::fill_n(o + r * out_f, out_f, T(0));
      }
      cpu::gemm<T>(a.transposed, b.transposed, r1 - r0, out_f, in, T(1), a.rows_from<T>(r0), a.ld,
                   b.rows_from<T>(0), b.ld, T(1), o + r0 * out_f, out_f);
    };
    parallel_for(0, n, row_grain(in, out_f), block);
  });
  Shape out_shape = x_in.shape();
  out_shape[out_shape.size() - 1] = out_f;
  return views::view(out, out_shape);
}

}  // namespace weft::raw
