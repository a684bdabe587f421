// Speed from sparsity, checked for correctness: SparseLinear, structured removal, and
// masks kept identical across data-parallel ranks.
#include <mutex>

#include "../helpers.h"

using namespace weft;
namespace prune = weft::prune;

namespace {
std::shared_ptr<nn::Sequential> mlp() {
  manual_seed(11);
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(36, 40), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Linear>(40, 24), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(24, 5)});
}

// The sample CNN in miniature: (B,1,8,8) -> conv 6 -> pool -> conv 8 -> pool -> (B,8,2,2) -> fc.
std::shared_ptr<nn::Sequential> cnn() {
  manual_seed(12);
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(1, 6, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Conv2d>(6, 8, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(8 * 2 * 2, 12), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Linear>(12, 3)});
}

Tensor infer(nn::Module& m, const Tensor& x) {
  autograd::NoGradGuard no_grad;
  return m(x);
}
}  // namespace

TEST_CASE("SparseLinear computes what the dense pruned Linear does", "[prune]") {
  for (double sparsity : {0.0, 0.5, 0.95, 1.0}) {
    manual_seed(2);
    nn::Sequential model({std::make_shared<nn::Linear>(70, 33)});
    prune::Pruner pruner(model);
    prune::magnitude(pruner, sparsity);
    auto& dense = dynamic_cast<nn::Linear&>(*model[0]);
    auto sparse = prune::SparseLinear::from(dense);
    CHECK(sparse->nnz() == pruner.nonzeros());
    CHECK(allclose(sparse->to_dense(), dense.weight.detach(), 0, 0));  // (a pruned weight may be -0)
    // batch 1, a batch under one block, one over it (64 + 9), and a 3-D input
    for (const Shape& s : {Shape{1, 70}, Shape{5, 70}, Shape{73, 70}, Shape{2, 3, 70}}) {
      INFO("sparsity " << sparsity << " input " << s);
      const Tensor x = randn(s);
      CHECK(allclose(infer(*sparse, x), infer(dense, x), 1e-5, 1e-5));
    }
  }
  nn::Linear lin(4, 3);
  auto sparse = prune::SparseLinear::from(lin);
  CHECK_THROWS_WITH((*sparse)(randn({2, 5})), Catch::Contains("must end in 4"));
  CHECK_THROWS_WITH((*sparse)(randn({2, 4}, {.requires_grad = true})), Catch::Contains("inference only"));
}

TEST_CASE("SparseLinear handles ragged rows: empty, full and everything between", "[prune]") {
  // Row o keeps its first (o * 7) % 51 inputs: lengths 0..50 in a scrambled order, so the
  // batch-1 kernel's rows sorted by length and its padded slices (35 rows: 3 slices, the
  // last one partial) differ from the plain row order.
  manual_seed(5);
  nn::Linear dense(50, 35);
  std::vector<float> w = dense.weight.to_vector<float>();
  for (int64_t o = 0; o < 35; ++o)
    for (int64_t i = (o * 7) % 51; i < 50; ++i) w[o * 50 + i] = 0.0f;
  dense.weight.detach().copy_(tensor(w, {35, 50}));
  auto sparse = prune::SparseLinear::from(dense);
  CHECK(equal(sparse->to_dense(), dense.weight.detach()));
  for (const Shape& s : {Shape{1, 50}, Shape{3, 50}, Shape{64, 50}, Shape{65, 50}}) {
    INFO("input " << s);
    const Tensor x = randn(s);
    CHECK(allclose(infer(*sparse, x), infer(dense, x), 1e-5, 1e-5));
  }
  // An infinite input reaches only the rows that hold a non-zero for it (CSR skips the
  // zeros; the dense layer's 0 * inf would make every row NaN). Only rows of length 50
  // read input 49.
  std::vector<float> xv = randn({1, 50}).to_vector<float>();
  const std::vector<float> finite = infer(dense, tensor(xv, {1, 50})).to_vector<float>();
  xv[49] = INFINITY;
  const std::vector<float> got = infer(*sparse, tensor(xv, {1, 50})).to_vector<float>();
  for (int64_t o = 0; o < 35; ++o) {
    INFO("row " << o << " keeps " << (o * 7) % 51 << " inputs");
    if ((o * 7) % 51 == 50) CHECK(std::isinf(got[o]));
    else CHECK(got[o] == Approx(finite[o]).margin(1e-5));
  }
}

