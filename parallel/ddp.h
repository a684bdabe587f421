// DistributedDataParallel: one model replica per rank, gradients averaged across ranks
// by all-reduce, overlapped with backward.
//
// Each rank (a thread of the "threads" backend, a process under mpirun, a GPU under
// NCCL) builds the same model and wraps it:
//
//   DistributedDataParallel ddp(model, comm);      // checks + broadcasts rank 0's params
//   optim::SGD opt(model->parameters(), {.lr = 0.1});
//   for (const Batch& b : loader) {                 // loader with a DistributedSampler
//     opt.zero_grad();
//     Tensor loss = nn::cross_entropy(ddp(b.x), b.y);
//     loss.backward();     // buckets all-reduce as their gradients become final
//     ddp.synchronize();   // wait for them: every rank's .grad = the mean over ranks
//     opt.step();          // identical grads + identical params = identical steps
//   }
//
// CONSTRUCTION. verify_same_parameters (parallel/parameter_check.h) makes sure all ranks
// hold the same parameter names and shapes, then rank 0's parameters and buffers are
// broadcast so every replica starts from the same point.
//
// BUCKETS AND OVERLAP. Parameters are grouped, in reverse registration order, into
// buckets of at most bucket_cap_mb (parallel/gradient_bucket.h). A grad-ready hook on
// every parameter (autograd/tape.h) counts down its bucket; when the bucket's last
// gradient is final, its gradients are copied into the bucket's flat buffer and an
// allreduce_async starts on the communicator's progress thread, while backward goes on
// computing the earlier layers. Buckets are launched strictly in order (bucket 1 waits
// for bucket 0), because every rank must issue its collectives in the same order.
// synchronize() launches whatever is left (a bucket whose parameters backward never
// reached counts as zero gradient), waits for every bucket, divides by the number of
// contributing ranks and copies the means back into .grad. With overlap = false no
// bucket is launched during backward: synchronize() does them all (to measure what the
// overlap buys).
//
// GRADIENT ACCUMULATION. Inside a no_sync() guard the hooks do nothing: backward only
// accumulates into the local .grad. The next backward outside the guard all-reduces the
// accumulated sum, so k micro-batches cost one all-reduce.
//
// DETERMINISTIC MODE. A float all-reduce's result depends on the order in which the
// ranks' values are added (the ring adds chunk by chunk, starting at a different rank
// for each chunk), so it is not reproducible bit for bit across world sizes or
// backends. With deterministic = true, synchronize() instead allgathers every rank's
// bucket and computes, on every rank,
//     mean = (((g_0 + g_1) + g_2) + ... + g_{n-1}) / n         (float32, rank order)
// GUARANTEE: given the same initial parameters, the parameters after any number of steps
// are bit-identical to those of ONE process that, for each step, computes the gradient
// of each shard r = 0..n-1 separately (the same shards, the same per-shard mean loss,
// the same intra-op thread count) and combines them with that same expression. It is
// not bit-identical to a single backward over the concatenated batch: that sums over
// the batch inside the GEMMs in another order, so only equal within float tolerance.
// Deterministic mode does not overlap (the sum needs all ranks' buckets) and moves n
// times the data of an all-reduce: it is for checking, not for speed.
//
// UNEVEN INPUTS. When ranks have different numbers of batches, a rank that ran out
// would otherwise leave the others waiting forever in their next all-reduce. So each
// step starts with join(has_batch), a tiny all-reduce counting the ranks that still
// have data: 0 ends the loop on every rank together; otherwise a rank without data
// skips forward/backward but still calls synchronize() -- it contributes zeros to every
// bucket (shadowing the others' collectives) -- and still steps its optimizer, so it
// keeps the same parameters. The gradient is averaged over the ranks that had data.
//
//   for (;;) {
//     std::optional<Batch> b = loader.next();
//     if (ddp.join(b.has_value()) == 0) break;   // everyone is done
//     opt.zero_grad();
//     if (b) nn::cross_entropy(ddp(b->x), b->y).backward();
//     ddp.synchronize();
//     opt.step();
//   }
//
// CHECKPOINTS. ddp.module() is the model itself, unwrapped: rank 0 saves
// ddp.module().state_dict() (or optim::save_checkpoint(path, ddp.module(), &opt)) with
// exactly the keys a single-process run would write. A comm hook with memory (PowerSGD,
// top-k) holds a different residual on every rank: gather_comm_hook_state() brings all
// ranks' state to every rank, for rank 0 to save beside the model, and
// load_comm_hook_state() hands each rank its own part back:
//
//   nn::NamedTensors hook_state = ddp.gather_comm_hook_state();   // every rank: collective
//   if (comm->rank() == 0) optim::save_checkpoint(path, ddp.module(), &opt, meta, hook_state);
//   ...
//   nn::NamedTensors extra;                                       // every rank, on resume
//   optim::load_checkpoint(path, ddp.module(), &opt, &extra);
//   ddp.load_comm_hook_state(extra);
//
// COMMUNICATION HOOKS. How a bucket is reduced is a CommHook (parallel/comm_hook.h),
// PyTorch's comm hooks: the default all-reduces the buckets exactly and asynchronously,
// as described above (in the parameters' dtype: a bfloat16 or float16 model's buckets
// are 16-bit, and so is what they send; one dtype per bucket); make_comm_hook("bf16" | "fp16" | "powersgd:R" | "topk:F") compresses
// the traffic, runs after backward (synchronous: no overlap) and leaves an approximate
// sum that DDP divides by the contributing ranks as usual. Give each rank its own hook
// (they keep per-bucket state); comm_hook().stats() counts the bytes sent.
//
// TIMELINE. With tracing on (parallel::trace::enable(), parallel/trace.h), each rank
// records on its compute lane "forward", "backward" (when run through ddp.backward(loss)),
// a short "launch bucket" slice inside backward where each bucket's all-reduce is
// posted, and "synchronize"; the communicator records the all-reduce itself on the
// progress thread's lane ("allreduce", with the element count). A bucket's all-reduce
// runs from its launch slice to the end of the matching allreduce span, and Perfetto
// shows those spans lying under the rest of backward: that is the overlap.
#pragma once

