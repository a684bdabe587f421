// The CUDA twins of the raw ops (cuda/kernels/*.cu) against their CPU versions: every
// op on random inputs, broadcast and non-contiguous (transposed, sliced, expanded),
// odd sizes (1, 7, 1000003), every dtype the CPU takes; random fills bit-identical to
// the CPU's for a seed; gradchecks of differentiable ops whose forward and backward run
// on the GPU. Every case skips with a message where no GPU is visible.
#include <cmath>
#include <functional>

#include "../helpers.h"

using namespace weft;
using V = std::vector<Tensor>;

namespace {

#define NEED_GPU()                                        \
  if (!cuda::is_available()) {                            \
    WARN("no CUDA GPU visible: skipping");                \
    return;                                               \
  }

const Device kGpu = Device::cuda(0);

// A GPU copy of t with t's very layout (strides, offset, stride-0 broadcasts), so the
// kernels see the same views the CPU loops do: the whole storage is copied over.
Tensor gpu(const Tensor& t) {
  const auto& host = t.storage();
  auto dev = Storage::allocate(host->nbytes(), kGpu);
  cuda::memcpy(dev->data(), kGpu, host->data(), kCPU, host->nbytes());
  return make_tensor(dev, t.shape(), t.strides(), t.offset(), t.dtype());
}

// Values in float64 from a fixed seed, in the dtype asked for. Integers are small (so
// sums are exact and comparisons tie often); `positive` keeps floats in [0.5, 2].
Tensor rnd(const Shape& s, uint64_t seed, DType dt = kFloat32, bool positive = false) {
  Generator g(seed);
  if (dt == kInt64) return (randn(s, {.dtype = kFloat64}, g) * 3.0).to(kInt64);
  if (dt == kBool) return randn(s, {.dtype = kFloat64}, g).gt(zeros({}, {.dtype = kFloat64}));
  return positive ? uniform(s, 0.5, 2.0, {.dtype = dt}, g) : randn(s, {.dtype = dt}, g);
}

// max |a - b| / (1 + |b|) with a on the GPU and b on the CPU; NaNs must sit in the same
// places. Shapes and dtypes must agree.
double max_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.device() == kGpu);
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.dtype() == b.dtype());
  const std::vector<double> x = a.to(kCPU).to_vector<double>(), y = b.to_vector<double>();
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) {
      if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
      continue;
    }
    if (x[i] == y[i]) continue;  // equal infinities
    e = std::max(e, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  }
  return e;
}

double tol(DType dt) { return dt == kFloat32 ? 2e-5 : dt == kFloat64 ? 1e-12 : 0.0; }

// The same op on a GPU copy of the inputs and on the CPU inputs must agree within tol.
void check_op(const std::string& what, const std::function<Tensor(const V&)>& f, const V& inputs, double t) {
  V g;
  for (const Tensor& x : inputs) g.push_back(gpu(x));
  const Tensor want = f(inputs), got = f(g);
  INFO(what << " on " << want.shape() << " " << want.dtype());
  REQUIRE(max_err(got, want) <= t);
}

// The layouts each elementwise op is tried on, as (a, b) pairs of CPU tensors.
std::vector<std::pair<std::string, V>> layouts(DType dt, bool positive_b) {
  std::vector<std::pair<std::string, V>> v;
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000003)})
    v.push_back({"contiguous " + std::to_string(n), {rnd({n}, 1, dt), rnd({n}, 2, dt, positive_b)}});
  v.push_back({"bias broadcast", {rnd({33, 17}, 3, dt), rnd({17}, 4, dt, positive_b)}});
  v.push_back({"outer broadcast", {rnd({5, 1, 7}, 5, dt), rnd({4, 1}, 6, dt, positive_b)}});
  v.push_back({"0-d", {rnd({}, 7, dt), rnd({3, 2}, 8, dt, positive_b)}});
  v.push_back({"transposed", {rnd({19, 23}, 9, dt).t(), rnd({23, 19}, 10, dt, positive_b)}});
  v.push_back({"sliced", {rnd({9, 40}, 11, dt).slice(1, 3, 40, 3), rnd({18, 13}, 12, dt, positive_b).slice(0, 1, 18, 2)}});
  v.push_back({"expanded", {rnd({1, 29}, 13, dt).expand({31, 29}), rnd({31, 1}, 14, dt, positive_b).expand({31, 29})}});
  return v;
}

