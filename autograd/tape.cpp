// The tape and the backward walk. Read the header comment in tape.h first.
#include "tape.h"

#include <algorithm>
#include <map>
#include <unordered_set>

#include "../tensor/creation.h"
#include "../tensor/raw.h"

namespace weft::autograd {

// Where an input's gradient goes: a leaf to accumulate into, or the entry that produced
// the input (its sequence number), or nowhere (the input needs no gradient).
struct Edge {
  std::shared_ptr<TensorImpl> leaf;
  int64_t producer = -1;
  bool wants_grad() const { return leaf || producer >= 0; }
};

struct SavedTensor {
  Tensor value;      // a detached alias: same storage, no autograd state
  uint64_t version;  // the storage version when saved
};

struct TapeEntry {
  const char* name;
  std::vector<Edge> inputs;
  std::vector<SavedTensor> saved;
  BackwardFn backward;
  std::weak_ptr<TensorImpl> output;  // identity only: the entry must not keep it alive
  Shape out_shape;
  DType out_dtype;
  Device out_device;
  Tensor grad;  // dLoss/dOutput, accumulated during a backward walk
  bool needed = false;     // set while a backward walk plans to run this entry
  bool reachable = false;  // scratch mark for Tape::collect
};

// Entries keyed by sequence number. A map, not a vector: when an old graph stays
// alive (an output kept for logging), the entries freed after it must not leave holes
// that every later backward or collection has to step over.
class Tape {
 public:
  int64_t append(std::unique_ptr<TapeEntry> e) {
    const int64_t seq = next_seq_++;
    entries_.emplace_hint(entries_.end(), seq, std::move(e));
    if (++appends_since_collect_ >= collect_after_) collect();
    return seq;
  }
  TapeEntry* at(int64_t seq) {
    auto it = entries_.find(seq);
    return it == entries_.end() ? nullptr : it->second.get();
  }
  void release(int64_t seq) { entries_.erase(seq); }
  int64_t live() const { return static_cast<int64_t>(entries_.size()); }

  // Frees entries that no live tensor can reach: an entry is live when its output is
  // still alive or a live entry consumes it. One newest-first pass suffices because
  // consumers come after producers. Runs after as many appends as there were live
  // entries, so its cost per op stays constant.
  void collect() {
    for (auto it = entries_.rbegin(); it != entries_.rend();) {
      TapeEntry* e = it->second.get();
      if (!e->reachable && e->output.expired()) {
        it = std::make_reverse_iterator(entries_.erase(std::next(it).base()));
        continue;
      }
      e->reachable = false;  // reset for the next collection
      for (const Edge& in : e->inputs)
        if (in.producer >= 0)
          if (TapeEntry* p = at(in.producer)) p->reachable = true;
      ++it;
    }
    appends_since_collect_ = 0;
    collect_after_ = std::max<int64_t>(1024, live());
  }

