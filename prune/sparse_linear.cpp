#include "sparse_linear.h"

#include <algorithm>
#include <array>
#include <limits>
#include <numeric>

#if defined(__AVX__)
// GCC 12 warns about the deliberately undefined lanes inside its own intrinsics
// (-Wmaybe-uninitialized, GCC bug 105593); the code here leaves no lane undefined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "../autograd/tape.h"
#include "../tensor/backend.h"
#include "../tensor/raw.h"
#include "../tensor/thread_pool.h"

namespace weft::prune {

namespace {
constexpr int64_t kBatchBlock = 64;  // batch columns per accumulator block (256 bytes)
constexpr int64_t kRowGrain = 16;    // rows per thread-pool chunk, at the least
}  // namespace

SparseLinear::SparseLinear(const Tensor& weight, const Tensor& bias)
    : in_features(weight.defined() && weight.dim() == 2 ? weight.size(1) : 0),
      out_features(weight.defined() && weight.dim() == 2 ? weight.size(0) : 0) {
  WEFT_CHECK(weight.defined() && weight.dim() == 2, "SparseLinear: weight must be 2-D (out, in)");
  WEFT_CHECK(in_features <= std::numeric_limits<int32_t>::max() &&
                 weight.numel() <= std::numeric_limits<int32_t>::max(),
             "SparseLinear: weight ", weight.shape(), " is too large for int32 indices");
  WEFT_CHECK(!bias.defined() || bias.shape() == Shape{out_features}, "SparseLinear: bias ", bias.shape(),
             " must be (", out_features, ")");
  const std::vector<float> w = weight.to_vector<float>();
  row_ptr_.reserve(out_features + 1);
  row_ptr_.push_back(0);
  for (int64_t o = 0; o < out_features; ++o) {
    for (int64_t i = 0; i < in_features; ++i)
      if (const float v = w[o * in_features + i]; v != 0.0f) {
        values_.push_back(v);
        col_.push_back(static_cast<int32_t>(i));
      }
    row_ptr_.push_back(static_cast<int32_t>(values_.size()));
  }
  bias_ = bias.defined() ? bias.to_vector<float>() : std::vector<float>(out_features, 0.0f);
  build_slices();
}

// CSR -> blocked SELL-16 (see the header): rows sorted by length (longest first, ties in
// row order) and cut into slices of 16; for each slice and block of 32 inputs, as many
// steps as its lane with the most non-zeros in the block, each step 16 (value, position)
// pairs, (0, 0) where a lane has run out.
void SparseLinear::build_slices() {
  std::vector<int32_t> order(out_features);
  std::iota(order.begin(), order.end(), 0);
  auto length = [&](int32_t o) { return row_ptr_[o + 1] - row_ptr_[o]; };
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return length(a) > length(b); });
  order.resize((out_features + kLanes - 1) / kLanes * kLanes, -1);  // padding rows: -1
  slice_rows_ = order;
  slice_start_ = {0};
  const int64_t blocks = (in_features + kBlock - 1) / kBlock;
  for (size_t s0 = 0; s0 < order.size(); s0 += kLanes) {
    // next[l]: lane l's next non-zero (CSR index); CSR rows are sorted by column, so a
    // row's non-zeros come block by block.
    std::array<int32_t, kLanes> next{}, end{};
    for (int64_t l = 0; l < kLanes; ++l) {
      const int32_t o = order[s0 + l];
      next[l] = o >= 0 ? row_ptr_[o] : 0;
      end[l] = o >= 0 ? row_ptr_[o + 1] : 0;
    }
    int64_t steps_in_slice = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      int64_t steps = 0;
      for (;; ++steps) {
        bool any = false;
        for (int64_t l = 0; l < kLanes; ++l) {
          const bool here = next[l] < end[l] && col_[next[l]] / kBlock == b;
          step_val_.push_back(here ? values_[next[l]] : 0.0f);
          step_pos_.push_back(here ? static_cast<uint8_t>(col_[next[l]] - b * kBlock) : 0);
          if (here) ++next[l], any = true;
        }
        if (!any) {  // the step just written is empty: take it back
          step_val_.resize(step_val_.size() - kLanes);
          step_pos_.resize(step_pos_.size() - kLanes);
          break;
        }
      }
      WEFT_CHECK(steps <= std::numeric_limits<uint16_t>::max(), "SparseLinear: internal: too many steps in a block");
      block_steps_.push_back(static_cast<uint16_t>(steps));
      steps_in_slice += steps;
    }
    slice_start_.push_back(slice_start_.back() + steps_in_slice);
  }
}