// The GPU path (cuSPARSE SpMM, cuda/sparse.cpp) against the dense Linear on the CPU.
TEST_CASE("SparseLinear on a GPU matches the dense pruned Linear", "[prune][cuda]") {
  if (!cuda::is_available()) {
    WARN("no CUDA GPU visible: skipping this CUDA test");
    return;
  }
  const Device gpu = Device::cuda(0);
  cuda::DeviceGuard on(0);
  for (double sparsity : {0.0, 0.9, 1.0}) {
    manual_seed(3);
    nn::Sequential model({std::make_shared<nn::Linear>(70, 33)});
    prune::Pruner pruner(model);
    prune::magnitude(pruner, sparsity);
    auto& dense = dynamic_cast<nn::Linear&>(*model[0]);
    auto sparse = prune::SparseLinear::from(dense);
    for (const Shape& s : {Shape{1, 70}, Shape{65, 70}, Shape{2, 3, 70}}) {
      INFO("sparsity " << sparsity << " input " << s);
      const Tensor x = randn(s);
      const Tensor y = infer(*sparse, x.to(gpu));
      CHECK(y.device() == gpu);
      CHECK(allclose(y.to(kCPU), infer(dense, x), 1e-5, 1e-5));
    }
  }
}

TEST_CASE("sparsify_linears swaps every Linear and keeps the outputs", "[prune]") {
  auto model = mlp();
  prune::Pruner pruner(*model);
  prune::global_magnitude(pruner, 0.9);
  auto sparse = prune::sparsify_linears(*model);
  const Tensor x = randn({7, 6, 6});
  CHECK(allclose(infer(*sparse, x), infer(*model, x), 1e-5, 1e-5));
  CHECK(dynamic_cast<prune::SparseLinear*>((*sparse)[1].get()) != nullptr);
}

TEST_CASE("structured removal of MLP rows gives a smaller model with the same outputs", "[prune]") {
  auto model = mlp();
  prune::Pruner pruner(*model, {"1.weight", "3.weight"});  // not the classifier
  prune::structured(pruner, 0.5, 2);
  auto small = prune::remove_pruned_channels(*model);
  const auto& l1 = dynamic_cast<nn::Linear&>(*(*small)[1]);
  const auto& l2 = dynamic_cast<nn::Linear&>(*(*small)[3]);
  const auto& l3 = dynamic_cast<nn::Linear&>(*(*small)[5]);
  CHECK(l1.out_features == 20);
  CHECK(l2.in_features == 20);
  CHECK(l2.out_features == 12);
  CHECK(l3.in_features == 12);
  CHECK(l3.out_features == 5);
  const Tensor x = randn({9, 6, 6});
  CHECK(allclose(infer(*small, x), infer(*model, x), 1e-5, 1e-6));
}

TEST_CASE("structured removal through Conv -> Conv -> Flatten -> Linear keeps the outputs", "[prune]") {
  auto model = cnn();
  prune::Pruner pruner(*model, {"0.weight", "3.weight", "7.weight"});
  prune::structured(pruner, 0.5, 1);
  auto small = prune::remove_pruned_channels(*model);
  const auto& c1 = dynamic_cast<nn::Conv2d&>(*(*small)[0]);
  const auto& c2 = dynamic_cast<nn::Conv2d&>(*(*small)[3]);
  const auto& f1 = dynamic_cast<nn::Linear&>(*(*small)[7]);
  const auto& f2 = dynamic_cast<nn::Linear&>(*(*small)[9]);
  CHECK(c1.out_channels == 3);
  CHECK(c2.in_channels == 3);
  CHECK(c2.out_channels == 4);
  CHECK(f1.in_features == 4 * 2 * 2);
  CHECK(f1.out_features == 6);
  CHECK(f2.in_features == 6);
  CHECK(small->num_parameters() < model->num_parameters() / 2);
  const Tensor x = randn({5, 1, 8, 8});
  CHECK(allclose(infer(*small, x), infer(*model, x), 1e-5, 1e-6));
  // Nothing pruned: nothing removed.
  auto dense = cnn();
  CHECK(prune::remove_pruned_channels(*dense)->num_parameters() == dense->num_parameters());
}

