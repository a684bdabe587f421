// Views: a new shape, strides and offset over the same storage -- the stride arithmetic
// of reshape, permute, slice, expand and the rest, as plain functions.
//
// These never record anything: the result is a plain tensor (no autograd state) that
// shares `a`'s storage. The Tensor methods of the same names (a.view(...), a.permute(...))
// are these plus a tape entry for the backward (autograd/ops/view_ops.cpp); tensor/'s own
// kernels call these, so that tensor/ needs nothing of autograd/.
//
// Each checks its arguments and throws weft::Error naming the op and the shapes.
#pragma once

#include <cstdint>
#include <optional>

#include "tensor.h"

namespace weft::views {

// Resolves one -1 in `shape` so that it holds `numel` elements ("cannot reshape ..." else).
Shape infer_shape(const char* op, const Shape& in, Shape shape, int64_t numel);
// Strides that make `shape` a view of (old_shape, old_strides), when one exists: each run
// of new dims must cover a run of old dims that is contiguous in memory (PyTorch's
// computeStride).
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape);
// A tensor over a's storage with the given layout.
Tensor alias(const Tensor& a, const Shape& shape, const Strides& strides, int64_t offset);

Tensor view(const Tensor& a, const Shape& shape);     // throws when no view exists
Tensor reshape(const Tensor& a, const Shape& shape);  // a view, else a contiguous copy
Tensor permute(const Tensor& a, const Shape& dims);
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1);
Tensor t(const Tensor& a);  // 2-D transpose; 0-D and 1-D unchanged
// Python-style: negative start/end count from the end, out of range clamps.
Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& a, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& a, int64_t dim, int64_t index);  // drops `dim`
Tensor expand(const Tensor& a, const Shape& shape);          // -1 keeps a size; stride 0 where broadcast
Tensor squeeze(const Tensor& a, int64_t dim);                // `a` itself when size(dim) != 1
Tensor unsqueeze(const Tensor& a, int64_t dim);

}  // namespace weft::views
