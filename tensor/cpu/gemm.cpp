// gemm on the backend measured fastest for the shape class of the call. See gemm.h.
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "../error.h"

namespace weft::cpu {

namespace {

// ---- the setting: measure, or one backend forced -----------------------------------

constexpr int kMeasure = -1;
constexpr int kUnread = -2;  // WEFT_GEMM not read yet

// The forced backend as an int (kMeasure for none), read on every call. It starts from
// WEFT_GEMM, read at the first call; set_gemm_backend() overrides it, even when
// WEFT_GEMM holds something unknown (which every call reports until then).
std::atomic<int> setting_value{kUnread};

int from_environment() {
  const char* env = std::getenv("WEFT_GEMM");
  if (!env || std::string(env).empty() || std::string(env) == "auto") return kMeasure;
  if (const auto b = backend_named(env)) {
    WEFT_CHECK(backend_in_build(*b), "WEFT_GEMM=", env, ": this build of weft has no ", env,
               " (see tensor/cpu/gemm_backends.h)");
    return static_cast<int>(*b);
  }
  throw Error(detail::str("WEFT_GEMM=", env, ": unknown GEMM backend (use auto, eigen, openblas or onednn)"));
}

int setting() {
  int s = setting_value.load(std::memory_order_relaxed);
  if (s == kUnread) {
    int expected = kUnread;
    setting_value.compare_exchange_strong(expected, from_environment());
    s = setting_value.load();
  }
  return s;
}

// Bumped whenever decisions are forgotten or the setting changes, so that each thread's
// copy of the decisions is dropped.
std::atomic<uint64_t> generation{0};

std::atomic<int64_t> calls[3];
std::atomic<int64_t> measuring_ns{0};  // wall time spent measuring, all threads
std::atomic<int64_t> measurements{0};  // shape classes measured
std::atomic<int64_t> startup_ns{0};    // of which the backends' first calls on each thread

// ---- shape classes and their decisions ---------------------------------------------

// dtype, transposes and the bit widths of m, n, k (each < 64) packed into one key.
uint32_t class_key(bool is_double, bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
  auto w = [](int64_t v) { return static_cast<uint32_t>(std::bit_width(static_cast<uint64_t>(v))); };
  return (is_double << 20) | (ta << 19) | (tb << 18) | (w(m) << 12) | (w(n) << 6) | w(k);
}

// The decisions of the process: a class is either decided, or being measured by one
// thread while the others wait on `cv`.
struct Table {
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<uint32_t, GemmDecision> decided;
  std::unordered_set<uint32_t> measuring;
};
Table& table() {
  static Table t;
  return t;
}

// Each thread's copy of the decisions it has used, read without a lock.
struct LocalDecisions {
  uint64_t generation = ~uint64_t{0};
  std::unordered_map<uint32_t, GemmBackend> chosen;
};
thread_local LocalDecisions local;

// ---- measuring ---------------------------------------------------------------------

// Times `reps` calls of backend b into `scratch` (beta = 0, so what it holds is ignored).
template <class T>
double time_calls(GemmBackend b, int reps, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a,
                  int64_t lda, const T* bm, int64_t ldb, T* scratch) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) backend_gemm<T>(b, ta, tb, m, n, k, T(1), a, lda, bm, ldb, T(0), scratch, n);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

// Each backend's first call on a thread pays for setting up (oneDNN generates its
// kernels, OpenBLAS allocates its buffers): one small call each, once per thread, before
// any timing.
// (oneDNN's first call in the process takes about 30 ms on the development machine:
// it generates all its sgemm kernels. A program that runs oneDNN pays that anyway, so
// it is counted apart from measuring.)
template <class T>
void warm_up(const std::vector<GemmBackend>& candidates) {
  thread_local bool done = false;
  if (done) return;
  done = true;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<T> x(64 * 64, T(1)), y(64 * 64);
  for (GemmBackend b : candidates) backend_gemm<T>(b, false, false, 64, 64, 64, T(1), x.data(), 64, x.data(), 64, T(0), y.data(), 64);
  startup_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

// Times every candidate on this call's own operands and returns the decision. Rounds
// rotate their order (a, b, c; b, c, a; ...) so that a burst of load on the machine, or
// operands left in cache by the one before, favour none of them, and each candidate
// keeps its fastest round; a small product also runs once untimed first. A candidate
// more than 1.5x behind the best after two rounds is a clear loser and is not timed
// further. A tall product is timed on its first rows only -- enough for about 1e7
// multiply-adds a call, 64 rows at least -- which keeps measuring well under 1% of a
// run (bench/results/cpu-2026-12-06.txt gives the cost for the samples).
template <class T>
GemmDecision measure(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                     int64_t ldb) {
  GemmDecision d{std::is_same_v<T, double>, ta, tb, m, n, k, {0, 0, 0}, GemmBackend::eigen};
  std::vector<GemmBackend> candidates;
  for (GemmBackend c : kGemmBackends)
    if (backend_available<T>(c)) candidates.push_back(c);
  if (candidates.size() == 1) return d;
  warm_up<T>(candidates);
  // Rows of op(A) are rows of A, or columns when transposed: either way the first mt
  // rows of the product need only the start of A's storage. Scratch: 16 M entries at most.
  int64_t mt = std::max<int64_t>(64, static_cast<int64_t>(1e7 / (static_cast<double>(n) * static_cast<double>(k))));
  mt = std::min({m, mt, std::max<int64_t>(1, (int64_t{1} << 24) / n)});
  std::vector<T> scratch(static_cast<size_t>(mt) * static_cast<size_t>(n));
  const double madds = static_cast<double>(mt) * static_cast<double>(n) * static_cast<double>(k);
  if (madds < 1e6)
    for (GemmBackend c : candidates) time_calls<T>(c, 1, ta, tb, mt, n, k, a, lda, b, ldb, scratch.data());
  // Enough calls per round to time about a million multiply-adds (~10 us and up).
  const int reps = static_cast<int>(std::clamp(1e6 / madds, 1.0, 64.0));
  const int rounds = madds >= 1e6 ? 3 : 5;
  std::array<double, 3>& best = d.seconds;
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      const GemmBackend c = candidates[(i + round) % candidates.size()];
      // (a clock too coarse for the round must not read as "never timed": 0)
      const double s = std::max(1e-12, time_calls<T>(c, reps, ta, tb, mt, n, k, a, lda, b, ldb, scratch.data()));
      double& kept = best[static_cast<int>(c)];
      kept = kept == 0 ? s : std::min(kept, s);
    }
    if (round == 1) {
      double fastest = 1e300;
      for (GemmBackend c : candidates) fastest = std::min(fastest, best[static_cast<int>(c)]);
      std::erase_if(candidates, [&](GemmBackend c) { return best[static_cast<int>(c)] > 1.5 * fastest; });
      if (candidates.size() == 1) break;
    }
  }
  d.chosen = candidates.front();
  for (GemmBackend c : candidates)
    if (best[static_cast<int>(c)] < best[static_cast<int>(d.chosen)]) d.chosen = c;
  return d;
}

