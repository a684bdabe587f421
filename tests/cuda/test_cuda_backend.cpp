// The CUDA backend's runtime and heavy ops against the CPU: allocator reuse and stats,
// GEMMs, convolutions (cuDNN and the im2col fallback), pooling, fused optimizers,
// copies across devices with autograd, CUDA graph replay equal to eager, error paths.
// Every case skips with a message where no GPU is visible.
#include <cmath>

#include "../helpers.h"
#include "cuda/cuda.h"
#include "samples/common/models.h"

using namespace weft;

namespace {

#define NEED_GPU()                                          \
  if (!cuda::is_available()) {                              \
    WARN("no CUDA GPU visible: skipping this CUDA test");   \
    return;                                                 \
  }

const Device kGpu = Device::cuda(0);

// max |a - b| / (1 + |b|) over all elements, a on any device, b on the CPU.
double max_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to(kCPU).to_vector<double>(), y = b.to_vector<double>();
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e = std::max(e, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  return e;
}

// Labels 0, 1, ..., 9, 0, 1, ... (n of them) as an int64 tensor.
Tensor labels(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i % 10;
  return tensor(v, {n});
}

Tensor rnd(const Shape& s, uint64_t seed, DType dt = kFloat32) {
  Generator g(seed);
  return randn(s, {.dtype = dt}, g);
}

}  // namespace

// Runs without a GPU: the libraries are opened on first use (cuda/cuda_libraries.h), so
// this checks that they are found and have every function weft calls.
TEST_CASE("cuBLAS and cuSPARSE are opened on first use and report their versions", "[cuda]") {
  if (!cuda::built_with_cuda()) {
    CHECK_THROWS_WITH(cuda::blas_library(), Catch::Contains("built without CUDA"));
    CHECK_THROWS_WITH(cuda::sparse_library(), Catch::Contains("built without CUDA"));
    return;
  }
  const std::string blas = cuda::blas_library(), sparse = cuda::sparse_library();
  INFO(blas << "; " << sparse);
  CHECK(blas.find("libcublas.so.") == 0);
  CHECK(blas.find("(cuBLAS ") != std::string::npos);
  CHECK(sparse.find("libcusparse.so.") == 0);
  CHECK(sparse.find("(cuSPARSE ") != std::string::npos);
  CHECK(cuda::blas_library() == blas);  // loaded once, the same answer again
}

TEST_CASE("cuda: device queries and guards", "[cuda]") {
  NEED_GPU();
  const auto p = cuda::properties(0);
  INFO(p.name);
  REQUIRE(p.multiprocessors > 0);
  REQUIRE(p.total_memory > (size_t(1) << 30));
  {
    cuda::DeviceGuard g(0);
    REQUIRE(cuda::current_device() == 0);
  }
  REQUIRE_THROWS_WITH(cuda::set_device(cuda::device_count()), Catch::Contains("does not exist"));
  REQUIRE_THROWS_WITH(zeros({2}, {.device = Device::cuda(cuda::device_count())}), Catch::Contains("does not exist"));
}

TEST_CASE("cuda: the caching allocator reuses freed blocks and counts", "[cuda]") {
  NEED_GPU();
  { Tensor warm = empty({1000}, kFloat32, kGpu); }
  const auto before = cuda::memory_stats();
  for (int i = 0; i < 50; ++i) Tensor t = empty({1000}, kFloat32, kGpu);
  const auto after = cuda::memory_stats();
  REQUIRE(after.malloc_calls == before.malloc_calls);  // every one came from the cache
  REQUIRE(after.cache_hits >= before.cache_hits + 50);
  Tensor held = empty({1 << 20}, kFloat32, kGpu);
  const auto with = cuda::memory_stats();
  REQUIRE(with.allocated >= before.allocated + (4u << 20));
  REQUIRE(with.peak_allocated >= with.allocated);
  REQUIRE(cuda::memory_summary().find("cudaMalloc calls") != std::string::npos);
  held = Tensor();
  cuda::empty_cache();
  REQUIRE(cuda::memory_stats().reserved < with.reserved);
}

