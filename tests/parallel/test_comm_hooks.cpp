// parallel/comm_hook and its hooks: the 16-bit conversions, each hook on one bucket over
// 2 and 3 rank threads (the sum against the exact one, the bytes counted, identical
// results on every rank), the error-feedback identity of PowerSGD and top-k over many
// steps, and DDP training with every hook.
#include <bit>
#include <cmath>
#include <limits>

#include "parallel_helpers.h"

#include "parallel/comm_hook.h"
#include "parallel/ddp.h"
#include "parallel/half_hook.h"
#include "parallel/powersgd_hook.h"
#include "parallel/topk_hook.h"

using namespace weft;
using namespace weft::parallel;
using Catch::Matchers::Contains;
using weft::test::require_no_errors;
using weft::test::run_on_ranks;

namespace {

// A bucket's parameters: a (6,5) matrix, a (4) vector and a (3,2,2) tensor (a (3,4)
// matrix to PowerSGD): 30 + 4 + 12 = 46 values.
const std::vector<Shape> kShapes = {{6, 5}, {4}, {3, 2, 2}};

// One bucket's parameters, zeros of `shapes`, and the indices of all of them.
std::vector<Tensor> zero_params(const std::vector<Shape>& shapes) {
  std::vector<Tensor> params;
  for (const Shape& s : shapes) params.push_back(zeros(s).requires_grad_());
  return params;
}
std::vector<size_t> all_indices(const std::vector<Tensor>& params) {
  std::vector<size_t> indices(params.size());
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = i;
  return indices;
}

// Rank r's gradients at `step`: a common part (so sums grow over steps) plus noise.
std::vector<float> rank_grad(int64_t n, int rank, int step) {
  Generator gen(1000 + 37 * static_cast<uint64_t>(step) + static_cast<uint64_t>(rank));
  std::vector<float> g = randn({n}, {}, gen).to_vector<float>();
  for (int64_t i = 0; i < n; ++i) g[i] = 0.5f + g[i] * (1.0f + static_cast<float>(i % 7));
  return g;
}

struct RankResult {
  std::vector<std::vector<float>> sums;  // per step: the bucket after reduce
  std::vector<float> residual;           // after the last step (PowerSGD, top-k)
  CommStats stats;
};

// Runs `steps` reduces of one bucket of kShapes on n rank threads with the hook that
// make_hook gives each rank.
std::vector<RankResult> reduce_on_ranks(int n, int steps, const std::function<std::shared_ptr<CommHook>()>& make_hook,
                                        const std::vector<Shape>& shapes = kShapes) {
  std::vector<RankResult> results(static_cast<size_t>(n));
  require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    const int r = comm->rank();
    const std::vector<Tensor> params = zero_params(shapes);
    GradientBucket bucket(all_indices(params), params);
    std::shared_ptr<CommHook> hook = make_hook();
    RankResult& out = results[static_cast<size_t>(r)];
    for (int s = 0; s < steps; ++s) {
      const std::vector<float> g = rank_grad(bucket.numel(), r, s);
      std::copy(g.begin(), g.end(), bucket.flat().data<float>());
      if (WorkHandle w = hook->reduce(0, bucket, *comm)) w->wait();
      hook->end_step();
      out.sums.push_back(bucket.flat().to_vector<float>());
    }
    if (auto* p = dynamic_cast<PowerSGDHook*>(hook.get())) out.residual = p->residual(0).to_vector<float>();
    if (auto* t = dynamic_cast<TopKHook*>(hook.get())) out.residual = t->residual(0).to_vector<float>();
    out.stats = hook->stats();
  }));
  return results;
}

void require_same_on_all_ranks(const std::vector<RankResult>& res) {
  for (size_t r = 1; r < res.size(); ++r)
    for (size_t s = 0; s < res[0].sums.size(); ++s) REQUIRE(res[r].sums[s] == res[0].sums[s]);
}

uint16_t bits16(float f, HalfFormat fmt) { return float_to_half(f, fmt); }
float from_bits(uint32_t b) { return std::bit_cast<float>(b); }

}  // namespace

