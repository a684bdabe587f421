#include "stage.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include "../../autograd/functions.h"
#include "../../autograd/tape.h"
#include "../../nn/linear.h"
#include "../../tensor/generator.h"
#include "../../tensor/memory.h"
#include "../../tensor/thread_pool.h"
#include "../trace.h"

namespace weft::parallel::pipeline {

namespace {

// Activations go forward under one tag, gradients back under another; messages of one
// (source, tag) arrive in the order they were sent, which is the microbatch order of
// both neighbours' action lists.
constexpr int kTagActivation = 7001, kTagGradient = 7002;
// An activation's header: dtype, number of dims, then up to kMaxDims sizes.
constexpr int kMaxDims = 8;
constexpr int64_t kHeaderLen = 2 + kMaxDims;

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// "F3", "B0" (schedule.h's label) as a trace span's name: trace::Scope keeps the
// pointer, so each name is made once and kept for the life of the program.
const char* span_name(Action::Kind kind, int mb) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, std::string> names;
  std::lock_guard lock(mu);
  auto [it, fresh] = names.try_emplace({int(kind), mb}, label(Action{kind, mb}));
  return it->second.c_str();
}

// The pieces of `t` along dim 0 for the given row ranges (views, no copies).
std::vector<Tensor> split_rows(const Tensor& t, const std::vector<std::pair<int64_t, int64_t>>& rows) {
  std::vector<Tensor> out;
  for (const auto& [start, end] : rows) out.push_back(t.narrow(0, start, end - start));
  return out;
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> microbatch_rows(int64_t n, int m) {
  WEFT_CHECK(m >= 1 && m <= n, "pipeline: cannot cut a batch of ", n, " rows into ", m, " microbatches");
  std::vector<std::pair<int64_t, int64_t>> rows;
  int64_t start = 0;
  for (int i = 0; i < m; ++i) {
    const int64_t len = n / m + (i < n % m ? 1 : 0);
    rows.emplace_back(start, start + len);
    start += len;
  }
  return rows;
}

// What a stage keeps of one microbatch between its F and its B.
struct PipelineStage::InFlight {
  Tensor input;  // stages > 0: a leaf whose .grad goes back to the previous stage
  Tensor out;    // this stage's output (on the tape)
  Tensor loss;   // last stage: this microbatch's share of the batch's mean loss
  autograd::DeferredGrads weights;  // a split backward's W, between its B and its W
  // Recomputed microbatches: F ran without the tape; B runs it again from `input`,
  // drawing the same random numbers (`draws`), and the last stage its loss from these.
  bool recompute = false;
  DrawLog draws;
  Tensor target;
  double share = 0;
};

Recompute parse_recompute(const std::string& name) {
  if (name == "never") return Recompute::Never;
  if (name == "except_last") return Recompute::ExceptLast;
  if (name == "always") return Recompute::Always;
  throw Error(detail::str("--recompute: unknown mode '", name, "' (use never, except_last or always)"));
}

PipelineStage::PipelineStage(std::shared_ptr<Communicator> comm, std::shared_ptr<nn::Module> layers, Device device,
                             int intra_op_threads)
    : comm_(std::move(comm)), layers_(std::move(layers)), device_(device), intra_op_threads_(intra_op_threads) {
  WEFT_CHECK(comm_ != nullptr && layers_ != nullptr, "PipelineStage: needs a communicator and the stage's layers");
}

// ---- moving activations and gradients ----------------------------------------------------

void PipelineStage::send_activation(const Tensor& t_in) {
  const Tensor t = t_in.detach().contiguous();
  WEFT_CHECK(t.dim() <= kMaxDims, "pipeline: an activation has ", t.dim(), " dims; at most ", kMaxDims, " cross");
  std::vector<int64_t> h(kHeaderLen, 0);
  h[0] = static_cast<int64_t>(t.dtype()), h[1] = t.dim();
  for (int64_t d = 0; d < t.dim(); ++d) h[size_t(2 + d)] = t.size(d);
  const Tensor header = tensor(h).to(device_);
  pending_sends_.emplace_back(comm_->isend(header, stage() + 1, kTagActivation), header);
  pending_sends_.emplace_back(comm_->isend(t, stage() + 1, kTagActivation), t);
}

Tensor PipelineStage::receive_activation() {
  Tensor header = empty({kHeaderLen}, kInt64, device_);
  comm_->recv(header, stage() - 1, kTagActivation);
  const std::vector<int64_t> h = header.to(kCPU).to_vector<int64_t>();
  WEFT_CHECK(h[1] >= 0 && h[1] <= kMaxDims, "pipeline: a corrupt activation header from stage ", stage() - 1);
  const Shape shape(std::vector<int64_t>(h.begin() + 2, h.begin() + 2 + h[1]));
  Tensor t = empty(shape, static_cast<DType>(h[0]), device_);
  comm_->recv(t, stage() - 1, kTagActivation);
  return t;
}

void PipelineStage::wait_sends() {
  for (auto& [work, data] : pending_sends_) work->wait();
  pending_sends_.clear();
}

// ---- the two actions -----------------------------------------------------------------------

void PipelineStage::forward_action(int mb, InFlight& f, const std::vector<Tensor>& xs, const std::vector<Tensor>& ys,
                                   const LossFn& loss, int64_t rows) {
  Tensor in = is_first() ? xs[size_t(mb)] : receive_activation();  // waiting is not busy time
  const double t0 = now_ms();
  trace::Scope span(span_name(Action::F, mb), "compute", stage());
  if (in.device() != device_) in = in.to(device_);
  if (!is_first() && is_floating(in.dtype())) in.requires_grad_(true);  // its .grad goes back
  f.input = in;
  f.recompute = recompute_ == Recompute::Always || (recompute_ == Recompute::ExceptLast && mb != microbatches_ - 1);
  std::optional<autograd::NoGradGuard> no_tape;  // recomputed: nothing kept but the input
  std::optional<RecordDraws> record;
  if (f.recompute) no_tape.emplace(), record.emplace(f.draws);
  f.out = (*layers_)(in);
  if (is_last()) {
    const Tensor& y = ys[size_t(mb)];
    f.target = y.device() == f.out.device() ? y : y.to(f.out.device());
    f.share = double(y.size(0)) / double(rows);
    f.loss = loss(f.out, f.target) * f.share;
  } else {
    send_activation(f.out);
  }
  stats_.busy_ms += now_ms() - t0;
}

void PipelineStage::backward_action(int mb, InFlight& f, bool split) {
  Tensor grad;
  if (!is_last()) {
    grad = empty(f.out.shape(), f.out.dtype(), device_);
    comm_->recv(grad, stage() + 1, kTagGradient);
  }
  const double t0 = now_ms();
  {
    trace::Scope span(span_name(Action::B, mb), "compute", stage());
    if (f.recompute) recompute_forward(f);
    const Tensor& root = is_last() ? f.loss : f.out;
    // Split (zero-bubble schedules): the input gradient now, the weights' at this
    // microbatch's W action (autograd::backward_deferring).
    if (split && root.requires_grad()) f.weights = autograd::backward_deferring(root, grad, layers_->parameters());
    else if (root.requires_grad()) root.backward(grad);
    if (!is_first()) {
      Tensor g = f.input.grad();
      if (!g.defined()) g = zeros_like(f.input);  // the output did not depend on the input
      g = g.contiguous();
      pending_sends_.emplace_back(comm_->isend(g, stage() - 1, kTagGradient), g);
    }
  }
  if (split) f.input = f.out = f.loss = Tensor();  // only what W needs stays, in f.weights
  else f = InFlight{};                              // the microbatch's activations can go
  stats_.busy_ms += now_ms() - t0;
}

// The forward of a recomputed microbatch again, on the tape this time, with the random
// draws of the first time and no second update of running statistics.
void PipelineStage::recompute_forward(InFlight& f) {
  ReplayDraws replay(f.draws);
  nn::RecomputeGuard again;
  f.out = (*layers_)(f.input);
  if (is_last()) f.loss = (*loss_)(f.out, f.target) * f.share;
}

void PipelineStage::weight_action(int mb, InFlight& f) {
  const double t0 = now_ms();
  {
    trace::Scope span(span_name(Action::W, mb), "compute", stage());
    f.weights.run();
  }
  f = InFlight{};
  stats_.busy_ms += now_ms() - t0;
}

// ---- a step ----------------------------------------------------------------------------------

double PipelineStage::train_step(const PipelineSchedule& schedule, const Tensor& x, const Tensor& y,
                                 const LossFn& loss) {
  WEFT_CHECK(schedule.stages == num_stages(), "pipeline: the ", schedule.name, " schedule is for ", schedule.stages,
             " stages, the communicator has ", num_stages());
  const int m = schedule.microbatches;
  std::optional<ThreadLimit> limit;
  if (intra_op_threads_ > 0) limit.emplace(intra_op_threads_);
  std::vector<Tensor> xs, ys;
  int64_t rows = 0;
  if (is_first()) {
    WEFT_CHECK(x.defined() && x.dim() >= 1, "pipeline: stage 0 needs the input batch");
    xs = split_rows(x, microbatch_rows(x.size(0), m));
  }
  if (is_last()) {
    WEFT_CHECK(y.defined() && y.dim() >= 1, "pipeline: the last stage needs the targets");
    rows = y.size(0);
    ys = split_rows(y, microbatch_rows(rows, m));
  }
  // The step's m forwards share one set of weights: Linear layers transpose theirs once
  // (nn/linear.h, THE TRANSPOSED WEIGHT) instead of every microbatch's GEMM doing it.
  // With one microbatch there is nothing to share the copy with.
  std::optional<nn::TransposedWeightScope> keep_transposed;
  if (m > 1) keep_transposed.emplace();
  stats_ = StageStats{};
  loss_ = &loss, microbatches_ = m;
  reset_device_peak(device_);
  const int64_t start_bytes = device_memory(device_).allocated;
  const double start = now_ms();
  std::vector<InFlight> flights(static_cast<size_t>(m));
  int in_flight = 0;
  const auto& mine = schedule.per_stage.at(size_t(stage()));
  const bool split = std::any_of(mine.begin(), mine.end(), [](const Action& a) { return a.kind == Action::W; });
  double total = 0;
  for (const Action& a : schedule.per_stage.at(size_t(stage()))) {
    try {
      InFlight& f = flights.at(size_t(a.microbatch));
      if (a.kind == Action::F) {
        forward_action(a.microbatch, f, xs, ys, loss, rows);
        stats_.peak_in_flight = std::max(stats_.peak_in_flight, ++in_flight);
      } else if (a.kind == Action::B) {
        if (is_last()) total += f.loss.item<double>();
        backward_action(a.microbatch, f, split);
        if (!split) --in_flight;
      } else {
        weight_action(a.microbatch, f);
        --in_flight;
      }
    } catch (const std::exception& e) {
      throw Error(detail::str("pipeline stage ", stage(), " (", device_, "), ", "FBW"[a.kind], "(", a.microbatch,
                              ") of the ", schedule.name, " schedule: ", e.what()));
    }
  }
  wait_sends();
  stats_.wall_ms = now_ms() - start;
  stats_.peak_step_bytes = device_memory(device_).peak - start_bytes;
  return total;
}

Tensor PipelineStage::forward(const Tensor& x, int microbatches) {
  autograd::NoGradGuard no_grad;
  std::optional<nn::TransposedWeightScope> keep_transposed;  // as in train_step
  if (microbatches > 1) keep_transposed.emplace();
  std::optional<ThreadLimit> limit;
  if (intra_op_threads_ > 0) limit.emplace(intra_op_threads_);
  std::vector<Tensor> xs, outs;
  if (is_first()) xs = split_rows(x, microbatch_rows(x.size(0), microbatches));
  for (int mb = 0; mb < microbatches; ++mb) {
    try {
      Tensor in = is_first() ? xs[size_t(mb)] : receive_activation();
      if (in.device() != device_) in = in.to(device_);
      Tensor out = (*layers_)(in);
      if (is_last()) outs.push_back(out);
      else send_activation(out);
    } catch (const std::exception& e) {
      throw Error(detail::str("pipeline stage ", stage(), " (", device_, "), forward (", mb, "): ", e.what()));
    }
  }
  wait_sends();
  return is_last() ? cat(outs, 0) : Tensor();
}

}  // namespace weft::parallel::pipeline