 private:
  std::map<int64_t, std::unique_ptr<TapeEntry>> entries_;
  int64_t next_seq_ = 0;
  int64_t appends_since_collect_ = 0;
  int64_t collect_after_ = 1024;
};

namespace {

thread_local bool t_grad_enabled = true;

const std::shared_ptr<Tape>& this_thread_tape() {
  thread_local std::shared_ptr<Tape> tape = std::make_shared<Tape>();
  return tape;
}

Tensor detached_alias(const Tensor& t) {
  return make_tensor(t.storage(), t.shape(), t.strides(), t.offset(), t.dtype());
}

// dst += g, where dst may be undefined (then it takes g, copying if g is shared).
void accumulate(Tensor& dst, const Tensor& g) {
  if (!dst.defined()) {
    const bool owned = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && g.is_contiguous();
    dst = owned ? g : raw::clone(g);
  } else {
    raw::axpy_(dst, 1.0, g);
  }
}

void check_grad_shape(const TapeEntry& e, size_t i, const Tensor& g, const Shape& want) {
  WEFT_CHECK(g.shape() == want, "backward of ", e.name, ": gradient for input ", i, " has shape ", g.shape(),
             ", expected ", want, " (a bug in the op's backward)");
}

// A gradient takes its input's floating dtype, as in PyTorch: an op that mixes a bfloat16
// and a float32 input (a residual add under autocast) sends each its own type back.
void match_dtype(Tensor& g, DType want) {
  if (g.defined() && g.dtype() != want && is_floating(g.dtype()) && is_floating(want)) g = raw::to_dtype(g, want);
}

// The leaf's .grad when a backward closure may add into it in place (BackwardArgs::
// grad_into): defined, contiguous, and shaped, typed and placed like the leaf.
Tensor accumulation_target(const TensorImpl& leaf) {
  const Tensor& g = leaf.autograd->grad;
  if (!g.defined() || !g.is_contiguous() || g.shape() != leaf.shape || g.dtype() != leaf.dtype ||
      g.device() != leaf.storage->device())
    return Tensor();
  return g;
}

// The contributions a backward walk has counted into leaves' pending counts and not yet
// delivered: on an error they are taken back, leaving other threads' counts alone.
using Owed = std::map<const TensorImpl*, int>;

// Adds one contribution g (undefined: none, or already added in place) into the leaf
// and fires its hooks when it was the last one pending. The hooks run outside the lock:
// they may be slow (DDP starts an all-reduce) or touch other leaves.
void add_to_leaf(const std::shared_ptr<TensorImpl>& leaf_impl, const Tensor& g, Owed& owed) {
  Tensor leaf(leaf_impl);
  auto& m = *leaf_impl->autograd;
  std::vector<std::pair<int, GradReadyHook>> hooks;
  {
    std::lock_guard lock(m.mutex);
    if (g.defined()) {
      WEFT_CHECK(g.shape() == leaf.shape(), "backward: gradient of shape ", g.shape(), " for a leaf of shape ",
                 leaf.shape());
      accumulate(m.grad, g);
    }
    --owed[leaf_impl.get()];
    if (--m.pending == 0) hooks = m.hooks;  // a copy: a hook may register or remove hooks
  }
  for (auto& [id, hook] : hooks) hook(leaf);
}

}  // namespace

AutogradMeta& meta_of(const Tensor& t) {
  static std::mutex making;
  std::lock_guard lock(making);
  auto& m = t.impl()->autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  return *m;
}

bool is_grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }
int64_t tape_size() { return this_thread_tape()->live(); }

bool needs_recording(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->impl()->requires_grad) return true;
  return false;
}

Tensor record(const char* name, const Tensor& output, std::initializer_list<Tensor> inputs,
              std::initializer_list<Tensor> saved, BackwardFn backward) {
  return record(name, output, std::span<const Tensor>(inputs.begin(), inputs.size()),
                std::span<const Tensor>(saved.begin(), saved.size()), std::move(backward));
}

Tensor record(const char* name, const Tensor& output, std::span<const Tensor> inputs,
              std::span<const Tensor> saved, BackwardFn backward) {
  auto e = std::make_unique<TapeEntry>();
  e->name = name;
  const auto& tape = this_thread_tape();
  e->inputs.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    Edge edge;
    if (in.defined() && in.requires_grad()) {
      const AutogradMeta& m = meta_of(in);  // a tensor created with requires_grad has none yet
      if (m.producer < 0) {
        edge.leaf = in.impl_ptr();
      } else {
        WEFT_CHECK(m.tape == tape, name, ": an input was computed on another thread's tape; autograd graphs "
                                         "cannot span threads (detach it, or run the whole step on one thread)");
        edge.producer = m.producer;
      }
    }
    e->inputs.push_back(std::move(edge));
  }
  e->saved.reserve(saved.size());
  for (const Tensor& s : saved)
    e->saved.push_back({s.defined() ? detached_alias(s) : Tensor(), s.defined() ? s.version() : 0});
  e->backward = std::move(backward);
  e->output = output.impl_ptr();
  e->out_shape = output.shape();
  e->out_dtype = output.dtype();
  e->out_device = output.device();
  AutogradMeta& m = meta_of(output);
  output.impl()->requires_grad = true;
  m.tape = tape;
  m.producer = tape->append(std::move(e));
  return output;
}