TEST_CASE("float to bf16 and fp16 rounds to nearest even", "[comm_hooks][parallel]") {
  const auto bf = HalfFormat::BFloat16, fp = HalfFormat::Float16;
  CHECK(bits16(1.0f, bf) == 0x3F80);
  CHECK(bits16(from_bits(0x3F808000), bf) == 0x3F80);  // 1 + 2^-8: a tie, kept part even
  CHECK(bits16(from_bits(0x3F818000), bf) == 0x3F82);  // 1 + 3 2^-8: a tie, rounds up to even
  CHECK(bits16(from_bits(0x3F808001), bf) == 0x3F81);  // just above the tie
  CHECK(bits16(1.0f, fp) == 0x3C00);
  CHECK(bits16(-2.0f, fp) == 0xC000);
  CHECK(bits16(65504.0f, fp) == 0x7BFF);
  CHECK(bits16(65519.0f, fp) == 0x7BFF);
  CHECK(bits16(65520.0f, fp) == 0x7C00);                // the tie above the largest: inf
  CHECK(bits16(1.0f + std::ldexp(1.0f, -11), fp) == 0x3C00);      // tie, even
  CHECK(bits16(1.0f + 3 * std::ldexp(1.0f, -11), fp) == 0x3C02);  // tie, up to even
  CHECK(bits16(std::ldexp(1.0f, -24), fp) == 0x0001);             // the smallest subnormal
  CHECK(bits16(std::ldexp(1.0f, -25), fp) == 0x0000);             // half of it: tie to 0
  CHECK(bits16(3 * std::ldexp(1.0f, -25), fp) == 0x0002);         // 1.5 units: tie to 2
  CHECK(std::isnan(half_to_float(bits16(std::nanf(""), fp), fp)));
  CHECK(std::isnan(half_to_float(bits16(std::nanf(""), bf), bf)));
  // Every non-NaN 16-bit value survives the round trip through float32 unchanged.
  for (HalfFormat f : {bf, fp})
    for (uint32_t h = 0; h < 0x10000; ++h) {
      const float v = half_to_float(static_cast<uint16_t>(h), f);
      if (!std::isnan(v)) REQUIRE(float_to_half(v, f) == h);
    }
}

TEST_CASE("make_comm_hook parses the flag's spellings", "[comm_hooks][parallel]") {
  CHECK(make_comm_hook("none")->name() == "none");
  CHECK(make_comm_hook("bf16")->name() == "bf16");
  CHECK(make_comm_hook("fp16")->name() == "fp16");
  CHECK(make_comm_hook("powersgd:4")->name() == "powersgd:4");
  CHECK(make_comm_hook("powersgd:4,start=100")->name() == "powersgd:4,start=100");
  CHECK(make_comm_hook("powersgd:2,min_rate=1")->name() == "powersgd:2,min_rate=1");
  CHECK(make_comm_hook("powersgd:2,min_rate=0,start=0")->name() == "powersgd:2,min_rate=0");
  CHECK(make_comm_hook("topk:0.01")->name() == "topk:0.01");
  CHECK(make_comm_hook("none")->asynchronous());
  CHECK_FALSE(make_comm_hook("bf16")->asynchronous());
  for (const char* bad : {"powersgd", "powersgd:0", "powersgd:2.5", "powersgd:4,", "powersgd:4,start=-1",
                          "powersgd:4,start=1.5", "powersgd:4,start", "powersgd:4,rank=2", "powersgd:4,min_rate=-1",
                          "powersgd:4,min_rate=nan", "powersgd:,start=1", "topk:0", "topk:1.5", "topk:x", "topk",
                          "int8"})
    CHECK_THROWS_WITH(make_comm_hook(bad), Contains(bad));
}

TEST_CASE("bf16 and fp16 hooks: the sum within 16-bit rounding, half float32's bytes", "[comm_hooks][parallel]") {
  for (HalfFormat f : {HalfFormat::BFloat16, HalfFormat::Float16})
    for (int n : {2, 3, 4}) {
      const double unit = f == HalfFormat::BFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
      DYNAMIC_SECTION((f == HalfFormat::BFloat16 ? "bf16" : "fp16") << ", " << n << " ranks") {
        const auto res = reduce_on_ranks(n, 2, [f] { return std::make_shared<HalfPrecisionHook>(f); });
        require_same_on_all_ranks(res);
        for (int s = 0; s < 2; ++s)
          for (size_t i = 0; i < res[0].sums[s].size(); ++i) {
            double exact = 0, magnitude = 0;
            for (int r = 0; r < n; ++r) {
              const float g = rank_grad(46, r, s)[i];
              exact += g;
              magnitude += std::abs(g);
            }
            // A partial sum rounded to 16 bits at each of the n-1 hops and once at the
            // end, each time by at most `unit` relative to at most `magnitude`.
            INFO("step " << s << ", value " << i);
            CHECK(std::abs(res[0].sums[s][i] - exact) <= magnitude * unit * n + 1e-5);
          }
        // 46 values -> 12 int64 words = 96 bytes, in n chunks, 2 (n-1) hops of one chunk.
        CHECK(res[0].stats.bytes_sent == 2 * ring_allreduce_bytes(96, n));
        CHECK(res[0].stats.float32_bytes == 2 * ring_allreduce_bytes(46 * 4, n));
        CHECK(res[0].stats.steps == 2);
        CHECK(res[0].stats.compression() == Approx(184.0 / 96).epsilon(0.01));  // 2x but for the padding
      }
    }
}

