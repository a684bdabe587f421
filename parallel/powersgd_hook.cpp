#include "powersgd_hook.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../tensor/creation.h"
#include "../tensor/generator.h"

namespace weft::parallel {

namespace {

// The small dense products, on row-major float arrays: m is (rows, cols), p (rows, r),
// q (cols, r). Plain loops: r is a handful, so these cost a few passes over m.

// p = m q
void m_times_q(const float* m, const float* q, float* p, int64_t rows, int64_t cols, int r) {
  std::fill(p, p + rows * r, 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const float a = m[i * cols + j];
      for (int c = 0; c < r; ++c) p[i * r + c] += a * q[j * r + c];
    }
}

// q = m^T p
void mt_times_p(const float* m, const float* p, float* q, int64_t rows, int64_t cols, int r) {
  std::fill(q, q + cols * r, 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const float a = m[i * cols + j];
      for (int c = 0; c < r; ++c) q[j * r + c] += a * p[i * r + c];
    }
}

// out = base - p q^T (base may be null: out = p q^T)
void p_times_qt(const float* base, const float* p, const float* q, float* out, int64_t rows, int64_t cols, int r) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      float s = 0;
      for (int c = 0; c < r; ++c) s += p[i * r + c] * q[j * r + c];
      out[i * cols + j] = base ? base[i * cols + j] - s : s;
    }
}

// Gram-Schmidt on p's r columns, each projection done twice ("twice is enough": one
// pass in float32 leaves a nearly dependent column visibly non-orthogonal). The epsilon
// keeps a zero column (a zero gradient) from dividing by zero; PyTorch's hook does the same.
void orthonormalise(float* p, int64_t rows, int r) {
  for (int c = 0; c < r; ++c) {
    for (int pass = 0; pass < 2; ++pass)
      for (int prev = 0; prev < c; ++prev) {
        double dot = 0;
        for (int64_t i = 0; i < rows; ++i) dot += static_cast<double>(p[i * r + c]) * p[i * r + prev];
        for (int64_t i = 0; i < rows; ++i) p[i * r + c] -= static_cast<float>(dot) * p[i * r + prev];
      }
    double norm = 0;
    for (int64_t i = 0; i < rows; ++i) norm += static_cast<double>(p[i * r + c]) * p[i * r + c];
    const auto scale = static_cast<float>(1.0 / (std::sqrt(norm) + 1e-8));
    for (int64_t i = 0; i < rows; ++i) p[i * r + c] *= scale;
  }
}

}  // namespace

PowerSGDHook::PowerSGDHook(PowerSGDOptions options) : opt_(options) {
  WEFT_CHECK(opt_.rank >= 1, "PowerSGDHook: the rank must be >= 1, got ", opt_.rank);
  WEFT_CHECK(opt_.min_compression_rate >= 0 && std::isfinite(opt_.min_compression_rate),
             "PowerSGDHook: min_compression_rate must be finite and >= 0, got ", opt_.min_compression_rate);
  WEFT_CHECK(opt_.start_step >= 0, "PowerSGDHook: start_step must be >= 0, got ", opt_.start_step);
}

std::string PowerSGDHook::name() const {
  std::string s = "powersgd:" + std::to_string(opt_.rank);
  if (opt_.start_step != 0) s += ",start=" + std::to_string(opt_.start_step);
  if (opt_.min_compression_rate != PowerSGDOptions{}.min_compression_rate)
    s += ",min_rate=" + detail::str(opt_.min_compression_rate);
  return s;
}

PowerSGDHook::State PowerSGDHook::fresh_state(size_t index, const GradientBucket& bucket) const {
  State s;
  s.residual.assign(static_cast<size_t>(bucket.numel()), 0.0f);
  int64_t offset = 0;
  for (size_t k = 0; k < bucket.views().size(); ++k) {
    const Tensor& v = bucket.views()[k];
    Matrix m{.offset = offset, .rows = v.numel(), .cols = 1, .rank = 0, .q = {}};
    const int64_t rows = v.dim() >= 2 ? v.shape()[0] : 0, cols = rows > 0 ? v.numel() / rows : 0;
    const int64_t r = std::min<int64_t>({opt_.rank, rows, cols});
    // Compressed only where P and Q, (rows + cols) r floats, are enough times smaller than
    // the matrix: a small or thin matrix goes as it is, with the vectors.
    if (rows > 0 && cols > 0 && opt_.min_compression_rate * double((rows + cols) * r) < double(rows * cols)) {
      m.rows = rows;
      m.cols = cols;
      m.rank = static_cast<int>(r);
      // The same seed on every rank: the same starting Q without a broadcast.
      Generator gen(opt_.seed + 1000003 * index + k);
      m.q = randn({m.cols, m.rank}, {}, gen).to_vector<float>();
    }
    s.matrices.push_back(std::move(m));
    offset += v.numel();
  }
  return s;
}