namespace {

// The values of an entry's saved tensors, each checked unchanged since it was saved.
std::vector<Tensor> saved_values(const char* name, const std::vector<SavedTensor>& saved) {
  std::vector<Tensor> values;
  values.reserve(saved.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    const SavedTensor& s = saved[i];
    if (s.value.defined())
      WEFT_CHECK(s.value.version() == s.version, "backward of ", name, ": saved tensor ", i, " of shape ",
                 s.value.shape(), " was modified in place after ", name, " saved it (version ", s.version, ", now ",
                 s.value.version(), "); clone it before modifying, or make the in-place op out of place");
    values.push_back(s.value);
  }
  return values;
}

// Calls a backward closure for the inputs marked in `needs`; returns one gradient per
// input. Leaves whose .grad the closure may add into in place (BackwardArgs::grad_into)
// stay locked while it runs. Only a lock got without waiting is used (a leaf that
// another thread's backward holds gets its contribution afterwards, like any other),
// and all are released on return, before any blocking lock: no thread ever waits
// holding one.
std::vector<Tensor> call_backward(const char* name, const BackwardFn& fn, const Tensor& grad,
                                  const std::vector<Tensor>& saved, const std::vector<Edge>& inputs,
                                  const bool* needs) {
  const size_t n = inputs.size();
  bool any_leaf = false;
  for (size_t i = 0; i < n; ++i) any_leaf = any_leaf || (needs[i] && inputs[i].leaf);
  std::vector<Tensor> into(any_leaf ? n : 0);  // most entries have no leaf input: no allocation
  std::vector<std::unique_lock<std::mutex>> held;
  for (size_t i = 0; any_leaf && i < n; ++i) {
    const TensorImpl* leaf = inputs[i].leaf.get();
    if (!leaf || !needs[i]) continue;
    bool repeated = false;  // the same leaf twice (x * x): lock it once, offer it to neither
    for (size_t j = 0; j < i; ++j) repeated = repeated || (needs[j] && inputs[j].leaf.get() == leaf);
    if (repeated) {
      for (size_t j = 0; j < i; ++j)
        if (inputs[j].leaf.get() == leaf) into[j] = Tensor();
      continue;
    }
    std::unique_lock lock(leaf->autograd->mutex, std::try_to_lock);
    if (!lock.owns_lock()) continue;
    into[i] = accumulation_target(*leaf);
    if (into[i].defined()) held.push_back(std::move(lock));
  }
  std::vector<Tensor> grads = fn(BackwardArgs{grad, saved, std::span<const bool>(needs, n), into});
  WEFT_CHECK(grads.size() == n, "backward of ", name, ": returned ", grads.size(), " gradients for ", n, " inputs");
  return grads;
}

}  // namespace

// One entry's deferred half (backward_deferring): the gradients of its deferred leaves,
// computed later by the same closure with only those inputs asked for. Until it runs,
// the leaves count it as pending, so their gradient-ready hooks wait for it.
struct DeferredWork {
  const char* name;
  BackwardFn backward;
  std::vector<SavedTensor> saved;
  Tensor grad;
  std::vector<Edge> inputs;  // the deferred leaves; an empty Edge for every other input
  bool open = true;          // not yet run or dropped

  void run() {
    if (!open) return;
    open = false;
    const size_t n = inputs.size();
    auto needs = std::make_unique<bool[]>(n);
    for (size_t i = 0; i < n; ++i) needs[i] = inputs[i].leaf != nullptr;
    std::vector<Tensor> grads;
    try {
      grads = call_backward(name, backward, grad, saved_values(name, saved), inputs, needs.get());
    } catch (...) {
      release();
      throw;
    }
    Owed owed;
    for (size_t i = 0; i < n; ++i)
      if (inputs[i].leaf) {
        ++owed[inputs[i].leaf.get()];
        match_dtype(grads[i], inputs[i].leaf->dtype);
        add_to_leaf(inputs[i].leaf, grads[i], owed);
      }
    grad = Tensor(), saved.clear();  // the activations can go
  }

  // Dropped without running: the leaves stop waiting for it (no hooks fire).
  void release() {
    open = false;
    for (const Edge& in : inputs)
      if (in.leaf) {
        std::lock_guard lock(in.leaf->autograd->mutex);
        --in.leaf->autograd->pending;
      }
  }
};

