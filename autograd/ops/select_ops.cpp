// Joining, splitting, clamping, masking and selecting, with their backward:
// stack, split, chunk, clamp, masked_fill, masked_select, topk and cumsum.
//
// Where an op is a composition of differentiable ops (stack is cat of unsqueezed inputs,
// split and chunk are narrows, masked_select is an index_select of the flattened input),
// the tape records those ops and their backward closures are the ones that run; the
// others record their own closure, right below their forward.
#include <cmath>

#include "../../tensor/creation.h"
#include "../functions.h"
#include "../tape.h"

namespace weft {

using autograd::BackwardArgs;
using autograd::needs_recording;
using autograd::record;
using Grads = std::vector<Tensor>;

namespace {
Tensor scalar_like(const Tensor& t, double v) { return full({}, v, {.dtype = t.dtype(), .device = t.device()}); }
}  // namespace

// n tensors of one shape S -> (S with n inserted at dim); dim may be -(S.dim()+1)..S.dim().
// The backward is cat's (narrow the gradient) then unsqueeze's (reshape it back).
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  WEFT_CHECK(!tensors.empty(), "stack: needs at least one tensor");
  const Tensor& first = tensors[0];
  const int64_t d = wrap_dim("stack", dim, first.dim() + 1);
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    WEFT_CHECK(tensors[i].shape() == first.shape(), "stack: expects tensors of one shape, got ", first.shape(),
               " at entry 0 and ", tensors[i].shape(), " at entry ", i);
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

// Views of t along dim of split_size elements each (the last may be shorter), as narrow
// makes them; the gradient of each flows back through its narrow.
std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim) {
  const int64_t d = wrap_dim("split", dim, t.dim());
  WEFT_CHECK(t.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t n = t.shape()[d];
  WEFT_CHECK(split_size > 0 || (split_size == 0 && n == 0), "split: split_size ", split_size,
             " must be positive (0 only for a dim of size 0) for dim ", d, " of shape ", t.shape());
  if (n == 0) return {t.narrow(d, 0, 0)};
  std::vector<Tensor> out;
  for (int64_t at = 0; at < n; at += split_size) out.push_back(t.narrow(d, at, std::min(split_size, n - at)));
  return out;
}

// Views of t along dim with the given sizes, which must add up to t's size at dim.
std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim("split", dim, t.dim());
  WEFT_CHECK(t.dim() > 0, "split: cannot split a 0-d tensor");
  int64_t total = 0;
  bool ok = true;
  for (int64_t s : sizes) {
    ok = ok && s >= 0;
    total += s;
  }
  WEFT_CHECK(ok && total == t.shape()[d], "split: sizes ", Shape(sizes), " do not add up to the size ", t.shape()[d],
             " of dim ", d, " in shape ", t.shape());
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(t.narrow(d, at, s));
    at += s;
  }
  return out;
}