PowerSGDHook::State& PowerSGDHook::state_for(size_t index, const GradientBucket& bucket) {
  auto it = states_.find(index);
  if (it != states_.end()) return it->second;
  return states_.emplace(index, fresh_state(index, bucket)).first->second;
}

WorkHandle PowerSGDHook::reduce(size_t index, GradientBucket& bucket, Communicator& comm) {
  const Tensor& flat = bucket.flat();
  WEFT_CHECK(flat.device().is_cpu(), "comm hook ", name(), ": CPU tensors only (the bucket is on ", flat.device(),
             "); use the default all-reduce on GPUs");
  State& s = state_for(index, bucket);
  WEFT_CHECK(static_cast<int64_t>(s.residual.size()) == bucket.numel(), "comm hook ", name(), ": bucket ", index,
             " has ", bucket.numel(), " values but had ", s.residual.size(), " before; use one hook per DDP (and rank)");
  if (s.reductions++ < opt_.start_step) {  // warm-up: the exact all-reduce, no memory
    count(ring_allreduce_bytes(bucket.bytes(), comm.size()), bucket.numel(), comm.size());
    return comm.allreduce_async(flat, ReduceOp::Sum);
  }
  float* g = flat.data<float>();
  float* res = s.residual.data();
  // Error feedback: g becomes M = grad + residual, for every matrix (vectors have none).
  for (const Matrix& m : s.matrices)
    if (m.rank > 0)
      for (int64_t i = 0; i < m.rows * m.cols; ++i) g[m.offset + i] += res[m.offset + i];

  // First message: every matrix's P = M Q, then the vectors as they are.
  int64_t p_len = 0, q_len = 0;
  for (const Matrix& m : s.matrices) {
    p_len += m.rank > 0 ? m.rows * m.rank : m.rows;
    q_len += m.cols * m.rank;
  }
  Tensor p_all = empty({p_len}, {}), q_all = empty({std::max<int64_t>(q_len, 1)}, {});
  float* P = p_all.data<float>();
  float* Q = q_all.data<float>();
  for (int64_t pos = 0; const Matrix& m : s.matrices) {
    if (m.rank > 0) m_times_q(g + m.offset, m.q.data(), P + pos, m.rows, m.cols, m.rank);
    else std::copy(g + m.offset, g + m.offset + m.rows, P + pos);
    pos += m.rank > 0 ? m.rows * m.rank : m.rows;
  }
  comm.allreduce(p_all, ReduceOp::Sum);
  const int ranks = comm.size();
  // An inf or NaN anywhere (a rank's overflowing gradient: GradScaler's skipped step)
  // reaches every rank's summed P. Then nothing is compressed, the residual and Q stay as
  // they were, and the bucket is NaN on every rank, so every rank's scaler skips the step.
  bool finite = true;
  for (int64_t i = 0; i < p_len && finite; ++i) finite = std::isfinite(P[i]);
  if (!finite) {
    std::fill(g, g + bucket.numel(), std::numeric_limits<float>::quiet_NaN());
    count(ring_allreduce_bytes(p_len * 4, ranks), bucket.numel(), ranks);
    return nullptr;
  }

  // Second message: Q = M^T P with P orthonormal; the residual is what P Q^T misses here.
  for (int64_t pos = 0, qpos = 0; const Matrix& m : s.matrices) {
    if (m.rank > 0) {
      float* p = P + pos;
      orthonormalise(p, m.rows, m.rank);
      mt_times_p(g + m.offset, p, Q + qpos, m.rows, m.cols, m.rank);
      p_times_qt(g + m.offset, p, Q + qpos, res + m.offset, m.rows, m.cols, m.rank);
      qpos += m.cols * m.rank;
    }
    pos += m.rank > 0 ? m.rows * m.rank : m.rows;
  }
  if (q_len > 0) comm.allreduce(q_all, ReduceOp::Sum);
  count(ring_allreduce_bytes(p_len * 4, ranks) + (q_len > 0 ? ring_allreduce_bytes(q_len * 4, ranks) : 0),
        bucket.numel(), ranks);

  // The sum over ranks: P Q^T per matrix, the all-reduced values per vector. Q stays.
  for (int64_t pos = 0, qpos = 0; Matrix& m : s.matrices) {
    if (m.rank > 0) {
      p_times_qt(nullptr, P + pos, Q + qpos, g + m.offset, m.rows, m.cols, m.rank);
      std::copy(Q + qpos, Q + qpos + m.cols * m.rank, m.q.begin());
      qpos += m.cols * m.rank;
      pos += m.rows * m.rank;
    } else {
      std::copy(P + pos, P + pos + m.rows, g + m.offset);
      pos += m.rows;
    }
  }
  return nullptr;
}

