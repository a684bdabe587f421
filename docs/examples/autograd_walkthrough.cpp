// Prints every number quoted in docs/autograd.md: a tiny network's tape, entry by entry,
// forward and backward, the gradient-ready hooks, version counters, NoGradGuard, and the
// freeing and collection of tape entries. Build and run:
//
//   ninja -C build docs/autograd_walkthrough && build/docs/autograd_walkthrough
//
// The program peeks at AutogradMeta (autograd/tape.h) -- which tape entry produced a
// tensor, a leaf's pending count -- to show the bookkeeping; ordinary code never needs to.
#include <cstdio>
#include <string>
#include <thread>

#include "autograd/autograd.h"
#include "tensor/tensor.h"

using namespace weft;

namespace {

// "[[1.1, 0], [0, 1.05]]" -- compact enough for a table cell.
std::string fmt(const Tensor& t) {
  if (!t.defined()) return "(undefined)";
  auto v = t.to_vector<float>();
  auto num = [](float f) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", f);
    return std::string(b);
  };
  if (t.dim() == 0) return num(v[0]);
  if (t.dim() == 1) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + num(v[i]);
    return s + "]";
  }
  std::string s = "[";
  const int64_t rows = t.size(0), cols = t.size(1);
  for (int64_t r = 0; r < rows; ++r) {
    s += r ? ", [" : "[";
    for (int64_t c = 0; c < cols; ++c) s += (c ? ", " : "") + num(v[r * cols + c]);
    s += "]";
  }
  return s + "]";
}

// Which tape entry made t ("leaf" for a leaf), and the live entries now.
std::string producer(const Tensor& t) {
  if (!t.impl()->autograd || t.impl()->autograd->producer < 0) return t.requires_grad() ? "leaf" : "plain data";
  return "entry " + std::to_string(t.impl()->autograd->producer);
}
int pending(const Tensor& leaf) { return leaf.impl()->autograd ? leaf.impl()->autograd->pending : 0; }
long long live() { return static_cast<long long>(autograd::tape_size()); }

void section(const char* title) { std::printf("\n== %s\n", title); }

// The example of docs/autograd.md: one Linear layer with a ReLU, summed.
struct Net {
  Tensor x, w, b, h, z, r, loss;
  void forward() {
    h = x.matmul(w);
    z = h + b;
    r = z.relu();
    loss = r.sum();
  }
};

Net make_net() {
  Net n;
  n.x = tensor({1.f, 2.f, -1.f, 0.5f}, {2, 2});  // a batch of two inputs, no grad
  n.w = tensor({0.5f, -1.f, 0.25f, 0.5f}, {2, 2}, {.requires_grad = true});
  n.b = tensor({0.1f, -0.2f}, {2}, {.requires_grad = true});
  return n;
}

void walkthrough() {
  section("1. forward: one tape entry per op");
  Net n = make_net();
  std::printf("x = %s  (%s)\nw = %s  (%s)\nb = %s  (%s)\n", fmt(n.x).c_str(), producer(n.x).c_str(),
              fmt(n.w).c_str(), producer(n.w).c_str(), fmt(n.b).c_str(), producer(n.b).c_str());
  std::printf("versions before the forward: x %llu, w %llu\n", (unsigned long long)n.x.version(),
              (unsigned long long)n.w.version());
  std::printf("tape entries live: %lld\n", live());
  n.h = n.x.matmul(n.w);
  std::printf("h = x.matmul(w) = %s  (%s), live %lld\n", fmt(n.h).c_str(), producer(n.h).c_str(), live());
  n.z = n.h + n.b;
  std::printf("z = h + b       = %s  (%s), live %lld\n", fmt(n.z).c_str(), producer(n.z).c_str(), live());
  n.r = n.z.relu();
  std::printf("r = z.relu()    = %s  (%s), live %lld\n", fmt(n.r).c_str(), producer(n.r).c_str(), live());
  n.loss = n.r.sum();
  std::printf("loss = r.sum()  = %s  (%s), live %lld\n", fmt(n.loss).c_str(), producer(n.loss).c_str(), live());
  std::printf("storage versions now (what matmul and relu recorded for what they saved): x %llu, w %llu, r %llu\n",
              (unsigned long long)n.x.version(), (unsigned long long)n.w.version(),
              (unsigned long long)n.r.version());

  section("2. backward: marking, then running newest first");
  // Keep the intermediate gradients so we can print them (retain_grad makes backward add
  // the entry's accumulated dLoss/dOutput into .grad just before the entry runs).
  n.h.retain_grad();
  n.z.retain_grad();
  n.r.retain_grad();
  n.w.register_grad_ready_hook([&](const Tensor& w) {
    std::printf("  [hook] w ready: w.grad = %s; b.pending = %d, live entries %lld\n", fmt(w.grad()).c_str(),
                pending(n.b), live());
  });
  n.b.register_grad_ready_hook([&](const Tensor& b) {
    std::printf("  [hook] b ready: b.grad = %s; w.pending = %d, live entries %lld\n", fmt(b.grad()).c_str(),
                pending(n.w), live());
  });
  std::printf("pending before backward: w %d, b %d\n", pending(n.w), pending(n.b));
  n.loss.backward();
  std::printf("after backward: live entries %lld; pending w %d, b %d\n", live(), pending(n.w), pending(n.b));
  std::printf("dloss/dr = %s\ndloss/dz = %s\ndloss/dh = %s\n", fmt(n.r.grad()).c_str(), fmt(n.z.grad()).c_str(),
              fmt(n.h.grad()).c_str());
  std::printf("w.grad = %s\nb.grad = %s\nx.grad = %s\n", fmt(n.w.grad()).c_str(), fmt(n.b.grad()).c_str(),
              fmt(n.x.grad()).c_str());

  section("3. a second backward over the same graph");
  try {
    n.loss.backward();
  } catch (const Error& e) {
    std::printf("weft::Error: %s\n", e.what());
  }
}

