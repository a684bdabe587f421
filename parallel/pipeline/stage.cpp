#include "stage.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include "../../autograd/autocast.h"
#include "../../autograd/functions.h"
#include "../../autograd/tape.h"
#include "../../nn/linear.h"
#include "../../nn/sequential.h"
#include "../../tensor/generator.h"
#include "../../tensor/memory.h"
#include "../../tensor/thread_pool.h"
#include "../batch_rows.h"
#include "../trace.h"

namespace weft::parallel::pipeline {

namespace {

// Activations go forward under one tag, gradients back under another, each per receiving
// chunk; messages of one (source, tag) arrive in the order they were sent, which is the
// microbatch order of both neighbours' action lists (validate() checks that they agree).
constexpr int kTagActivation = 7001, kTagGradient = 7002;
int activation_tag(int chunk) { return kTagActivation + 2 * chunk; }
int gradient_tag(int chunk) { return kTagGradient + 2 * chunk; }

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// "F3", "B0.1" (schedule.h's label) as a trace span's name: trace::Scope keeps the
// pointer, so each name is made once and kept for the life of the program.
const char* span_name(const Action& a) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int>, std::string> names;
  std::lock_guard lock(mu);
  auto [it, fresh] = names.try_emplace({int(a.kind), a.microbatch, a.chunk}, label(a));
  return it->second.c_str();
}

// The pieces of `t` along dim 0 for the given row ranges (views, no copies).
std::vector<Tensor> split_rows(const Tensor& t, const std::vector<std::pair<int64_t, int64_t>>& rows) {
  std::vector<Tensor> out;
  for (const auto& [start, end] : rows) out.push_back(t.narrow(0, start, end - start));
  return out;
}

// One root for a backward from several outputs at once: a one-element tensor whose
// backward hands outs[i] exactly grads[i], the gradient the next stage sent for it, so
// one walk of the tape covers them all (calling backward once per output would find the
// graph they share already freed by the first).
Tensor join_for_backward(const nn::Tensors& outs, const nn::Tensors& grads) {
  const Tensor root = zeros({}, {.dtype = kFloat32, .device = outs[0].device()});
  return autograd::record("pipeline_outputs", root, std::span<const Tensor>(outs), {},
                          [grads](const autograd::BackwardArgs&) { return grads; });
}

// The wire's copy of t: contiguous, on `wire`, off the tape.
Tensor on_wire(const Tensor& t, Device wire) { return t.detach().to(wire).contiguous(); }

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
  nn::Tensors inputs;  // stages > 0: leaves; those that want a gradient send their .grad back
  std::vector<size_t> grad_inputs;  // which inputs those are
  nn::Tensors outs;    // this stage's outputs (on the tape; a recomputed microbatch drops them after F)
  // The outputs whose gradient the next stage sends back (their index, shape and dtype).
  std::vector<size_t> grad_outputs;
  std::vector<std::pair<Shape, DType>> grad_shapes;
  Tensor loss;   // last stage: this microbatch's share of the batch's mean loss
  autograd::DeferredGrads weights;  // a split backward's W, between its B and its W
  // Recomputed microbatches: F ran without the tape; B runs it again from `inputs`,
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
    : PipelineStage(std::move(comm), std::vector<std::shared_ptr<nn::Module>>{std::move(layers)}, device,
                    intra_op_threads) {}

PipelineStage::PipelineStage(std::shared_ptr<Communicator> comm, std::vector<std::shared_ptr<nn::Module>> chunks,
                             Device device, int intra_op_threads)
    : comm_(std::move(comm)), chunks_(std::move(chunks)), device_(device), intra_op_threads_(intra_op_threads) {
  WEFT_CHECK(comm_ != nullptr && !chunks_.empty(), "PipelineStage: needs a communicator and the stage's layers");
  for (const auto& c : chunks_) WEFT_CHECK(c != nullptr, "PipelineStage: a model chunk is null");
  // One stage with several chunks would send every activation to itself: that is one
  // device running the whole model, which needs no pipeline.
  WEFT_CHECK(chunks_.size() == 1 || comm_->size() >= 2, "PipelineStage: ", chunks_.size(),
             " model chunks on a single stage; interleaving needs at least two stages");
}

void PipelineStage::set_data_parallel(std::shared_ptr<Communicator> replicas, const DDPOptions& options) {
  if (!replicas) {
    ddp_.reset();
    return;
  }
  auto all = std::make_shared<nn::Sequential>();  // the chunks, for DDP's one module
  for (const auto& c : chunks_) all->push_back(c);
  ddp_ = std::make_shared<DistributedDataParallel>(all, std::move(replicas), options);
}

void PipelineStage::check_schedule(const PipelineSchedule& schedule) const {
  WEFT_CHECK(schedule.stages == num_stages(), "pipeline: the ", schedule.name, " schedule is for ", schedule.stages,
             " stages, the communicator has ", num_stages());
  WEFT_CHECK(schedule.chunks == num_chunks(), "pipeline: the ", schedule.name, " schedule runs ", schedule.chunks,
             " model chunks per stage, stage ", stage(), " holds ", num_chunks());
}

// ---- moving activations and gradients ----------------------------------------------------

Device PipelineStage::wire() const {
  return device_.is_cuda() && comm_->backend() != "nccl" ? kCPU : device_;
}

// `chunk`'s outputs to the next virtual stage.
void PipelineStage::send_activations(const nn::Tensors& ts, const std::vector<bool>& wants_grad, int64_t rows,
                                     int chunk) {
  nn::Tensors wired;
  for (const Tensor& t : ts) wired.push_back(on_wire(t, wire()));
  const int to = virtual_stage(chunk) + 1;
  stats_.sent_bytes += pipeline::send_activations(*comm_, wired, wants_grad, rows, to % num_stages(),
                                                 activation_tag(to / num_stages()), pending_sends_);
}

Activations PipelineStage::receive_activations(int chunk) {
  const int src = (virtual_stage(chunk) - 1) % num_stages();
  Activations a = pipeline::receive_activations(*comm_, src, activation_tag(chunk), wire());
  for (Tensor& t : a.tensors)
    if (t.device() != device_) t = t.to(device_);
  return a;
}

// The gradients of `chunk`'s inputs that the previous virtual stage asked for, in order.
void PipelineStage::send_input_gradients(const InFlight& f, int chunk) {
  nn::Tensors grads;
  for (size_t i : f.grad_inputs) {
    Tensor g = f.inputs[i].grad();
    if (!g.defined()) g = zeros_like(f.inputs[i]);  // the outputs did not depend on this input
    grads.push_back(on_wire(g, wire()));
  }
  const int to = virtual_stage(chunk) - 1;
  stats_.sent_bytes += send_gradients(*comm_, grads, to % num_stages(), gradient_tag(to / num_stages()), pending_sends_);
}

void PipelineStage::set_precision(DType precision) {
  WEFT_CHECK(precision == kFloat32 || is_half(precision), "PipelineStage::set_precision: float32, bfloat16 or ",
             "float16, got ", dtype_name(precision));
  precision_ = precision;
}

// The microbatch's loss times its share of the batch, under the stage's autocast like
// the forward (a loss on autocast's float32 list, cross-entropy, widens bf16 logits).
Tensor PipelineStage::scaled_loss(const InFlight& f) {
  const Autocast ac = autocast::for_precision(precision_);
  return (*loss_)(f.outs, f.target) * f.share;
}

nn::Tensors PipelineStage::run_chunk(int chunk, const nn::Tensors& inputs) {
  nn::Tensors outs;
  {
    const Autocast ac = autocast::for_precision(precision_);  // off for float32
    outs = (*chunks_[size_t(chunk)])(inputs);
  }
  WEFT_CHECK(!outs.empty(), "the layers returned no tensors");
  for (size_t i = 0; i < outs.size(); ++i) WEFT_CHECK(outs[i].defined(), "the layers' output ", i, " is undefined");
  return outs;
}

// Lets go of the sends that have completed: what they kept alive (an activation a
// recomputed microbatch no longer holds, a gradient) can be freed before the step ends.
void PipelineStage::reap_sends() {
  std::erase_if(pending_sends_, [](const auto& send) { return send.first->is_completed(); });
}

void PipelineStage::wait_sends() {
  for (auto& [work, data] : pending_sends_) work->wait();
  pending_sends_.clear();
}

// ---- the actions ---------------------------------------------------------------------------

void PipelineStage::forward_action(const Action& a, InFlight& f, const std::vector<nn::Tensors>& xs,
                                   const std::vector<Tensor>& ys, int64_t rows) {
  const int mb = a.microbatch, c = a.chunk;
  Activations in;  // waiting for it is not busy time
  if (model_input(c)) in.tensors = xs[size_t(mb)], in.rows = xs[size_t(mb)][0].size(0);
  else in = receive_activations(c);
  const double t0 = now_ms();
  trace::Scope span(span_name(a), "compute", comm_->trace_rank());
  for (size_t i = 0; i < in.tensors.size(); ++i) {
    Tensor& t = in.tensors[i];
    if (t.device() != device_) t = t.to(device_);
    if (!model_input(c) && in.wants_grad[i]) {  // its .grad goes back
      t.requires_grad_(true);
      f.grad_inputs.push_back(i);
    }
  }
  f.inputs = in.tensors;
  f.recompute = recompute_ == Recompute::Always || (recompute_ == Recompute::ExceptLast && mb != microbatches_ - 1);
  std::optional<autograd::NoGradGuard> no_tape;  // recomputed: nothing kept but the inputs
  std::optional<RecordDraws> record;
  if (f.recompute) no_tape.emplace(), record.emplace(f.draws);
  f.outs = run_chunk(c, f.inputs);
  if (model_output(c)) {
    const Tensor& y = ys[size_t(mb)];
    f.target = y.device() == f.outs[0].device() ? y : y.to(f.outs[0].device());
    f.share = double(y.size(0)) / double(rows);
    f.loss = scaled_loss(f);
  } else {
    // A gradient comes back for the floating-point outputs on the tape; without the tape
    // (recomputed), for every floating-point output (messages.h).
    std::vector<bool> wants_grad(f.outs.size());
    for (size_t i = 0; i < f.outs.size(); ++i) {
      const Tensor& t = f.outs[i];
      wants_grad[i] = is_floating(t.dtype()) && (f.recompute || t.requires_grad());
      if (wants_grad[i]) f.grad_outputs.push_back(i), f.grad_shapes.emplace_back(t.shape(), t.dtype());
    }
    send_activations(f.outs, wants_grad, in.rows, c);
  }
  if (f.recompute) f.outs.clear();  // B makes them again; until then only the inputs are kept
  stats_.busy_ms += now_ms() - t0;
}

namespace {

// The root of a microbatch's backward and its gradient: the one output that gets a
// gradient back and needs it, or several of them joined; undefined when none does.
std::pair<Tensor, Tensor> backward_root(const nn::Tensors& outs, const std::vector<size_t>& which,
                                        const nn::Tensors& grads) {
  nn::Tensors roots, root_grads;
  for (size_t k = 0; k < which.size(); ++k)
    if (outs[which[k]].requires_grad()) roots.push_back(outs[which[k]]), root_grads.push_back(grads[k]);
  if (roots.empty()) return {};
  if (roots.size() == 1) return {roots[0], root_grads[0]};
  return {join_for_backward(roots, root_grads), Tensor()};
}

}  // namespace

void PipelineStage::backward_action(const Action& a, InFlight& f, bool split) {
  const int c = a.chunk;
  nn::Tensors grads;
  if (!model_output(c)) {
    grads = receive_gradients(*comm_, f.grad_shapes, (virtual_stage(c) + 1) % num_stages(), gradient_tag(c), wire());
    for (Tensor& g : grads) g = g.to(device_);
  }
  const double t0 = now_ms();
  {
    trace::Scope span(span_name(a), "compute", comm_->trace_rank());
    if (f.recompute) recompute_forward(f, c);
    const std::pair<Tensor, Tensor> root =
        model_output(c) ? std::pair<Tensor, Tensor>(f.loss, Tensor()) : backward_root(f.outs, f.grad_outputs, grads);
    // Split (zero-bubble schedules): the input gradient now, the weights' at this
    // microbatch's W action (autograd::backward_deferring).
    if (root.first.defined() && root.first.requires_grad()) {
      if (split) f.weights = autograd::backward_deferring(root.first, root.second, chunks_[size_t(c)]->parameters());
      else root.first.backward(root.second);
    }
    if (!model_input(c)) send_input_gradients(f, c);
  }
  if (split) {  // only what W needs stays, in f.weights
    f.inputs.clear(), f.outs.clear();
    f.loss = Tensor();
  } else {
    f = InFlight{};  // the microbatch's activations can go
  }
  stats_.busy_ms += now_ms() - t0;
}

// The forward of a recomputed microbatch again, on the tape this time, with the random
// draws of the first time and no second update of running statistics.
void PipelineStage::recompute_forward(InFlight& f, int chunk) {
  ReplayDraws replay(f.draws);
  nn::RecomputeGuard again;
  f.outs = run_chunk(chunk, f.inputs);
  if (model_output(chunk)) f.loss = scaled_loss(f);
}

void PipelineStage::weight_action(const Action& a, InFlight& f) {
  const double t0 = now_ms();
  {
    trace::Scope span(span_name(a), "compute", comm_->trace_rank());
    f.weights.run();
  }
  f = InFlight{};
  stats_.busy_ms += now_ms() - t0;
}

// ---- a step ----------------------------------------------------------------------------------

namespace {

// The index in `actions` after which each chunk's weight gradients are final: its last
// W, or its last B where the stage does not split its backwards. With data parallel
// stages, that action's backward is the one whose gradients are all-reduced.
std::vector<size_t> last_gradient_actions(const std::vector<Action>& actions, int chunks, bool split) {
  std::vector<size_t> last(size_t(chunks), 0);
  for (size_t i = 0; i < actions.size(); ++i)
    if (actions[i].kind == (split ? Action::W : Action::B)) last[size_t(actions[i].chunk)] = i;
  return last;
}

}  // namespace

double PipelineStage::train_step(const PipelineSchedule& schedule, const Tensor& x, const Tensor& y,
                                 const LossFn& loss) {
  const MultiLossFn one = [&loss](const nn::Tensors& outs, const Tensor& target) {
    WEFT_CHECK(outs.size() == 1, "the layers returned ", outs.size(), " tensors but the loss takes one; pass a ",
               "MultiLossFn to train_step to get them all");
    return loss(outs[0], target);
  };
  return train_step(schedule, x.defined() ? nn::Tensors{x} : nn::Tensors{}, y, one);
}

double PipelineStage::train_step(const PipelineSchedule& schedule, const nn::Tensors& inputs, const Tensor& y,
                                 const MultiLossFn& loss) {
  check_schedule(schedule);
  const int m = schedule.microbatches;
  std::optional<ThreadLimit> limit;
  if (intra_op_threads_ > 0) limit.emplace(intra_op_threads_);
  std::vector<nn::Tensors> xs;  // [microbatch][input]
  std::vector<Tensor> ys;
  int64_t rows = 0;
  if (is_first()) {
    WEFT_CHECK(!inputs.empty() && inputs[0].defined() && inputs[0].dim() >= 1, "pipeline: stage 0 needs the input batch");
    xs = scatter_rows(inputs, microbatch_rows(batch_rows(inputs, "pipeline"), m));
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
  std::vector<InFlight> flights(size_t(m * num_chunks()));  // [chunk * m + microbatch]
  int in_flight = 0;
  const auto& mine = schedule.per_stage.at(size_t(stage()));
  const bool split = std::any_of(mine.begin(), mine.end(), [](const Action& a) { return a.kind == Action::W; });
  const std::vector<size_t> final_grads = last_gradient_actions(mine, num_chunks(), split);
  double total = 0;
  for (size_t i = 0; i < mine.size(); ++i) {
    const Action& a = mine[i];
    reap_sends();
    try {
      InFlight& f = flights.at(size_t(a.chunk * m + a.microbatch));
      // Data parallel stages: only the backward that completes a chunk's gradients
      // all-reduces them; the others accumulate into .grad.
      std::optional<DistributedDataParallel::NoSyncGuard> accumulate;
      if (ddp_ && i != final_grads[size_t(a.chunk)]) accumulate.emplace(*ddp_);
      if (a.kind == Action::F) {
        forward_action(a, f, xs, ys, rows);
        stats_.peak_in_flight = std::max(stats_.peak_in_flight, ++in_flight);
      } else if (a.kind == Action::B) {
        if (model_output(a.chunk)) total += f.loss.item<double>();
        backward_action(a, f, split);
        if (!split) --in_flight;
      } else {
        weight_action(a, f);
        --in_flight;
      }
    } catch (const std::exception& e) {
      throw Error(detail::str("pipeline stage ", stage(), " (", device_, "), ", label(a), " of the ", schedule.name,
                              " schedule: ", e.what()));
    }
  }
  if (ddp_) {
    const double t0 = now_ms();
    ddp_->synchronize();  // waiting for the replicas is not busy time, but the averaging is
    stats_.allreduce_ms = now_ms() - t0;
  }
  stats_.transposed_bytes = nn::TransposedWeightScope::bytes();
  wait_sends();
  stats_.wall_ms = now_ms() - start;
  stats_.peak_step_bytes = device_memory(device_).peak - start_bytes;
  return total;
}

Tensor PipelineStage::forward(const Tensor& x, int microbatches) {
  const nn::Tensors out = forward(x.defined() ? nn::Tensors{x} : nn::Tensors{}, microbatches);
  if (out.empty()) return Tensor();  // not the last stage
  WEFT_CHECK(out.size() == 1, "pipeline: forward(x) returns one tensor, but the layers returned ", out.size(),
             "; call forward with a list of inputs to get them all");
  return out[0];
}

nn::Tensors PipelineStage::forward(const nn::Tensors& inputs, int microbatches) {
  autograd::NoGradGuard no_grad;
  std::optional<nn::TransposedWeightScope> keep_transposed;  // as in train_step
  if (microbatches > 1) keep_transposed.emplace();
  std::optional<ThreadLimit> limit;
  if (intra_op_threads_ > 0) limit.emplace(intra_op_threads_);
  std::vector<nn::Tensors> xs, outs;
  RowRanges rows;  // on the last stage: each microbatch's rows, from the headers
  if (is_first()) {
    WEFT_CHECK(!inputs.empty() && inputs[0].defined() && inputs[0].dim() >= 1, "pipeline: stage 0 needs the input batch");
    xs = scatter_rows(inputs, microbatch_rows(batch_rows(inputs, "pipeline"), microbatches));
  }
  // Chunk by chunk, every microbatch through each (GPipe's forward order): sends do not
  // block, so each stage's chunk c runs as soon as the previous virtual stage delivers.
  for (int c = 0; c < num_chunks(); ++c)
    for (int mb = 0; mb < microbatches; ++mb) {
      try {
        Activations in;
        if (model_input(c)) in.tensors = xs[size_t(mb)], in.rows = xs[size_t(mb)][0].size(0);
        else in = receive_activations(c);
        for (Tensor& t : in.tensors)
          if (t.device() != device_) t = t.to(device_);
        nn::Tensors out = run_chunk(c, in.tensors);
        if (model_output(c)) {
          const int64_t start = rows.empty() ? 0 : rows.back().second;
          rows.emplace_back(start, start + in.rows);
          outs.push_back(std::move(out));
        } else {
          send_activations(out, std::vector<bool>(out.size(), false), in.rows, c);
        }
      } catch (const std::exception& e) {
        throw Error(detail::str("pipeline stage ", stage(), " (", device_, "), forward (", mb,
                                num_chunks() > 1 ? detail::str(", chunk ", c) : std::string(), "): ", e.what()));
      }
    }
  wait_sends();
  return is_last() ? gather_rows(outs, rows, device_, "pipeline forward") : nn::Tensors{};
}

}  // namespace weft::parallel::pipeline