const std::vector<raw::Binary> kBinaryOps = {raw::Binary::Add, raw::Binary::Sub,     raw::Binary::Mul,
                                             raw::Binary::Div, raw::Binary::Pow,     raw::Binary::Maximum,
                                             raw::Binary::Minimum};

}  // namespace

TEST_CASE("cuda kernels: binary ops on every layout and numeric dtype", "[cuda]") {
  NEED_GPU();
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    for (raw::Binary op : kBinaryOps) {
      // pow: positive bases (float) or small non-negative exponents (int64)
      const bool pow = op == raw::Binary::Pow;
      for (auto& [name, in] : layouts(dt, false)) {
        V args = in;
        if (pow) args = dt == kInt64 ? V{in[0], in[1].abs().clone()} : V{in[0].abs() + 0.5, in[1]};
        check_op(name + " op " + std::to_string(int(op)), [op](const V& v) { return raw::binary(op, v[0], v[1]); },
                 args, pow && dt == kFloat32 ? 1e-4 : tol(dt));
      }
    }
  }
  // bool arithmetic is refused with the CPU's message
  const Tensor b = gpu(rnd({4}, 1, kBool));
  REQUIRE_THROWS_WITH(raw::binary(raw::Binary::Add, b, b), "add: not supported for bool tensors");
}

TEST_CASE("cuda kernels: scalar, in-place and axpy forms", "[cuda]") {
  NEED_GPU();
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    const Tensor a = rnd({37, 21}, 1, dt), src = rnd({21}, 2, dt);
    for (raw::Binary op : kBinaryOps) {
      if (op == raw::Binary::Pow && dt == kInt64) continue;  // negative bases/exponents of ints
      const double t = op == raw::Binary::Pow ? 1e-4 : tol(dt);
      const Tensor base = op == raw::Binary::Pow ? a.abs() + 0.5 : a;
      check_op("binary_scalar", [op](const V& v) { return raw::binary_scalar(op, v[0], 1.5); }, {base}, t);
      check_op("scalar_binary", [op](const V& v) { return raw::scalar_binary(op, 2.5, v[0]); }, {base.t()}, t);
      // in place into a transposed view, src broadcast along it
      check_op("binary_", [op](const V& v) {
        Tensor d = raw::clone(v[0]).t();
        raw::binary_(op, d, v[1]);
        return d;
      }, {base, src.reshape({21, 1})}, t);
      check_op("binary_scalar_", [op](const V& v) {
        Tensor d = raw::clone(v[0]);
        raw::binary_scalar_(op, d.slice(0, 0, 37, 2), 3.0);
        return d;
      }, {base}, t);
    }
  }
  for (DType dt : {kFloat32, kFloat64}) {
    check_op("axpy_", [](const V& v) {
      Tensor d = raw::clone(v[0]);
      raw::axpy_(d, -0.25, v[1]);
      return d;
    }, {rnd({1000003}, 3, dt), rnd({1000003}, 4, dt)}, tol(dt));
    check_op("axpy_ broadcast", [](const V& v) {
      Tensor d = raw::clone(v[0]);
      raw::axpy_(d.t(), 2.0, v[1]);
      return d;
    }, {rnd({8, 5}, 5, dt), rnd({8}, 6, dt)}, tol(dt));
  }
}

