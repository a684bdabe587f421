// Checkpoints: exact resume, atomic writes, and clear errors for bad files.
#include <filesystem>
#include <fstream>

#include "../helpers.h"

using namespace weft;
namespace fs = std::filesystem;

namespace {
std::shared_ptr<nn::Sequential> small_mlp() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(6, 16), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(16, 3)});
}

// One AdamW step on batch i of a fixed synthetic stream.
void train_steps(nn::Module& m, optim::Optimizer& opt, int from, int to) {
  for (int i = from; i < to; ++i) {
    Generator g(100 + i);
    Tensor x = randn({8, 6}, {}, g);
    Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2, i % 3, (i + 1) % 3});
    opt.zero_grad();
    nn::cross_entropy(m(x), y, 0.1).backward();
    opt.step();
  }
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("weft_ckpt_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST_CASE("N steps, save, load, M steps equals N+M steps bit for bit", "[checkpoint]") {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "run.safetensors").string();
  manual_seed(5);
  auto a = small_mlp();
  optim::AdamW opt_a(a->parameters(), {.lr = 0.01});
  train_steps(*a, opt_a, 0, 7);

  manual_seed(5);
  auto b = small_mlp();
  optim::AdamW opt_b(b->parameters(), {.lr = 0.01});
  train_steps(*b, opt_b, 0, 4);
  optim::save_checkpoint(path, *b, &opt_b, {{"epoch", "0"}, {"step", "4"}});

  manual_seed(999);  // a fresh process would start from different random weights
  auto c = small_mlp();
  optim::AdamW opt_c(c->parameters(), {.lr = 0.01});
  auto meta = optim::load_checkpoint(path, *c, &opt_c);
  REQUIRE(meta.at("step") == "4");
  REQUIRE(opt_c.steps_taken() == 4);
  train_steps(*c, opt_c, 4, 7);
  auto sa = a->state_dict(), sc = c->state_dict();
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    REQUIRE(equal(sa[i].second, sc[i].second));
  }
  // No temporary file is left beside the checkpoint.
  for (const auto& entry : fs::directory_iterator(dir)) REQUIRE(entry.path().filename() == "run.safetensors");
  fs::remove_all(dir);
}

TEST_CASE("checkpoint errors name the file and the problem", "[checkpoint][errors]") {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "m.safetensors").string();
  auto m = small_mlp();
  optim::SGD opt(m->parameters(), {.lr = 0.1, .momentum = 0.9});
  train_steps(*m, opt, 0, 1);
  optim::save_checkpoint(path, *m, &opt);

  // A model of another shape: the key and both shapes are named.
  auto other = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(6, 8), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(8, 3)});
  REQUIRE_THROWS_WITH(optim::load_checkpoint(path, *other, nullptr),
                      Catch::Contains(path) && Catch::Contains("0.weight (checkpoint (16,6), model (8,6))"));
  // Model-only checkpoint loaded with an optimizer.
  const std::string model_only = (dir / "model_only.safetensors").string();
  optim::save_checkpoint(model_only, *m, nullptr);
  REQUIRE_THROWS_WITH(optim::load_checkpoint(model_only, *m, &opt), Catch::Contains("no optimizer state"));
  // A truncated file.
  const auto size = fs::file_size(path);
  fs::copy_file(path, dir / "cut.safetensors");
  fs::resize_file(dir / "cut.safetensors", size / 2);
  REQUIRE_THROWS_WITH(optim::load_checkpoint((dir / "cut.safetensors").string(), *m, &opt),
                      Catch::Contains("cut.safetensors"));
  // A missing file.
  REQUIRE_THROWS_WITH(optim::load_checkpoint((dir / "nope.safetensors").string(), *m, &opt),
                      Catch::Contains("nope.safetensors"));
  // A safetensors file that is not a weft checkpoint.
  nn::save_safetensors((dir / "plain.safetensors").string(), {{"weight", ones({2})}});
  REQUIRE_THROWS_WITH(optim::load_checkpoint((dir / "plain.safetensors").string(), *m, &opt),
                      Catch::Contains("not a weft checkpoint"));
  fs::remove_all(dir);
}