int64_t PowerSGDHook::q_length(const State& s) {
  int64_t n = 0;
  for (const Matrix& m : s.matrices) n += m.cols * m.rank;
  return n;
}

nn::NamedTensors PowerSGDHook::state_dict() const {
  nn::NamedTensors out;
  for (const auto& [index, s] : states_) {
    out.emplace_back(hook_state::key(index, "reductions"), tensor(std::vector<int64_t>{s.reductions}, {1}));
    out.emplace_back(hook_state::key(index, "residual"), tensor(s.residual, {static_cast<int64_t>(s.residual.size())}));
    std::vector<float> q;
    for (const Matrix& m : s.matrices) q.insert(q.end(), m.q.begin(), m.q.end());
    if (!q.empty()) out.emplace_back(hook_state::key(index, "q"), tensor(q, {static_cast<int64_t>(q.size())}));
  }
  return out;
}

void PowerSGDHook::load_state_dict(const nn::NamedTensors& state, const std::vector<GradientBucket>& buckets) {
  // Per bucket: its three parts, found first, so that a missing one is named.
  std::map<size_t, std::map<std::string, const Tensor*>> parts;
  for (const auto& [key, t] : state) {
    auto [index, what] = hook_state::parse_key(name(), key, buckets.size());
    WEFT_CHECK(what == "reductions" || what == "residual" || what == "q", "comm hook ", name(), ": unknown state key '",
               key, "'");
    WEFT_CHECK(parts[index].emplace(what, &t).second, "comm hook ", name(), ": state key '", key, "' is given twice");
  }
  // Built apart and swapped in at the end: a bad state leaves the hook as it was.
  std::map<size_t, State> loaded;
  for (const auto& [index, p] : parts) loaded.emplace(index, loaded_state(index, buckets[index], p));
  states_ = std::move(loaded);
}

// Bucket `index`'s state from its saved parts, checked against the layout this hook's
// options give the bucket.
PowerSGDHook::State PowerSGDHook::loaded_state(size_t index, const GradientBucket& bucket,
                                               const std::map<std::string, const Tensor*>& parts) const {
  State s = fresh_state(index, bucket);
  const auto part = [&](const std::string& what) -> const Tensor& {
    auto it = parts.find(what);
    WEFT_CHECK(it != parts.end(), "comm hook ", name(), ": the state has no '", hook_state::key(index, what), "'");
    return *it->second;
  };
  const Tensor& reductions = part("reductions");
  WEFT_CHECK(reductions.dtype() == kInt64 && reductions.numel() == 1, "comm hook ", name(), ": '",
             hook_state::key(index, "reductions"), "' should be one int64");
  s.reductions = reductions.contiguous().to_vector<int64_t>()[0];
  WEFT_CHECK(s.reductions >= 0, "comm hook ", name(), ": '", hook_state::key(index, "reductions"), "' is ",
             s.reductions, ", not a count");
  s.residual = hook_state::floats(name(), hook_state::key(index, "residual"), part("residual"), bucket.numel());
  const int64_t q_len = q_length(s);
  const std::string approx = detail::str(" (saved with another approximation rank than ", opt_.rank,
                                         ", or another min_rate?)");
  WEFT_CHECK(q_len > 0 || !parts.contains("q"), "comm hook ", name(), ": '", hook_state::key(index, "q"),
             "' is given, but this hook compresses no matrix of bucket ", index, approx);
  if (q_len == 0) return s;
  const Tensor& saved_q = part("q");
  WEFT_CHECK(saved_q.numel() == q_len, "comm hook ", name(), ": '", hook_state::key(index, "q"), "' holds ",
             saved_q.numel(), " values, but this hook's Q of bucket ", index, " has ", q_len, approx);
  const std::vector<float> q = hook_state::floats(name(), hook_state::key(index, "q"), saved_q, q_len);
  for (int64_t pos = 0; Matrix& m : s.matrices) {
    std::copy(q.begin() + pos, q.begin() + pos + m.cols * m.rank, m.q.begin());
    pos += m.cols * m.rank;
  }
  return s;
}

Tensor PowerSGDHook::residual(size_t index) const {
  auto it = states_.find(index);
  if (it == states_.end()) return Tensor();
  return tensor(it->second.residual, {static_cast<int64_t>(it->second.residual.size())});
}

}  // namespace weft::parallel