TEST_CASE("cuda kernels: unary ops and activation backwards", "[cuda]") {
  NEED_GPU();
  using U = raw::Unary;
  for (DType dt : {kFloat32, kFloat64}) {
    for (U op : {U::Neg, U::Exp, U::Log, U::Sqrt, U::Abs, U::Relu, U::Sigmoid, U::Tanh, U::Sign, U::Square,
                 U::Reciprocal}) {
      const bool pos = op == U::Log || op == U::Sqrt || op == U::Reciprocal;
      for (const Tensor& x : {rnd({1000003}, 1, dt, pos), rnd({7}, 2, dt, pos), rnd({13, 11}, 3, dt, pos).t(),
                              rnd({1, 9}, 4, dt, pos).expand({6, 9})})
        check_op("unary " + std::to_string(int(op)), [op](const V& v) { return raw::unary(op, v[0]); }, {x},
                 dt == kFloat32 ? 1e-5 : 1e-13);
    }
    const Tensor g = rnd({300, 7}, 5, dt), y = rnd({300, 7}, 6, dt);
    check_op("relu_backward", [](const V& v) { return raw::relu_backward(v[0], v[1]); }, {g, y}, tol(dt));
    check_op("sigmoid_backward", [](const V& v) { return raw::sigmoid_backward(v[0], v[1]); }, {g.t().t(), y.sigmoid()},
             tol(dt));
    check_op("tanh_backward", [](const V& v) { return raw::tanh_backward(v[0], v[1]); }, {g, y.tanh()}, tol(dt));
  }
  for (U op : {U::Neg, U::Abs, U::Relu, U::Sign, U::Square})
    check_op("unary int64", [op](const V& v) { return raw::unary(op, v[0]); }, {rnd({100, 3}, 7, kInt64).t()}, 0);
  REQUIRE_THROWS_WITH(raw::unary(U::Exp, gpu(rnd({3}, 1, kInt64))), "unary: this op needs a floating-point tensor");
}

TEST_CASE("cuda kernels: comparisons and where on every dtype", "[cuda]") {
  NEED_GPU();
  using C = raw::Compare;
  for (DType dt : {kFloat32, kFloat64, kInt64, kBool}) {
    const Tensor a = rnd({40, 9}, 1, dt), b = rnd({9}, 2, dt), c = rnd({9, 40}, 3, dt).t();
    for (C op : {C::Eq, C::Ne, C::Lt, C::Le, C::Gt, C::Ge}) {
      check_op("compare", [op](const V& v) { return raw::compare(op, v[0], v[1]); }, {a, b}, 0);
      check_op("compare strided", [op](const V& v) { return raw::compare(op, v[0], v[1]); }, {a, c}, 0);
      // int64 values are small integers, so == 1 holds often
      check_op("compare_scalar", [op](const V& v) { return raw::compare_scalar(op, v[0], 1.0); }, {c}, 0);
    }
    check_op("where", [](const V& v) { return raw::where(v[0], v[1], v[2]); },
             {rnd({40, 1}, 4, kBool), a, c}, 0);
    check_op("where broadcast", [](const V& v) { return raw::where(v[0], v[1], v[2]); },
             {rnd({9}, 5, kBool), rnd({3, 1, 9}, 6, dt), rnd({1, 4, 1}, 7, dt)}, 0);
  }
}

TEST_CASE("cuda kernels: copies with conversion, strides and broadcast; fill", "[cuda]") {
  NEED_GPU();
  const std::vector<DType> all = {kFloat32, kFloat64, kInt64, kBool};
  for (DType from : all)
    for (DType to : all) {
      const Tensor src = rnd({23, 31}, 1, from);
      check_op("to_dtype", [to](const V& v) { return raw::to_dtype(v[0], to); }, {src}, 0);
      check_op("to_dtype transposed", [to](const V& v) { return raw::to_dtype(v[0].t(), to); }, {src}, 0);
      // into a strided view of a destination, src broadcast along dim 0
      check_op("copy_ into a view", [to](const V& v) {
        Tensor d = zeros({31, 10}, {.dtype = to, .device = v[0].device()});
        raw::copy_(d.slice(1, 1, 10, 2), v[0].t().slice(1, 2, 3));  // (31,1) into (31,5)
        return d;
      }, {src}, 0);
    }
  check_op("clone 1000003", [](const V& v) { return raw::clone(v[0]); }, {rnd({1000003}, 2)}, 0);
  check_op("fill_ a view", [](const V& v) {
    Tensor d = raw::clone(v[0]);
    raw::fill_(d.t().slice(0, 1, 5, 3), -2.5);
    return d;
  }, {rnd({6, 7}, 3)}, 0);
  for (DType dt : all) {
    const Tensor f = full({3, 1000003 % 97}, 1.0, {.dtype = dt, .device = kGpu});
    REQUIRE(equal(f.to(kCPU), full({3, 1000003 % 97}, 1.0, {.dtype = dt})));
    REQUIRE(equal(zeros({5}, {.dtype = dt, .device = kGpu}).to(kCPU), zeros({5}, {.dtype = dt})));
  }
  // host <-> device copies that are not a plain byte copy are staged
  const Tensor h = rnd({12, 8}, 4, kFloat64);
  Tensor d = zeros({8, 12}, {.device = kGpu});
  raw::copy_(d, h.t());  // host, transposed, float64 -> device float32
  REQUIRE(max_err(d, h.t().to(kFloat32).contiguous()) == 0);
  Tensor back = zeros({8, 12}, {.dtype = kFloat64});
  raw::copy_(back.t(), d.t());  // device transposed -> host transposed view
  REQUIRE(equal(back, h.t().to(kFloat32).to(kFloat64).contiguous()));
}

