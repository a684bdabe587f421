// The transformer of samples/train_charlm (samples/common/charlm.h): shapes, weight
// tying, the batch stream, that it learns, and that DDP and a 2-stage pipeline (with
// the tied weight split across the stages) train it exactly as one process does.
#include <catch2/catch.hpp>

#include <map>

#include "../../samples/common/charlm.h"

using namespace weft;
namespace lm = weft::samples::charlm;
namespace pp = weft::parallel::pipeline;

namespace {

lm::Config tiny(int64_t vocab) { return {.vocab = vocab, .seq_len = 8, .dim = 16, .layers = 2, .heads = 2}; }

std::shared_ptr<nn::Sequential> tiny_model(int64_t vocab, uint64_t seed = 3) {
  default_generator().manual_seed(seed);
  return lm::make_model(tiny(vocab));
}

// (x, y) of a (B, T + 1) window batch.
std::pair<Tensor, Tensor> split_xy(const Tensor& w) {
  const int64_t T = w.size(1) - 1;
  return {w.narrow(1, 0, T).contiguous(), w.narrow(1, 1, T).contiguous()};
}

const data::CharCorpus& corpus() {
  static const data::CharCorpus c = data::CharCorpus::from_text(
      "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs. "
      "how vexingly quick daft zebras jump! the five boxing wizards jump quickly.");
  return c;
}

// One plain SGD step of the whole model on windows w; returns the loss.
double sgd_step(nn::Module& m, const Tensor& w, double lr) {
  auto [x, y] = split_xy(w);
  m.zero_grad();
  const Tensor loss = lm::lm_loss(m(x), y);
  loss.backward();
  autograd::NoGradGuard g;
  for (Tensor p : m.parameters()) p.add_(p.grad(), -lr);
  return loss.item<double>();
}

}  // namespace

TEST_CASE("charlm: splitmix64 gives the reference stream", "[samples][charlm]") {
  uint64_t s = 0;  // the published splitmix64 test vector for seed 0
  REQUIRE(lm::splitmix64(s) == 0xE220A8397B1DCDAFull);
  REQUIRE(lm::splitmix64(s) == 0x6E789E6AA1B965F4ull);
  REQUIRE(lm::splitmix64(s) == 0x06C45D188009454Full);
}

TEST_CASE("charlm: windows are text, and targets are the inputs shifted by one", "[samples][charlm]") {
  const Tensor ids = corpus().ids;
  lm::WindowSampler a(ids, 8, 42), b(ids, 8, 42);
  const Tensor w = a.next(5);
  REQUIRE(w.shape() == Shape{5, 9});
  REQUIRE(w.to_vector<int64_t>() == b.next(5).to_vector<int64_t>());  // same seed, same batch
  const std::string text = corpus().text;
  for (int64_t r = 0; r < 5; ++r) {
    const std::string s = corpus().decode(w[r].to_vector<int64_t>());
    REQUIRE(text.find(s) != std::string::npos);
  }
  REQUIRE(a.next(5).to_vector<int64_t>() != w.to_vector<int64_t>());
}

TEST_CASE("charlm: shapes, names and the tied head", "[samples][charlm]") {
  auto model = tiny_model(corpus().vocab_size());
  REQUIRE(model->size() == 4);  // Embed, 2 blocks, Head
  const Tensor x = lm::WindowSampler(corpus().ids, 8, 1).next(3).narrow(1, 0, 8).contiguous();
  REQUIRE((*model)(x).shape() == Shape{3, 8, corpus().vocab_size()});
  REQUIRE((*model)(x.narrow(1, 0, 5).contiguous()).shape() == Shape{3, 5, corpus().vocab_size()});  // shorter context
  // Tied: the head owns no weight; the keys are those bench/charlm.py's twin has.
  auto head = lm::head_of(*model);
  REQUIRE(head->tied());
  REQUIRE(head->weight().is_same(std::dynamic_pointer_cast<lm::Embed>((*model)[0])->tok_emb->weight));
  std::vector<std::string> keys;
  for (const auto& [k, v] : model->state_dict()) keys.push_back(k);
  REQUIRE(keys.front() == "0.tok_emb.weight");
  REQUIRE(std::find(keys.begin(), keys.end(), "1.attn.in_proj_weight") != keys.end());
  REQUIRE(std::find(keys.begin(), keys.end(), "3.ln_f.weight") != keys.end());
  REQUIRE(std::find(keys.begin(), keys.end(), "3.weight") == keys.end());
  REQUIRE_THROWS_WITH((*model)(zeros({2, 9}, {.dtype = kInt64})), Catch::Contains("at most the context length 8"));
  // Causal: the logits at position t do not depend on the characters after t.
  Tensor x2 = x.clone();
  x2.narrow(1, 6, 2).fill_(0);
  const Tensor a = (*model)(x).narrow(1, 0, 6).contiguous(), b = (*model)(x2).narrow(1, 0, 6).contiguous();
  REQUIRE(a.to_vector<float>() == b.to_vector<float>());
}

