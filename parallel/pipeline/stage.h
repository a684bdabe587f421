// PipelineStage: one stage of a pipeline, running its list of a schedule's actions.
//
// A batch is cut into m microbatches. Stage s holds a block of the model's layers
// (shard.h cuts it) and, for each action of its list in the schedule (schedule.h):
//
//   F(mb)  input = stage 0 ? microbatch mb of x : recv activation from stage s - 1
//          out   = layers(input)                 (recorded on this thread's tape)
//          last stage: loss_mb = loss(out, y_mb) * rows_mb / rows  (a share of the batch mean)
//          else:       send out to stage s + 1
//   B(mb)  last stage: loss_mb.backward()
//          else:       grad = recv from stage s + 1; out.backward(grad)
//          stage > 0:  send input.grad to stage s - 1
//
// The stage keeps (input, out) of every microbatch between its F and its B: that is the
// activation memory a schedule costs, and why 1F1B, which starts backwards early, holds
// fewer microbatches at once than GPipe.
//
// The loss is the mean over the whole batch, not over each microbatch: each
// microbatch's mean loss is weighted by its share of the rows, so the gradients do not
// depend on m. Gradients accumulate into .grad over the microbatches in the order of
// the stage's B actions; a pipelined step therefore equals, bit for bit on the CPU, one
// device running the same microbatches in the same order with the same weights
// (tests/parallel/pipeline/test_pipeline.cpp checks it).
//
// SEVERAL TENSORS PER MICROBATCH. The layers may take and return lists of tensors
// (nn/module.h, forward_many): a transformer block's (x, mask), a model's (logits,
// aux_loss). train_step(schedule, {x, mask}, y, loss) cuts every input into the same
// microbatch rows (each needs the batch along dim 0: a shared mask is expanded to
// (B, ...) first); each stage runs forward_many on its microbatch's list; the list
// crosses to the next stage whole, and the loss (a MultiLossFn) gets the last stage's
// list. Backward returns a gradient only for the tensors that need one -- floating-point
// and on the tape: an integer id or bool mask crosses forward only. The sender marks
// each tensor in its header, so the receiver never has to guess (messages.h).
//
// Only send/recv of the Communicator are used, so the same code runs stages as threads
// of one process (the threads backend, each stage on its own cpu:k), as processes under
// mpirun, or on GPUs. Sends are non-blocking (isend): two neighbours sending to each
// other at the same time -- an activation one way, a gradient the other, as 1F1B does --
// cannot deadlock. An activation crosses as a small header (dtype, shape) then its data,
// so the receiver needs to know nothing in advance (messages.h).
//
// ACTIVATION RECOMPUTATION (set_recompute, torchgpipe's modes): instead of keeping a
// microbatch's activations from its F to its B, a stage keeps only its input, runs F
// without the tape, and runs the forward again just before B. `always` does this for
// every microbatch, `except_last` for all but the last (whose B follows soonest), `never`
// (the default) for none. It costs a second forward and saves the activations: on
// stage s the memory of up to p - s microbatches. The gradients are bit-identical:
// dropout draws the same masks (tensor/generator.h, RecordDraws / ReplayDraws) and
// BatchNorm does not update its running statistics twice (nn::RecomputeGuard).
//
// MODEL CHUNKS (interleaved schedules, schedule.h). A stage may hold v chunks instead of
// one block: chunk c is virtual stage c * p + s. The rules above then apply per virtual
// stage: the model's input enters virtual stage 0 (stage 0's chunk 0), the loss is taken
// on virtual stage p v - 1 (the last stage's last chunk), and an activation of chunk c
// on stage p-1 goes to chunk c+1 on stage 0. Each chunk's messages have their own tags,
// so a stage receiving for two chunks from one neighbour never mixes them up.
//
// DATA PARALLEL STAGES (set_data_parallel, 2-D parallelism). In a grid of R replicas x
// P stages, stage s of every replica holds the same layers; wrapped in a
// DistributedDataParallel over those R ranks (Communicator::split), its gradients are
// averaged across the replicas as the step's last backward of each parameter produces
// them (the earlier microbatches only accumulate, as under no_sync()), overlapped with
// the rest of that backward; train_step then waits for the all-reduces.
//
// DEVICES. Stages on GPUs exchange activations with NCCL's send/recv (the nccl backend,
// GPU memory to GPU memory). Over the threads or MPI backend a stage on a GPU copies
// each message to the CPU and back, so a pair cpu:0 + cuda:0 runs on a one-GPU machine.
//
// A stage that fails (an exception in a layer, a peer gone, a timeout) throws an error
// naming the stage, the action and the microbatch; the communicator then marks it gone,
// so the others fail at once instead of hanging.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../../nn/module.h"
#include "../comm/communicator.h"
#include "../ddp.h"
#include "messages.h"
#include "schedule.h"

