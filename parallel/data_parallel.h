// DataParallel: one process, several devices, one model copy (replica) per device.
//
// Each training step
//
//   batch (B, ...) --scatter along dim 0--> shard r (B_r, ...) on devices[r]
//        replica r, on its own thread: loss_r = loss_fn(replica_r(shard_r), y_r)
//                                      (loss_r * B_r / B).backward()
//   primary.grad += replica_r.grad      for r = 1..N-1, in rank order, on devices[0]
//
// leaves in the primary module's .grad exactly the gradient of the mean loss over the
// whole batch (the B_r / B weights turn N shard means into one batch mean), so the
// optimizer is built on module().parameters() and sees no difference from one device.
// Replica 0 *is* the primary module; the others are refreshed from it at the start of
// every step (parameters and buffers), which keeps them in sync after each optimizer
// step whatever the optimizer did.
//
// Why a thread per replica: weft's tape is per thread (autograd/tape.h), so each replica
// records and walks its own graph with no locking, and the replicas' forward and
// backward passes run at the same time. Each replica thread runs its ops under a
// ThreadLimit of cores / N, so N replicas share the intra-op pool instead of each
// asking for every core.
//
// Logical CPU devices (cpu:0, cpu:1, ...) make this real parallelism on a multi-core
// host with no GPU; with cuda:0, cuda:1 the same code drives GPUs.
//
// SEVERAL TENSORS. A module taking or returning several tensors (nn/module.h,
// forward_many) runs the same way: every input is scattered along dim 0 -- so a per-batch
// mask must carry the batch dimension, (B, ...) -- and the loss function gets each
// replica's whole list of outputs, e.g. (logits, aux_loss) -> ce(logits, y) + aux_loss.
// Each replica's loss is weighted by its share of the batch as above, so a 0-d output
// that is a mean over the replica's rows (an auxiliary loss) enters the gradient as the
// whole batch's mean. forward_many gathers the outputs for evaluation by the same rule:
// concatenated along dim 0, a 0-d output averaged over the replicas weighted by their
// rows (parallel/batch_rows.h says why, and how PyTorch differs).
//
// DataParallel is the simple, single-process design: the primary device does all the
// reduction and every replica is re-copied each step. DistributedDataParallel
// (parallel/ddp.h) is the one that scales: one process (or thread) per rank, gradients
// all-reduced in buckets while backward is still running. See docs/data-parallel.md.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "../nn/replicate.h"
#include "batch_rows.h"

namespace weft::parallel {

// (output, target) -> the mean loss over the shard, a one-element tensor.
using LossFn = std::function<Tensor(const Tensor& output, const Tensor& target)>;
// The same for a module returning several tensors: (its outputs, target) -> the loss.
using MultiLossFn = std::function<Tensor(const nn::Tensors& outputs, const Tensor& target)>;

class DataParallel {
 public:
  // `module` becomes the primary replica and is moved to devices[0]; the others are its
  // clones (Module::clone), one per further device. Devices must be distinct.
  DataParallel(std::shared_ptr<nn::Module> module, std::vector<Device> devices);
  // The same, with the replicas built by `make` (see nn/replicate.h): for a module of
  // your own that does not override make_fresh().
  DataParallel(std::shared_ptr<nn::Module> module, nn::ModuleFactory make, std::vector<Device> devices);

  // One forward and backward over the batch x (B, ...), y (B, ...), both on any one
  // device: adds d(mean loss)/d(param) into the primary module's .grad (like a
  // backward: zero the grads first, or accumulate on purpose). Returns the mean loss
  // over the whole batch. With B < N devices, only the first B replicas get work.
  double forward_backward(const Tensor& x, const Tensor& y, const LossFn& loss_fn);
  // The same for a module taking several tensors: each input (B, ...) is scattered.
  double forward_backward(const nn::Tensors& inputs, const Tensor& y, const MultiLossFn& loss_fn);

  // Evaluation: the module's outputs for the whole batch, on devices[0], computed by the
  // replicas in parallel and gathered (concatenated along dim 0; 0-d outputs averaged,
  // weighted by rows). Runs without the tape -- each replica records on its own thread,
  // out of reach of a backward on this one; training goes through forward_backward.
  nn::Tensors forward_many(const nn::Tensors& inputs);
  Tensor forward(const Tensor& x);  // one tensor in, one out

  // Copies the primary's parameters and buffers into every other replica. The next
  // forward_backward does it anyway; call it to inspect the replicas after a step.
  void sync_replicas();

  nn::Module& module() { return *replicas_[0]; }  // the primary: optimize, evaluate, save this
  const std::shared_ptr<nn::Module>& replica(size_t r) const { return replicas_.at(r); }
  const std::vector<Device>& devices() const { return devices_; }
  size_t num_replicas() const { return replicas_.size(); }

  // How many samples of a batch of B replica r gets: B / N, the first B % N replicas
  // one more, so shard sizes differ by at most one.
  static int64_t shard_size(int64_t batch, size_t num_replicas, size_t r);

 private:
  // Rows [start, end) of the batch for each replica that gets some (the first min(B, N)).
  RowRanges shards(int64_t batch) const;
  // Runs work(r) for r < n, replica 0 on this thread and the others on threads of their
  // own, each with an equal slice of this thread's cores; rethrows the first error.
  void on_replicas(size_t n, const std::function<void(size_t)>& work);
  // Forward and backward of replica r on its shard; returns its weighted loss.
  double run_replica(size_t r, const nn::Tensors& inputs, const Tensor& y, const RowRanges& rows,
                     const MultiLossFn& loss_fn);
  // primary.grad += replica_r.grad for every replica r > 0 that got samples.
  void reduce_gradients(size_t replicas_used);

  std::vector<Device> devices_;
  std::vector<std::shared_ptr<nn::Module>> replicas_;  // [0] is the primary
};

}  // namespace weft::parallel