TEST_CASE("charlm: the gradient of the tied weight is the sum of both uses", "[samples][charlm]") {
  auto model = tiny_model(corpus().vocab_size());
  model->to(kFloat64);
  const Tensor w = lm::WindowSampler(corpus().ids, 8, 5).next(2);
  auto [x, y] = split_xy(w);
  lm::lm_loss((*model)(x), y).backward();
  auto embed = std::dynamic_pointer_cast<lm::Embed>((*model)[0]);
  const Tensor g = embed->tok_emb->weight.grad().clone();
  // A finite difference on one element of the tied weight sees both uses.
  autograd::NoGradGuard no_grad;
  Tensor wt = embed->tok_emb->weight;
  const int64_t id = x.to_vector<int64_t>()[0];
  const double h = 1e-6, orig = wt[id][3].item<double>();
  wt[id][3].fill_(orig + h);
  const double up = lm::lm_loss((*model)(x), y).item<double>();
  wt[id][3].fill_(orig - h);
  const double down = lm::lm_loss((*model)(x), y).item<double>();
  wt[id][3].fill_(orig);
  REQUIRE(g[id][3].item<double>() == Approx((up - down) / (2 * h)).epsilon(1e-6));
}

TEST_CASE("charlm: it learns a text (loss below 1.0 nats from 3.3)", "[samples][charlm]") {
  auto model = tiny_model(corpus().vocab_size());
  optim::AdamW opt(model->parameters(), {.lr = 1e-2});
  lm::WindowSampler s(corpus().ids, 8, 7);
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    auto [x, y] = split_xy(s.next(16));
    opt.zero_grad();
    const Tensor loss = lm::lm_loss((*model)(x), y);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  INFO("first " << first << ", last " << last);
  REQUIRE(first > 3.0);  // about ln(vocab 29) = 3.37
  REQUIRE(last < 1.0);
  Generator gen(1);
  const std::string out = lm::generate(*model, corpus(), "the ", 20, 8, 0.5, 0, gen, kCPU);
  REQUIRE(out.size() == 24);
  REQUIRE(out.substr(0, 4) == "the ");
  Generator gen2(1);
  REQUIRE(lm::generate(*model, corpus(), "the ", 20, 8, 0.5, 0, gen2, kCPU) == out);  // seeded
}

TEST_CASE("charlm: DDP over 2 rank threads trains as one process does", "[samples][charlm][parallel]") {
  const int64_t V = corpus().vocab_size();
  auto single = tiny_model(V);
  std::vector<std::shared_ptr<nn::Sequential>> replicas{tiny_model(V), tiny_model(V, 99)};  // DDP broadcasts rank 0's
  lm::WindowSampler s(corpus().ids, 8, 11);
  std::vector<Tensor> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(s.next(6));
  for (const Tensor& w : batches) sgd_step(*single, w, 0.1);
  parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    auto model = replicas[size_t(comm->rank())];
    parallel::DistributedDataParallel ddp(model, comm);
    for (const Tensor& w : batches) {
      auto [x, y] = split_xy(w.narrow(0, 3 * comm->rank(), 3));
      model->zero_grad();
      lm::lm_loss(ddp(x), y).backward();
      ddp.synchronize();
      autograd::NoGradGuard g;
      for (Tensor p : model->parameters()) p.add_(p.grad(), -0.1);
    }
  });
  const auto want = single->state_dict(), got = replicas[1]->state_dict();
  for (size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].first);
    REQUIRE_THAT(got[i].second.to_vector<float>(), Catch::Matchers::Approx(want[i].second.to_vector<float>()).margin(2e-6));
  }
}

TEST_CASE("charlm: 2 pipeline stages with the tied weight split train as one process does", "[samples][charlm][parallel]") {
  const int64_t V = corpus().vocab_size();
  auto single = tiny_model(V), piped = tiny_model(V);
  lm::WindowSampler s(corpus().ids, 8, 13);
  std::vector<Tensor> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(s.next(4));
  for (const Tensor& w : batches) sgd_step(*single, w, 0.1);

  parallel::ShardedSequential sharded(piped, {Device::cpu(0), Device::cpu(1)}, {0, 2});
  lm::head_of(*piped)->untie();
  REQUIRE_FALSE(lm::head_of(*piped)->tied());
  const pp::PipelineSchedule sched = pp::make_schedule("1f1b", 2, 2);
  parallel::run_ranks(2, [&](const std::shared_ptr<parallel::Communicator>& comm) {
    const int st = comm->rank();
    auto block = sharded.stage(size_t(st));
    pp::PipelineStage stage(comm, block, sharded.device(size_t(st)));
    const Tensor tied = st == 0 ? std::dynamic_pointer_cast<lm::Embed>((*block)[0])->tok_emb->weight
                                : lm::head_of(*piped)->weight();
    for (const Tensor& w : batches) {
      auto [x, y] = split_xy(w);
      block->zero_grad();
      stage.train_step(sched, st == 0 ? x.to(Device::cpu(0)) : Tensor(), st == 1 ? y.to(Device::cpu(1)) : Tensor(),
                       [](const Tensor& out, const Tensor& t) { return lm::lm_loss(out, t); });
      lm::exchange_tied_grad(*comm, tied);
      autograd::NoGradGuard g;
      for (Tensor p : block->parameters()) p.add_(p.grad(), -0.1);
    }
  });
  piped->to(kCPU);
  const auto want = single->state_dict();
  std::map<std::string, Tensor> got;
  for (const auto& kv : piped->state_dict()) got.insert(kv);
  REQUIRE(got.size() == want.size() + 1);  // plus the head's copy, "3.weight"
  REQUIRE(got.count("3.weight") == 1);
  for (const auto& [name, value] : want) {
    INFO(name);
    REQUIRE(got.count(name) == 1);
    REQUIRE_THAT(got.at(name).to_vector<float>(), Catch::Matchers::Approx(value.to_vector<float>()).margin(2e-6));
  }
  // The two copies of the tied weight took the same steps.
  REQUIRE(lm::head_of(*piped)->weight().to_vector<float>() ==
          std::dynamic_pointer_cast<lm::Embed>((*piped)[0])->tok_emb->weight.to_vector<float>());
}