TEST_CASE("cuda: copies both ways, and gradients flow back across to()", "[cuda]") {
  NEED_GPU();
  Tensor a = rnd({37, 5}, 1);
  REQUIRE(max_err(a.to(kGpu), a) == 0);
  REQUIRE(max_err(a.t().to(kGpu), a.t()) == 0);  // non-contiguous source
  Tensor x = rnd({4, 3}, 2, kFloat64).requires_grad_();
  Tensor y = (x.to(kGpu) * x.to(kGpu)).sum();
  y.backward();
  REQUIRE(x.grad().device() == kCPU);
  REQUIRE(max_err(x.grad(), x.detach() * 2.0) < 1e-12);
}

TEST_CASE("cuda: matmul and linear match the CPU for every layout", "[cuda]") {
  NEED_GPU();
  const Tensor a = rnd({33, 17}, 3), b = rnd({17, 29}, 4), w = rnd({29, 17}, 5), bias = rnd({29}, 6);
  REQUIRE(max_err(a.to(kGpu).matmul(b.to(kGpu)), a.matmul(b)) < 1e-5);
  const Tensor bt = b.t().contiguous();  // (29,17): bt.t() is b as a column-major view
  REQUIRE(max_err(bt.to(kGpu).t().matmul(w.to(kGpu)), b.matmul(w)) < 1e-5);
  REQUIRE(max_err(a.to(kGpu).t().matmul(a.to(kGpu)), a.t().matmul(a)) < 1e-5);
  const Tensor ba = rnd({3, 33, 17}, 7);
  REQUIRE(max_err(ba.to(kGpu).matmul(b.to(kGpu)), ba.matmul(b)) < 1e-5);  // broadcast batch
  REQUIRE(max_err(raw::linear(a.to(kGpu), w.to(kGpu), bias.to(kGpu)), raw::linear(a, w, bias)) < 1e-5);
  REQUIRE(max_err(raw::linear(a.to(kGpu), w.to(kGpu), Tensor()), raw::linear(a, w, Tensor())) < 1e-5);
  const Tensor ad = rnd({9, 8}, 8, kFloat64), bd = rnd({8, 7}, 9, kFloat64);
  REQUIRE(max_err(ad.to(kGpu).matmul(bd.to(kGpu)), ad.matmul(bd)) < 1e-12);
}

TEST_CASE("cuda: conv2d forward and both backwards match the CPU (cuDNN and im2col)", "[cuda]") {
  NEED_GPU();
  struct Case {
    Shape x, w;
    Conv2dParams p;
  };
  const std::vector<Case> cases = {
      {{4, 3, 11, 9}, {8, 3, 3, 3}, {}},
      {{2, 4, 12, 12}, {6, 2, 3, 3}, {.stride = {2, 1}, .padding = {1, 2}, .dilation = {1, 2}, .groups = 2}},
      {{3, 1, 28, 28}, {32, 1, 3, 3}, {.padding = {1, 1}}},
      {{2, 6, 7, 5}, {4, 6, 1, 1}, {}},
  };
  std::vector<bool> modes{false};
  if (cuda::built_with_cudnn()) modes.push_back(true);
  for (bool dnn : modes) {
    cuda::set_use_cudnn(dnn);
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      INFO("case " << i << (dnn ? " cuDNN" : " im2col"));
      const Tensor x = rnd(c.x, 10 + i), w = rnd(c.w, 20 + i), b = rnd({c.w[0]}, 30 + i);
      const Tensor out = raw::conv2d(x, w, b, c.p);
      REQUIRE(max_err(raw::conv2d(x.to(kGpu), w.to(kGpu), b.to(kGpu), c.p), out) < 1e-4);
      const Tensor g = rnd(out.shape(), 40 + i);
      REQUIRE(max_err(raw::conv2d_backward_input(g.to(kGpu), w.to(kGpu), c.x, c.p),
                      raw::conv2d_backward_input(g, w, c.x, c.p)) < 1e-4);
      REQUIRE(max_err(raw::conv2d_backward_weight(g.to(kGpu), x.to(kGpu), c.w, c.p),
                      raw::conv2d_backward_weight(g, x, c.w, c.p)) < 1e-4);
    }
  }
  cuda::set_use_cudnn(cuda::built_with_cudnn());
}