TEST_CASE("cuda kernels: sum, mean, max, min over dim combinations", "[cuda]") {
  NEED_GPU();
  using R = raw::Reduce;
  const std::vector<Shape> dim_sets = {{0}, {3}, {1}, {1, 2}, {0, 2}, {0, 3}, {0, 2, 3}, {0, 1, 2, 3}, {}};
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    const Tensor a = rnd({4, 5, 6, 7}, 1, dt);
    for (R op : {R::Sum, R::Mean, R::Max, R::Min}) {
      const double t = dt == kFloat32 ? 1e-5 : tol(dt);
      // The CPU adds float32 in float lanes within blocks of 1024, the GPU in double: on
      // long rows the CPU is the less accurate of the two.
      const double t_long = dt == kFloat32 ? 1e-4 : tol(dt);
      for (const Shape& dims : dim_sets)
        for (bool keep : {false, true}) {
          check_op("reduce " + dims.str(), [&](const V& v) { return raw::reduce(op, v[0], dims, keep); }, {a}, t);
          check_op("reduce permuted " + dims.str(),
                   [&](const V& v) { return raw::reduce(op, v[0].permute({2, 0, 3, 1}), dims, keep); }, {a}, t);
        }
      // the training hot paths at size, and the split paths (few outputs, long reductions)
      check_op("all of 1000003", [&](const V& v) { return raw::reduce(op, v[0], {}, false); },
               {rnd({1000003}, 2, dt)}, t_long);
      check_op("rows (64, 4099)", [&](const V& v) { return raw::reduce(op, v[0], {1}, false); }, {rnd({64, 4099}, 3, dt)}, t_long);
      check_op("columns (4099, 65)", [&](const V& v) { return raw::reduce(op, v[0], {0}, false); }, {rnd({4099, 65}, 4, dt)}, t_long);
      check_op("bias grad (3, 100000)->(100000)", [&](const V& v) { return raw::reduce(op, v[0], {0}, false); },
               {rnd({3, 100000}, 5, dt)}, t);
      check_op("columns split (100000, 3)", [&](const V& v) { return raw::reduce(op, v[0], {0}, false); },
               {rnd({100000, 3}, 6, dt)}, t_long);
      check_op("conv bias (8, 16, 7, 7)", [&](const V& v) { return raw::reduce(op, v[0], {0, 2, 3}, false); },
               {rnd({8, 16, 7, 7}, 7, dt)}, t);
      check_op("expanded", [&](const V& v) { return raw::reduce(op, v[0].expand({50, 9}), {0}, false); },
               {rnd({1, 9}, 8, dt)}, t);
    }
  }
  // NaN propagates through max/min and into sums, as on the CPU
  Tensor x = rnd({5, 300}, 9);
  raw::fill_(x.select(0, 2).narrow(0, 150, 1), std::nan(""));
  for (R op : {R::Sum, R::Max, R::Min})
    check_op("NaN", [op](const V& v) { return raw::reduce(op, v[0], {1}, false); }, {x}, 1e-5);
  check_op("sum_to", [](const V& v) { return raw::sum_to(v[0], {5, 1, 1}); }, {rnd({3, 5, 4, 2}, 10)}, 1e-5);
  // empty: sum is 0, mean NaN, like the CPU
  check_op("empty sum", [](const V& v) { return raw::reduce(R::Sum, v[0], {0}, false); }, {rnd({0, 3}, 11)}, 0);
  check_op("empty mean", [](const V& v) { return raw::reduce(R::Mean, v[0], {0}, false); }, {rnd({0, 3}, 11)}, 0);
}

