#include "shard.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <map>
#include <sstream>

#include "../../autograd/functions.h"
#include "../../autograd/tape.h"
#include "../../optim/optimizer.h"
#include "../../tensor/error.h"
#include "../../tensor/memory.h"
#include "partition.h"

namespace weft::parallel {

// ---- Balance -------------------------------------------------------------------------------

Balance Balance::parse(const std::string& spec) {
  Balance b;
  if (spec == "layers") return b;
  if (spec == "params") return b.kind = Kind::Params, b;
  if (spec == "time") return b.kind = Kind::Time, b;
  if (spec.rfind("manual:", 0) == 0) {
    b.kind = Kind::Manual;
    b.manual = spec.substr(7);
    return b;
  }
  throw Error(detail::str("balance: '", spec, "' is not one of layers, params, time, manual:i,j,..."));
}

std::string Balance::str() const {
  switch (kind) {
    case Kind::Layers: return "layers";
    case Kind::Params: return "params";
    case Kind::Time: return "time";
    case Kind::Manual: break;
  }
  return "manual:" + manual;
}

// ---- per-layer costs -----------------------------------------------------------------------

std::vector<double> layer_param_costs(nn::Sequential& model) {
  std::vector<double> costs;
  for (size_t i = 0; i < model.size(); ++i) costs.push_back(double(model[i]->num_parameters()));
  return costs;
}

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

// Each layer runs forward and backward on the previous layer's real outputs (so its
// inputs have the shapes and the values they will see), best of `repeats` after a
// warm-up. Backward starts from every output that needs a gradient, with ones as its
// gradient (what the next layer's backward would hand it, in cost).
std::vector<double> layer_time_costs(nn::Sequential& model, const nn::Tensors& sample, int repeats) {
  WEFT_CHECK(!sample.empty(), "balance by time: needs a sample input batch");
  for (size_t k = 0; k < sample.size(); ++k)
    WEFT_CHECK(sample[k].defined(), "balance by time: sample tensor ", k, " of ", sample.size(), " is undefined");
  std::vector<double> costs;
  nn::Tensors x;
  for (const Tensor& t : sample) x.push_back(t.detach());
  // Which inputs need a gradient, as in a pipeline stage (stage.h): those the layer
  // before made on the tape, from its parameters or from inputs that need one. The
  // model's own inputs need none: the first Linear computes no input gradient in
  // training (timing one made its stage look costlier than it is), and a float mask made
  // from the input crosses forward only.
  std::vector<bool> wants(x.size(), false);
  for (size_t i = 0; i < model.size(); ++i) {
    nn::Tensors out;
    double best = 1e300;
    for (int r = 0; r <= std::max(1, repeats); ++r) {  // r == 0 warms up
      nn::Tensors in;
      for (size_t k = 0; k < x.size(); ++k) {
        in.push_back(x[k].detach());
        if (wants[k]) in.back().requires_grad_(true);
      }
      const auto t0 = std::chrono::steady_clock::now();
      out = model[i]->forward_many(in);
      // One output needing a gradient: backward from it with ones. Several: from the
      // sum of their sums, whose backward hands each of them ones too (the sums are
      // timed with the layer: one pass over its outputs, small next to a block).
      std::vector<Tensor> roots;
      for (const Tensor& o : out)
        if (o.requires_grad()) roots.push_back(o);
      if (roots.size() == 1) roots[0].backward(ones_like(roots[0]));
      if (roots.size() > 1) {
        Tensor total = roots[0].sum();
        for (size_t k = 1; k < roots.size(); ++k) total = total + roots[k].sum();
        total.backward();
      }
      if (r > 0) best = std::min(best, ms_since(t0));
    }
    model[i]->zero_grad();
    costs.push_back(best);
    x.clear();
    wants.clear();
    for (const Tensor& o : out) {
      x.push_back(o.detach());
      wants.push_back(o.requires_grad());
    }
  }
  return costs;
}

std::vector<size_t> stage_boundaries(nn::Sequential& model, size_t stages, const Balance& balance) {
  const size_t n = model.size();
  WEFT_CHECK(stages >= 1 && stages <= n, "shard: cannot cut ", n, " layers into ", stages, " stages");
  auto to_sizes = [](const std::vector<int>& v) { return std::vector<size_t>(v.begin(), v.end()); };
  switch (balance.kind) {
    case Balance::Kind::Layers: return to_sizes(pipeline::balance_by_count(int(n), int(stages)));
    case Balance::Kind::Params:
      return to_sizes(pipeline::balance_by_cost(layer_param_costs(model), int(stages)).first_layer);
    case Balance::Kind::Time:
      return to_sizes(pipeline::balance_by_cost(layer_time_costs(model, balance.sample), int(stages)).first_layer);
    case Balance::Kind::Manual:
      return to_sizes(pipeline::parse_boundaries(balance.manual, int(n), int(stages)));
  }
  return {};
}

std::shared_ptr<ShardedSequential> shard(std::shared_ptr<nn::Sequential> model, std::vector<Device> devices,
                                         const Balance& balance) {
  WEFT_CHECK(model != nullptr, "shard: the model is null");
  std::vector<size_t> first = stage_boundaries(*model, devices.size(), balance);
  return std::make_shared<ShardedSequential>(std::move(model), std::move(devices), std::move(first));
}

std::shared_ptr<ShardedSequential> shard_interleaved(std::shared_ptr<nn::Sequential> model,
                                                     const std::vector<Device>& devices, int chunks,
                                                     const Balance& balance) {
  WEFT_CHECK(chunks >= 1 && !devices.empty(), "shard_interleaved: needs devices and at least one chunk per stage, got ",
             devices.size(), " devices and v=", chunks);
  std::vector<Device> per_chunk;  // chunk k on devices[k % p]
  for (int c = 0; c < chunks; ++c) per_chunk.insert(per_chunk.end(), devices.begin(), devices.end());
  return shard(std::move(model), std::move(per_chunk), balance);
}

std::vector<std::shared_ptr<nn::Module>> stage_chunks(const ShardedSequential& model, size_t stages, size_t stage) {
  WEFT_CHECK(stages >= 1 && stage < stages && model.num_stages() % stages == 0, "stage_chunks: stage ", stage, " of ",
             stages, " in a model cut into ", model.num_stages(), " chunks");
  std::vector<std::shared_ptr<nn::Module>> chunks;
  for (size_t k = stage; k < model.num_stages(); k += stages) chunks.push_back(model.stage(k));
  return chunks;
}

// ---- the sharded module ----------------------------------------------------------------

ShardedSequential::ShardedSequential(std::shared_ptr<nn::Sequential> model, std::vector<Device> devices,
                                     std::vector<size_t> first_layer)
    : model_(std::move(model)), devices_(std::move(devices)), first_(std::move(first_layer)) {
  WEFT_CHECK(model_ != nullptr && model_->size() > 0, "shard: the model has no layers");
  WEFT_CHECK(!devices_.empty() && first_.size() == devices_.size(), "shard: ", devices_.size(), " devices but ",
             first_.size(), " stage boundaries");
  WEFT_CHECK(first_[0] == 0, "shard: stage 0 must start at layer 0");
  const auto children = model_->named_children();
  for (size_t s = 0; s < first_.size(); ++s) {
    const size_t end = s + 1 < first_.size() ? first_[s + 1] : model_->size();
    WEFT_CHECK(first_[s] < end && end <= model_->size(), "shard: stage ", s, " would hold layers [", first_[s],
               ", ", end, ") of a ", model_->size(), "-layer model");
    auto stage = std::make_shared<nn::Sequential>();
    for (size_t i = first_[s]; i < end; ++i) {
      (*model_)[i]->to(devices_[s]);
      stage->push_back((*model_)[i]);
      add_child(children[i].first, (*model_)[i]);  // the unsharded model's names
    }
    stages_.push_back(std::move(stage));
  }
  train(model_->is_training());
}

nn::Tensors ShardedSequential::forward_many(const nn::Tensors& inputs) {
  nn::Tensors h = inputs;
  for (size_t s = 0; s < stages_.size(); ++s) {
    for (Tensor& t : h)
      if (t.device() != devices_[s]) t = t.to(devices_[s]);  // recorded: the gradient goes back
    h = stages_[s]->forward_many(h);
  }
  return h;
}

std::string ShardedSequential::repr() const {
  std::ostringstream os;
  os << "ShardedSequential(\n";
  for (size_t s = 0; s < stages_.size(); ++s) {
    os << "  stage " << s << " on " << devices_[s] << ":\n";
    for (size_t i = 0; i < stages_[s]->size(); ++i)
      os << "    (" << first_[s] + i << "): " << (*stages_[s])[i]->repr() << "\n";
  }
  return os.str() + ")";
}

// ---- optimizer state across stages ----------------------------------------------------------

namespace {
// "12.exp_avg" -> {12, "exp_avg"}; "step" -> {-1, "step"}.
std::pair<long, std::string> split_key(const std::string& key) {
  const size_t dot = key.find('.');
  if (dot == std::string::npos) return {-1, key};
  return {std::stol(key.substr(0, dot)), key.substr(dot + 1)};
}
}  // namespace

namespace {

// The model-wide index (in model.parameters()) of each parameter of stage s's optimizer,
// which runs over the parameters of stage_chunks(model, stages, s), chunk by chunk.
std::vector<size_t> global_indices(const ShardedSequential& model, size_t stages, size_t s) {
  std::vector<size_t> first(model.num_stages() + 1, 0);  // chunk k's first parameter
  for (size_t k = 0; k < model.num_stages(); ++k) first[k + 1] = first[k] + model.stage(k)->parameters().size();
  std::vector<size_t> out;
  for (size_t k = s; k < model.num_stages(); k += stages)
    for (size_t i = first[k]; i < first[k + 1]; ++i) out.push_back(i);
  return out;
}

}  // namespace

nn::NamedTensors merge_stage_states(const ShardedSequential& model, const std::vector<nn::NamedTensors>& stages) {
  WEFT_CHECK(!stages.empty() && model.num_stages() % stages.size() == 0, "merge_stage_states: ", stages.size(),
             " states for a model cut into ", model.num_stages(), " chunks");
  std::map<size_t, nn::NamedTensors> by_param;  // the whole model's order, whatever the chunks
  nn::NamedTensors whole;
  for (size_t s = 0; s < stages.size(); ++s) {
    const std::vector<size_t> global = global_indices(model, stages.size(), s);
    for (const auto& [key, t] : stages[s]) {
      const auto [i, name] = split_key(key);
      if (i < 0) {
        if (s == 0) whole.emplace_back(key, t.to(kCPU));  // every stage took the same steps
        continue;
      }
      WEFT_CHECK(size_t(i) < global.size(), "merge_stage_states: stage ", s, "'s state has '", key, "' but the stage "
                 "holds ", global.size(), " parameters");
      by_param[global[size_t(i)]].emplace_back(std::to_string(global[size_t(i)]) + "." + name, t.to(kCPU));
    }
  }
  for (auto& [i, entries] : by_param) whole.insert(whole.end(), entries.begin(), entries.end());
  return whole;
}

nn::NamedTensors stage_state(const ShardedSequential& model, size_t stage, const nn::NamedTensors& whole,
                             size_t stages) {
  if (stages == 0) stages = model.num_stages();
  const std::vector<size_t> global = global_indices(model, stages, stage);
  std::map<size_t, size_t> local;  // model-wide index -> index in the stage's optimizer
  for (size_t j = 0; j < global.size(); ++j) local[global[j]] = j;
  nn::NamedTensors part;
  for (const auto& [key, t] : whole) {
    const auto [i, name] = split_key(key);
    if (i < 0) part.emplace_back(key, t);
    else if (auto it = local.find(size_t(i)); it != local.end())
      part.emplace_back(std::to_string(it->second) + "." + name, t);
  }
  return part;
}

void ShardedSequential::begin_step() const {
  for (const Device& d : devices_) reset_device_peak(d);
}

namespace {
int64_t bytes_of(const Tensor& t) { return t.defined() ? t.numel() * int64_t(element_size(t.dtype())) : 0; }
}  // namespace

std::string ShardedSequential::memory_report(const optim::Optimizer* opt) const {
  std::ostringstream os;
  os << "stage  device  layers     params      grads  opt state  allocated  step peak  activations\n";
  for (size_t s = 0; s < stages_.size(); ++s) {
    int64_t params = 0, grads = 0, state = 0;
    for (const Tensor& p : stages_[s]->parameters()) {
      params += bytes_of(p);
      grads += bytes_of(p.grad());
      if (opt)
        for (const Tensor& t : opt->state_of(p)) state += bytes_of(t);
    }
    const DeviceMemory m = device_memory(devices_[s]);
    const size_t last = first_[s] + stages_[s]->size() - 1;
    // Above what the stage keeps between steps, the peak held activations and temporaries.
    const int64_t activations = std::max<int64_t>(0, m.peak - (params + grads + state));
    os << std::setw(5) << s << "  " << std::setw(6) << devices_[s].str() << "  " << std::setw(6)
       << (std::to_string(first_[s]) + "-" + std::to_string(last)) << " " << std::setw(10) << format_bytes(params)
       << " " << std::setw(10) << format_bytes(grads) << " " << std::setw(10) << format_bytes(state) << " "
       << std::setw(10) << format_bytes(m.allocated) << " " << std::setw(10) << format_bytes(m.peak) << " "
       << std::setw(12) << format_bytes(activations) << "\n";
  }
  return os.str();
}

}  // namespace weft::parallel