TEST_CASE("bf16 hook: a bucket smaller than the ring (empty chunks) still sums", "[comm_hooks][parallel]") {
  // 3 values = 1 packed word among 4 ranks: chunks of 1, 0, 0 and 0 words.
  const auto res = reduce_on_ranks(4, 1, [] { return std::make_shared<HalfPrecisionHook>(HalfFormat::BFloat16); },
                                   {{3}});
  require_same_on_all_ranks(res);
  for (size_t i = 0; i < 3; ++i) {
    double exact = 0, magnitude = 0;
    for (int r = 0; r < 4; ++r) {
      exact += rank_grad(3, r, 0)[i];
      magnitude += std::abs(rank_grad(3, r, 0)[i]);
    }
    CHECK(std::abs(res[0].sums[0][i] - exact) <= magnitude * std::ldexp(1.0, -8) * 4 + 1e-5);
  }
}

TEST_CASE("PowerSGD is exact when its rank reaches the matrices' rows", "[comm_hooks][parallel]") {
  for (int n : {2, 3}) {
    DYNAMIC_SECTION(n << " ranks") {
      // rank 6: (6,5) -> r' = 5 = cols, (3,4) -> r' = 3 = rows; the vector goes as it is.
      // min_compression_rate 0 compresses them although P and Q are larger than M.
      const auto res = reduce_on_ranks(
          n, 3, [] { return std::make_shared<PowerSGDHook>(PowerSGDOptions{.rank = 6, .min_compression_rate = 0}); });
      CHECK(res[0].stats.compression() < 1.0);  // compressed indeed: more bytes than float32
      require_same_on_all_ranks(res);
      for (int s = 0; s < 3; ++s)
        for (size_t i = 0; i < res[0].sums[s].size(); ++i) {
          double exact = 0;
          for (int r = 0; r < n; ++r) exact += rank_grad(46, r, s)[i];
          INFO("step " << s << ", value " << i);
          CHECK(res[0].sums[s][i] == Approx(exact).margin(1e-3));
        }
    }
  }
}

TEST_CASE("PowerSGD and top-k: applied sums plus residuals equal the true sums", "[comm_hooks][parallel]") {
  constexpr int kSteps = 40;
  struct Case {
    const char* name;
    std::function<std::shared_ptr<CommHook>()> make;
  };
  // min_compression_rate 1: both matrices compressed (the default 2 leaves (3,4) alone).
  const std::vector<Case> cases = {{"powersgd:1", [] { return std::make_shared<PowerSGDHook>(PowerSGDOptions{.rank = 1, .min_compression_rate = 1}); }},
                                   {"topk:0.1", [] { return std::make_shared<TopKHook>(0.1); }}};
  for (const Case& c : cases)
    for (int n : {2, 3}) {
      DYNAMIC_SECTION(c.name << ", " << n << " ranks") {
        const auto res = reduce_on_ranks(n, kSteps, c.make);
        require_same_on_all_ranks(res);
        double worst = 0, residual_norm = 0, true_norm = 0;
        for (size_t i = 0; i < 46; ++i) {
          double applied = 0, truth = 0, residual = 0;
          for (int s = 0; s < kSteps; ++s) {
            applied += res[0].sums[s][i];
            for (int r = 0; r < n; ++r) truth += rank_grad(46, r, s)[i];
          }
          for (int r = 0; r < n; ++r) residual += res[r].residual[i];
          worst = std::max(worst, std::abs(applied + residual - truth));
          residual_norm += residual * residual;
          true_norm += truth * truth;
        }
        CHECK(worst < 1e-3);  // float rounding over 40 steps of sums near 100
        // Error feedback keeps the residual bounded while the sums grow: the applied
        // updates converge to the true sum.
        CHECK(std::sqrt(residual_norm / true_norm) < 0.25);
        // Bytes: PowerSGD sends (6+5) + 4 + (3+4) floats per all-reduce pair instead of 46;
        // top-k sends ceil(4.6) = 5 pairs of 8 bytes and its inf/NaN flag word.
        const int64_t per_step = std::string(c.name) == "topk:0.1" ? ring_allgather_bytes(6 * 8, n)
                                                                   : ring_allreduce_bytes((6 + 4 + 3) * 4, n) +
                                                                         ring_allreduce_bytes((5 + 4) * 4, n);
        CHECK(res[0].stats.bytes_sent == kSteps * per_step);
      }
    }
}

