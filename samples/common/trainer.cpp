#include "trainer.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "progress.h"

namespace weft::samples {

int64_t count_correct(nn::Module& model, const data::TensorDataset& test, Device device) {
  autograd::NoGradGuard no_grad;
  model.eval();
  data::DataLoader loader(test, {.batch_size = 1000, .shuffle = false});
  int64_t correct = 0;
  for (const data::Batch& b : loader) {
    Tensor pred = model(b.x.to(device)).argmax(1).to(kCPU);
    correct += pred.eq(b.y).to(kInt64).sum().item<int64_t>();
  }
  model.train();
  return correct;
}

void add_flags(CLI::App& app, Config& c) {
  app.add_option("--epochs", c.r.epochs, "passes over the training set")->capture_default_str();
  app.add_option("--batch-size", c.r.batch_size, "samples per step")->capture_default_str();
  app.add_option("--lr", c.r.lr, "peak learning rate")->capture_default_str();
  app.add_option("--optimizer", c.r.optimizer, "adamw, adam or sgd")->capture_default_str();
  app.add_option("--weight-decay", c.r.weight_decay, "weight decay")->capture_default_str();
  app.add_option("--label-smoothing", c.r.label_smoothing, "cross-entropy label smoothing")->capture_default_str();
  app.add_option("--threads", c.threads, "intra-op threads (default: WEFT_NUM_THREADS or all cores)");
  app.add_option("--seed", c.seed, "seed for initialisation and shuffling")->capture_default_str();
  app.add_option("--data", c.data, "directory with the Fashion-MNIST .gz files")->capture_default_str();
  app.add_option("--device", c.device, "cpu, cpu:N or cuda:N")->capture_default_str();
  app.add_option("--checkpoint", c.checkpoint, "save a checkpoint here after each epoch");
  app.add_option("--resume", c.resume, "resume from this checkpoint");
  app.add_option("--limit", c.limit, "train on the first N samples only (0: all)");
  app.add_flag("--cuda-graph", c.cuda_graph, "capture the training step as a CUDA graph and replay it (GPU only)");
}

void apply_recipe(const CLI::App& app, const Recipe& recipe, Recipe& r) {
  auto unless_given = [&](const char* flag, auto& field, const auto& value) {
    if (app.count(flag) == 0) field = value;
  };
  unless_given("--epochs", r.epochs, recipe.epochs);
  unless_given("--batch-size", r.batch_size, recipe.batch_size);
  unless_given("--lr", r.lr, recipe.lr);
  unless_given("--optimizer", r.optimizer, recipe.optimizer);
  unless_given("--weight-decay", r.weight_decay, recipe.weight_decay);
  unless_given("--label-smoothing", r.label_smoothing, recipe.label_smoothing);
  r.warmup_fraction = recipe.warmup_fraction;  // no flags
  r.momentum = recipe.momentum;
}

FashionMnist load_data(const Config& c) {
  const data::Normalize norm{data::kFashionMnistMean, data::kFashionMnistStd};
  FashionMnist d{data::load_fashion_mnist(c.data, true, norm), data::load_fashion_mnist(c.data, false, norm)};
  if (c.limit > 0) d.train = d.train.head(c.limit);
  return d;
}

// Fraction of the test set classified correctly.
double evaluate(nn::Module& model, const data::TensorDataset& test, Device device) {
  return static_cast<double>(count_correct(model, test, device)) / static_cast<double>(test.size());
}

namespace {
// One training step: forward, loss, backward, update. Returns the loss (on the device).
Tensor train_step(nn::Module& model, optim::Optimizer& opt, const Tensor& x, const Tensor& y, double smoothing) {
  opt.zero_grad();
  Tensor loss = nn::cross_entropy(model(x), y, smoothing);
  loss.backward();
  opt.step();
  return loss;
}

// Runs the training step as a CUDA graph: a few eager steps warm up (cuDNN picks its
// algorithms, the allocator fills its cache, optimizer state appears), then one step is
// captured, and every later full-size batch is copied into the captured step's input
// tensors and replayed with a single launch. Batches of another shape (the last,
// partial one) run eagerly.
class GraphedStep {
 public:
  static constexpr int kWarmup = 3;

  Tensor run(nn::Module& model, optim::Optimizer& opt, const Tensor& x, const Tensor& y, double smoothing) {
    if (graph_ && graph_->captured() && x.is_same(x_) && y.is_same(y_) && x.shape() == shape_) {
      graph_->replay();
      opt.count_replayed_step();
      return loss_;
    }
    if (graph_ || ++eager_steps_ <= kWarmup) return train_step(model, opt, x, y, smoothing);
    graph_ = std::make_unique<cuda::Graph>();
    x_ = x, y_ = y, shape_ = x.shape();
    graph_->capture_begin(x.device().index);
    loss_ = train_step(model, opt, x, y, smoothing);
    graph_->capture_end();
    graph_->replay();  // capturing only recorded the step: run it for this batch
    return loss_;
  }