void shared_weight() {
  section("4. a leaf used twice: pending = 2");
  Net n = make_net();
  n.h = n.x.matmul(n.w);
  n.z = n.h + n.b;
  n.r = n.z.relu();
  Tensor y = n.r.matmul(n.w);  // w again: the same parameter in a second layer
  Tensor loss = y.sum();
  std::printf("h = x.matmul(w) %s, z = h + b %s, r = z.relu() %s, y = r.matmul(w) %s, loss = y.sum() %s\n",
              producer(n.h).c_str(), producer(n.z).c_str(), producer(n.r).c_str(), producer(y).c_str(),
              producer(loss).c_str());
  std::printf("y = %s, loss = %s\n", fmt(y).c_str(), fmt(loss).c_str());
  n.w.register_grad_ready_hook([&](const Tensor& w) {
    std::printf("  [hook] w ready: w.grad = %s, live entries %lld\n", fmt(w.grad()).c_str(), live());
  });
  n.b.register_grad_ready_hook([&](const Tensor& b) {
    std::printf("  [hook] b ready: b.grad = %s; w.pending = %d (one use of w still to come), live entries %lld\n",
                fmt(b.grad()).c_str(), pending(n.w), live());
  });
  loss.backward();
}

void versions() {
  section("5a. version counters: the input overwritten before backward");
  {
    Net n = make_net();
    n.forward();
    std::printf("x.version() after the forward: %llu\n", (unsigned long long)n.x.version());
    n.x.mul_(2.0);  // reuse the input buffer before backward (x needs no grad, so this is allowed)
    std::printf("x.mul_(2.0) -> x.version() = %llu\n", (unsigned long long)n.x.version());
    try {
      n.loss.backward();
    } catch (const Error& e) {
      std::printf("weft::Error: %s\n", e.what());
    }
    std::printf("after the failed backward: b.grad = %s, w.grad = %s, pending w %d b %d, live entries %lld\n",
                fmt(n.b.grad()).c_str(), fmt(n.w.grad()).c_str(), pending(n.w), pending(n.b), live());
    try {
      n.loss.backward();
    } catch (const Error& e) {
      std::printf("retrying: weft::Error: %s\n", e.what());
    }
  }
  section("5b. version counters: an optimizer step before backward");
  {
    Net n = make_net();
    n.forward();
    try {
      n.w.add_(n.x, -0.1);  // an "optimizer step" with grad mode on
    } catch (const Error& e) {
      std::printf("weft::Error: %s\n", e.what());
    }
    {
      autograd::NoGradGuard no_grad;
      n.w.add_(n.x, -0.1);  // the same step under NoGradGuard: allowed, and bumps w's version
    }
    std::printf("under NoGradGuard the step is allowed: w.version() = %llu\n", (unsigned long long)n.w.version());
    try {
      n.loss.backward();
    } catch (const Error& e) {
      std::printf("weft::Error: %s\n", e.what());
    }
  }
}

void no_grad() {
  section("6. NoGradGuard records nothing");
  Net n = make_net();
  {
    autograd::NoGradGuard no_grad;
    n.forward();
  }
  std::printf("forward under NoGradGuard: live entries %lld; loss = %s, loss.requires_grad() = %d\n", live(),
              fmt(n.loss).c_str(), (int)n.loss.requires_grad());
  try {
    n.loss.backward();
  } catch (const Error& e) {
    std::printf("weft::Error: %s\n", e.what());
  }
}

// Evaluation with grad on and no backward: every step leaves 4 unreachable entries. A
// collection runs after 1024 appends (or as many as were live after the last one, if
// more), so one runs every 256 steps whether or not an old loss is kept alive.
void collection(bool keep_one) {
  Net keep = make_net();
  if (keep_one) keep.forward();  // this loss stays alive: its 4 entries must survive every collection
  std::printf("%s: live entries at the start %lld\n", keep_one ? "one loss kept alive" : "nothing kept", live());
  long long prev = live();
  for (int step = 1; step <= 1100; ++step) {
    Net e = make_net();
    e.forward();
    const long long now = live();
    if (now < prev)
      std::printf("  eval step %4d: a collection ran; live entries %lld before this step, %lld after it\n", step,
                  prev, now);
    prev = now;
  }
  if (keep_one) {
    keep.loss.backward();
    std::printf("  backward of the kept loss still works: w.grad = %s\n", fmt(keep.w.grad()).c_str());
  }
}

}  // namespace

// Each part runs on a fresh thread, so it starts with an empty tape of its own (tapes are
// per thread) and its entry numbers start at 0.
void on_fresh_tape(void (*part)()) { std::thread(part).join(); }

int main() {
  set_num_threads(1);
  on_fresh_tape(walkthrough);
  on_fresh_tape(shared_weight);
  on_fresh_tape(versions);
  on_fresh_tape(no_grad);
  section("7. collecting unreachable entries (evaluation with grad on, no backward)");
  on_fresh_tape([] { collection(false); });
  on_fresh_tape([] { collection(true); });
  return 0;
}