// PyTorch's chunk: split into pieces of ceil(size / chunks), so there may be fewer than
// `chunks` pieces (size 5 in 4 chunks gives 2, 2, 1); a dim of size 0 gives `chunks`
// empty pieces.
std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim) {
  WEFT_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int64_t d = wrap_dim("chunk", dim, t.dim());
  WEFT_CHECK(t.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  const int64_t n = t.shape()[d];
  if (n == 0) return split(t, std::vector<int64_t>(chunks, 0), d);
  return split(t, (n + chunks - 1) / chunks, d);
}

// out = min(max(t, min), max) elementwise, t's shape. NaN propagates (from t and from a
// NaN bound, as PyTorch's), and min > max gives max everywhere. The gradient passes
// where min <= t <= max (the closed interval; 0 at NaN) and is 0 elsewhere.
namespace {

// An integer tensor takes only integral, finite scalars: PyTorch would promote the result
// to float; weft keeps the dtype and says so rather than truncate -1.5 to -1.
void check_scalar_fits(const char* op, const char* what, const Tensor& t, double v) {
  WEFT_CHECK(is_floating(t.dtype()) || (std::isfinite(v) && v == std::trunc(v)), op, ": ", what, " ", v,
             " does not fit the ", dtype_name(t.dtype()), " tensor of shape ", t.shape(),
             " (weft does not promote it to float; convert the tensor first)");
}

}  // namespace

Tensor clamp(const Tensor& t, std::optional<double> min, std::optional<double> max) {
  WEFT_CHECK(min || max, "clamp: at least one of min and max must be given");
  if (min) check_scalar_fits("clamp", "min", t, *min);
  if (max) check_scalar_fits("clamp", "max", t, *max);
  Tensor out = t;
  if (min) out = raw::binary_scalar(raw::Binary::Maximum, out, *min);
  if (max) out = raw::binary_scalar(raw::Binary::Minimum, out, *max);
  if (!needs_recording(t)) return out;
  return record("clamp", out, {t}, {t}, [min, max](const BackwardArgs& g) -> Grads {
    const Tensor& x = g.saved[0];
    const Tensor zero = scalar_like(g.grad, 0);
    Tensor gi = g.grad;
    if (min) gi = raw::where(raw::compare_scalar(raw::Compare::Ge, x, *min), gi, zero);
    if (max) gi = raw::where(raw::compare_scalar(raw::Compare::Le, x, *max), gi, zero);
    return {gi};
  });
}

// out = t with `value` where mask holds; mask is bool and broadcasts to t's shape (out
// has t's shape). The gradient is 0 where filled.
Tensor masked_fill(const Tensor& t, const Tensor& mask, double value) {
  WEFT_CHECK(t.defined() && mask.defined(), "masked_fill: undefined tensor");
  WEFT_CHECK(mask.dtype() == kBool, "masked_fill: the mask must be bool, got ", dtype_name(mask.dtype()),
             " (mask shape ", mask.shape(), ", tensor shape ", t.shape(), ")");
  WEFT_CHECK(mask.device() == t.device(), "masked_fill: the mask is on ", mask.device(), ", the tensor on ",
             t.device());
  bool fits = mask.dim() <= t.dim();
  for (int64_t k = 1; fits && k <= mask.dim(); ++k) {
    const int64_t m = mask.shape()[mask.dim() - k];
    fits = m == 1 || m == t.shape()[t.dim() - k];
  }
  WEFT_CHECK(fits, "masked_fill: the mask of shape ", mask.shape(), " does not broadcast to the tensor's shape ",
             t.shape());
  check_scalar_fits("masked_fill", "value", t, value);
  Tensor out = raw::where(mask, scalar_like(t, value), t);
  if (!needs_recording(t)) return out;
  return record("masked_fill", out, {t}, {mask}, [](const BackwardArgs& g) -> Grads {
    return {raw::where(g.saved[0], scalar_like(g.grad, 0), g.grad)};
  });
}

// t and a bool mask broadcast together to S; out (K) holds t's entries where the mask
// holds, in row-major order. K is read back to the host (a one-number sync on a GPU, as
// in PyTorch): an output's size must be known. The positions come from a cumsum of the
// mask and are scattered into a list of indices, all on t's device; the gradient is
// index_select's (index_add back into the flattened input) then expand's (sum_to t).
Tensor masked_select(const Tensor& t, const Tensor& mask) {
  WEFT_CHECK(t.defined() && mask.defined(), "masked_select: undefined tensor");
  WEFT_CHECK(mask.dtype() == kBool, "masked_select: the mask must be bool, got ", dtype_name(mask.dtype()),
             " (mask shape ", mask.shape(), ", tensor shape ", t.shape(), ")");
  WEFT_CHECK(mask.device() == t.device(), "masked_select: the mask is on ", mask.device(), ", the tensor on ",
             t.device());
  const Shape sh = broadcast_shapes("masked_select", t.shape(), mask.shape());
  const int64_t n = sh.numel();
  const Device dev = t.device();
  const Tensor m = raw::contiguous(mask.expand(sh)).reshape({n});
  const Tensor flat = t.expand(sh).reshape({n});
  if (n == 0) return flat;
  const Tensor pos = raw::cumsum(m, 0);  // int64: 1 + the output slot of each selected entry
  const int64_t count = raw::to_device(pos.narrow(0, n - 1, 1), kCPU).item<int64_t>();
  // Selected entry i goes to slot pos[i] - 1; the others all land in slot `count`, cut off.
  const Tensor slot = raw::where(m, raw::binary_scalar(raw::Binary::Sub, pos, 1),
                                 full({}, static_cast<double>(count), {.dtype = kInt64, .device = dev}));
  const Tensor iota = raw::binary_scalar(raw::Binary::Sub, raw::cumsum(ones({n}, {.dtype = kInt64, .device = dev}), 0), 1);
  const Tensor index = raw::scatter_add({count + 1}, 0, slot, iota).narrow(0, 0, count);
  return index_select(flat, 0, index);
}

// The k largest (smallest) entries of t along dim, best first, and their int64 indices.
// NaN counts as larger than everything, ties go to the lower index; `sorted` is accepted
// for PyTorch's signature, and the result is always sorted (one valid order for
// sorted=false). The gradient of the values goes to the chosen positions.
std::pair<Tensor, Tensor> topk(const Tensor& t, int64_t k, int64_t dim, bool largest, bool sorted) {
  (void)sorted;
  WEFT_CHECK(t.defined(), "topk: undefined tensor");
  auto [values, indices] = raw::topk(t, k, dim, largest);
  if (!needs_recording(t)) return {values, indices};
  const int64_t d = wrap_dim("topk", dim, t.dim());
  values = record("topk", values, {t}, {indices}, [d, in = t.shape()](const BackwardArgs& g) -> Grads {
    return {raw::scatter_add(in, d, g.saved[0], g.grad)};
  });
  return {values, indices};
}

// out[..., j, ...] = t[..., 0, ...] + ... + t[..., j, ...] along dim (int64 for bool
// and int64 t). The backward is the same sum taken from the other end.
Tensor cumsum(const Tensor& t, int64_t dim) {
  Tensor out = raw::cumsum(t, dim);
  if (!needs_recording(t)) return out;
  const int64_t d = wrap_dim("cumsum", dim, t.dim());
  return record("cumsum", out, {t}, {}, [d](const BackwardArgs& g) -> Grads { return {raw::cumsum(g.grad, d, true)}; });
}

}  // namespace weft
