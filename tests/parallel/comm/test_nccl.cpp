// The NCCL communicator. Needs a build with NCCL and a GPU: without NCCL the test checks
// the "built without NCCL" error, without a GPU the "no CUDA device" error, and says it
// skipped the rest. With a GPU it runs every collective and algorithm check of the other
// backends at world size 1 (and at world size N over N threads when N GPUs are visible),
// through a Communicator that stages the checks' CPU tensors through GPU copies.
#include <thread>

#include "../../helpers.h"
#include "../algorithm_checks.h"
#include "../collective_checks.h"
#include "../parallel_helpers.h"
#include "cuda/cuda.h"
#include "parallel/ddp.h"
#include "parallel/comm/nccl_communicator.h"
#include "parallel/comm/threads_communicator.h"

using namespace weft;
using namespace weft::parallel;
using Catch::Matchers::Contains;

namespace {

// Runs each operation of `inner` (an NcclCommunicator) on GPU copies of CPU tensors and
// copies the results back, so the CPU-side checks apply unchanged.
class CudaStaged : public Communicator {
 public:
  explicit CudaStaged(std::shared_ptr<NcclCommunicator> inner) : c_(std::move(inner)) {}
  int rank() const override { return c_->rank(); }
  int size() const override { return c_->size(); }
  std::string backend() const override { return "nccl (staged)"; }

  void send(const Tensor& t, int dst, int tag) override { c_->send(gpu(t), dst, tag); }
  void recv(const Tensor& t, int src, int tag) override { back(gpu(t), t, [&](const Tensor& g) { c_->recv(g, src, tag); }); }
  WorkHandle isend(const Tensor& t, int dst, int tag) override { return c_->isend(gpu(t), dst, tag); }
  WorkHandle irecv(const Tensor& t, int src, int tag) override {
    Tensor g = gpu(t);
    return std::make_shared<CopyBack>(c_->irecv(g, src, tag), g, t);
  }
  void allreduce(const Tensor& t, ReduceOp op) override { back(gpu(t), t, [&](const Tensor& g) { c_->allreduce(g, op); }); }
  void broadcast(const Tensor& t, int root) override { back(gpu(t), t, [&](const Tensor& g) { c_->broadcast(g, root); }); }
  void allgather(const Tensor& in, const Tensor& out) override {
    back(gpu(out), out, [&](const Tensor& g) { c_->allgather(gpu(in), g); });
  }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    back(gpu(out), out, [&](const Tensor& g) { c_->reduce_scatter(gpu(in), g, op); });
  }
  void barrier() override { c_->barrier(); }
  WorkHandle allreduce_async(const Tensor& t, ReduceOp op) override {
    Tensor g = gpu(t);
    return std::make_shared<CopyBack>(c_->allreduce_async(g, op), g, t);
  }
  WorkHandle broadcast_async(const Tensor& t, int root) override {
    Tensor g = gpu(t);
    return std::make_shared<CopyBack>(c_->broadcast_async(g, root), g, t);
  }

 private:
  struct CopyBack : Work {
    CopyBack(WorkHandle w, Tensor g, Tensor cpu) : w(std::move(w)), g(std::move(g)), cpu(std::move(cpu)) {}
    bool is_completed() override { return w->is_completed(); }
    void wait() override {
      w->wait();
      cpu.copy_(g);
    }
    WorkHandle w;
    Tensor g, cpu;
  };
  Tensor gpu(const Tensor& t) const { return t.is_contiguous() ? t.to(Device::cuda(c_->device())) : t; }
  template <class F>
  void back(const Tensor& g, const Tensor& cpu, F&& f) {
    f(g);
    Tensor(cpu).copy_(g);  // a handle to the same storage
  }
  std::shared_ptr<NcclCommunicator> c_;
};

}  // namespace

TEST_CASE("nccl communicator: every collective and algorithm (needs a GPU)", "[parallel][nccl]") {
  if (!built_with_nccl()) {
    CHECK_THROWS_WITH(NcclCommunicator::create(nullptr, 0), Contains("built without NCCL"));
    WARN("SKIP the NCCL checks: weft was built without NCCL");
    return;
  }
  if (!cuda::is_available()) {
    CHECK_THROWS_WITH(NcclCommunicator::create(nullptr, 0), Contains("no CUDA device is visible"));
    WARN("SKIP the NCCL checks: no GPU is visible");
    return;
  }
  // World size 1: NCCL's own kernels still run (a copy, or the identity reduction).
  auto comm = NcclCommunicator::create(nullptr, 0);
  comm->set_timeout(Timeout(20'000));
  CudaStaged staged(comm);
  REQUIRE_NOTHROW(test::check_all_collectives(staged, {1, 7, 1000, 100003}));
  REQUIRE_NOTHROW(test::check_async(staged, 1001));
  REQUIRE_NOTHROW(test::check_all_algorithms(staged, {1, 7, 1000}));
  // CPU tensors (DDP's control messages) go over the bootstrap communicator.
  Tensor count = tensor(std::vector<int64_t>{3});
  comm->allreduce(count);
  CHECK(count.item<int64_t>() == 3);
  // A GPU tensor NCCL cannot take is named.
  CHECK_THROWS_WITH(comm->allreduce(ones({4, 3}, {.device = Device::cuda(0)}).t()),
                    Contains("allreduce #") && Contains("not contiguous"));

  // World size N over N threads, one GPU each, bootstrapped through the threads backend.
  const int n = cuda::device_count();
  if (n < 2) return;
  auto boots = make_thread_group(n, Timeout(20'000));
  std::vector<std::string> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        auto c = NcclCommunicator::create(boots[r], r);
        CudaStaged s(c);
        test::check_all_collectives(s, {7, 1000});
        test::check_all_algorithms(s, {7, 1000});
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r) CHECK(errors[r] == "");
}

TEST_CASE("DDP over NCCL at world size 1 trains like the model alone (needs a GPU)", "[parallel][nccl][ddp]") {
  if (!built_with_nccl() || !cuda::is_available()) {
    WARN("SKIP DDP over NCCL: " << (built_with_nccl() ? "no GPU is visible" : "weft was built without NCCL"));
    return;
  }
  // The same start on the GPU for both; DDP's control messages (parameter check, join)
  // are CPU tensors and go over the bootstrap, its gradient buckets over NCCL.
  const Device gpu = Device::cuda(0);
  auto initial = test::make_tiny_mlp();
  auto alone = nn::replicate(*initial, test::make_tiny_mlp, gpu);
  auto wrapped = nn::replicate(*initial, test::make_tiny_mlp, gpu);
  DistributedDataParallel ddp(wrapped, NcclCommunicator::create(nullptr, 0),
                              {.bucket_cap_mb = 128.0 / (1024 * 1024)});  // several buckets
  optim::SGD opt_alone(alone->parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int s = 0; s < 4; ++s) {
    const auto b = test::tiny_batch(12, 100 + s);
    opt_alone.zero_grad();
    nn::cross_entropy((*alone)(b.x.to(gpu)), b.y.to(gpu)).backward();
    opt_alone.step();
  }
  REQUIRE(ddp.join(true) == 1);  // a CPU control message, over the bootstrap
  test::ddp_sgd_steps(ddp, 4, 12, 100, 0, 1);
  CHECK(test::max_param_diff(*alone, ddp.module()) < 1e-6);
}