namespace {

// The leaves whose gradients a walk defers (null: none), and where their work goes.
struct Deferral {
  std::unordered_set<const TensorImpl*> leaves;
  std::vector<std::shared_ptr<DeferredWork>> work;
};

// Runs one entry's closure and routes the input gradients. Inputs that are deferred
// leaves get none now: their half goes into a DeferredWork instead.
void run_entry(Tape& tape, TapeEntry& e, Owed& owed, Deferral* deferral) {
  const size_t n = e.inputs.size();
  const std::vector<Tensor> saved = saved_values(e.name, e.saved);
  auto now = std::make_unique<bool[]>(n), later = std::make_unique<bool[]>(n);
  bool any_now = false, any_later = false;
  for (size_t i = 0; i < n; ++i) {
    later[i] = deferral && e.inputs[i].leaf && deferral->leaves.count(e.inputs[i].leaf.get());
    now[i] = e.inputs[i].wants_grad() && !later[i];
    any_now = any_now || now[i], any_later = any_later || later[i];
  }
  std::vector<Tensor> grads(n);
  bool deferred = false;
  if (e.grad.defined()) {
    // Moved out so a gradient that passes straight through (add, views) is owned by
    // the result alone and the receiver can take it without a copy.
    const Tensor grad = std::move(e.grad);
    if (any_later) {
      auto w = std::make_shared<DeferredWork>(DeferredWork{e.name, e.backward, e.saved, grad, {}});
      w->inputs.resize(n);
      for (size_t i = 0; i < n; ++i)
        if (later[i]) w->inputs[i] = e.inputs[i];
      deferral->work.push_back(std::move(w));
      deferred = true;
    }
    if (any_now || !any_later) grads = call_backward(e.name, e.backward, grad, saved, e.inputs, now.get());
  }
  for (size_t i = 0; i < n; ++i) {
    const Edge& in = e.inputs[i];
    if (in.leaf) {
      if (later[i] && deferred) continue;  // its DeferredWork delivers it
      if (grads[i].defined()) check_grad_shape(e, i, grads[i], in.leaf->shape);
      match_dtype(grads[i], in.leaf->dtype);
      add_to_leaf(in.leaf, grads[i], owed);
    } else if (in.producer >= 0 && grads[i].defined()) {
      TapeEntry* p = tape.at(in.producer);
      check_grad_shape(e, i, grads[i], p->out_shape);
      match_dtype(grads[i], p->out_dtype);
      accumulate(p->grad, grads[i]);
    }
  }
}

void run_needed(Tape& tape, const std::vector<int64_t>& needed, Owed& owed, Deferral* deferral);

}  // namespace

