// The memory of the error-feedback comm hooks across a checkpoint: a hook that loads
// another's state_dict goes on exactly as that one would, DDP gathers every rank's state
// and hands each rank its own back (a resumed DDP run equals the uninterrupted one bit
// for bit, and differs without the state), and bad states are refused by name.
#include "parallel_helpers.h"

#include "parallel/comm_hook.h"
#include "parallel/ddp.h"

using namespace weft;
using namespace weft::parallel;
using Catch::Matchers::Contains;
using weft::test::require_no_errors;
using weft::test::run_on_ranks;

namespace {

// One bucket of a (6,5) matrix, a (4) vector and a (3,2,2) tensor: 46 values.
struct OneBucket {
  std::vector<Tensor> params = {zeros({6, 5}).requires_grad_(), zeros({4}).requires_grad_(),
                                zeros({3, 2, 2}).requires_grad_()};
  std::vector<GradientBucket> buckets;
  OneBucket() { buckets.emplace_back(std::vector<size_t>{0, 1, 2}, params); }
  GradientBucket& bucket() { return buckets[0]; }
};

// Rank r's gradient at `step`.
void fill_grad(GradientBucket& b, int rank, int step) {
  Generator gen(500 + 31 * static_cast<uint64_t>(step) + static_cast<uint64_t>(rank));
  Tensor flat = b.flat();
  flat.copy_(randn({b.numel()}, {}, gen));
}

bool same_state(const nn::NamedTensors& a, const nn::NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || !equal(a[i].second, b[i].second)) return false;
  return true;
}

}  // namespace

TEST_CASE("PowerSGD and top-k: a hook loaded from another's state_dict goes on exactly", "[comm_hooks][parallel]") {
  // start=4: the loaded hook must also know it has one warm-up reduction left.
  for (const char* spec : {"powersgd:1,min_rate=1", "powersgd:2,start=4", "topk:0.1"}) {
    DYNAMIC_SECTION(spec) {
      constexpr int n = 2, kSaved = 3, kSteps = 6;
      std::vector<bool> same_sums(n), same_after(n), state_empty(n);
      require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
        const int r = comm->rank();
        OneBucket a, b;
        auto hook_a = make_comm_hook(spec), hook_b = make_comm_hook(spec);
        for (int s = 0; s < kSaved; ++s) {
          fill_grad(a.bucket(), r, s);
          if (WorkHandle w = hook_a->reduce(0, a.bucket(), *comm)) w->wait();  // warm-up: async
        }
        state_empty[r] = hook_a->state_dict().empty();
        hook_b->load_state_dict(hook_a->state_dict(), b.buckets);
        bool sums = true;
        for (int s = kSaved; s < kSteps; ++s) {  // both hooks, the same gradients
          fill_grad(a.bucket(), r, s);
          fill_grad(b.bucket(), r, s);
          if (WorkHandle w = hook_a->reduce(0, a.bucket(), *comm)) w->wait();
          if (WorkHandle w = hook_b->reduce(0, b.bucket(), *comm)) w->wait();
          sums = sums && equal(a.bucket().flat(), b.bucket().flat());
        }
        same_sums[r] = sums;
        same_after[r] = same_state(hook_a->state_dict(), hook_b->state_dict());
      }));
      for (int r = 0; r < n; ++r) {
        INFO("rank " << r);
        CHECK(!state_empty[r]);
        CHECK(same_sums[r]);
        CHECK(same_after[r]);
      }
    }
  }
}

