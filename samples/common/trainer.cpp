#include "trainer.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iomanip>

#include "../../cuda/cuda.h"
#include "../../parallel/comm/nccl_communicator.h"
#include "../../training/loop.h"
#include "flags.h"
#include "resume.h"

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

std::shared_ptr<parallel::MpiCommunicator> mpi_world() {
  WEFT_CHECK(parallel::built_with_mpi(), "--backend mpi: weft was built without MPI (install libopenmpi-dev, then "
                                         "meson setup --reconfigure -Dmpi=enabled)");
  // Open MPI busy-polls while a rank waits inside a collective or a receive: right for a
  // rank with nothing else to do, wrong for the samples, where a DDP bucket's all-reduce
  // waits on the progress thread while backward computes on the same cores, and pipeline
  // stages share the machine's cores. Asking it to yield the core when idle lets the
  // others run. (Must be set before MPI starts; OMPI_MCA_mpi_yield_when_idle=0 in the
  // environment turns it back off, to compare.)
  setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
  return parallel::MpiCommunicator::world();
}

void check_nccl() {
  if (!WEFT_HAVE_NCCL)
    throw Error("--backend nccl: weft was built without NCCL (install libnccl-dev and CUDA, then meson setup "
                "--reconfigure -Dcuda=enabled)");
  WEFT_CHECK(cuda::is_available(), "--backend nccl: no CUDA device is visible");
}

std::shared_ptr<parallel::Communicator> nccl_over(std::shared_ptr<parallel::Communicator> boot, int device) {
  WEFT_CHECK(device < cuda::device_count(), "--backend nccl: rank ", boot->rank(), " needs cuda:", device, " but ",
             cuda::device_count(), " GPU(s) are visible");
  cuda::set_device(device);  // weft's kernels run on the calling thread's current device
  return parallel::NcclCommunicator::create(std::move(boot), device);
}