std::shared_ptr<SparseLinear> SparseLinear::from(const nn::Linear& linear) {
  return std::make_shared<SparseLinear>(linear.weight, linear.bias);
}

namespace {
#if defined(__AVX__)
// One 8 x 8 tile in registers: dst rows 0..7 (stride ds) = src columns 0..7 (rows at stride ss).
inline void transpose8x8(const float* src, int64_t ss, float* dst, int64_t ds) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss),
               r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss),
               r5 = _mm256_loadu_ps(src + 5 * ss), r6 = _mm256_loadu_ps(src + 6 * ss),
               r7 = _mm256_loadu_ps(src + 7 * ss);
  // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

// dst (cols, rows) = src (rows, cols)^T. With AVX, 8 x 8 tiles are transposed in
// registers (8 row loads, 8 row stores); a plain element-by-element loop -- even tiled
// -- was 3-5x slower, and at high sparsity the two transposes of the batch path cost
// more than the multiply itself. The edges, and builds without AVX, go one by one.
void transpose(const float* __restrict src, int64_t rows, int64_t cols, float* __restrict dst) {
  int64_t r8 = 0, c8 = 0;
#if defined(__AVX__)
  r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int64_t r = 0; r < r8; r += 8)
    for (int64_t c = 0; c < c8; c += 8) transpose8x8(src + r * cols + c, cols, dst + c * rows + r, rows);
#endif
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = (r < r8 ? c8 : 0); c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// sum_k values[k] * x[col[k]] for k in [begin, end): one row's sparse dot product.
// Eight partial sums, not one: with a single running sum every add waits for the
// previous one (~4 cycles; the compiler may not reorder float additions), which leaves
// the loop latency-bound.
inline float sparse_dot(const float* values, const int32_t* col, int32_t begin, int32_t end, const float* x) {
  int32_t k = begin;
  float part[8] = {};
  for (; k + 8 <= end; k += 8)
    for (int j = 0; j < 8; ++j) part[j] += values[k + j] * x[col[k + j]];
  float acc = 0;
  for (; k < end; ++k) acc += values[k] * x[col[k]];
  return acc + (((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7])));
}

// Eight floats as one SIMD value (GCC/Clang vector extension): + and * act lane by lane.
// aligned(4): loads and stores may sit at any float boundary.
typedef float Vec8 __attribute__((vector_size(32), aligned(4)));
inline Vec8 load8(const float* p) { return *reinterpret_cast<const Vec8*>(p); }

// acc[0:n) += v * x[0:n) for a partial block: restrict lets the compiler emit SIMD.
inline void axpy(float* __restrict acc, const float* __restrict x, float v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += v * x[j];
}
}  // namespace

