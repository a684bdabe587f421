// matmul through Eigen's GEMM. The only file that includes Eigen: it is a large header,
// and keeping it here keeps every other file quick to compile.
//
// A 2-D operand with strides (s, 1) is a row-major matrix and one with strides (1, s) a
// column-major one: both map into Eigen without a copy, so the transposes that backward
// is full of (grad @ W^T) cost nothing. Other layouts are copied first.
#include <Eigen/Core>

#include "../../cuda/ops.h"
#include "../raw.h"
#include "../thread_pool.h"

namespace weft::raw {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class M>
using ConstMap = Eigen::Map<const M, 0, Eigen::OuterStride<>>;

// A 2-D view usable by Eigen: row-major, column-major, or a contiguous copy.
struct Operand {
  Tensor t;        // the (possibly copied) tensor
  bool row_major;  // else column-major
  int64_t ld;      // leading dimension (outer stride)
};

Operand as_operand(const Tensor& m) {
  const int64_t r = m.shape()[0], c = m.shape()[1];
  if (m.strides()[1] == 1 && m.strides()[0] >= std::max<int64_t>(c, 1)) return {m, true, m.strides()[0]};
  if (m.strides()[0] == 1 && m.strides()[1] >= std::max<int64_t>(r, 1)) return {m, false, m.strides()[1]};
  if (c == 1) return {m, true, 1};
  if (r == 1) return {m, false, 1};
  Tensor cm = clone(m);
  return {cm, true, c};
}

// C (rows [r0, r1) of n x m, row-major, leading dim ldc) = A[r0:r1] @ B.
template <class T, class MA, class MB>
void gemm_block(const Operand& a, const Operand& b, int64_t r0, int64_t r1, int64_t k, int64_t m, T* c) {
  const T* ap = a.t.template data<T>() + (a.row_major ? r0 * a.ld : r0);
  ConstMap<MA> A(ap, r1 - r0, k, Eigen::OuterStride<>(a.ld));
  ConstMap<MB> B(b.t.template data<T>(), k, m, Eigen::OuterStride<>(b.ld));
  Eigen::Map<RowMat<T>> C(c + r0 * m, r1 - r0, m);
  C.noalias() = A * B;
}

// out (n x m, contiguous) = a (n x k) @ b (k x m), splitting rows across threads.
template <class T>
void gemm(const Tensor& a2, const Tensor& b2, T* out, bool parallel) {
  const int64_t n = a2.shape()[0], k = a2.shape()[1], m = b2.shape()[1];
  if (n == 0 || m == 0) return;
  if (k == 0) {
    std::fill(out, out + n * m, T(0));
    return;
  }
  const Operand a = as_operand(a2), b = as_operand(b2);
  auto block = [&](int64_t r0, int64_t r1) {
    if (a.row_major && b.row_major) gemm_block<T, RowMat<T>, RowMat<T>>(a, b, r0, r1, k, m, out);
    else if (a.row_major) gemm_block<T, RowMat<T>, ColMat<T>>(a, b, r0, r1, k, m, out);
    else if (b.row_major) gemm_block<T, ColMat<T>, RowMat<T>>(a, b, r0, r1, k, m, out);
    else gemm_block<T, ColMat<T>, ColMat<T>>(a, b, r0, r1, k, m, out);
  };
  // Split rows only when each thread gets enough work to beat the hand-off (~64^3 flops).
  const int64_t flops_per_row = k * m;
  const int64_t grain = std::max<int64_t>(8, (64 * 64 * 64) / std::max<int64_t>(flops_per_row, 1));
  if (parallel) parallel_for(0, n, grain, block);
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
  const Tensor a = a_vec ? a_in.detach().unsqueeze(0) : a_in.detach();
  const Tensor b = b_vec ? b_in.detach().unsqueeze(1) : b_in.detach();
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
  const Tensor A = a.expand(ea).reshape({-1, n, k}), B = b.expand(eb).reshape({-1, k, m});
  const int64_t nb = batch.numel();
  dispatch_floating(a.dtype(), "matmul", [&]<class T>() {
    if (a.device().is_cuda()) {
      for (int64_t i = 0; i < nb; ++i) cuda::gemm(out.view({nb, n, m}).select(0, i), A.select(0, i), B.select(0, i));
      return;
    }
    T* o = out.data<T>();
    if (nb == 1) {
      gemm<T>(A.select(0, 0), B.select(0, 0), o, true);
      return;
    }
    parallel_for(0, nb, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) gemm<T>(A.select(0, i), B.select(0, i), o + i * n * m, false);
    });
  });
  return out.view(result_shape(batch, n, m, a_vec, b_vec));
}

Tensor linear(const Tensor& x_in, const Tensor& w, const Tensor& bias) {
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
  const Tensor x = x_in.detach().reshape({-1, in});  // leading dims flatten into rows
  const int64_t n = x.shape()[0];
  Tensor out = empty({n, out_f}, x.dtype(), x.device());
  const Tensor wt = w.detach().t();  // (in, out) column-major view: no copy
  dispatch_floating(x.dtype(), "linear", [&]<class T>() {
    if (x.device().is_cuda()) return cuda::linear(out, x, w.detach(), bias.defined() ? bias.detach() : Tensor());
    T* o = out.data<T>();
    const Operand a = as_operand(x), b = as_operand(wt);
    const Tensor bc = bias.defined() ? contiguous(bias) : Tensor();
    auto block = [&](int64_t r0, int64_t r1) {
      Eigen::Map<RowMat<T>> C(o + r0 * out_f, r1 - r0, out_f);
      if (bc.defined()) C.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bc.data<T>(), out_f);
      else C.setZero();
      const T* ap = a.t.template data<T>() + (a.row_major ? r0 * a.ld : r0);
      const T* bp = b.t.template data<T>();
      auto times_b = [&](const auto& A) {
        if (b.row_major) C.noalias() += A * ConstMap<RowMat<T>>(bp, in, out_f, Eigen::OuterStride<>(b.ld));
        else C.noalias() += A * ConstMap<ColMat<T>>(bp, in, out_f, Eigen::OuterStride<>(b.ld));
      };
      if (a.row_major) times_b(ConstMap<RowMat<T>>(ap, r1 - r0, in, Eigen::OuterStride<>(a.ld)));
      else times_b(ConstMap<ColMat<T>>(ap, r1 - r0, in, Eigen::OuterStride<>(a.ld)));
    };
    const int64_t grain = std::max<int64_t>(8, (64 * 64 * 64) / std::max<int64_t>(in * out_f, 1));
    parallel_for(0, n, grain, block);
  });
  Shape out_shape = x_in.shape();
  out_shape[out_shape.size() - 1] = out_f;
  return out.view(out_shape);
}

}  // namespace weft::raw