TEST_CASE("DDP with every comm hook: identical parameters on every rank", "[comm_hooks][ddp][parallel]") {
  constexpr int kSteps = 3, kBatch = 12;
  // min_rate=1: the tiny MLP's (8,6) and (3,8) weights shrink less than PowerSGD's default 2x.
  for (const char* spec : {"none", "bf16", "fp16", "powersgd:2,min_rate=1", "topk:0.2"})
    for (int n : {2, 3}) {
      DYNAMIC_SECTION(spec << ", " << n << " ranks") {
        auto initial = weft::test::make_tiny_mlp();
        std::vector<std::shared_ptr<nn::Module>> results(static_cast<size_t>(n)), exact(static_cast<size_t>(n));
        std::vector<CommStats> stats(static_cast<size_t>(n));
        require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
          const int r = comm->rank();
          auto m = weft::test::make_tiny_mlp();
          nn::copy_state(*initial, *m);
          // 128-byte buckets: several buckets, each with its own hook state.
          DistributedDataParallel ddp(m, comm, {.bucket_cap_mb = 128.0 / (1024 * 1024), .comm_hook = make_comm_hook(spec)});
          weft::test::ddp_sgd_steps(ddp, kSteps, kBatch, 100, r, n);
          results[static_cast<size_t>(r)] = nn::replicate(ddp.module(), weft::test::make_tiny_mlp, kCPU);
          stats[static_cast<size_t>(r)] = ddp.comm_hook().stats();
        }));
        for (int r = 1; r < n; ++r) CHECK(weft::test::params_equal(*results[static_cast<size_t>(r)], *results[0]));
        CHECK(stats[0].steps == kSteps);
        CHECK(stats[0].bytes_sent > 0);
        if (std::string(spec) == "none") CHECK(stats[0].compression() == 1.0);
        else CHECK(stats[0].compression() > 1.0);
      }
    }
}

TEST_CASE("DDP refuses a comm hook in deterministic mode", "[comm_hooks][ddp][parallel]") {
  require_no_errors(run_on_ranks(1, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    CHECK_THROWS_WITH(DistributedDataParallel(weft::test::make_tiny_mlp(), comm,
                                              {.deterministic = true, .comm_hook = make_comm_hook("bf16")}),
                      Contains("deterministic"));
  }));
}

TEST_CASE("PowerSGD and top-k: one rank's inf makes the bucket NaN everywhere and keeps the residuals",
          "[comm_hooks][parallel]") {
  for (const char* spec : {"powersgd:1", "topk:0.1"})
    for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
      DYNAMIC_SECTION(spec << ", injected " << bad) {
        const int n = 3, steps = 4, bad_step = 2;
        struct Seen {
          std::vector<float> before, after;  // the residual around the bad step
          std::vector<std::vector<float>> sums;
        };
        std::vector<Seen> seen(n);
        require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
          const int r = comm->rank();
          const std::vector<Tensor> params = zero_params(kShapes);
          GradientBucket bucket(all_indices(params), params);
          auto hook = make_comm_hook(spec);
          auto residual = [&] {
            if (auto* p = dynamic_cast<PowerSGDHook*>(hook.get())) return p->residual(0).to_vector<float>();
            return dynamic_cast<TopKHook*>(hook.get())->residual(0).to_vector<float>();
          };
          Seen& me = seen[size_t(r)];
          for (int s = 0; s < steps; ++s) {
            std::vector<float> g = rank_grad(bucket.numel(), r, s);
            if (s == bad_step && r == 1) g[7] = bad;  // rank 1 overflows in one entry
            std::copy(g.begin(), g.end(), bucket.flat().data<float>());
            if (s == bad_step) me.before = residual();
            hook->reduce(0, bucket, *comm);
            if (s == bad_step) me.after = residual();
            me.sums.push_back(bucket.flat().to_vector<float>());
          }
        }));
        for (int r = 0; r < n; ++r) {
          INFO("rank " << r);
          CHECK(seen[size_t(r)].before == seen[size_t(r)].after);  // the bad step left no trace
          for (float v : seen[size_t(r)].sums[bad_step]) CHECK(std::isnan(v));
          for (int s : {0, 1, 3})
            for (float v : seen[size_t(r)].sums[size_t(s)]) CHECK(std::isfinite(v));
        }
      }
    }
}