namespace weft::parallel::pipeline {

// (output, target) -> the mean loss over the microbatch's rows, a one-element tensor.
using LossFn = std::function<Tensor(const Tensor& output, const Tensor& target)>;
// The same for layers returning several tensors: (the last stage's outputs, target).
using MultiLossFn = std::function<Tensor(const nn::Tensors& outputs, const Tensor& target)>;

enum class Recompute { Never, ExceptLast, Always };
// "never", "except_last" or "always"; throws naming the flag value otherwise.
Recompute parse_recompute(const std::string& name);

// What one step looked like from this stage.
struct StageStats {
  double wall_ms = 0;            // the whole step on this stage
  double busy_ms = 0;            // computing (F, B and W), not waiting for a neighbour
  double allreduce_ms = 0;       // data parallel stages: waiting for the replicas' all-reduce at the end
  int peak_in_flight = 0;        // microbatches held between their F and their B at once
  int64_t peak_step_bytes = 0;   // the device's peak during the step above its start (tensor/memory.h)
  int64_t transposed_bytes = 0;  // of that, Linear's transposed weights kept for the step (nn/linear.h);
                                 // the rest is activations, new .grad buffers and temporaries
  int64_t sent_bytes = 0;        // activations and input gradients sent to the neighbours (payload only)
};

class PipelineStage {
 public:
  // This rank is stage comm->rank() of comm->size(). `layers` run on `device` (move them
  // there first: shard() does). intra_op_threads > 0 caps the ops' threads on this stage.
  PipelineStage(std::shared_ptr<Communicator> comm, std::shared_ptr<nn::Module> layers, Device device,
                int intra_op_threads = 0);
  // The same with several model chunks (interleaved schedules): chunks[c] is virtual
  // stage c * comm->size() + comm->rank(). Needs at least two stages when v > 1.
  PipelineStage(std::shared_ptr<Communicator> comm, std::vector<std::shared_ptr<nn::Module>> chunks, Device device,
                int intra_op_threads = 0);

  // One training step of `schedule` (its stage count must be comm->size()) over the
  // batch: stage 0 reads x, the last stage y; others may pass undefined tensors. Adds
  // d(mean loss over the batch)/d(param) into the layers' .grad. Returns that mean loss
  // on the last stage, 0 elsewhere.
  double train_step(const PipelineSchedule& schedule, const Tensor& x, const Tensor& y, const LossFn& loss);
  // The same with several input tensors, each cut into the same microbatches along dim 0
  // (stage 0 reads them; others may pass {}), and a loss of the last stage's outputs.
  double train_step(const PipelineSchedule& schedule, const nn::Tensors& xs, const Tensor& y,
                    const MultiLossFn& loss);