void SparseLinear::forward_vector(const float* x, float* y) const {
#if defined(__AVX512F__)
  // x copied into a buffer that ends on a whole block (zeros after in_features), so that
  // every block's two 16-float loads stay inside it. The buffer is reused from call to
  // call, but taken out of its thread_local while in use: a thread waiting in
  // parallel_for may run another caller's chunk, which may be another SparseLinear.
  const int64_t blocks = (in_features + kBlock - 1) / kBlock;
  thread_local std::vector<float> spare;
  std::vector<float> xpad = std::move(spare);
  xpad.assign(blocks * kBlock, 0.0f);
  std::copy_n(x, in_features, xpad.data());
  const float* xp = xpad.data();
  const int64_t slices = static_cast<int64_t>(slice_start_.size()) - 1;
  parallel_for(0, slices, kRowGrain / 4, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      // Two accumulators, so consecutive steps' FMAs do not wait on each other.
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      const float* val = step_val_.data() + slice_start_[s] * kLanes;
      const uint8_t* pos = step_pos_.data() + slice_start_[s] * kLanes;
      const uint16_t* steps = block_steps_.data() + s * blocks;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t n = steps[b];
        if (n == 0) continue;
        const __m512 lo = _mm512_loadu_ps(xp + b * kBlock), hi = _mm512_loadu_ps(xp + b * kBlock + 16);
        // acc += v * x[32 b + pos[l]] for the 16 lanes: vpermt2ps picks from the 32 floats
        // of lo:hi. A padding lane (value 0: CSR holds no zeros) is left alone rather than
        // adding 0 * x, which would turn an inf or NaN input into a NaN in a row that does
        // not read that input.
        auto step = [&](const float* v, const uint8_t* p, __m512 acc) {
          const __m512 w = _mm512_loadu_ps(v);
          const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
          const __mmask16 real = _mm512_cmpneq_ps_mask(w, _mm512_setzero_ps());
          return _mm512_mask3_fmadd_ps(w, _mm512_permutex2var_ps(lo, idx, hi), acc, real);
        };
        int64_t j = 0;
        for (; j + 2 <= n; j += 2, val += 2 * kLanes, pos += 2 * kLanes) {
          acc0 = step(val, pos, acc0);
          acc1 = step(val + kLanes, pos + kLanes, acc1);
        }
        if (j < n) {
          acc0 = step(val, pos, acc0);
          val += kLanes, pos += kLanes;
        }
      }
      // Lane l is row slice_rows_[16 s + l]: add the rows' biases and scatter the 16
      // sums to their rows of y, skipping the padding lanes (row -1).
      const __m512i rows = _mm512_loadu_si512(slice_rows_.data() + s * kLanes);
      const __mmask16 real = _mm512_cmpge_epi32_mask(rows, _mm512_setzero_si512());
      __m512 acc = _mm512_add_ps(acc0, acc1);
      acc = _mm512_add_ps(acc, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), real, rows, bias_.data(), 4));
      _mm512_mask_i32scatter_ps(y, real, rows, acc, 4);
    }
  });
  spare = std::move(xpad);
#else
  parallel_for(0, out_features, kRowGrain * 8, [&](int64_t r0, int64_t r1) {
    for (int64_t o = r0; o < r1; ++o)
      y[o] = bias_[o] + sparse_dot(values_.data(), col_.data(), row_ptr_[o], row_ptr_[o + 1], x);
  });
#endif
}

// yt (out, batch) from xt (in, batch): row o of yt is sum_k values[k] * xt[col[k], :],
// a sparse row of W times the dense xt. For each block of 64 batch columns the 64 sums
// are eight Vec8 accumulators that stay in registers for the whole row: every non-zero
// (v, c) costs 8 vector loads of xt[c, b0:b0+64] and 8 FMAs, and the accumulators are
// stored once, contiguously, at the end. (As a plain array loop over acc[64] the compiler
// kept acc in memory: a load and a store around every FMA.) A last partial block uses
// that loop.
void SparseLinear::forward_batch(const float* xt, int64_t batch, float* yt) const {
  parallel_for(0, out_features, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t o = r0; o < r1; ++o) {
      const int32_t begin = row_ptr_[o], end = row_ptr_[o + 1];
      float* out = yt + o * batch;
      int64_t b0 = 0;
      static_assert(kBatchBlock == 64);
      for (; b0 + kBatchBlock <= batch; b0 += kBatchBlock) {
        Vec8 a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {}, a6 = {}, a7 = {};
        for (int32_t k = begin; k < end; ++k) {
          const float* xr = xt + int64_t(col_[k]) * batch + b0;
          const float v = values_[k];
          a0 += v * load8(xr), a1 += v * load8(xr + 8), a2 += v * load8(xr + 16), a3 += v * load8(xr + 24);
          a4 += v * load8(xr + 32), a5 += v * load8(xr + 40), a6 += v * load8(xr + 48), a7 += v * load8(xr + 56);
        }
        const Vec8 all[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
        for (int q = 0; q < 8; ++q)
          for (int j = 0; j < 8; ++j) out[b0 + q * 8 + j] = all[q][j] + bias_[o];
      }
      if (b0 < batch) {
        const int64_t nb = batch - b0;
        std::fill_n(out + b0, nb, bias_[o]);
        for (int32_t k = begin; k < end; ++k) axpy(out + b0, xt + int64_t(col_[k]) * batch + b0, values_[k], nb);
      }
    }
  });
}

