// A training loop: epochs of steps over a DataLoader, each step followed by the
// learning-rate schedule, with a progress line (progress.h) and a count of the samples
// per second. You bring the step and, if you need them, hooks around it; the loop does
// the bookkeeping every training program repeats (set the loader's epoch, copy each
// batch to the device, step the schedule, time the epoch, draw the bar).
//
//   optim::AdamW opt(model->parameters(), {.lr = 1e-3});
//   optim::CosineWarmupLR schedule(opt, 100, epochs * loader.num_batches());
//   training::Loop loop{.opt = opt, .schedule = schedule, .loader = loader, .device = device,
//                    .epochs = epochs, .step = training::plain_step(*model, opt, 0.1)};
//   loop.epoch_end = [&](int epoch) { std::printf("epoch %d: %.4f\n", epoch + 1, my_eval()); };
//   training::Throughput t = loop.run();   // t.samples_per_s()
//
// The order within run(), for each epoch e = first_epoch .. epochs-1:
//
//   loader.set_epoch(e); epoch_begin(e)
//   for each batch:  ranks_in_step(has_batch) -- 0 ends the epoch
//                    before_step(steps taken)  step(batch)  schedule.step()
//                    after_step(steps taken)   progress bar
//   finish the bar; epoch_end(e)
//
// weft's sample programs are all built on it; what differs between them comes in as
// hooks, which shows what each hook is for:
//
//   sample         step                     around the step           end of an epoch
//   train_mlp/cnn  plain_step, or a CUDA    -                         evaluate, checkpoint
//                  graph of it
//   train_ddp      forward and backward     ranks_in_step: DDP's      evaluate on all ranks,
//                  through DDP, all-reduce  join (uneven inputs)      checkpoint on rank 0
//   train_pruned   plain_step               pruning schedules,        evaluate, sparsity,
//                                           RigL's drop and grow      checkpoint
//   train_pipeline one pipelined step of    epoch_begin: a barrier    evaluate, the bubble,
//                  this rank's stage                                  checkpoint
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "../data/data.h"
#include "../nn/nn.h"
#include "../optim/optim.h"
#include "progress.h"

namespace weft::training {

// Samples trained (of all ranks: see ranks_in_step) and seconds spent training
// (epoch_begin and epoch_end, where evaluation goes, excluded), over all epochs.
struct Throughput {
  int64_t samples = 0;
  double seconds = 0;
  double samples_per_s() const { return seconds > 0 ? static_cast<double>(samples) / seconds : 0.0; }
};

// One step on a batch already on the loop's device: zero the gradients, forward,
// backward, optimizer step. Returns the loss, or an undefined tensor when there was no
// batch (only a data-parallel rank out of data gets none: see ranks_in_step).
using StepFn = std::function<Tensor(const std::optional<data::Batch>&)>;

struct Loop {
  // What it drives. The caller builds these (and loads a checkpoint into them).
  optim::Optimizer& opt;         // read only: the hooks get opt.steps_taken()
  optim::LRScheduler& schedule;  // stepped after every optimizer step
  data::DataLoader& loader;
  Device device;                 // where each batch is copied before its step
  int epochs;                    // run() trains epochs first_epoch .. epochs-1
  // > 0: run() returns after epoch number stop_after_epoch (1-based) although `epochs` is
  // larger: one time slice of a longer run (the schedule still spans `epochs`), to be
  // resumed from the checkpoint its epoch_end wrote. It says so on the progress stream.
  int stop_after_epoch = 0;

  // The progress line (progress.h), one bar per epoch.
  std::string label = "";        // put before "epoch e/E", e.g. "round 2/4 "
  bool show_progress = true;     // data parallel: usually rank 0 only
  ProgressOptions progress = {};  // where it goes (stdout), plain quarter lines or not
  // Read the loss back for the bar every N steps. On a GPU each read waits until the
  // GPU has caught up with the host: train_mlp and train_cnn read every 25th there.
  int64_t loss_every = 1;

  // Hooks. `step` is required; the others may stay empty.
  StepFn step = {};
  // How many ranks take part in the step about to run, given whether this process has
  // a batch for it; 0 ends the epoch. Empty: 1 with a batch, 0 without (one process).
  // Data parallel with uneven inputs answers with DistributedDataParallel::join, so that
  // a rank out of data keeps joining the others' all-reduces (its step gets no batch)
  // until every rank is out.
  std::function<int(bool has_batch)> ranks_in_step = {};
  // Just before `step`, and just after it and the LR schedule's step, with the number of
  // optimizer steps taken so far (opt.steps_taken()): pruning schedules, logging.
  std::function<void(int64_t steps_taken)> before_step = {}, after_step = {};
  // Before an epoch's clock starts (data parallel: a barrier, so that all ranks start
  // together), and after it stops and the bar is finished (evaluation, checkpoints).
  std::function<void(int epoch)> epoch_begin = {}, epoch_end = {};

  // Trains epochs first_epoch .. end_epoch()-1 (a resumed run starts later).
  Throughput run(int first_epoch = 0);
  // Where run() stops: epochs, or stop_after_epoch when that comes first. A run resumed
  // at or after it trains nothing (its caller evaluates the loaded model instead).
  int end_epoch() const { return stop_after_epoch > 0 && stop_after_epoch < epochs ? stop_after_epoch : epochs; }
};

// The plain step of a classifier: zero_grad, cross-entropy (with label smoothing) of
// model(x) (N, classes) and y (N) int64, backward, opt.step(). Returns the loss (0-d).
// Needs a batch: a data-parallel rank out of data needs a step of its own.
StepFn plain_step(nn::Module& model, optim::Optimizer& opt, double label_smoothing);

// The same step in mixed precision: the forward and the loss under Autocast(precision)
// (autograd/autocast.h), backward and the update outside it, on the float32 parameters.
// precision is kBFloat16 or kFloat16 (kFloat32 gives plain_step). `scaler` (outliving the
// StepFn) scales the loss and skips a step whose gradients overflowed: what float16
// needs; pass a disabled scaler for bfloat16.
StepFn autocast_step(nn::Module& model, optim::Optimizer& opt, double label_smoothing, DType precision,
                     optim::GradScaler& scaler);

}  // namespace weft::training
