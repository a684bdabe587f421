// The tape and the backward walk. Read the header comment in tape.h first.
#include "tape.h"

#include <algorithm>

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
};

class Tape {
 public:
  int64_t append(std::unique_ptr<TapeEntry> e) {
    entries_.push_back(std::move(e));
    if (static_cast<int64_t>(entries_.size()) >= collect_at_) collect();
    return base_ + static_cast<int64_t>(entries_.size()) - 1;
  }
  TapeEntry* at(int64_t seq) {
    const int64_t i = seq - base_;
    return (i >= 0 && i < static_cast<int64_t>(entries_.size())) ? entries_[i].get() : nullptr;
  }
  void release(int64_t seq) { entries_[seq - base_].reset(); }
  int64_t base() const { return base_; }
  int64_t live() const {
    return std::count_if(entries_.begin(), entries_.end(), [](const auto& e) { return e != nullptr; });
  }

  // Frees entries that no live tensor can reach: an entry is live when its output is
  // still alive or a live entry consumes it. One reverse pass suffices because consumers
  // come after producers. Then drops the freed prefix.
  void collect() {
    std::vector<char> live(entries_.size(), 0);
    for (int64_t i = static_cast<int64_t>(entries_.size()) - 1; i >= 0; --i) {
      TapeEntry* e = entries_[i].get();
      if (!e) continue;
      if (!live[i] && e->output.expired()) {
        entries_[i].reset();
        continue;
      }
      for (const Edge& in : e->inputs)
        if (in.producer >= base_) live[in.producer - base_] = 1;
    }
    compact();
    collect_at_ = std::max<int64_t>(1024, 2 * static_cast<int64_t>(entries_.size()));
  }

  void compact() {
    auto first = std::find_if(entries_.begin(), entries_.end(), [](const auto& e) { return e != nullptr; });
    base_ += first - entries_.begin();
    entries_.erase(entries_.begin(), first);
  }

 private:
  std::vector<std::unique_ptr<TapeEntry>> entries_;
  int64_t base_ = 0;
  int64_t collect_at_ = 1024;
};

namespace {

thread_local bool t_grad_enabled = true;

const std::shared_ptr<Tape>& this_thread_tape() {
  thread_local std::shared_ptr<Tape> tape = std::make_shared<Tape>();
  return tape;
}

AutogradMeta& meta(const Tensor& t) {
  auto& m = t.impl()->autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  return *m;
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

void fire_hooks(const Tensor& leaf) {
  auto& m = *leaf.impl()->autograd;
  // Copy first: a hook may register or remove hooks.
  auto hooks = m.hooks;
  for (auto& [id, hook] : hooks) hook(leaf);
}

void add_to_leaf(const std::shared_ptr<TensorImpl>& leaf_impl, const Tensor& g) {
  Tensor leaf(leaf_impl);
  auto& m = *leaf_impl->autograd;
  if (g.defined()) {
    WEFT_CHECK(g.shape() == leaf.shape(), "backward: gradient of shape ", g.shape(), " for a leaf of shape ",
               leaf.shape());
    accumulate(m.grad, g);
  }
  if (--m.pending == 0) fire_hooks(leaf);
}

}  // namespace

bool is_grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }
int64_t tape_size() { return this_thread_tape()->live(); }

bool needs_recording(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->impl()->autograd && t->impl()->autograd->requires_grad) return true;
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
      const AutogradMeta& m = *in.impl()->autograd;
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
  AutogradMeta& m = meta(output);
  m.requires_grad = true;
  m.tape = tape;
  m.producer = tape->append(std::move(e));
  return output;
}