 private:
  std::unique_ptr<cuda::Graph> graph_;
  Tensor x_, y_, loss_;
  Shape shape_;
  int eager_steps_ = 0;
};

int run(const std::string& name, Config& c, const std::function<std::shared_ptr<nn::Module>()>& make_model) {
  if (c.threads > 0) set_num_threads(c.threads);
  manual_seed(c.seed);
  const Device device(c.device);
  WEFT_CHECK(!c.cuda_graph || device.is_cuda(), "--cuda-graph needs --device cuda");
  if (device.is_cuda()) cuda::set_device(device.index);  // kernels run on the current device
  const auto [train, test] = load_data(c);

  std::shared_ptr<nn::Module> model = make_model();
  model->to(device);
  auto opt = make_optimizer(c.r, model->parameters());
  data::DataLoader loader(train, {.batch_size = c.r.batch_size, .shuffle = true, .seed = c.seed});
  optim::CosineWarmupLR schedule = make_schedule(c.r, *opt, loader.num_batches());
  std::printf("%s: %lld parameters, %lld training samples, %d threads, device %s\n", name.c_str(),
              static_cast<long long>(model->num_parameters()), static_cast<long long>(train.size()), num_threads(),
              device.str().c_str());

  int start_epoch = 0;
  if (!c.resume.empty()) {
    auto meta = optim::load_checkpoint(c.resume, *model, opt.get());
    start_epoch = std::stoi(meta.at("epoch"));
    default_generator().set_offset(std::stoull(meta.at("generator_offset")));
    schedule.set_step(opt->steps_taken());
    std::printf("resumed from %s at epoch %d (step %lld)\n", c.resume.c_str(), start_epoch,
                static_cast<long long>(opt->steps_taken()));
  }

  double train_seconds = 0, accuracy = 0;
  int64_t train_samples = 0;
  data::DeviceStager stager(device);
  GraphedStep graphed;
  // Reading the loss back waits for the GPU, so on a GPU the bar shows it every few steps.
  const int64_t loss_every = device.is_cuda() ? 25 : 1;
  for (int epoch = start_epoch; epoch < c.r.epochs; ++epoch) {
    loader.set_epoch(epoch);
    ProgressBar bar(detail::str("epoch ", epoch + 1, "/", c.r.epochs), loader.num_batches());
    const int64_t mallocs_before = device.is_cuda() ? cuda::memory_stats(device.index).malloc_calls : 0;
    const auto t0 = std::chrono::steady_clock::now();
    int64_t step = 0;
    double shown_loss = 0;
    for (const data::Batch& b : loader) {
      const Tensor x = stager.stage(b.x, 0), y = stager.stage(b.y, 1);
      Tensor loss = c.cuda_graph ? graphed.run(*model, *opt, x, y, c.r.label_smoothing)
                                 : train_step(*model, *opt, x, y, c.r.label_smoothing);
      schedule.step();
      if (step++ % loss_every == 0) shown_loss = loss.item<double>();
      bar.update(b.size(), shown_loss);
      train_samples += b.size();
    }
    if (device.is_cuda()) cuda::synchronize(device.index);
    bar.finish();
    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (device.is_cuda())
      std::printf("epoch %d: %s; cudaMalloc calls this epoch: %lld\n", epoch + 1,
                  cuda::memory_summary(device.index).c_str(),
                  static_cast<long long>(cuda::memory_stats(device.index).malloc_calls - mallocs_before));
    accuracy = evaluate(*model, test, device);
    std::printf("epoch %d: test_accuracy=%.4f lr=%.2e\n", epoch + 1, accuracy, opt->lr());
    // Which CPU GEMM kernels ran, once the first epoch has met every shape (tensor/kernels.h).
    if (epoch == start_epoch && !device.is_cuda()) std::printf("%s\n", gemm_report().c_str());
    if (!c.checkpoint.empty())
      optim::save_checkpoint(c.checkpoint, *model, opt.get(),
                             {{"epoch", std::to_string(epoch + 1)}, {"sample", name},
                              {"generator_offset", std::to_string(default_generator().offset())}});
  }
  if (start_epoch >= c.r.epochs) accuracy = evaluate(*model, test, device);
  std::printf("test_accuracy=%.4f train_samples_per_s=%.1f\n", accuracy,
              train_seconds > 0 ? train_samples / train_seconds : 0.0);
  return 0;
}

}  // namespace

int train_main(int argc, char** argv, const std::string& name, const Recipe& recipe,
               const std::function<std::shared_ptr<nn::Module>()>& make_model) {
  Config c;
  c.r = recipe;
  CLI::App app{name + ": train on Fashion-MNIST with weft"};
  add_flags(app, c);
  CLI11_PARSE(app, argc, argv);
  try {
    return run(name, c, make_model);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), e.what());
    return 1;
  }
}

}  // namespace weft::samples