#include <memory>
#include <vector>

#include "../nn/module.h"
#include "comm/communicator.h"
#include "comm_hook.h"
#include "gradient_bucket.h"

namespace weft::parallel {

struct DDPOptions {
  double bucket_cap_mb = 25;   // the most gradient bytes per bucket, in MiB
  bool overlap = true;         // launch each bucket's all-reduce during backward
  bool deterministic = false;  // fixed rank-order sum (see above); implies no overlap
  // How buckets are reduced (comm_hook.h); null: the exact async all-reduce. One per rank.
  std::shared_ptr<CommHook> comm_hook;
};

class DistributedDataParallel {
 public:
  // Collective: every rank constructs its DDP at the same point. Throws weft::Error,
  // on every rank, when the ranks' models differ.
  DistributedDataParallel(std::shared_ptr<nn::Module> module, std::shared_ptr<Communicator> comm,
                          const DDPOptions& opt = {});
  ~DistributedDataParallel();  // removes the hooks
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // A module taking or returning several tensors (nn/module.h): ddp({x, mask}) gives
  // the module's list, e.g. (logits, aux_loss). Nothing else differs: the gradients of
  // whatever loss is built from the outputs are all-reduced as above.
  nn::Tensors forward_many(const nn::Tensors& inputs);
  nn::Tensors operator()(const nn::Tensors& inputs) { return forward_many(inputs); }
  // loss.backward(), recorded as a "backward" span on the timeline.
  void backward(const Tensor& loss);

  // Waits for every bucket's all-reduce (launching those not yet launched) and leaves
  // in each parameter's .grad the mean over the contributing ranks. Collective.
  void synchronize();

  // While the returned guard lives, backward accumulates locally and communicates
  // nothing; synchronize() may not be called.
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& ddp) : ddp_(ddp), prev_(ddp.sync_enabled_) { ddp.sync_enabled_ = false; }
    ~NoSyncGuard() { ddp_.sync_enabled_ = prev_; }
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool prev_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  // Collective, at the start of each step: how many ranks have data this step (0: all
  // are done). A rank that passes false contributes zeros at the next synchronize().
  int join(bool has_data);

  nn::Module& module() { return *module_; }
  const std::shared_ptr<nn::Module>& module_ptr() const { return module_; }
  Communicator& comm() { return *comm_; }
  const std::vector<GradientBucket>& buckets() const { return buckets_; }
  const DDPOptions& options() const { return opt_; }
  CommHook& comm_hook() { return *hook_; }  // the default AllReduceHook when none was given

  // Collective. Every rank's comm_hook().state_dict() (comm_hook.h, STATE), each key as
  // "rank<r>.<key>", on every rank: one allgather per tensor, so world size times one
  // rank's state (PowerSGD, top-k: about one gradient's size each). Empty for a stateless
  // hook. Throws, on every rank, when the ranks' states differ in tensor count or size.
  nn::NamedTensors gather_comm_hook_state();
  // This rank's part of a gather_comm_hook_state() result into the hook (strictly: see
  // CommHook::load_state_dict). An error when it does not hold exactly ranks 0..p-1 of
  // this DDP (another world size, or a rank's part missing). Not collective.
  void load_comm_hook_state(const nn::NamedTensors& all);

 private:
  void build_buckets();
  void on_grad_ready(size_t bucket);
  void launch(size_t bucket);
  void launch_ready_buckets();  // in order, as far as the ready ones go
  void fixed_order_mean(GradientBucket& b);
  double unpack_divisor(const GradientBucket& b) const;
  void reset_round();

  std::shared_ptr<nn::Module> module_;
  std::shared_ptr<Communicator> comm_;
  DDPOptions opt_;
  std::shared_ptr<CommHook> hook_;
  std::vector<GradientBucket> buckets_;
  std::vector<std::pair<Tensor, int>> hooks_;  // (parameter, hook id) to remove at the end
  size_t next_launch_ = 0;  // buckets [0, next_launch_) are launched this round
  bool sync_enabled_ = true;
  bool has_data_ = true;    // this rank's answer to the last join()
  int contributors_;        // ranks whose gradients the next synchronize() averages
};

}  // namespace weft::parallel
