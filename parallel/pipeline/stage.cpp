#include "stage.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include "../../autograd/functions.h"
#include "../../autograd/tape.h"
#include "../../nn/linear.h"
#include "../../nn/sequential.h"
#include "../../tensor/generator.h"
#include "../../tensor/memory.h"
#include "../../tensor/thread_pool.h"
#include "../trace.h"

namespace weft::parallel::pipeline {

namespace {

// Activations go forward under one tag, gradients back under another, each per receiving
// chunk; messages of one (source, tag) arrive in the order they were sent, which is the
// microbatch order of both neighbours' action lists (validate() checks that they agree).
constexpr int kTagActivation = 7001, kTagGradient = 7002;
int activation_tag(int chunk) { return kTagActivation + 2 * chunk; }
int gradient_tag(int chunk) { return kTagGradient + 2 * chunk; }
// An activation's header: dtype, number of dims, then up to kMaxDims sizes.
constexpr int kMaxDims = 8;
constexpr int64_t kHeaderLen = 2 + kMaxDims;

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
  Tensor out;    // this stage's output (on the tape; a recomputed microbatch drops it after F)
  Shape out_shape;  // its shape and dtype: B receives a gradient of that shape
  DType out_dtype = kFloat32;
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

// `chunk`'s output to the next virtual stage.
void PipelineStage::send_activation(const Tensor& t_in, int chunk) {
  const Tensor t = t_in.detach().to(wire()).contiguous();
  WEFT_CHECK(t.dim() <= kMaxDims, "pipeline: an activation has ", t.dim(), " dims; at most ", kMaxDims, " cross");
  std::vector<int64_t> h(kHeaderLen, 0);
  h[0] = static_cast<int64_t>(t.dtype()), h[1] = t.dim();
  for (int64_t d = 0; d < t.dim(); ++d) h[size_t(2 + d)] = t.size(d);
  const Tensor header = tensor(h).to(wire());
  const int to = virtual_stage(chunk) + 1, dst = to % num_stages(), tag = activation_tag(to / num_stages());
  pending_sends_.emplace_back(comm_->isend(header, dst, tag), header);
  pending_sends_.emplace_back(comm_->isend(t, dst, tag), t);
}

// `chunk`'s input from the previous virtual stage.
Tensor PipelineStage::receive_activation(int chunk) {
  const int src = (virtual_stage(chunk) - 1) % num_stages();
  Tensor header = empty({kHeaderLen}, kInt64, wire());
  comm_->recv(header, src, activation_tag(chunk));
  const std::vector<int64_t> h = header.to(kCPU).to_vector<int64_t>();
  WEFT_CHECK(h[1] >= 0 && h[1] <= kMaxDims, "pipeline: a corrupt activation header from stage ", src);
  const Shape shape(std::vector<int64_t>(h.begin() + 2, h.begin() + 2 + h[1]));
  Tensor t = empty(shape, static_cast<DType>(h[0]), wire());
  comm_->recv(t, src, activation_tag(chunk));
  return t;  // forward_action moves it to this stage's device
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

void PipelineStage::forward_action(const Action& a, InFlight& f, const std::vector<Tensor>& xs,
                                   const std::vector<Tensor>& ys, int64_t rows) {
  const int mb = a.microbatch, c = a.chunk;
  Tensor in = model_input(c) ? xs[size_t(mb)] : receive_activation(c);  // waiting is not busy time
  const double t0 = now_ms();
  trace::Scope span(span_name(a), "compute", comm_->trace_rank());
  if (in.device() != device_) in = in.to(device_);
  if (!model_input(c) && is_floating(in.dtype())) in.requires_grad_(true);  // its .grad goes back
  f.input = in;
  f.recompute = recompute_ == Recompute::Always || (recompute_ == Recompute::ExceptLast && mb != microbatches_ - 1);
  std::optional<autograd::NoGradGuard> no_tape;  // recomputed: nothing kept but the input
  std::optional<RecordDraws> record;
  if (f.recompute) no_tape.emplace(), record.emplace(f.draws);
  f.out = (*chunks_[size_t(c)])(in);
  if (model_output(c)) {
    const Tensor& y = ys[size_t(mb)];
    f.target = y.device() == f.out.device() ? y : y.to(f.out.device());
    f.share = double(y.size(0)) / double(rows);
    f.loss = (*loss_)(f.out, f.target) * f.share;
  } else {
    send_activation(f.out, c);
  }
  f.out_shape = f.out.shape(), f.out_dtype = f.out.dtype();
  if (f.recompute) f.out = Tensor();  // B makes it again; until then only the input is kept
  stats_.busy_ms += now_ms() - t0;
}

void PipelineStage::backward_action(const Action& a, InFlight& f, bool split) {
  const int c = a.chunk, p = num_stages();
  Tensor grad;
  if (!model_output(c)) {
    grad = empty(f.out_shape, f.out_dtype, wire());
    comm_->recv(grad, (virtual_stage(c) + 1) % p, gradient_tag(c));
    grad = grad.to(device_);
  }
  const double t0 = now_ms();
  {
    trace::Scope span(span_name(a), "compute", comm_->trace_rank());
    if (f.recompute) recompute_forward(f, c);
    const Tensor& root = model_output(c) ? f.loss : f.out;
    // Split (zero-bubble schedules): the input gradient now, the weights' at this
    // microbatch's W action (autograd::backward_deferring).
    if (split && root.requires_grad())
      f.weights = autograd::backward_deferring(root, grad, chunks_[size_t(c)]->parameters());
    else if (root.requires_grad())
      root.backward(grad);
    if (!model_input(c)) {
      Tensor g = f.input.grad();
      if (!g.defined()) g = zeros_like(f.input);  // the output did not depend on the input
      g = g.to(wire()).contiguous();
      const int to = virtual_stage(c) - 1;
      pending_sends_.emplace_back(comm_->isend(g, to % p, gradient_tag(to / p)), g);
    }
  }
  if (split) f.input = f.out = f.loss = Tensor();  // only what W needs stays, in f.weights
  else f = InFlight{};                              // the microbatch's activations can go
  stats_.busy_ms += now_ms() - t0;
}

// The forward of a recomputed microbatch again, on the tape this time, with the random
// draws of the first time and no second update of running statistics.
void PipelineStage::recompute_forward(InFlight& f, int chunk) {
  ReplayDraws replay(f.draws);
  nn::RecomputeGuard again;
  f.out = (*chunks_[size_t(chunk)])(f.input);
  if (model_output(chunk)) f.loss = (*loss_)(f.out, f.target) * f.share;
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
  check_schedule(schedule);
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
  autograd::NoGradGuard no_grad;
  std::optional<nn::TransposedWeightScope> keep_transposed;  // as in train_step
  if (microbatches > 1) keep_transposed.emplace();
  std::optional<ThreadLimit> limit;
  if (intra_op_threads_ > 0) limit.emplace(intra_op_threads_);
  std::vector<Tensor> xs, outs;
  if (is_first()) xs = split_rows(x, microbatch_rows(x.size(0), microbatches));
  // Chunk by chunk, every microbatch through each (GPipe's forward order): sends do not
  // block, so each stage's chunk c runs as soon as the previous virtual stage delivers.
  for (int c = 0; c < num_chunks(); ++c)
    for (int mb = 0; mb < microbatches; ++mb) {
      try {
        Tensor in = model_input(c) ? xs[size_t(mb)] : receive_activation(c);
        if (in.device() != device_) in = in.to(device_);
        Tensor out = (*chunks_[size_t(c)])(in);
        if (model_output(c)) outs.push_back(out);
        else send_activation(out, c);
      } catch (const std::exception& e) {
        throw Error(detail::str("pipeline stage ", stage(), " (", device_, "), forward (", mb,
                                num_chunks() > 1 ? detail::str(", chunk ", c) : std::string(), "): ", e.what()));
      }
    }
  wait_sends();
  return is_last() ? cat(outs, 0) : Tensor();
}

}  // namespace weft::parallel::pipeline