// Each flag is checked as it is read (flags.h): a bad value stops the run at once with
// an error naming the flag and the value.
void add_flags(CLI::App& app, Config& c) {
  app.add_option("--epochs", c.r.epochs, "passes over the training set")->check(whole_number(1))->capture_default_str();
  app.add_option("--batch-size", c.r.batch_size, "samples per step")
      ->check(whole_number<int64_t>(1))
      ->capture_default_str();
  app.add_option("--lr", c.r.lr, "peak learning rate")->check(real_number(0))->capture_default_str();
  app.add_option("--optimizer", c.r.optimizer, "adamw, adam or sgd")
      ->check(CLI::IsMember({"adamw", "adam", "sgd"}))
      ->capture_default_str();
  app.add_option("--weight-decay", c.r.weight_decay, "weight decay")->check(real_number(0))->capture_default_str();
  app.add_option("--label-smoothing", c.r.label_smoothing, "cross-entropy label smoothing")
      ->check(real_number(0, 1))
      ->capture_default_str();
  app.add_option("--threads", c.threads, "intra-op threads (default: WEFT_NUM_THREADS or all cores)")
      ->check(whole_number(0));
  app.add_option("--seed", c.seed, "seed for initialisation and shuffling")
      ->check(whole_number<uint64_t>(0))
      ->capture_default_str();
  app.add_option("--data", c.data, "directory with the Fashion-MNIST .gz files")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--device", c.device, "cpu, cpu:N or cuda:N")->check(device_spec())->capture_default_str();
  app.add_option("--checkpoint", c.checkpoint, "save a checkpoint here after each epoch")->check(savable_file());
  app.add_option("--resume", c.resume, "resume from this checkpoint")->check(CLI::ExistingFile);
  app.add_option("--stop-after-epoch", c.stop_after_epoch,
                 "end after this epoch (its --checkpoint written) on the schedule of --epochs: a time slice of a "
                 "longer run, to --resume later")
      ->check(whole_number(1));
  app.add_option("--limit", c.limit, "train on the first N samples only (0: all)")->check(whole_number<int64_t>(0));
  app.add_flag("--cuda-graph", c.cuda_graph, "capture the training step as a CUDA graph and replay it (GPU only)");
  app.add_option_function<std::string>(
         "--precision", [&c](const std::string& p) { c.precision = parse_dtype(p); },
         "fp32, or bf16 / fp16: mixed precision (autocast, float32 master weights; fp16 with loss scaling)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->default_str("fp32");
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
// Runs the training step as a CUDA graph: a few eager steps warm up (cuDNN picks its
// algorithms, the allocator fills its cache, optimizer state appears), then one step is
// captured, and every later full-size batch is copied into the captured step's input
// tensors and replayed with a single launch. Batches of another shape (the last,
// partial one) run eagerly.
class GraphedStep {
 public:
  static constexpr int kWarmup = 3;

  GraphedStep(nn::Module& model, optim::Optimizer& opt, double smoothing)
      : opt_(opt), eager_(training::plain_step(model, opt, smoothing)) {}

  Tensor run(const std::optional<data::Batch>& b) {
    const Tensor &x = b->x, &y = b->y;
    if (graph_ && graph_->captured() && x.is_same(x_) && y.is_same(y_) && x.shape() == shape_) {
      graph_->replay();
      opt_.count_replayed_step();
      return loss_;
    }
    if (graph_ || ++eager_steps_ <= kWarmup) return eager_(b);
    graph_ = std::make_unique<cuda::Graph>();
    x_ = x, y_ = y, shape_ = x.shape();
    graph_->capture_begin(x.device().index);
    loss_ = eager_(b);
    graph_->capture_end();
    graph_->replay();  // capturing only recorded the step: run it for this batch
    return loss_;
  }

 private:
  optim::Optimizer& opt_;
  training::StepFn eager_;
  std::unique_ptr<cuda::Graph> graph_;
  Tensor x_, y_, loss_;
  Shape shape_;
  int eager_steps_ = 0;
};

// Loads the --resume checkpoint into model, opt and scaler and moves the schedule and
// the generator to where it was saved. Returns the epoch to continue at.
int resume(const std::string& path, nn::Module& model, optim::Optimizer& opt, optim::CosineWarmupLR& schedule,
           int64_t steps_per_epoch, optim::GradScaler& scaler) {
  const optim::Metadata meta = optim::load_checkpoint(path, model, &opt);
  const ResumePoint rp = read_resume_point(path, meta);
  load_scaler(path, meta, scaler);
  WEFT_CHECK(rp.generator_offset, path, ": the checkpoint's metadata has no 'generator_offset' field");
  default_generator().set_offset(*rp.generator_offset);
  const std::string warning = resume_schedule(rp, schedule, opt.steps_taken(), steps_per_epoch);
  if (!warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
  std::printf("resumed from %s at epoch %d (step %lld)\n", path.c_str(), rp.epoch,
              static_cast<long long>(opt.steps_taken()));
  return rp.epoch;
}

int run(const std::string& name, Config& c, const std::function<std::shared_ptr<nn::Module>()>& make_model) {
  if (c.threads > 0) set_num_threads(c.threads);
  manual_seed(c.seed);
  const Device device(c.device);
  WEFT_CHECK(!c.cuda_graph || device.is_cuda(), "--cuda-graph needs --device cuda");
  WEFT_CHECK(!c.cuda_graph || c.precision == kFloat32, "--cuda-graph runs the float32 step only (drop --precision)");
  if (device.is_cuda()) cuda::set_device(device.index);  // kernels run on the current device
  const FashionMnist mnist = load_data(c);
  // References, not a structured binding: the epoch_end lambda uses `test`, and clang 14
  // (the sanitizer build, which compiles this file for the tests) refuses to capture one.
  const data::TensorDataset &train_set = mnist.train, &test = mnist.test;

  std::shared_ptr<nn::Module> model = make_model();
  model->to(device);
  auto opt = make_optimizer(c.r, model->parameters());
  data::DataLoader loader(train_set, {.batch_size = c.r.batch_size, .shuffle = true, .seed = c.seed});
  optim::CosineWarmupLR schedule = make_schedule(c.r, *opt, loader.num_batches());
  std::printf("%s: %lld parameters, %lld training samples, %d threads, device %s, precision %s\n", name.c_str(),
              static_cast<long long>(model->num_parameters()), static_cast<long long>(train_set.size()), num_threads(),
              device.str().c_str(), dtype_name(c.precision));
  optim::GradScaler scaler({.enabled = c.precision == kFloat16});  // float16's gradients underflow without it
  const int start_epoch = c.resume.empty() ? 0 : resume(c.resume, *model, *opt, schedule, loader.num_batches(), scaler);

  training::Loop loop{.opt = *opt, .schedule = schedule, .loader = loader, .device = device, .epochs = c.r.epochs,
                   .stop_after_epoch = c.stop_after_epoch,
                   .loss_every = device.is_cuda() ? 25 : 1};
  GraphedStep graphed(*model, *opt, c.r.label_smoothing);
  if (c.cuda_graph) loop.step = [&](const std::optional<data::Batch>& b) { return graphed.run(b); };
  else loop.step = training::autocast_step(*model, *opt, c.r.label_smoothing, c.precision, scaler);
  // The model is evaluated in the precision it trains in.
  auto test_accuracy = [&] {
    const Autocast ac = autocast::for_precision(c.precision);
    return evaluate(*model, test, device);
  };

  int64_t mallocs_before = 0;  // on a GPU: cudaMalloc calls before the epoch, to show the allocator's caching
  loop.epoch_begin = [&](int) {
    if (device.is_cuda()) mallocs_before = cuda::memory_stats(device.index).malloc_calls;
  };
  double accuracy = 0;
  loop.epoch_end = [&](int epoch) {
    if (device.is_cuda())
      std::printf("epoch %d: %s; cudaMalloc calls this epoch: %lld\n", epoch + 1,
                  cuda::memory_summary(device.index).c_str(),
                  static_cast<long long>(cuda::memory_stats(device.index).malloc_calls - mallocs_before));
    accuracy = test_accuracy();
    std::printf("epoch %d: test_accuracy=%.4f lr=%.2e%s\n", epoch + 1, accuracy, opt->lr(),
                scaler_text(scaler).c_str());
    // Which CPU GEMM kernels ran, once the first epoch has met every shape (tensor/kernels.h).
    if (epoch == start_epoch && !device.is_cuda()) std::printf("%s\n", gemm_report().c_str());
    if (!c.checkpoint.empty()) {
      optim::Metadata meta = checkpoint_metadata(name, epoch + 1, schedule, loader.num_batches());
      save_scaler(scaler, meta);
      optim::save_checkpoint(c.checkpoint, *model, opt.get(), meta);
    }
  };

  const training::Throughput t = loop.run(start_epoch);
  if (start_epoch >= loop.end_epoch()) accuracy = test_accuracy();
  std::printf("test_accuracy=%.4f train_samples_per_s=%.1f\n", accuracy, t.samples_per_s());
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