TEST_CASE("cuda kernels: argmax and argmin with ties and NaN", "[cuda]") {
  NEED_GPU();
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    const Tensor a = rnd({6, 50, 7}, 1, dt);  // int64: many ties, the first must win
    for (bool is_max : {true, false})
      for (int64_t dim : {0, 1, 2, -1})
        for (bool keep : {false, true}) {
          check_op("argreduce", [&](const V& v) { return raw::argreduce(is_max, v[0], dim, keep); }, {a}, 0);
          check_op("argreduce transposed", [&](const V& v) { return raw::argreduce(is_max, v[0].transpose(0, 2), dim, keep); },
                   {a}, 0);
        }
    check_op("argmax long", [](const V& v) { return raw::argreduce(true, v[0], 1, false); }, {rnd({3, 100003}, 2, dt)}, 0);
  }
  Tensor x = rnd({4, 70}, 3);
  raw::fill_(x.select(0, 1).narrow(0, 40, 1), std::nan(""));
  raw::fill_(x.select(0, 1).narrow(0, 60, 1), std::nan(""));
  for (bool is_max : {true, false})
    check_op("argreduce NaN", [is_max](const V& v) { return raw::argreduce(is_max, v[0], 1, false); }, {x}, 0);
}

TEST_CASE("cuda kernels: softmax and log_softmax forward and backward over any dim", "[cuda]") {
  NEED_GPU();
  for (DType dt : {kFloat32, kFloat64}) {
    const double t = dt == kFloat32 ? 1e-5 : 1e-12;
    for (const Tensor& a : {rnd({4, 5, 6}, 1, dt), rnd({3, 2000}, 2, dt) * 10.0, rnd({1000, 10}, 3, dt),
                            rnd({7, 9}, 4, dt).t(), rnd({1, 1}, 5, dt)}) {
      for (int64_t dim = 0; dim < a.dim(); ++dim) {
        const Tensor g = rnd(a.shape(), 6, dt);
        check_op("softmax", [dim](const V& v) { return raw::softmax(v[0], dim); }, {a}, t);
        check_op("log_softmax", [dim](const V& v) { return raw::log_softmax(v[0], dim); }, {a}, t);
        check_op("softmax_backward", [dim](const V& v) { return raw::softmax_backward(v[0], v[1], dim); },
                 {g, raw::softmax(a, dim)}, t);
        check_op("log_softmax_backward", [dim](const V& v) { return raw::log_softmax_backward(v[0], v[1], dim); },
                 {g, raw::log_softmax(a, dim)}, t);
      }
    }
  }
  // -inf logits get probability 0; a large max does not overflow
  Tensor x = rnd({3, 40}, 7) * 50.0 + 1000.0;
  raw::fill_(x.select(0, 0).narrow(0, 3, 5), -INFINITY);
  check_op("softmax extreme", [](const V& v) { return raw::softmax(v[0], 1); }, {x}, 1e-5);
  check_op("log_softmax extreme", [](const V& v) { return raw::log_softmax(v[0], 1); }, {x}, 1e-4);
}

TEST_CASE("cuda kernels: fused cross-entropy with label smoothing", "[cuda]") {
  NEED_GPU();
  for (DType dt : {kFloat32, kFloat64}) {
    const double t = dt == kFloat32 ? 2e-5 : 1e-12;
    for (auto [n, c] : std::vector<std::pair<int64_t, int64_t>>{{37, 10}, {5, 2000}, {1, 1}, {3000, 7}}) {
      std::vector<int64_t> y(n);
      for (int64_t i = 0; i < n; ++i) y[i] = (i * 7 + 3) % c;
      const Tensor logits = rnd({n, c}, 1, dt) * 3.0, target = tensor(y, {n});
      for (double eps : {0.0, 0.1, 1.0}) {
        check_op("cross_entropy loss", [eps](const V& v) { return raw::cross_entropy(v[0], v[1], eps).first; },
                 {logits, target}, t);
        check_op("cross_entropy probs", [eps](const V& v) { return raw::cross_entropy(v[0], v[1], eps).second; },
                 {logits, target}, t);
        const Tensor grad = full({}, 0.7, {.dtype = dt});
        check_op("cross_entropy_backward", [eps](const V& v) { return raw::cross_entropy_backward(v[0], v[1], v[2], eps); },
                 {grad, raw::cross_entropy(logits, target, eps).second, target}, t);
      }
    }
  }
  const Tensor logits = gpu(rnd({4, 3}, 2)), target = tensor(std::vector<int64_t>{0, 1, 2, 0}, {4});
  REQUIRE_THROWS_WITH(raw::cross_entropy(logits, target, 0.0), Catch::Contains("targets are on cpu:0"));
  // transposed logits are made contiguous first
  check_op("cross_entropy transposed", [](const V& v) { return raw::cross_entropy(v[0].t(), v[1], 0.2).first; },
           {rnd({3, 4}, 3), target}, 2e-5);
}