namespace {

// Runs one entry's closure and routes the input gradients.
void run_entry(Tape& tape, TapeEntry& e) {
  std::vector<Tensor> saved;
  saved.reserve(e.saved.size());
  for (size_t i = 0; i < e.saved.size(); ++i) {
    const SavedTensor& s = e.saved[i];
    if (s.value.defined())
      WEFT_CHECK(s.value.version() == s.version, "backward of ", e.name, ": saved tensor ", i, " of shape ",
                 s.value.shape(), " was modified in place after ", e.name,
                 " saved it (version ", s.version, ", now ", s.value.version(),
                 "); clone it before modifying, or make the in-place op out of place");
    saved.push_back(s.value);
  }
  auto needs = std::make_unique<bool[]>(e.inputs.size());
  for (size_t i = 0; i < e.inputs.size(); ++i) needs[i] = e.inputs[i].wants_grad();
  std::vector<Tensor> grads;
  if (e.grad.defined()) {
    grads = e.backward(BackwardArgs{e.grad, saved, std::span<const bool>(needs.get(), e.inputs.size())});
    WEFT_CHECK(grads.size() == e.inputs.size(), "backward of ", e.name, ": returned ", grads.size(),
               " gradients for ", e.inputs.size(), " inputs");
  } else {
    grads.resize(e.inputs.size());  // no gradient reached this entry: inputs get none
  }
  for (size_t i = 0; i < e.inputs.size(); ++i) {
    const Edge& in = e.inputs[i];
    if (in.leaf) {
      if (grads[i].defined()) check_grad_shape(e, i, grads[i], in.leaf->shape);
      add_to_leaf(in.leaf, grads[i]);
    } else if (in.producer >= 0 && grads[i].defined()) {
      TapeEntry* p = tape.at(in.producer);
      check_grad_shape(e, i, grads[i], p->out_shape);
      accumulate(p->grad, grads[i]);
    }
  }
}

void run_needed(Tape& tape, const std::vector<char>& needed, int64_t top, int64_t base);

}  // namespace

void backward(const Tensor& root, const Tensor& grad_in) {
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

  AutogradMeta& rm = *root.impl()->autograd;
  if (rm.producer < 0) {  // a leaf: d(root)/d(root) = grad
    rm.pending = 1;
    add_to_leaf(root.impl_ptr(), grad);
    return;
  }
  Tape& tape = *rm.tape;
  const int64_t top = rm.producer, base = tape.base();
  WEFT_CHECK(tape.at(top), "backward: the graph of this tensor was already freed by an earlier backward; "
                           "recompute the forward pass");

  // Pass 1: mark what root depends on; count each leaf's incoming contributions.
  std::vector<char> needed(top - base + 1, 0);
  std::vector<std::shared_ptr<TensorImpl>> leaves;
  needed[top - base] = 1;
  for (int64_t s = top; s >= base; --s) {
    if (!needed[s - base]) continue;
    TapeEntry* e = tape.at(s);
    for (const Edge& in : e->inputs) {
      if (in.leaf) {
        if (in.leaf->autograd->pending++ == 0) leaves.push_back(in.leaf);
      } else if (in.producer >= 0) {
        WEFT_CHECK(tape.at(in.producer), "backward: part of the graph (", e->name, "'s input) was already freed by "
                                         "an earlier backward; recompute the forward pass");
        needed[in.producer - base] = 1;
      }
    }
  }
  tape.at(top)->grad = grad;

  // Pass 2: run the needed entries newest first, freeing each once done.
  try {
    run_needed(tape, needed, top, base);
  } catch (...) {
    for (auto& leaf : leaves) leaf->autograd->pending = 0;  // leave the leaves usable
    throw;
  }
  tape.compact();
}

namespace {
void run_needed(Tape& tape, const std::vector<char>& needed, int64_t top, int64_t base) {
  for (int64_t s = top; s >= base; --s) {
    if (!needed[s - base]) continue;
    TapeEntry* e = tape.at(s);
    if (auto out = e->output.lock(); out && out->autograd && out->autograd->retains_grad && e->grad.defined())
      accumulate(out->autograd->grad, e->grad);
    run_entry(tape, *e);
    tape.release(s);
  }
}
}  // namespace

}  // namespace weft::autograd