TEST_CASE("cuda: conv2d and pooling pass gradcheck on the GPU", "[cuda]") {
  NEED_GPU();
  Generator gen(3);
  Tensor x = randn({2, 2, 6, 5}, {.dtype = kFloat64, .device = kGpu}, gen).requires_grad_();
  Tensor w = randn({3, 2, 3, 3}, {.dtype = kFloat64, .device = kGpu}, gen).requires_grad_();
  Tensor b = randn({3}, {.dtype = kFloat64, .device = kGpu}, gen).requires_grad_();
  const Conv2dParams p{.stride = {1, 2}, .padding = {1, 1}};
  auto r = autograd::gradcheck([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); },
                               {x, w, b});
  INFO(r.report);
  REQUIRE(r.ok);
  const Pool2dParams mp{.kernel = {2, 2}, .stride = {2, 2}};
  auto rm = autograd::gradcheck([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], mp); }, {x});
  INFO(rm.report);
  REQUIRE(rm.ok);
  const Pool2dParams ap{.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .count_include_pad = false};
  auto ra = autograd::gradcheck([&](const std::vector<Tensor>& in) { return avg_pool2d(in[0], ap); }, {x});
  INFO(ra.report);
  REQUIRE(ra.ok);
}

TEST_CASE("cuda: pooling forward, indices and backward match the CPU", "[cuda]") {
  NEED_GPU();
  const std::vector<Pool2dParams> ps = {
      {},
      {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}},
      {.kernel = {2, 3}, .stride = {1, 2}, .padding = {0, 1}, .dilation = {2, 1}},
  };
  for (size_t i = 0; i < ps.size(); ++i) {
    INFO("params " << i);
    const Tensor x = rnd({2, 3, 9, 8}, 50 + i);
    const Tensor out = raw::max_pool2d(x, ps[i]);
    REQUIRE(max_err(raw::max_pool2d(x.to(kGpu), ps[i]), out) == 0);
    REQUIRE(max_err(raw::max_pool2d_indices(x.to(kGpu), ps[i]).to(kFloat64), raw::max_pool2d_indices(x, ps[i]).to(kFloat64)) == 0);
    const Tensor g = rnd(out.shape(), 60 + i);
    REQUIRE(max_err(raw::max_pool2d_backward(g.to(kGpu), x.to(kGpu), ps[i]), raw::max_pool2d_backward(g, x, ps[i])) < 1e-6);
    // relu_max_pool2d (what nn::Sequential runs for ReLU + MaxPool2d): unfused on the GPU
    REQUIRE(max_err(raw::relu_max_pool2d(x.to(kGpu), ps[i]), raw::relu_max_pool2d(x, ps[i])) == 0);
    REQUIRE(max_err(raw::relu_max_pool2d_backward(g.to(kGpu), x.to(kGpu), ps[i]),
                    raw::relu_max_pool2d_backward(g, x, ps[i])) < 1e-6);
    if (ps[i].dilation[0] == 1) {
      for (bool inc : {true, false}) {
        Pool2dParams a = ps[i];
        a.count_include_pad = inc;
        const Tensor ao = raw::avg_pool2d(x, a);
        REQUIRE(max_err(raw::avg_pool2d(x.to(kGpu), a), ao) < 1e-6);
        const Tensor ag = rnd(ao.shape(), 70 + i);
        REQUIRE(max_err(raw::avg_pool2d_backward(ag.to(kGpu), x.shape(), a), raw::avg_pool2d_backward(ag, x.shape(), a)) < 1e-6);
      }
    }
  }
}

