// CommHook: how DistributedDataParallel reduces one gradient bucket across ranks, in the
// manner of PyTorch's DDP communication hooks.
//
// DDP hands the hook a bucket whose flat buffer (parallel/gradient_bucket.h) holds THIS
// rank's gradients (float32; a 16-bit model's buckets, already divided by the world size,
// go to AllReduceHook only); when the hook's work is done the buffer must hold the SUM
// over ranks (exactly or approximately), the same on every rank. DDP then divides by the
// number of contributing ranks, as it always has: the exact and 16-bit hooks need not
// know about join() and uneven inputs. (The error-feedback hooks, PowerSGD and top-k,
// still add and send a rank's residual when that rank had no batch, so their sum then
// holds a little more than the contributors' gradients; it is approximate anyway.)
//
//   DistributedDataParallel ddp(model, comm, {.comm_hook = make_comm_hook("powersgd:4")});
//
// The hooks (one instance per rank: several of them keep per-bucket state):
//   AllReduceHook        exact all-reduce in the bucket's dtype, asynchronous: overlaps backward (default)
//   HalfPrecisionHook    bf16 or fp16 messages in a ring, added in float32      (half_hook.h)
//   PowerSGDHook         rank-r P Q^T with error feedback and warm start     (powersgd_hook.h)
//   TopKHook             the k largest |g| as (index, value), error feedback (topk_hook.h)
//
// SYNCHRONOUS HOOKS. The communicators offer only all-reduce and broadcast as async
// operations. The compressing hooks need their own ring, an allgather, or two
// all-reduces with work in between, so they run blocking, in synchronize(), after
// backward: they do not overlap.
// asynchronous() says which kind a hook is; DDP launches only asynchronous hooks inside
// backward.
//
// BYTES. Each hook counts what this rank sends per bucket, under the cost model of the
// ring algorithms (parallel/algorithms/ring_allreduce.h), which is what the threads and
// MPI backends' bandwidth cost amounts to:
//   all-reduce of B bytes:                    2 (p-1)/p * B   (reduce-scatter + allgather)
//   allgather of B bytes from each rank:        (p-1)   * B
// next to what the float32 all-reduce of the same bucket would send. At p = 2 both are B:
// the counts are then just the payloads. An allgather-based hook's bytes grow with p
// while an all-reduce's stay under 2B: top-k's pairs pay off only while p * k stays
// well under n. stats() sums over steps.
//
// STATE AND CHECKPOINTS. The error-feedback hooks remember, per bucket, what they have
// not sent yet (a residual, different on every rank) and PowerSGD its Q and how many
// reductions it has done. state_dict() returns that memory as named tensors;
// load_state_dict() puts it back into the same buckets, so a resumed run goes on
// exactly as the uninterrupted one would. DDP gathers every rank's state for rank 0's
// checkpoint (ddp.h, "CHECKPOINTS"). The exact and 16-bit hooks keep nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "../nn/module.h"
#include "comm/communicator.h"
#include "gradient_bucket.h"

namespace weft::parallel {

// Bytes one rank sends in the ring algorithms (see above); 0 for a single rank.
int64_t ring_allreduce_bytes(int64_t payload_bytes, int ranks);
int64_t ring_allgather_bytes(int64_t payload_bytes, int ranks);

struct CommStats {
  int64_t steps = 0;          // synchronize() calls
  int64_t bytes_sent = 0;     // by this rank, over all steps
  int64_t float32_bytes = 0;  // what the exact float32 all-reduce would have sent
  double bytes_per_step() const { return steps ? static_cast<double>(bytes_sent) / steps : 0.0; }
  // How many times fewer bytes than float32 (1 for the default; 0 when nothing was sent).
  double compression() const { return bytes_sent ? static_cast<double>(float32_bytes) / bytes_sent : 0.0; }
};

class CommHook {
 public:
  virtual ~CommHook() = default;
  virtual std::string name() const = 0;
  // True when reduce() returns at once with the work on the progress thread.
  virtual bool asynchronous() const { return false; }

  // bucket.flat() holds this rank's gradient; once the returned work completes (nullptr:
  // it already has) it holds the sum over ranks. `index` is the bucket's number in DDP,
  // the same on every rank, for hooks that keep state per bucket. Collective: every rank
  // reduces every bucket, in the same order.
  virtual WorkHandle reduce(size_t index, GradientBucket& bucket, Communicator& comm) = 0;

  // This rank's memory across steps (see STATE above); empty for a stateless hook. Keys
  // are "bucket.<index>.<what>"; a bucket not reduced yet has none.
  virtual nn::NamedTensors state_dict() const { return {}; }
  // True for the hooks with memory across steps (PowerSGD, top-k), before any step too.
  virtual bool keeps_state() const { return false; }
  // Restores what state_dict() returned, for DDP's `buckets` (the same bucketing that
  // saved it). Strict: an unknown key, a missing part or a size that does not match the
  // bucket is an error that names it. The default accepts only an empty state.
  virtual void load_state_dict(const nn::NamedTensors& state, const std::vector<GradientBucket>& buckets);

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  void end_step() { ++stats_.steps; }  // DDP calls it once per synchronize()

 protected:
  // Adds `bytes` sent for a bucket of `numel` floats among `ranks` ranks.
  void count(int64_t bytes, int64_t numel, int ranks);

 private:
  CommStats stats_;
};

// Today's reduction: an async float32 all-reduce that overlaps the rest of backward.
class AllReduceHook : public CommHook {
 public:
  std::string name() const override { return "none"; }
  bool asynchronous() const override { return true; }
  WorkHandle reduce(size_t index, GradientBucket& bucket, Communicator& comm) override;
};

// For the hooks' state_dict / load_state_dict (not for callers of DDP): the keys
// "bucket.<index>.<what>", and a float32 vector read back.
namespace hook_state {
std::string key(size_t index, const std::string& what);
// (index, what) of a key; a key of another form, or an index not below `buckets`, is an
// error naming the hook and the key.
std::pair<size_t, std::string> parse_key(const std::string& hook, const std::string& key, size_t buckets);
// The `n` float32 values under `key` (an error naming the hook, key, dtype and size otherwise).
std::vector<float> floats(const std::string& hook, const std::string& key, const Tensor& t, int64_t n);
}  // namespace hook_state

// A hook from its command-line spelling: "none" (or ""), "bf16", "fp16", "powersgd:R"
// (R >= 1) optionally followed by ",start=N" (N plain all-reduces first) and
// ",min_rate=X" (powersgd_hook.h), "topk:F" (0 < F <= 1). Throws weft::Error naming the
// spec otherwise.
std::shared_ptr<CommHook> make_comm_hook(const std::string& spec);

}  // namespace weft::parallel