// The decision for a class, from the table, or measured here when no thread has yet
// (the others wait for it).
template <class T>
GemmBackend decide(uint32_t key, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                   const T* b, int64_t ldb) {
  Table& t = table();
  std::unique_lock lock(t.mu);
  t.cv.wait(lock, [&] { return !t.measuring.contains(key); });
  if (auto it = t.decided.find(key); it != t.decided.end()) return it->second.chosen;
  t.measuring.insert(key);
  // However this ends (a decision, or an exception), the class stops being measured and
  // the threads waiting for it wake up.
  struct Done {
    Table& t;
    uint32_t key;
    std::unique_lock<std::mutex>& lock;
    ~Done() {
      if (!lock.owns_lock()) lock.lock();
      t.measuring.erase(key);
      t.cv.notify_all();
    }
  } done{t, key, lock};
  lock.unlock();
  const auto t0 = std::chrono::steady_clock::now();
  const GemmDecision d = measure<T>(ta, tb, m, n, k, a, lda, b, ldb);
  measuring_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  measurements.fetch_add(1);
  lock.lock();
  t.decided[key] = d;
  return d.chosen;
}

// The backend for this call: the forced one, or this thread's copy of the class's
// decision, or the table's.
template <class T>
GemmBackend backend_for(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                        int64_t ldb) {
  if (const int s = setting(); s != kMeasure) {
    const auto forced = static_cast<GemmBackend>(s);
    if (backend_available<T>(forced)) return forced;
  }
  const uint64_t gen = generation.load(std::memory_order_acquire);
  if (local.generation != gen) {
    local.chosen.clear();
    local.generation = gen;
  }
  const uint32_t key = class_key(std::is_same_v<T, double>, ta, tb, m, n, k);
  if (auto it = local.chosen.find(key); it != local.chosen.end()) return it->second;
  const GemmBackend chosen = decide<T>(key, ta, tb, m, n, k, a, lda, b, ldb);
  local.chosen.emplace(key, chosen);
  return chosen;
}