namespace {
// What one data-parallel run leaves behind: every mask and every parameter.
struct RankResult {
  std::vector<Tensor> masks, params;
};

// Ten SGD steps of data-parallel training with pruning along the way, on one rank of
// `comm` (or alone when comm is null: the whole batch on one rank, the reference).
// Each rank takes its half of every batch of 8 and the gradients are averaged by
// allreduce, so every rank holds the same weights. Pruning at step 3 is by magnitude,
// computed locally on each rank (same weights, same masks); at step 6, global magnitude;
// at step 8, random with a *different* generator on each rank, so only sync_masks makes
// the masks agree.
RankResult data_parallel_pruning(parallel::Communicator* comm) {
  ThreadLimit one(1);
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  // mlp() seeds and draws from the one global generator: ranks that are threads must
  // take turns, or their draws interleave and each starts from different weights.
  static std::mutex init_mu;
  std::shared_ptr<nn::Sequential> model;
  {
    std::lock_guard lock(init_mu);
    model = mlp();
  }
  prune::Pruner pruner(*model);
  optim::SGD opt(model->parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3});
  pruner.attach(opt);
  Generator rank_gen(300 + rank);
  for (int step = 0; step < 10; ++step) {
    Generator data(900 + step);
    const Tensor x = randn({8, 6, 6}, {}, data);
    const Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 3, 4, step % 5, 2, 1});
    const int64_t per_rank = 8 / world;
    opt.zero_grad();
    nn::cross_entropy((*model)(x.slice(0, rank * per_rank, (rank + 1) * per_rank)),
                      y.slice(0, rank * per_rank, (rank + 1) * per_rank))
        .backward();
    if (comm)
      for (const Tensor& p : model->parameters()) comm->allreduce(p.grad(), parallel::ReduceOp::Mean);
    opt.step();
    if (step == 3) prune::magnitude(pruner, 0.5);
    if (step == 6) prune::global_magnitude(pruner, 0.7);
    if (step == 8) prune::random(pruner, 0.8, rank_gen);
    if (comm && (step == 3 || step == 6 || step == 8)) parallel::sync_masks(pruner, *comm);
  }
  RankResult r;
  for (size_t i = 0; i < pruner.size(); ++i) r.masks.push_back(raw::clone(pruner.mask(i)));
  for (const Tensor& p : model->parameters()) r.params.push_back(raw::clone(p));
  return r;
}
}  // namespace

TEST_CASE("masks are identical on every rank through data-parallel pruning (threads, world size 2)", "[prune]") {
  std::vector<RankResult> results(2);
  parallel::run_ranks(2, [&](parallel::Communicator& comm) { results[comm.rank()] = data_parallel_pruning(&comm); });
  const RankResult single = data_parallel_pruning(nullptr);  // rank 0's random generator
  REQUIRE(results[0].masks.size() == 3);
  for (size_t i = 0; i < results[0].masks.size(); ++i) {
    INFO("target " << i);
    CHECK(equal(results[0].masks[i], results[1].masks[i]));
    // The same masks as one rank training on the whole batch.
    CHECK(equal(results[0].masks[i], single.masks[i]));
  }
  for (size_t p = 0; p < results[0].params.size(); ++p) {
    INFO("parameter " << p);
    CHECK(equal(results[0].params[p], results[1].params[p]));
    CHECK(allclose(results[0].params[p], single.params[p], 1e-4, 1e-5));
  }
  const auto m0 = results[0].masks[0].to_vector<float>();
  CHECK(std::count(m0.begin(), m0.end(), 0.0f) > 0.75 * m0.size());  // the pruning happened
}

TEST_CASE("sync_masks on ranks that masked different targets stops every rank with an error", "[prune]") {
  std::vector<std::string> errors(2);
  parallel::run_ranks(2, [&](parallel::Communicator& comm) {
    auto model = mlp();
    prune::Pruner pruner(*model);
    pruner.set_mask(comm.rank(), ones_like(pruner.weight(comm.rank())));  // rank r masks target r
    try {
      parallel::sync_masks(pruner, comm);
    } catch (const Error& e) {
      errors[comm.rank()] = e.what();
    }
  });
  CHECK_THAT(errors[0], Catch::Contains("another rank masked different targets"));
  CHECK_THAT(errors[1], Catch::Contains("rank 1 has no mask on") && Catch::Contains("but rank 0 has one"));
}

TEST_CASE("without sync_masks, random pruning gives each rank a different mask", "[prune]") {
  // The failure sync_masks prevents: torch.nn.utils.prune on DDP replicas.
  std::vector<Tensor> masks(2);
  parallel::run_ranks(2, [&](parallel::Communicator& comm) {
    ThreadLimit one(1);
    auto model = mlp();
    prune::Pruner pruner(*model);
    Generator gen(100 + comm.rank());
    prune::random(pruner, 0.7, gen);
    masks[comm.rank()] = raw::clone(pruner.mask(0));
    comm.barrier();
  });
  CHECK_FALSE(equal(masks[0], masks[1]));
}
