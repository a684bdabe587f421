// Shared by the data-parallel tests: a tiny model, a fixed batch, and comparisons of
// parameters and gradients between two modules.
#pragma once

#include <memory>

#include "../helpers.h"

namespace weft::test {

// 6 -> 8 -> 3 with a ReLU between: (B,6) -> (B,3) logits. Small enough that many steps
// at several world sizes stay fast; two layers so backward has more than one bucket's
// worth of structure.
inline std::shared_ptr<nn::Module> make_tiny_mlp() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(6, 8), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(8, 3)});
}

// x (n,6) float32 and y (n) int64 labels in [0,3), from `seed`.
struct TinyBatch {
  Tensor x, y;
};
inline TinyBatch tiny_batch(int64_t n, uint64_t seed) {
  Generator gen(seed);
  Tensor x = randn({n, 6}, {}, gen);
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = (i * 7 + static_cast<int64_t>(seed)) % 3;
  return {x, tensor(labels)};
}

// Largest |a - b| over every parameter's value (grads = false) or gradient (grads = true).
inline double max_param_diff(const nn::Module& a, const nn::Module& b, bool grads = false) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    REQUIRE(pa[i].first == pb[i].first);
    const Tensor ta = grads ? pa[i].second.grad() : pa[i].second;
    const Tensor tb = grads ? pb[i].second.grad() : pb[i].second;
    REQUIRE(ta.defined());
    REQUIRE(tb.defined());
    const auto va = ta.to(kCPU).to_vector<float>(), vb = tb.to(kCPU).to_vector<float>();
    REQUIRE(va.size() == vb.size());
    for (size_t k = 0; k < va.size(); ++k) worst = std::max(worst, static_cast<double>(std::abs(va[k] - vb[k])));
  }
  return worst;
}

// True when every parameter of a and b is bit-for-bit equal.
inline bool params_equal(const nn::Module& a, const nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i)
    if (!equal(pa[i].second.to(kCPU), pb[i].second.to(kCPU))) return false;
  return true;
}

}  // namespace weft::test

#include <thread>

#include "parallel/comm/threads_communicator.h"

namespace weft::test {

// Runs fn(comm) on n rank threads of a fresh thread group and returns each rank's error
// message ("" for none). Each rank thread runs its ops with one intra-op thread, so the
// result does not depend on how the ranks share the cores. A rank whose fn returns is
// not marked gone: the others see exactly what a silent rank would cause.
inline std::vector<std::string> run_on_ranks(int n, parallel::Timeout timeout,
                                             const std::function<void(std::shared_ptr<parallel::Communicator>)>& fn) {
  auto comms = parallel::make_thread_group(n, timeout);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        ThreadLimit one(1);
        fn(comms[static_cast<size_t>(r)]);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

// Each rank's error of run_on_ranks, if any, as a failure that names the rank.
inline void require_no_errors(const std::vector<std::string>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) {
    INFO("rank " << r << ": " << errors[r]);
    REQUIRE(errors[r].empty());
  }
}

// Rows [r*B/n, (r+1)*B/n) of a batch of B = n*k rows: rank r's shard, as a fresh tensor.
inline Tensor shard(const Tensor& t, int rank, int n) {
  const int64_t k = t.size(0) / n;
  return t.narrow(0, rank * k, k).clone();
}

// `steps` SGD steps (lr 0.1, momentum 0.9) of a DDP-wrapped tiny MLP, rank r of n taking
// its shard of tiny_batch(batch, seed0 + s) at step s. Batches move to the module's device.
inline void ddp_sgd_steps(parallel::DistributedDataParallel& ddp, int steps, int64_t batch, uint64_t seed0, int r,
                          int n) {
  const Device device = ddp.module().parameters()[0].device();
  optim::SGD opt(ddp.module().parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int s = 0; s < steps; ++s) {
    const auto b = tiny_batch(batch, seed0 + s);
    opt.zero_grad();
    ddp.backward(nn::cross_entropy(ddp(shard(b.x, r, n).to(device)), shard(b.y, r, n).to(device)));
    ddp.synchronize();
    opt.step();
  }
}

// Steps [from, to) with a caller-owned optimizer (so a run can stop and go on): at
// step s, rank r's shard of tiny_batch(batch, seed0 + s).
inline void ddp_steps(parallel::DistributedDataParallel& ddp, optim::Optimizer& opt, int from, int to,
                      int64_t batch, uint64_t seed0, int r, int n) {
  for (int s = from; s < to; ++s) {
    const auto b = tiny_batch(batch, seed0 + static_cast<uint64_t>(s));
    opt.zero_grad();
    ddp.backward(nn::cross_entropy(ddp(shard(b.x, r, n)), shard(b.y, r, n)));
    ddp.synchronize();
    opt.step();
  }
}

// The reference for deterministic mode, on one module and one thread: per step, each of
// the n shards' gradient separately, then mean = (((g_0 + g_1) + g_2) + ...) / n -- the
// documented guarantee -- and an SGD step (lr 0.1, momentum 0.9).
inline void rank_order_sgd_steps(nn::Module& single, int steps, int64_t batch, uint64_t seed0, int n) {
  ThreadLimit one(1);
  optim::SGD opt(single.parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int s = 0; s < steps; ++s) {
    const auto b = tiny_batch(batch, seed0 + s);
    std::vector<Tensor> sum;
    for (int q = 0; q < n; ++q) {
      single.zero_grad();
      nn::cross_entropy(single(shard(b.x, q, n)), shard(b.y, q, n)).backward();
      const auto params = single.parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        if (q == 0) sum.push_back(params[i].grad().clone());
        else sum[i].add_(params[i].grad());
      }
    }
    const auto params = single.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor p = params[i];
      p.set_grad(sum[i].div_(static_cast<double>(n)));
    }
    opt.step();
  }
}

// The MPI tests' world: a 20 s timeout, the arrival handshake on, blocking collectives.
inline std::shared_ptr<parallel::MpiCommunicator> mpi_test_world() {
  auto c = parallel::MpiCommunicator::world();
  c->set_timeout(parallel::Timeout(20'000));
  c->set_check_arrivals(true);
  c->set_polled_collectives(false);
  return c;
}

}  // namespace weft::test