  // Activation recomputation (above); Never by default.
  void set_recompute(Recompute r) { recompute_ = r; }
  // Mixed precision: every forward of this stage's chunks (recomputed ones included) and
  // the loss run under Autocast(kBFloat16), so the activations and their gradients
  // cross the stage boundaries in 16 bits, half float32's bytes (docs/mixed-precision.md).
  // kFloat32 (the default) turns it off. kFloat16 works the same way, and its gradients
  // need a loss scale: the caller's loss function multiplies by it (GradScaler::scale),
  // and every stage steps through a GradScaler whose `agree` all-reduces the found-inf
  // flag over all stages (and replicas), so that all skip or all step.
  void set_precision(DType precision);
  // 2-D parallelism (above): `replicas` are the ranks holding this same stage in every
  // replica (this one included), e.g. world.split(stage, replica). Collective over them:
  // it wraps this stage's chunks in a DistributedDataParallel (checking that the
  // replicas' parameters match and broadcasting replica 0's), and from then on they all
  // call train_step together. nullptr turns it off.
  void set_data_parallel(std::shared_ptr<Communicator> replicas, const DDPOptions& options = {});
  // The data-parallel wrapper, when set (its buckets, its communicator); else nullptr.
  const std::shared_ptr<DistributedDataParallel>& data_parallel() const { return ddp_; }

  // Forward only, without the tape, in `microbatches` pieces: the output for the whole
  // batch on the last stage (undefined elsewhere). Evaluation uses it.
  Tensor forward(const Tensor& x, int microbatches);
  // The same for several inputs and outputs: on the last stage each output for the
  // whole batch, gathered like DataParallel's (parallel/batch_rows.h): concatenated
  // along dim 0, a 0-d one averaged over the microbatches weighted by their rows.
  nn::Tensors forward(const nn::Tensors& xs, int microbatches);

  int stage() const { return comm_->rank(); }
  int num_chunks() const { return int(chunks_.size()); }
  int num_stages() const { return comm_->size(); }
  bool is_first() const { return stage() == 0; }
  bool is_last() const { return stage() == num_stages() - 1; }
  Device device() const { return device_; }
  const StageStats& last_stats() const { return stats_; }

 private:
  struct InFlight;
  // Virtual stages (schedule.h): chunk c of this stage, the model's first and last.
  int virtual_stage(int chunk) const { return chunk * num_stages() + stage(); }
  bool model_input(int chunk) const { return virtual_stage(chunk) == 0; }
  bool model_output(int chunk) const { return virtual_stage(chunk) == num_stages() * num_chunks() - 1; }
  // A microbatch's list of activations from the previous virtual stage (messages.h),
  // moved to this stage's device.
  Activations receive_activations(int chunk);
  void send_activations(const nn::Tensors& ts, const std::vector<bool>& wants_grad, int64_t rows, int chunk);
  void send_input_gradients(const InFlight& f, int chunk);
  // Chunk c's forward of one microbatch's list, and the last chunk's loss of it.
  nn::Tensors run_chunk(int chunk, const nn::Tensors& inputs);
  Tensor scaled_loss(const InFlight& f);
  void forward_action(const Action& a, InFlight& f, const std::vector<nn::Tensors>& xs, const std::vector<Tensor>& ys,
                      int64_t rows);
  void backward_action(const Action& a, InFlight& f, bool split);
  void weight_action(const Action& a, InFlight& f);
  void wait_sends();
  void reap_sends();
  void recompute_forward(InFlight& f, int chunk);
  void check_schedule(const PipelineSchedule& schedule) const;
  // Where messages travel: NCCL sends from GPU memory; the threads and MPI backends from
  // host memory, so a stage on a GPU stages its messages through the CPU there.
  Device wire() const;

  std::shared_ptr<Communicator> comm_;
  std::vector<std::shared_ptr<nn::Module>> chunks_;
  std::shared_ptr<DistributedDataParallel> ddp_;
  Device device_;
  int intra_op_threads_;
  PendingSends pending_sends_;  // each send's data stays alive
  StageStats stats_;
  Recompute recompute_ = Recompute::Never;
  DType precision_ = kFloat32;
  const MultiLossFn* loss_ = nullptr;  // during train_step: the loss a recomputed last stage needs
  int microbatches_ = 0;          // during train_step: the schedule's m
};

// Rows [start, end) of each of m microbatches of a batch of n rows: sizes differ by at
// most one, the larger first (torch.tensor_split's rule). Needs 1 <= m <= n.
std::vector<std::pair<int64_t, int64_t>> microbatch_rows(int64_t n, int m);

}  // namespace weft::parallel::pipeline