const SparseLinear::OnDevice& SparseLinear::on_device(Device d) const {
  std::lock_guard<std::mutex> lock(device_mu_);
  auto it = device_copies_.find(d.index);
  if (it != device_copies_.end()) return it->second;
  const std::vector<int64_t> rows(row_ptr_.begin(), row_ptr_.end()), cols(col_.begin(), col_.end());
  OnDevice g{tensor(rows, {out_features + 1}).to(d), tensor(cols, {nnz()}).to(d),
             tensor(values_, {nnz()}).to(d), tensor(bias_, {out_features}).to(d)};
  return device_copies_.emplace(d.index, std::move(g)).first->second;
}

Tensor SparseLinear::forward(const Tensor& x) {
  WEFT_CHECK(!(autograd::is_grad_enabled() && x.requires_grad()),
             "SparseLinear: inference only (no backward); run it under NoGradGuard on a tensor without grad");
  WEFT_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "SparseLinear(", in_features, ", ", out_features, "): input ",
             x.shape(), " must end in ", in_features, " features");
  WEFT_CHECK(x.dtype() == kFloat32, "SparseLinear: input must be float32, got ", dtype_name(x.dtype()));
  int64_t batch = 1;  // the leading dims, flattened
  for (int64_t d = 0; d + 1 < x.dim(); ++d) batch *= x.size(d);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = out_features;
  Tensor y = empty({batch, out_features}, kFloat32, x.device());
  // (No reshape for the common 2-D input: at high sparsity the kernel takes a few
  // microseconds, and every tensor handle made here is a visible part of that.)
  Tensor x2 = raw::contiguous(x.dim() == 2 ? x : x.detach().reshape({batch, in_features}));
  if (!x.device().is_cpu()) {
    const OnDevice& g = on_device(x.device());
    backend(x.device()).csr_linear(y, x2, g.row_ptr, g.col, g.values, g.bias);
  } else if (batch == 1) {
    forward_vector(x2.data<float>(), y.data<float>());
  } else {
    // Work in the transposed layout, where a batch of inputs of one feature is
    // contiguous (see forward_batch), and transpose back at the end.
    Tensor xt = empty({in_features, batch}), yt = empty({out_features, batch});
    transpose(x2.data<float>(), batch, in_features, xt.data<float>());
    forward_batch(xt.data<float>(), batch, yt.data<float>());
    transpose(yt.data<float>(), out_features, batch, y.data<float>());
  }
  return x.dim() == 2 ? y : y.reshape(out_shape);
}

Tensor SparseLinear::to_dense() const {
  std::vector<float> w(out_features * in_features, 0.0f);
  for (int64_t o = 0; o < out_features; ++o)
    for (int32_t k = row_ptr_[o]; k < row_ptr_[o + 1]; ++k) w[o * in_features + col_[k]] = values_[k];
  return tensor(w, {out_features, in_features});
}

std::string SparseLinear::repr() const {
  return detail::str("SparseLinear(in_features=", in_features, ", out_features=", out_features, ", nnz=", nnz(),
                     ", sparsity=", sparsity(), ")");
}

std::shared_ptr<nn::Sequential> sparsify_linears(const nn::Sequential& model) {
  auto out = std::make_shared<nn::Sequential>();
  for (size_t i = 0; i < model.size(); ++i) {
    if (const auto* lin = dynamic_cast<const nn::Linear*>(model[i].get())) out->push_back(SparseLinear::from(*lin));
    else out->push_back(model[i]);
  }
  return out;
}

}  // namespace weft::prune
