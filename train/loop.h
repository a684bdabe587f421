// The one training loop of the samples: epochs of steps over a DataLoader, each step
// followed by the learning-rate schedule, with a progress bar and a count of the
// samples per second. What differs between the samples comes in as hooks:
//
//   sample        step                     around the step           end of an epoch
//   train_mlp/cnn plain_step, or a CUDA    -                         evaluate, checkpoint
//                 graph of it
//   train_ddp     forward and backward     ranks_in_step: DDP's      evaluate on all ranks,
//                 through DDP, all-reduce  join (uneven inputs)      checkpoint on rank 0
//   train_pruned  plain_step               pruning schedules,        evaluate, sparsity,
//                                          RigL's drop and grow      checkpoint
//
// A sample fills in what it needs and runs it:
//
//   samples::Loop loop{.opt = *opt, .schedule = schedule, .loader = loader, .device = device,
//                      .epochs = r.epochs, .step = samples::plain_step(*model, *opt, r.label_smoothing)};
//   loop.epoch_end = [&](int epoch) { std::printf("%.4f\n", samples::evaluate(*model, test, device)); };
//   samples::Throughput t = loop.run();
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "../data/data.h"
#include "../nn/nn.h"
#include "../optim/optim.h"

namespace weft::train {

// Samples trained and seconds spent training (evaluation excluded), over all epochs.
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
  // What it drives. The sample builds these (and loads a checkpoint into them).
  optim::Optimizer& opt;         // read only: the hooks get opt.steps_taken()
  optim::LRScheduler& schedule;  // stepped after every optimizer step
  data::DataLoader& loader;
  Device device;                 // where each batch is copied before its step
  int epochs;                    // run() trains epochs first_epoch .. epochs-1

  // The progress line.
  std::string label = "";        // put before "epoch e/E", e.g. "round 2/4 "
  bool show_progress = true;     // train_ddp: rank 0 only
  // Read the loss back for the bar every N steps. On a GPU each read waits until the
  // GPU has caught up with the host, so the trainer reads every 25th there.
  int64_t loss_every = 1;

  // Hooks. `step` is required; the others may stay empty.
  StepFn step = {};
  // How many ranks take part in the step about to run, given whether this process has
  // a batch for it; 0 ends the epoch. Empty: 1 with a batch, 0 without (one process).
  // train_ddp answers with DistributedDataParallel::join, so that a rank out of data
  // keeps joining the others' all-reduces until every rank is.
  std::function<int(bool has_batch)> ranks_in_step = {};
  // Just before `step`, and just after it and the LR schedule's step, with the number of
  // optimizer steps taken so far (train_pruned: pruning, RigL's drop and grow).
  std::function<void(int64_t steps_taken)> before_step = {}, after_step = {};
  // Before an epoch's clock starts (train_ddp: a barrier, so that all ranks start
  // together), and after it stops and the bar is finished (evaluation, checkpoints).
  std::function<void(int epoch)> epoch_begin = {}, epoch_end = {};

  // Trains epochs first_epoch .. epochs-1 (a resumed run starts later).
  Throughput run(int first_epoch = 0);
};

// The plain step: zero_grad, cross-entropy (with label smoothing) of model(x) and y,
// backward, opt.step(). Always given a batch (one process never runs a step without).
StepFn plain_step(nn::Module& model, optim::Optimizer& opt, double label_smoothing);

}  // namespace weft::train