namespace {
// backward's walk; with a deferral, the deferred leaves' halves are collected in it.
void walk(const Tensor& root, const Tensor& grad_in, Deferral* deferral) {
  WEFT_CHECK(root.defined(), "backward: the tensor is undefined");
  WEFT_CHECK(root.requires_grad(), "backward: the tensor does not require grad (no input of the computation "
                                   "that made it has requires_grad, or it was computed under NoGradGuard)");
  Tensor grad = grad_in;
  if (!grad.defined()) {
    WEFT_CHECK(root.numel() == 1, "backward: the output has shape ", root.shape(),
               "; backward() without a gradient needs a one-element output, so reduce it (e.g. .sum()) or "
               "call backward(grad) with a gradient of that shape");
    grad = ones(root.shape(), {.dtype = root.dtype(), .device = root.device()});
  }
  WEFT_CHECK(grad.shape() == root.shape(), "backward: gradient shape ", grad.shape(), " does not match output shape ",
             root.shape());
  raw::check_same("backward", grad, root);
  NoGradGuard no_grad;  // backward formulas are not themselves recorded

  AutogradMeta& rm = meta_of(root);
  Owed owed;
  if (rm.producer < 0) {  // a leaf: d(root)/d(root) = grad
    {
      std::lock_guard lock(rm.mutex);
      ++rm.pending, ++owed[root.impl()];
    }
    add_to_leaf(root.impl_ptr(), grad, owed);
    return;
  }
  Tape& tape = *rm.tape;
  const int64_t top = rm.producer;
  WEFT_CHECK(tape.at(top), "backward: the graph of this tensor was already freed by an earlier backward; "
                           "recompute the forward pass");

  // Pass 1: mark what root depends on (a breadth-first search from root's entry); count
  // each leaf's incoming contributions.
  std::vector<int64_t> needed{top};
  std::map<const TensorImpl*, std::shared_ptr<TensorImpl>> leaves;  // alive until the walk ends
  tape.at(top)->needed = true;
  try {
    for (size_t k = 0; k < needed.size(); ++k) {
      TapeEntry* e = tape.at(needed[k]);
      for (const Edge& in : e->inputs) {
        if (in.leaf) {
          std::lock_guard lock(in.leaf->autograd->mutex);
          ++in.leaf->autograd->pending, ++owed[in.leaf.get()];
          leaves.emplace(in.leaf.get(), in.leaf);
        } else if (in.producer >= 0) {
          TapeEntry* p = tape.at(in.producer);
          WEFT_CHECK(p, "backward: part of the graph (", e->name, "'s input) was already freed by an earlier "
                        "backward; recompute the forward pass");
          if (!p->needed) {
            p->needed = true;
            needed.push_back(in.producer);
          }
        }
      }
    }
    tape.at(top)->grad = grad;
    // Pass 2: newest first, which is a reverse topological order.
    std::sort(needed.begin(), needed.end(), std::greater<>());
    run_needed(tape, needed, owed, deferral);
    if (deferral)  // the deferred work now owes the leaves what this walk counted for it
      for (const auto& w : deferral->work)
        for (const Edge& in : w->inputs)
          if (in.leaf) --owed[in.leaf.get()];
  } catch (...) {
    if (deferral) {  // dropped: the counts it would have delivered are taken back below
      for (const auto& w : deferral->work) w->open = false;
      deferral->work.clear();
    }
    for (const auto& [impl, leaf] : leaves) {  // take back what this walk still owed
      std::lock_guard lock(leaf->autograd->mutex);
      leaf->autograd->pending -= owed[impl];
    }
    for (int64_t seq : needed)
      if (TapeEntry* e = tape.at(seq)) e->needed = false;
    throw;
  }
}
}  // namespace

void backward(const Tensor& root, const Tensor& grad) { walk(root, grad, nullptr); }

DeferredGrads backward_deferring(const Tensor& root, const Tensor& grad, const std::vector<Tensor>& deferred) {
  Deferral deferral;
  for (const Tensor& t : deferred)
    if (t.defined()) deferral.leaves.insert(t.impl());
  walk(root, grad, &deferral);
  DeferredGrads out;
  out.work_ = std::move(deferral.work);
  return out;
}

DeferredGrads::DeferredGrads() = default;
DeferredGrads::DeferredGrads(DeferredGrads&&) noexcept = default;
DeferredGrads& DeferredGrads::operator=(DeferredGrads&& o) noexcept {
  if (this != &o) {
    drop();
    work_ = std::move(o.work_);
  }
  return *this;
}
DeferredGrads::~DeferredGrads() { drop(); }

void DeferredGrads::run() {
  auto work = std::move(work_);  // empty from here on, whatever happens
  for (size_t k = 0; k < work.size(); ++k) {
    try {
      work[k]->run();
    } catch (...) {
      for (size_t j = k + 1; j < work.size(); ++j) work[j]->release();
      throw;
    }
  }
}

void DeferredGrads::drop() {
  for (auto& w : work_)
    if (w->open) w->release();
  work_.clear();
}

namespace {
void run_needed(Tape& tape, const std::vector<int64_t>& needed, Owed& owed, Deferral* deferral) {
  for (int64_t s : needed) {
    TapeEntry* e = tape.at(s);
    if (auto out = e->output.lock(); out && out->autograd && out->autograd->retains_grad && e->grad.defined())
      accumulate(out->autograd->grad, e->grad);
    run_entry(tape, *e, owed, deferral);
    tape.release(s);
  }
}
}  // namespace

void zero_grad(const std::vector<Tensor>& params, bool set_to_none) {
  for (Tensor p : params) {  // a handle: set_grad changes the tensor it shares
    if (set_to_none || !p.grad().defined()) p.set_grad(Tensor());
    else raw::fill_(p.grad(), 0.0);
  }
}

}  // namespace weft::autograd