// C = beta * C, for k == 0 (an empty sum, where BLAS would reject the leading
// dimensions) and alpha == 0.
template <class T>
void scale(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

}  // namespace

template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  // An empty sum, or alpha = 0: C = beta * C, with A and B unread as the BLAS standard
  // says (OpenBLAS 0.3.21 reads them anyway, so a NaN in A would get through).
  if (k == 0 || alpha == T(0)) return scale(m, n, beta, c, ldc);
  const GemmBackend which = backend_for<T>(ta, tb, m, n, k, a, lda, b, ldb);
  calls[static_cast<int>(which)].fetch_add(1, std::memory_order_relaxed);
  backend_gemm<T>(which, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <class T>
GemmBackend gemm_choice(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                        int64_t ldb) {
  WEFT_CHECK(m > 0 && n > 0 && k > 0, "gemm_choice: m, n and k must be positive, got ", m, ", ", n, ", ", k);
  return backend_for<T>(ta, tb, m, n, k, a, lda, b, ldb);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);
template GemmBackend gemm_choice<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*,
                                        int64_t);
template GemmBackend gemm_choice<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t,
                                         const double*, int64_t);

void force_gemm_backend(std::optional<GemmBackend> b) {
  if (b)
    WEFT_CHECK(backend_in_build(*b), "set_gemm_backend: this build of weft has no ",
               backend_name(*b), " (see tensor/cpu/gemm_backends.h)");
  setting_value.store(b ? static_cast<int>(*b) : kMeasure);
  generation.fetch_add(1, std::memory_order_release);
}

std::optional<GemmBackend> forced_gemm_backend() {
  const int s = setting();
  return s == kMeasure ? std::nullopt : std::optional(static_cast<GemmBackend>(s));
}

std::array<int64_t, 3> gemm_calls() { return {calls[0].load(), calls[1].load(), calls[2].load()}; }

double gemm_measuring_seconds() { return measuring_ns.load() * 1e-9; }

double gemm_startup_seconds() { return startup_ns.load() * 1e-9; }

int64_t gemm_measurements() { return measurements.load(); }

std::vector<GemmDecision> gemm_decisions() {
  Table& t = table();
  std::lock_guard lock(t.mu);
  std::vector<GemmDecision> out;
  for (const auto& [key, d] : t.decided) out.push_back(d);
  std::sort(out.begin(), out.end(), [](const GemmDecision& x, const GemmDecision& y) {
    return std::tuple(x.is_double, x.trans_a, x.trans_b, x.m, x.n, x.k) <
           std::tuple(y.is_double, y.trans_a, y.trans_b, y.m, y.n, y.k);
  });
  return out;
}

void reset_gemm_decisions() {
  Table& t = table();
  std::unique_lock lock(t.mu);
  t.cv.wait(lock, [&] { return t.measuring.empty(); });
  t.decided.clear();
  generation.fetch_add(1, std::memory_order_release);
}

}  // namespace weft::cpu