TEST_CASE("PowerSGD: empty and thin parameters go uncompressed", "[comm_hooks][parallel]") {
  // (0, 3) and (3, 0) hold nothing; (2, 40) at rank 4 would send (2 + 40) 4 > 80 floats.
  const std::vector<Shape> shapes = {{0, 3}, {5}, {3, 0}, {2, 40}};
  const auto res = reduce_on_ranks(2, 2, [] { return std::make_shared<PowerSGDHook>(4); }, shapes);
  require_same_on_all_ranks(res);
  for (int s = 0; s < 2; ++s)
    for (size_t i = 0; i < res[0].sums[size_t(s)].size(); ++i) {
      const double exact = double(rank_grad(85, 0, s)[i]) + rank_grad(85, 1, s)[i];
      CHECK(res[0].sums[size_t(s)][i] == Approx(exact).margin(1e-4));  // exact: nothing compressed
    }
}

TEST_CASE("DDP deterministic mode takes the default hook, explicit or not", "[comm_hooks][ddp][parallel]") {
  require_no_errors(run_on_ranks(2, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    DistributedDataParallel a(weft::test::make_tiny_mlp(), comm, {.deterministic = true});
    DistributedDataParallel b(weft::test::make_tiny_mlp(), comm,
                              {.deterministic = true, .comm_hook = make_comm_hook("none")});
  }));
}

TEST_CASE("PowerSGD warm-up: the first start_step reductions are exact and leave no residual",
          "[comm_hooks][parallel]") {
  constexpr int kSteps = 6, kStart = 2;
  const auto res = reduce_on_ranks(2, kSteps, [] {
    return std::make_shared<PowerSGDHook>(PowerSGDOptions{.rank = 1, .min_compression_rate = 1, .start_step = kStart});
  });
  require_same_on_all_ranks(res);
  double applied_minus_truth = 0;
  for (int s = 0; s < kSteps; ++s)
    for (size_t i = 0; i < 46; ++i) {
      const double exact = double(rank_grad(46, 0, s)[i]) + rank_grad(46, 1, s)[i];
      if (s < kStart) CHECK(res[0].sums[size_t(s)][i] == Approx(exact).margin(1e-4));
      applied_minus_truth += res[0].sums[size_t(s)][i] - exact;
    }
  // Compressed from step kStart on: not exact, but what is missing sits in the residuals.
  bool any_inexact = false;
  for (size_t i = 0; i < 46; ++i)
    any_inexact |= std::abs(res[0].sums[kStart][i] - (double(rank_grad(46, 0, kStart)[i]) + rank_grad(46, 1, kStart)[i])) > 1e-2;
  CHECK(any_inexact);
  double residuals = 0;
  for (const RankResult& r : res)
    for (float v : r.residual) residuals += v;
  CHECK(applied_minus_truth + residuals == Approx(0).margin(1e-3));
  // Bytes: full float32 for the warm-up, then P (6+4+3) and Q (5+4) floats.
  const int64_t compressed = ring_allreduce_bytes(13 * 4, 2) + ring_allreduce_bytes(9 * 4, 2);
  CHECK(res[0].stats.bytes_sent == kStart * ring_allreduce_bytes(46 * 4, 2) + (kSteps - kStart) * compressed);
}

TEST_CASE("PowerSGD min_compression_rate: a matrix that would not shrink enough goes exact",
          "[comm_hooks][parallel]") {
  // At rank 1 the (6,5) matrix shrinks 30/11 = 2.7x and the (3,4) one 12/7 = 1.7x: the
  // default rate 2 compresses only the first; the (3,4) values (the last 12) stay exact.
  const auto res = reduce_on_ranks(2, 3, [] { return std::make_shared<PowerSGDHook>(1); });
  require_same_on_all_ranks(res);
  for (int s = 0; s < 3; ++s)
    for (size_t i = 30; i < 46; ++i)  // the vector and the (3,4) matrix
      CHECK(res[0].sums[size_t(s)][i] == Approx(double(rank_grad(46, 0, s)[i]) + rank_grad(46, 1, s)[i]).margin(1e-4));
  for (const RankResult& r : res)
    for (size_t i = 30; i < 46; ++i) CHECK(r.residual[i] == 0.0f);
  // P: 6 rows + the 4 + 12 exact values; Q: 5 columns.
  CHECK(res[0].stats.bytes_sent == 3 * (ring_allreduce_bytes((6 + 16) * 4, 2) + ring_allreduce_bytes(5 * 4, 2)));
}
