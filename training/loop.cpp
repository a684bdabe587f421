#include "loop.h"

#include <chrono>
#include <cstdio>

#include "../autograd/autocast.h"
#include "../cuda/cuda.h"

namespace weft::training {

StepFn plain_step(nn::Module& model, optim::Optimizer& opt, double label_smoothing) {
  return [&model, &opt, label_smoothing](const std::optional<data::Batch>& b) {
    opt.zero_grad();
    Tensor loss = nn::cross_entropy(model(b->x), b->y, label_smoothing);
    loss.backward();
    opt.step();
    return loss;
  };
}

StepFn autocast_step(nn::Module& model, optim::Optimizer& opt, double label_smoothing, DType precision,
                     optim::GradScaler& scaler) {
  if (precision == kFloat32) return plain_step(model, opt, label_smoothing);
  return [&model, &opt, &scaler, label_smoothing, precision](const std::optional<data::Batch>& b) {
    opt.zero_grad();
    Tensor loss;
    {
      Autocast ac(precision);
      loss = nn::cross_entropy(model(b->x), b->y, label_smoothing);  // float32: on autocast's float32 list
    }
    scaler.scale(loss).backward();
    scaler.step(opt);
    scaler.update();
    return loss;
  };
}

namespace {

// One epoch's steps, until ranks_in_step says 0. Returns the samples trained (of all
// ranks). `bar` may be null.
int64_t run_steps(Loop& loop, data::DeviceStager& stager, ProgressBar* bar) {
  int64_t samples = 0;
  double shown_loss = 0;
  // Once the loader's pass has ended, a rank that ranks_in_step keeps in the epoch steps
  // without a batch: asking the loader again would start its next pass (another epoch).
  bool out_of_data = false;
  for (int64_t i = 0;; ++i) {
    std::optional<data::Batch> b;
    if (!out_of_data) b = loop.loader.next();
    out_of_data = !b;
    const int ranks = loop.ranks_in_step ? loop.ranks_in_step(b.has_value()) : (b ? 1 : 0);
    if (ranks == 0) break;
    if (b) b->x = stager.stage(b->x, 0), b->y = stager.stage(b->y, 1);
    if (loop.before_step) loop.before_step(loop.opt.steps_taken());
    const Tensor loss = loop.step(b);
    loop.schedule.step();
    if (loop.after_step) loop.after_step(loop.opt.steps_taken());
    if (i % loop.loss_every == 0 && loss.defined()) shown_loss = loss.item<double>();  // none without a batch
    // Every rank that took part had a batch of (about) this one's size.
    const int64_t step_samples = (b ? b->size() : 0) * ranks;
    samples += step_samples;
    if (bar) bar->update(step_samples, shown_loss);
  }
  return samples;
}

}  // namespace

Throughput Loop::run(int first_epoch) {
  WEFT_CHECK(step, "training::Loop: the step hook is not set");
  Throughput total;
  data::DeviceStager stager(device);  // on the CPU it hands each batch through
  const int end = end_epoch();
  for (int epoch = first_epoch; epoch < end; ++epoch) {
    loader.set_epoch(epoch);  // the shuffle depends on (seed, epoch) alone: resumed runs match
    std::optional<ProgressBar> bar;
    if (show_progress)
      bar.emplace(detail::str(label, "epoch ", epoch + 1, "/", epochs), loader.num_batches(), progress);
    if (epoch_begin) epoch_begin(epoch);
    const auto t0 = std::chrono::steady_clock::now();
    total.samples += run_steps(*this, stager, bar ? &*bar : nullptr);
    // The host runs ahead of a GPU: stop the clock when the GPU is done too.
    if (device.is_cuda()) cuda::synchronize(device.index);
    total.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (bar) bar->finish();
    if (epoch_end) epoch_end(epoch);
  }
  if (end < epochs && first_epoch < end && show_progress)
    std::fprintf(progress.out, "stopped after epoch %d of %d (stop_after_epoch); resume from its checkpoint to go on\n",
                 end, epochs);
  return total;
}

}  // namespace weft::training