namespace {
// Trains a copy of the MLP for `steps` steps on fixed batches on `device` and returns
// its parameters on the CPU.
std::vector<Tensor> train_mlp_steps(Device device, const std::string& opt_name, int steps, bool graph = false) {
  manual_seed(7);
  auto model = samples::make_mlp();
  model->to(device);
  std::unique_ptr<optim::Optimizer> opt;
  if (opt_name == "sgd") opt = std::make_unique<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
  else opt = std::make_unique<optim::AdamW>(model->parameters(), optim::AdamOptions{.lr = 1e-3, .weight_decay = 0.05});
  Tensor sx = zeros({32, 1, 28, 28}, {.device = device});
  Tensor sy = zeros({32}, {.dtype = kInt64, .device = device});
  auto step = [&] {
    opt->zero_grad();
    Tensor loss = nn::cross_entropy((*model)(sx), sy, 0.1);
    loss.backward();
    opt->step();
  };
  cuda::Graph g;
  for (int i = 0; i < steps; ++i) {
    Generator gen(100 + i);
    sx.copy_(randn({32, 1, 28, 28}, {}, gen).to(device));
    sy.copy_(labels(32).to(device));
    opt->set_lr(opt->lr() * 0.97);  // a schedule: the graph must follow it
    if (graph && i == 3) {
      g.capture_begin();
      step();
      g.capture_end();
      g.replay();
    } else if (graph && i > 3) {
      g.replay();
      opt->count_replayed_step();
    } else {
      step();
    }
  }
  std::vector<Tensor> out;
  for (const Tensor& p : model->parameters()) out.push_back(p.detach().to(kCPU));
  return out;
}
}  // namespace

TEST_CASE("cuda: fused SGD and AdamW steps match the CPU; graph replay equals eager", "[cuda]") {
  NEED_GPU();
  for (const std::string opt : {"sgd", "adamw"}) {
    INFO(opt);
    const auto cpu = train_mlp_steps(kCPU, opt, 8);
    const auto gpu = train_mlp_steps(kGpu, opt, 8);
    const auto graphed = train_mlp_steps(kGpu, opt, 8, true);
    for (size_t i = 0; i < cpu.size(); ++i) {
      REQUIRE(max_err(gpu[i], cpu[i]) < 2e-4);
      REQUIRE(max_err(graphed[i], gpu[i]) < 1e-6);
    }
  }
}

TEST_CASE("cuda: a steady-state training step calls cudaMalloc zero times", "[cuda]") {
  NEED_GPU();
  manual_seed(1);
  auto model = samples::make_cnn();
  model->to(kGpu);
  optim::AdamW opt(model->parameters(), {.lr = 1e-3});
  const Tensor x = rnd({16, 1, 28, 28}, 1).to(kGpu);
  const Tensor y = labels(16).to(kGpu);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = nn::cross_entropy((*model)(x), y, 0.1);
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < 3; ++i) step();
  const int64_t before = cuda::memory_stats().malloc_calls;
  for (int i = 0; i < 10; ++i) step();
  cuda::synchronize();
  REQUIRE(cuda::memory_stats().malloc_calls == before);
}

TEST_CASE("cuda: errors name the op and the devices", "[cuda]") {
  NEED_GPU();
  const Tensor a = ones({2, 3}), g = ones({2, 3}, {.device = kGpu});
  REQUIRE_THROWS_WITH(a + g, Catch::Contains("different devices") && Catch::Contains("cuda:0"));
  REQUIRE_THROWS_WITH(raw::matmul(g, ones({2, 2}, {.device = kGpu})), Catch::Contains("matmul") && Catch::Contains("(2,3)"));
  cuda::Graph graph;
  REQUIRE_THROWS_WITH(graph.replay(), Catch::Contains("nothing was captured"));
  REQUIRE_THROWS_WITH(cuda::Graph().capture_end(), Catch::Contains("capture_begin"));
  // Reading a value back inside a graph capture would wait for the GPU: a clear error.
  cuda::Graph bad;
  bad.capture_begin();
  REQUIRE_THROWS_WITH(g.sum().item<float>(), Catch::Contains("captured") && Catch::Contains("copy"));
  bad.capture_end();
}