TEST_CASE("cuda kernels: gather, scatter_add, index_select, index_add", "[cuda]") {
  NEED_GPU();
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    const double t = tol(dt);  // scatter adds run in any order: float sums may differ in the last bits
    const Tensor a = rnd({6, 8, 5}, 1, dt);
    for (int64_t dim : {0, 1, 2}) {
      // indices in [-size, size): negative ones wrap
      const Shape ish{4, 7, 5};
      const Tensor idx = (rand(ish, {.dtype = kFloat64}) * (2.0 * a.size(dim)) - double(a.size(dim))).to(kInt64);
      Tensor idx_fixed = raw::clone(idx);
      // out-of-range values are a CPU error: keep every one in range for the comparison
      check_op("gather", [dim](const V& v) { return raw::gather(v[0], dim, v[1]); }, {a, idx_fixed}, 0);
      check_op("gather transposed", [dim](const V& v) { return raw::gather(v[0].transpose(0, 2), dim, v[1].transpose(0, 2)); },
               {a.transpose(0, 2).contiguous(), idx_fixed.transpose(0, 2).contiguous()}, 0);
      const Tensor src = rnd(ish, 2, dt);
      const Shape out_shape{6, 8, 5};
      check_op("scatter_add", [&](const V& v) { return raw::scatter_add(out_shape, dim, v[0], v[1]); }, {idx, src},
               dt == kFloat32 ? 1e-5 : t);
      const Tensor sel = tensor(std::vector<int64_t>{2, 0, -1, 2, 1, 1, 3}, {7});
      check_op("index_select", [dim](const V& v) { return raw::index_select(v[0], dim, v[1]); }, {a, sel}, 0);
      check_op("index_select strided", [dim](const V& v) { return raw::index_select(v[0].transpose(0, 1), dim, v[1].slice(0, 0, 7, 2)); },
               {rnd({8, 6, 5}, 3, dt), sel}, 0);
      Shape ss = a.shape();
      ss[dim] = 7;
      check_op("index_add", [&](const V& v) { return raw::index_add(out_shape, dim, v[0], v[1]); },
               {sel, rnd(ss, 4, dt)}, dt == kFloat32 ? 1e-5 : t);
    }
  }
  check_op("gather bool", [](const V& v) { return raw::gather(v[0], 1, v[1]); },
           {rnd({5, 4}, 5, kBool), tensor(std::vector<int64_t>{0, 3, 1, 2, 2}, {5, 1})}, 0);
  // the index must live with the data
  REQUIRE_THROWS_WITH(raw::gather(gpu(rnd({3, 3}, 1)), 0, tensor(std::vector<int64_t>{0, 1, 2}, {1, 3})),
                      Catch::Contains("the index is on cpu:0"));
}