TEST_CASE("comm hook state: a bad state is refused, naming the key", "[comm_hooks][parallel][errors]") {
  std::vector<std::string> messages;
  nn::NamedTensors saved, saved_rank2;
  require_no_errors(run_on_ranks(1, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
    OneBucket a;
    auto p1 = make_comm_hook("powersgd:1,min_rate=1"), p2 = make_comm_hook("powersgd:2,min_rate=1");
    fill_grad(a.bucket(), 0, 0);
    p1->reduce(0, a.bucket(), *comm);
    p2->reduce(0, a.bucket(), *comm);
    saved = p1->state_dict();
    saved_rank2 = p2->state_dict();
  }));
  REQUIRE(saved.size() == 3);  // reductions, residual, q
  const auto edited = [&](const std::function<void(nn::NamedTensors&)>& edit) {
    nn::NamedTensors s = saved;
    edit(s);
    return s;
  };
  OneBucket b;
  const auto load = [&](const char* spec, const nn::NamedTensors& s) { make_comm_hook(spec)->load_state_dict(s, b.buckets); };
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", edited([](auto& s) { s[1].first = "bucket.1.residual"; })),
                    Contains("'bucket.1.residual' names bucket 1, but DDP has 1 bucket"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", edited([](auto& s) { s[1].first = "bucket.0.residue"; })),
                    Contains("unknown state key 'bucket.0.residue'"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", edited([](auto& s) { s[1].first = "bucket.x.residual"; })),
                    Contains("'bucket.x.residual' is not bucket.<index>.<name>"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", edited([](auto& s) { s.pop_back(); })),
                    Contains("the state has no 'bucket.0.q'"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", edited([](auto& s) { s[1].second = zeros({45}); })),
                    Contains("'bucket.0.residual' should be 46 float32 values, got 45"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", saved_rank2),
                    Contains("'bucket.0.q' holds 10 values, but this hook's Q of bucket 0 has 9") &&
                        Contains("another approximation rank than 1"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=10", saved), Contains("this hook compresses no matrix of bucket 0"));
  CHECK_THROWS_WITH(
      load("powersgd:1,min_rate=1", edited([](auto& s) { s[1].first = "bucket.99999999999999999999999.residual"; })),
      Contains("is not bucket.<index>.<name>"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", edited([](auto& s) { s.push_back(s[1]); })),
                    Contains("'bucket.0.residual' is given twice"));
  CHECK_THROWS_WITH(load("powersgd:1,min_rate=1", edited([](auto& s) { s[0].second = tensor({-1}, {1}); })),
                    Contains("'bucket.0.reductions' is -1, not a count"));
  CHECK_THROWS_WITH(load("topk:0.1", saved), Contains("unknown state key 'bucket.0.reductions'"));
  CHECK_THROWS_WITH(load("none", saved), Contains("keeps no state"));
  CHECK_NOTHROW(load("none", {}));
}

TEST_CASE("DDP: a run resumed with the gathered comm hook state equals the uninterrupted one",
          "[comm_hooks][ddp][parallel]") {
  constexpr int kSaved = 3, kSteps = 5;
  for (const char* spec : {"powersgd:2,min_rate=1", "topk:0.2"})
    for (int n : {2, 3}) {
      DYNAMIC_SECTION(spec << ", " << n << " ranks") {
        auto initial = weft::test::make_tiny_mlp();
        std::vector<bool> resumed_equal(static_cast<size_t>(n)), fresh_equal(static_cast<size_t>(n));
        std::vector<size_t> gathered(static_cast<size_t>(n)), own(static_cast<size_t>(n));
        std::string world_error, middle_error;
        require_no_errors(run_on_ranks(n, kDefaultTimeout, [&](std::shared_ptr<Communicator> comm) {
          const int r = comm->rank();
          // 128-byte buckets: several buckets, each with its own state.
          const DDPOptions opt{.bucket_cap_mb = 128.0 / (1024 * 1024), .comm_hook = make_comm_hook(spec)};
          auto whole = weft::test::make_tiny_mlp();
          nn::copy_state(*initial, *whole);
          DistributedDataParallel a(whole, comm, opt);
          optim::SGD sgd_a(whole->parameters(), {.lr = 0.1});
          weft::test::ddp_steps(a, sgd_a, 0, kSaved, 12, 100, r, n);
          const nn::NamedTensors state = a.gather_comm_hook_state();  // what rank 0 would save
          gathered[r] = state.size();
          own[r] = a.comm_hook().state_dict().size();
          auto at_save = nn::replicate(*whole, weft::test::make_tiny_mlp, kCPU);
          weft::test::ddp_steps(a, sgd_a, kSaved, kSteps, 12, 100, r, n);  // the uninterrupted run goes on

          // Resumed: the saved parameters, a new hook, each rank's own state back.
          auto resumed = nn::replicate(*at_save, weft::test::make_tiny_mlp, kCPU);
          DistributedDataParallel b(resumed, comm, {.bucket_cap_mb = opt.bucket_cap_mb, .comm_hook = make_comm_hook(spec)});
          b.load_comm_hook_state(state);
          optim::SGD sgd_b(resumed->parameters(), {.lr = 0.1});
          weft::test::ddp_steps(b, sgd_b, kSaved, kSteps, 12, 100, r, n);
          resumed_equal[r] = weft::test::params_equal(*resumed, *whole);

          // Without the state the hook starts from zero: another result (so the state matters).
          auto fresh = nn::replicate(*at_save, weft::test::make_tiny_mlp, kCPU);
          DistributedDataParallel c(fresh, comm, {.bucket_cap_mb = opt.bucket_cap_mb, .comm_hook = make_comm_hook(spec)});
          optim::SGD sgd_c(fresh->parameters(), {.lr = 0.1});
          weft::test::ddp_steps(c, sgd_c, kSaved, kSteps, 12, 100, r, n);
          fresh_equal[r] = weft::test::params_equal(*fresh, *whole);

          if (r == 0) {  // one rank's part missing: the last (another world size), or a middle one
            const auto without = [&](const std::string& prefix) {
              nn::NamedTensors some;
              for (const auto& kt : state)
                if (!kt.first.starts_with(prefix)) some.push_back(kt);
              return some;
            };
            try {
              c.load_comm_hook_state(without("rank" + std::to_string(n - 1) + "."));
            } catch (const Error& e) {
              world_error = e.what();
            }
            if (n == 3) {
              try {
                c.load_comm_hook_state(without("rank1."));
              } catch (const Error& e) {
                middle_error = e.what();
              }
            }
          }
        }));
        for (int r = 0; r < n; ++r) {
          INFO("rank " << r);
          CHECK(own[r] > 0);
          CHECK(gathered[r] == own[r] * static_cast<size_t>(n));
          CHECK(resumed_equal[r]);
          CHECK(!fresh_equal[r]);
        }
        CHECK_THAT(world_error, Contains(detail::str("holds the comm hooks of ", n - 1, " rank")) &&
                                    Contains(detail::str("(the highest rank ", n - 2, "), and this DDP has ranks 0..", n - 1)));
        if (n == 3) CHECK_THAT(middle_error, Contains("holds the comm hooks of 2 ranks (the highest rank 2)"));
      }
    }
}
