// End to end: a small MLP trained on a slice of Fashion-MNIST must reach a stated test
// accuracy. Without the dataset package the test trains on a synthetic set instead and
// says so.
#include <filesystem>

#include "../helpers.h"

using namespace weft;

namespace {
// precision: float32, or bfloat16 / float16 under Autocast (float16 with a GradScaler),
// as `train_mlp --precision` trains.
double train_and_evaluate(const data::TensorDataset& train, const data::TensorDataset& test, int epochs,
                          DType precision = kFloat32) {
  manual_seed(0);
  optim::GradScaler scaler({.enabled = precision == kFloat16});
  nn::Sequential model{std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(train.x()[0].numel(), 128),
                       std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(128, 10)};
  optim::AdamW opt(model.parameters(), {.lr = 2e-3, .weight_decay = 0.01});
  data::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 1});
  for (int e = 0; e < epochs; ++e) {
    loader.set_epoch(e);
    for (const data::Batch& b : loader) {
      opt.zero_grad();
      Tensor loss;
      {
        const Autocast ac = autocast::for_precision(precision);
        loss = nn::cross_entropy(model(b.x), b.y);
      }
      scaler.scale(loss).backward();
      scaler.step(opt);
      scaler.update();
    }
  }
  autograd::NoGradGuard no_grad;
  const Autocast ac = autocast::for_precision(precision);
  Tensor pred = model(test.x()).argmax(1);
  return pred.eq(test.y()).to(kFloat64).mean().item<double>();
}

// Ten Gaussian blobs in 64 dimensions, one per class.
data::TensorDataset blobs(int64_t n, uint64_t seed) {
  Generator centers_gen(3), g(seed);  // the same centres for train and test
  Tensor centers = randn({10, 64}, {}, centers_gen) * 0.5;
  Tensor y = tensor(std::vector<int64_t>(n, 0));
  int64_t* yp = y.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) yp[i] = i % 10;
  Tensor x = centers.index_select(0, y) + randn({n, 64}, {}, g) * 0.8;
  return data::TensorDataset(x.reshape({n, 1, 8, 8}), y);
}
}  // namespace

TEST_CASE("an MLP trained on a slice of Fashion-MNIST reaches 80% test accuracy", "[training]") {
  if (!std::filesystem::exists(std::string(data::kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    WARN("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): training on a synthetic set");
    const double acc = train_and_evaluate(blobs(4000, 1), blobs(1000, 2), 3);
    INFO("synthetic test accuracy " << acc);
    REQUIRE(acc >= 0.95);
    return;
  }
  const data::Normalize norm{data::kFashionMnistMean, data::kFashionMnistStd};
  auto train = data::load_fashion_mnist(data::kFashionMnistDir, true, norm).head(6000);
  auto test = data::load_fashion_mnist(data::kFashionMnistDir, false, norm).head(2000);
  const double acc = train_and_evaluate(train, test, 3);
  INFO("Fashion-MNIST test accuracy after 3 epochs on 6000 samples: " << acc);
  REQUIRE(acc >= 0.80);
}

TEST_CASE("bf16 and fp16 autocast train the MLP as float32 does", "[training][autocast]") {
  data::TensorDataset train = blobs(4000, 1), test = blobs(1000, 2);
  if (std::filesystem::exists(std::string(data::kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    const data::Normalize norm{data::kFashionMnistMean, data::kFashionMnistStd};
    train = data::load_fashion_mnist(data::kFashionMnistDir, true, norm).head(6000);
    test = data::load_fashion_mnist(data::kFashionMnistDir, false, norm).head(2000);
  } else {
    WARN("Fashion-MNIST is not installed: comparing on a synthetic set");
  }
  const double f32 = train_and_evaluate(train, test, 3);
  const double bf16 = train_and_evaluate(train, test, 3, kBFloat16);
  const double fp16 = train_and_evaluate(train, test, 3, kFloat16);
  INFO("test accuracy: float32 " << f32 << ", bfloat16 " << bf16 << ", float16 " << fp16);
  CHECK(bf16 >= 0.80);
  CHECK(std::abs(bf16 - f32) <= 0.015);
  CHECK(std::abs(fp16 - f32) <= 0.015);
}