// bfloat16 and float16 on the GPU (issue 20): the CUDA copy kernel converts (rounding to
// nearest even, as the CPU), every other op computes in float32 between conversions, so
// exact ops agree with the CPU bit for bit and the rest within the 16-bit rounding.
TEST_CASE("CUDA: 16-bit tensors convert, fill and compute as on the CPU", "[cuda][half]") {
  NEED_GPU();
  for (DType dt : {kBFloat16, kFloat16}) {
    INFO(dtype_name(dt));
    const Tensor a = rnd({33, 17}, 1), b = rnd({17}, 2);
    const Tensor ha = a.to(dt), hb = b.to(dt);
    const Tensor ga = a.to(kGpu).to(dt), gb = hb.to(kGpu);
    CHECK(ga.to(kCPU).to(kFloat32).to_vector<float>() == ha.to(kFloat32).to_vector<float>());  // rounding
    CHECK((ga + gb).to(kCPU).to(kFloat32).to_vector<float>() == (ha + hb).to(kFloat32).to_vector<float>());
    CHECK((ga * gb).to(kCPU).to(kFloat32).to_vector<float>() == (ha * hb).to(kFloat32).to_vector<float>());
    CHECK(ga.relu().to(kCPU).to(kFloat32).to_vector<float>() == ha.relu().to(kFloat32).to_vector<float>());
    CHECK(full({5}, 0.1, {.dtype = dt, .device = kGpu}).to(kCPU).to_vector<float>() ==
          full({5}, 0.1, {.dtype = dt}).to_vector<float>());
    CHECK(max_err(ga.sum(1).to(kFloat32), ha.sum(1).to(kFloat32)) < 1e-2);
    CHECK(max_err(matmul(ga, gb.unsqueeze(1)).to(kFloat32), matmul(ha, hb.unsqueeze(1)).to(kFloat32)) < 1e-2);
    // tensor cores (cuBLAS, cuDNN) against the CPU's float32 route, within 16-bit rounding
    const Tensor x = rnd({2, 3, 8, 8}, 4).to(dt), w = rnd({4, 3, 3, 3}, 5).to(dt), bias = rnd({4}, 6).to(dt);
    const Conv2dParams p{.padding = {1, 1}};
    CHECK(max_err(conv2d(x.to(kGpu), w.to(kGpu), bias.to(kGpu), p).to(kFloat32), conv2d(x, w, bias, p).to(kFloat32)) <
          2e-2);
    CHECK(max_err(linear(ha.to(kGpu), rnd({5, 17}, 7).to(dt).to(kGpu)).to(kFloat32),
                  linear(ha, rnd({5, 17}, 7).to(dt)).to(kFloat32)) < 2e-2);
  }
}

TEST_CASE("CUDA: an autocast training step matches the CPU's", "[cuda][half]") {
  NEED_GPU();
  const Tensor x = rnd({16, 1, 28, 28}, 3), y = labels(16);
  auto step = [&](Device dev) {
    manual_seed(5);
    auto model = samples::make_cnn();
    model->to(dev);
    optim::AdamW opt(model->parameters(), {.lr = 1e-3});
    Tensor loss;
    {
      Autocast ac(kBFloat16);
      loss = nn::cross_entropy((*model)(x.to(dev)), y.to(dev));
    }
    loss.backward();
    opt.step();
    return std::pair{loss.item<double>(), model->parameters()[0].to(kCPU)};
  };
  const auto [l_cpu, w_cpu] = step(kCPU);
  const auto [l_gpu, w_gpu] = step(kGpu);
  CHECK(l_gpu == Approx(l_cpu).epsilon(0.02));
  CHECK(max_err(w_gpu, w_cpu) < 1e-3);
}
