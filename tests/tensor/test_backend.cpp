// The device seam of tensor/backend.h: raw ops on a non-CPU tensor reach that device's
// backend and nothing else. A test backend takes the place of CUDA's (register_backend)
// for the length of each case: it keeps its memory on the host and answers each op it implements with the
// CPU raw op on aliases of its tensors, counting the calls, so every answer can be
// checked against the CPU. Runs on every machine, with or without a GPU.
#include <cstdlib>
#include <cstring>
#include <map>

#include "../helpers.h"
#include "tensor/backend.h"

using namespace weft;

namespace {

const Device kDev = Device::cuda(0);

class HostBackend final : public DeviceBackend {
 public:
  std::map<std::string, int> calls;

  std::string name() const override { return "host-test"; }
  void* allocate(size_t nbytes, int) override {
    ++calls["allocate"];
    return std::malloc(nbytes ? nbytes : 1);
  }
  void deallocate(void* p, int) override {
    ++calls["deallocate"];
    std::free(p);
  }
  void copy_bytes(void* dst, Device, const void* src, Device, size_t n) override {
    ++calls["copy_bytes"];
    std::memcpy(dst, src, n);
  }
  void fill(const Tensor& dst, double v) override {
    ++calls["fill"];
    raw::fill_(host(dst), v);
  }
  void binary(raw::Binary op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    ++calls["binary"];
    raw::copy_(host(out), raw::binary(op, host(a), host(b)));
  }
  void sgd_step(const std::vector<Tensor>& ps, const std::vector<Tensor>& gs, const std::vector<Tensor>& bufs,
                const raw::SgdHyper& h) override {
    ++calls["sgd_step"];
    // The raw op hands the backend a device copy of lr, which a GPU kernel would read.
    REQUIRE(h.lr_device.defined());
    REQUIRE(h.lr_device.device() == kDev);
    raw::SgdHyper on_host = h;
    on_host.lr = host(h.lr_device).item<float>();
    on_host.lr_device = Tensor();
    raw::sgd_step_(host(ps), host(gs), host(bufs), on_host);
  }

  // The same bytes, seen as a CPU tensor.
  static Tensor host(const Tensor& t) {
    auto s = Storage::from_blob(t.storage()->data(), t.storage()->nbytes(), kCPU, [](void*) {});
    return make_tensor(s, t.shape(), t.strides(), t.offset(), t.dtype());
  }
  static std::vector<Tensor> host(const std::vector<Tensor>& ts) {
    std::vector<Tensor> out;
    for (const Tensor& t : ts) out.push_back(host(t));
    return out;
  }
};

// Puts a backend in place of cuda devices' built-in one for its lifetime.
struct Swap {
  DeviceBackend* previous;
  explicit Swap(DeviceBackend* b) : previous(register_backend(DeviceKind::CUDA, b)) {}
  ~Swap() { register_backend(DeviceKind::CUDA, previous); }
};

}  // namespace

TEST_CASE("raw ops on a non-CPU device run on its registered backend", "[tensor][backend]") {
  HostBackend b;
  {
    Swap swap(&b);
    const Tensor x = full({2, 3}, 2.0, {.device = kDev});
    const Tensor y = tensor(std::vector<float>{1, 2, 3}, {3}).to(kDev);  // broadcasts over rows
    CHECK(b.calls["allocate"] == 2);
    CHECK(b.calls["fill"] == 1);
    CHECK(b.calls["copy_bytes"] == 1);

    const Tensor z = raw::binary(raw::Binary::Mul, x, y);
    CHECK(z.device() == kDev);
    CHECK(b.calls["binary"] == 1);
    CHECK(z.to(kCPU).to_vector<float>() == std::vector<float>{2, 4, 6, 2, 4, 6});
    CHECK(b.calls["copy_bytes"] == 2);

    // An op the backend leaves out fails naming the op and the backend.
    REQUIRE_THROWS_WITH(raw::unary(raw::Unary::Exp, x),
                        Catch::Contains("unary") && Catch::Contains("host-test backend does not implement it"));
    // A mixed-device op is refused before any backend is asked.
    REQUIRE_THROWS_WITH(raw::binary(raw::Binary::Add, x, ones({2, 3})), Catch::Contains("different devices"));
    CHECK(b.calls["binary"] == 1);
  }
  CHECK(b.calls["deallocate"] == b.calls["allocate"]);  // every tensor freed by its backend
}

TEST_CASE("the fused SGD update is one backend call per device and equals the CPU's", "[tensor][backend][optim]") {
  HostBackend b;
  Swap swap(&b);
  Generator gen(3);
  std::vector<Tensor> p_cpu, g_cpu, m_cpu, p_dev, g_dev, m_dev;
  for (const Shape& s : {Shape{4, 3}, Shape{3}, Shape{2, 2, 2}}) {
    p_cpu.push_back(randn(s, {}, gen));
    g_cpu.push_back(randn(s, {}, gen));
    m_cpu.push_back(randn(s, {}, gen));
    p_dev.push_back(p_cpu.back().to(kDev));
    g_dev.push_back(g_cpu.back().to(kDev));
    m_dev.push_back(m_cpu.back().to(kDev));
  }
  const raw::SgdHyper h{
      .lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01, .nesterov = false, .lr_device = Tensor()};
  raw::sgd_step_(p_cpu, g_cpu, m_cpu, h);
  raw::sgd_step_(p_dev, g_dev, m_dev, h);
  CHECK(b.calls["sgd_step"] == 1);  // three parameters, one call
  for (size_t i = 0; i < p_cpu.size(); ++i) {
    CHECK(p_dev[i].to(kCPU).to_vector<float>() == p_cpu[i].to_vector<float>());
    CHECK(m_dev[i].to(kCPU).to_vector<float>() == m_cpu[i].to_vector<float>());
  }
}

TEST_CASE("the built-in CUDA backend, or a clear error without one", "[tensor][backend][errors]") {
  REQUIRE_THROWS_WITH(register_backend(DeviceKind::CPU, nullptr), Catch::Contains("CPU kernels"));
  if (WEFT_HAVE_CUDA) {
    // cuda/ hands its backend over by name at link time: always there, static link or not.
    REQUIRE(cuda::builtin_backend() != nullptr);
    CHECK(backend(kDev).name() == "CUDA");
    return;
  }
  REQUIRE(cuda::builtin_backend() == nullptr);
  REQUIRE_THROWS_WITH(zeros({2}, {.device = kDev}), Catch::Contains("weft was built without CUDA"));
  REQUIRE_THROWS_WITH(ones({2}).to(kDev), Catch::Contains("weft was built without CUDA"));
}
