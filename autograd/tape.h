// The tape: how weft computes gradients.
//
// HOW IT WORKS. Each thread has a tape, a Wengert list: one entry per differentiable op
// executed while grad mode is on and some input requires grad. An entry holds
//   - where each input's gradient must go: a leaf tensor (a parameter, whose .grad
//     accumulates) or the earlier entry that produced that input;
//   - the tensors the backward formula needs ("saved"), with their version numbers;
//   - the backward closure, written right beside the op's forward (autograd/ops/),
//     which turns dLoss/dOutput into dLoss/dInput for every input.
// Entries are appended in execution order, so the tape is already topologically sorted:
// an entry's inputs were all produced by *earlier* entries.
//
// backward(loss) walks only what loss depends on, in two passes:
//   1. Marking. Starting from loss's entry, follow inputs to the entries that produced
//      them (a search over the graph, visiting each needed entry once). For every
//      needed entry that consumes a leaf, the leaf's "pending" count goes up: it now
//      knows exactly how many gradient contributions the leaf will receive.
//   2. Running. The needed entries, sorted newest first (a reverse topological order,
//      since every input was produced earlier), call their closures with the
//      accumulated gradient of their output and add the results into their inputs'
//      slots. A leaf's pending count goes down with each contribution; when it reaches
//      zero the leaf's gradient is FINAL -- nothing later in the walk can touch it -- and
//      its gradient-ready hooks fire right then, in the middle of backward. Data
//      parallelism starts all-reducing that gradient while backward carries on with the
//      earlier layers; pruning masks it.
// Walked entries are freed (like PyTorch's retain_graph=false). Entries nobody can reach
// any more (their outputs died without a backward, e.g. an eval pass with grad on) are
// collected from time to time, so the tape never grows without bound.
//
// VERSION COUNTERS. Every in-place write bumps its storage's version. An entry records
// the version of each tensor it saves; if it changed by backward time, the saved value
// is not the one the formula needs, and backward throws naming the op.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "../tensor/tensor.h"

namespace weft::autograd {

// ---- grad mode --------------------------------------------------------------------
bool is_grad_enabled();
void set_grad_enabled(bool on);

// Clears the .grad of every tensor in `params` (set_to_none, like PyTorch's default) or
// zeroes it in place (keeping the buffer, e.g. for a bucket that views it). What
// Module::zero_grad and Optimizer::zero_grad both do.
void zero_grad(const std::vector<Tensor>& params, bool set_to_none = true);

// While alive, ops record nothing (inference, optimizer steps, backward itself).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(is_grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// ---- what a backward closure receives ------------------------------------------------
struct BackwardArgs {
  const Tensor& grad;                // dLoss/dOutput, shaped like the output
  std::span<const Tensor> saved;     // the tensors the op saved, checked unchanged
  std::span<const bool> needs_grad;  // needs_grad[i]: does input i want a gradient?
  // grad_into[i], when defined, is input i's .grad: the input is a leaf that already has
  // a gradient of its shape (a later microbatch, gradient accumulation). The closure may
  // add its gradient into it in place and return an undefined Tensor for input i; a
  // weight gradient then comes out of one GEMM with beta = 1 (raw::addmm_) instead of a
  // product written out and added in a second pass. Closures that ignore it lose nothing.
  // Empty when no input is such a leaf.
  std::span<const Tensor> grad_into = {};
};
// Returns one gradient per input, shaped like that input; an undefined Tensor for an
// input that needs none.
using BackwardFn = std::function<std::vector<Tensor>(const BackwardArgs&)>;

// True when grad mode is on and any of the tensors requires grad: the op must record.
bool needs_recording(std::initializer_list<const Tensor*> inputs);
inline bool needs_recording(const Tensor& a) { return needs_recording({&a}); }
inline bool needs_recording(const Tensor& a, const Tensor& b) { return needs_recording({&a, &b}); }

// Appends an entry for `output = name(inputs...)` and marks output as requiring grad.
// `saved` tensors are stored as detached aliases (same storage, no autograd state) and
// handed back to `backward` in BackwardArgs::saved. Returns output.
Tensor record(const char* name, const Tensor& output, std::initializer_list<Tensor> inputs,
              std::initializer_list<Tensor> saved, BackwardFn backward);
Tensor record(const char* name, const Tensor& output, std::span<const Tensor> inputs,
              std::span<const Tensor> saved, BackwardFn backward);

// ---- running backward --------------------------------------------------------------------
// Computes d(root)/d(leaf) for every leaf root depends on and adds it into leaf.grad().
// `grad` is dLoss/dRoot; it may be omitted only when root has one element.
void backward(const Tensor& root, const Tensor& grad = Tensor());

// ---- split backward (zero-bubble pipelines) -------------------------------------------------
// A backward split in two, as zero-bubble pipeline schedules need (Qi et al. 2023): B,
// the gradients someone is waiting for (a pipeline stage's input gradient, which the
// previous stage needs now), and W, the gradients of the weights, which nobody needs
// until the optimizer step. backward_deferring(root, grad, weights) does B now and
// returns W as work to run later: for each op that has a `weights` leaf as an input,
// the same backward closure called again with only those inputs asked for (the idea of
// DeepSeek's WeightGradStore). The closure, its saved tensors and its output gradient
// stay alive until then: deferring W trades memory for filling pipeline bubbles.
// Running it gives exactly the gradients a plain backward gives -- the same formulas on
// the same values -- and a weight's gradient-ready hooks fire when its last pending
// part lands (with several deferred backwards outstanding: once, after the last). Work dropped without running (the object destroyed, or an error) is
// forgotten: those weights stop waiting for it.
struct DeferredWork;
class DeferredGrads {
 public:
  DeferredGrads();
  DeferredGrads(DeferredGrads&&) noexcept;
  DeferredGrads& operator=(DeferredGrads&&) noexcept;
  ~DeferredGrads();
  // Runs every deferred part once, in the order backward met them (newest op first).
  void run();
  size_t size() const { return work_.size(); }
  bool empty() const { return work_.empty(); }

 private:
  friend DeferredGrads backward_deferring(const Tensor&, const Tensor&, const std::vector<Tensor>&);
  void drop();
  std::vector<std::shared_ptr<DeferredWork>> work_;
};
DeferredGrads backward_deferring(const Tensor& root, const Tensor& grad, const std::vector<Tensor>& weights);

// Number of live entries on this thread's tape (for tests and for the curious).
int64_t tape_size();

// ---- per-tensor autograd state -----------------------------------------------------------
class Tape;
struct AutogradMeta {  // (requires_grad itself is TensorImpl::requires_grad)
  bool retains_grad = false;
  Tensor grad;
  // Non-leaf: the tape and the sequence number of the entry that produced this tensor.
  std::shared_ptr<Tape> tape;
  int64_t producer = -1;
  // Leaf: gradient-ready hooks, and the backward-walk bookkeeping described above.
  std::vector<std::pair<int, GradReadyHook>> hooks;
  int next_hook_id = 0;
  int pending = 0;
  // Guards grad and pending of a leaf: backward walks on several threads (each with its
  // own tape) may reach one shared leaf, and each contribution must land.
  std::mutex mutex;
};

// t's autograd state, made on first use (under a lock: two threads may record ops on
// one leaf for the first time at once).
AutogradMeta& meta_of(const Tensor& t);

}  // namespace weft::autograd