TEST_CASE("cuda kernels: random fills equal the CPU's bit for bit", "[cuda]") {
  NEED_GPU();
  for (DType dt : {kFloat32, kFloat64, kInt64, kBool}) {
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(100003)}) {
      using Fill = std::function<void(const Tensor&, Generator&)>;
      const std::vector<std::pair<std::string, Fill>> fills = {
          {"uniform", [](const Tensor& t, Generator& g) { raw::uniform_(t, -2.0, 3.0, g); }},
          {"bernoulli", [](const Tensor& t, Generator& g) { raw::bernoulli_(t, 0.3, g); }},
          {"normal", [](const Tensor& t, Generator& g) { raw::normal_(t, 0.5, 2.0, g); }},
      };
      for (auto& [name, fill] : fills) {
        INFO(name << " n=" << n << " " << dt);
        Generator gc(1234), gg(1234);
        gc.set_offset(77), gg.set_offset(77);
        Tensor c = empty({n}, dt, kCPU), g = empty({n}, dt, kGpu);
        fill(c, gc);
        fill(g, gg);
        REQUIRE(gc.offset() == gg.offset());
        const Tensor gh = g.to(kCPU);
        if (name == "normal" && is_floating(dt)) {
          // log and cos come from each side's math library: equal to within an ulp of
          // double, so float32 values match except with odds of about 1e-8 per element
          REQUIRE(max_err(g, c) <= (dt == kFloat32 ? 1.2e-7 : 1e-14));
          const auto x = gh.to_vector<double>(), y = c.to_vector<double>();
          int64_t differ = 0;
          for (size_t i = 0; i < x.size(); ++i) differ += x[i] != y[i];
          if (dt == kFloat32) REQUIRE(differ <= 1);
        } else {
          REQUIRE(equal(gh, c));
        }
        // a second draw continues the stream identically; a strided view fills in row-major order
        Tensor c2 = zeros({n, 3}, {.dtype = dt}), g2 = zeros({n, 3}, {.dtype = dt, .device = kGpu});
        fill(c2.t(), gc);
        fill(g2.t(), gg);
        if (name != "normal") REQUIRE(equal(g2.to(kCPU), c2));
      }
    }
  }
  // randn on a device is the CPU's randn for the same seed
  Generator a(9), b(9);
  REQUIRE(max_err(randn({1000}, {.device = kGpu}, a), randn({1000}, {}, b)) <= 1.2e-7);
}

TEST_CASE("cuda kernels: gradchecks through GPU forward and backward", "[cuda]") {
  NEED_GPU();
  // Leaves stay on the CPU (gradcheck perturbs them in place); f moves them to the GPU,
  // so every op under test and its backward run there, and the result comes back.
  auto on_gpu = [](std::function<Tensor(const V&)> f) {
    return [f](const V& v) {
      V g;
      for (const Tensor& x : v) g.push_back(x.defined() ? x.to(kGpu) : x);
      return f(g).to(kCPU);
    };
  };
  Tensor a = test::leaf({3, 4}, 1), b = test::leaf({4}, 2), p = test::positive_leaf({3, 4}, 3);
  REQUIRE_GRADCHECK(on_gpu([](const V& v) { return (v[0] * v[1] + v[1]).tanh(); }), {a, b});
  REQUIRE_GRADCHECK(on_gpu([](const V& v) { return v[0].log() / v[1].expand({3, 4}) - v[0].sqrt().exp(); }), {p, b});
  REQUIRE_GRADCHECK(on_gpu([](const V& v) { return (v[0].t().sigmoid() * 2.0).relu().pow(2.0); }), {a});
  REQUIRE_GRADCHECK(on_gpu([](const V& v) { return maximum(v[0], v[1]) - minimum(v[0], v[1] * 0.5); }), {a, b});
  REQUIRE_GRADCHECK(on_gpu([](const V& v) { return v[0].sum(0) + v[0].mean(1).sum() + amax(v[0], {1}).sum(); }), {a});
  REQUIRE_GRADCHECK(on_gpu([](const V& v) { return v[0].softmax(1) * v[1]; }), {a, b});
  REQUIRE_GRADCHECK(on_gpu([](const V& v) { return v[0].log_softmax(0); }), {a});
  const Tensor idx = tensor(std::vector<int64_t>{2, 0, 1, 1, 0, 3}, {3, 2});
  REQUIRE_GRADCHECK(on_gpu([&](const V& v) { return v[0].gather(1, idx.to(kGpu)) * 3.0; }), {a});
  const Tensor sel = tensor(std::vector<int64_t>{1, 1, 0}, {3});
  REQUIRE_GRADCHECK(on_gpu([&](const V& v) { return v[0].index_select(1, sel.to(kGpu)).exp(); }), {a});
  const Tensor target = tensor(std::vector<int64_t>{3, 0, 2}, {3});
  REQUIRE_GRADCHECK(on_gpu([&](const V& v) { return nn::cross_entropy(v[0], target.to(kGpu), 0.1); }), {a});
  REQUIRE_GRADCHECK(on_gpu([&](const V& v) { return where(v[0].gt(zeros({}, {.dtype = kFloat64, .device = kGpu})), v[0], v[1] * 2.0); }), {a, b});
}
