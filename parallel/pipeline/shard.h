// Model sharding: one Sequential, its layers split across devices.
//
// The plain model parallelism of `part1.to("cuda:0"); part2.to("cuda:1")`, done for you:
//
//   auto net = samples::mlp();                                 // an nn::Sequential
//   auto sharded = parallel::shard(net, {Device::cpu(0), Device::cpu(1)},
//                                  parallel::Balance::parse("params"));
//   optim::AdamW opt(sharded->parameters(), {...});            // one optimizer over all of it
//   Tensor loss = cross_entropy((*sharded)(x), y);             // x on any device
//   loss.backward();                                           // gradients cross back
//   opt.step();                                                // one fused update per device
//
// Stage s holds a contiguous block of layers on devices[s]: its parameters, their
// gradients and the optimizer's state for them live there and nowhere else. Forward
// moves the activation across each boundary with Tensor::to, which the tape records, so
// backward moves its gradient back: nothing else is needed for correctness. What it costs
// is time -- while stage 1 computes, stage 0 waits. Microbatches and a pipeline schedule
// (pipeline.h) put the waiting stages to work.
//
// The module keeps the layers under their original names ("0", "1", ...), so a sharded
// model's state_dict has exactly the keys of the unsharded one: a checkpoint moves
// between a sharded run, the samples and any other number of stages.
//
// Layers that pass several tensors along (nn/module.h, forward_many: transformer blocks
// mapping (x, mask) to (y, mask)) shard the same way: each tensor of the list crosses a
// stage boundary with Tensor::to, and sharded(Tensors{x, mask}) returns the last layer's
// list. Balance::Time times them too: its sample is the list the first layer takes.
//
// Logical CPU devices (cpu:0, cpu:1, ...) share host memory but are separate devices to
// every op, so sharding runs, and is tested, on a machine without a GPU; the per-device
// byte counts of tensor/memory.h show what each stage holds.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../../nn/sequential.h"

namespace weft::optim {
class Optimizer;
}

namespace weft::parallel {

// How to cut the layers into stages.
struct Balance {
  enum class Kind { Layers, Params, Time, Manual };
  Kind kind = Kind::Layers;
  std::string manual;              // Manual: "2,5", the first layer of stages 1, 2, ...
  nn::Tensors sample;              // Time: a sample input batch the layers are timed on ({x}, or
                                   // {x, mask, ...} for layers that take several tensors)

  // "layers" (equal layer counts), "params" (equal parameter bytes), "time" (equal
  // measured forward + backward time; set `sample`), "manual:2,5" (stage 1 starts at
  // layer 2, stage 2 at layer 5; checked against the model by stage_boundaries).
  static Balance parse(const std::string& spec);
  std::string str() const;
};

class ShardedSequential : public nn::Module {
 public:
  // Moves layers [first_layer[s], first_layer[s + 1]) of `model` to devices[s].
  // first_layer[0] must be 0 and the list increasing, one entry per device.
  ShardedSequential(std::shared_ptr<nn::Sequential> model, std::vector<Device> devices,
                    std::vector<size_t> first_layer);

  // x, or each tensor of a list, on any device; the result is on the last stage's
  // device. (forward(x) is Module's: forward_many({x}), wanting one tensor back.)
  nn::Tensors forward_many(const nn::Tensors& inputs) override;
  std::string repr() const override;

  size_t num_stages() const { return stages_.size(); }
  Device device(size_t stage) const { return devices_.at(stage); }
  const std::vector<size_t>& first_layers() const { return first_; }
  // Stage s's layers as a Sequential of its own (the same layer objects, not copies).
  const std::shared_ptr<nn::Sequential>& stage(size_t s) const { return stages_.at(s); }
  const std::shared_ptr<nn::Sequential>& model() const { return model_; }

  // Per stage: its layers, parameters, gradients and optimizer state (bytes, counted
  // from the tensors), and from the device's byte counter (tensor/memory.h) what is
  // allocated now and the peak since begin_step(), whose excess over the persistent
  // bytes is the activations and temporaries of the step.
  std::string memory_report(const optim::Optimizer* opt = nullptr) const;
  // Starts a new peak on every stage's device (call before a step you want to measure).
  void begin_step() const;

 private:
  std::shared_ptr<nn::Sequential> model_;
  std::vector<Device> devices_;
  std::vector<size_t> first_;
  std::vector<std::shared_ptr<nn::Sequential>> stages_;
};

// Optimizer state across stages. A pipeline gives each stage its own optimizer over
// stage(s)->parameters(); a checkpoint should hold what ONE optimizer over the whole
// model would ("step", and "<i>.<buffer>" with i the index in parameters()), so that
// train_mlp/train_cnn -- or another stage count -- can resume from it.
// merge_stage_states: the stages' state_dicts (stage order) -> the whole model's.
// With model chunks (shard_interleaved) pass one state per stage, of an optimizer over
// that stage's chunks (stage_chunks, in order); the chunk count follows from the sizes.
nn::NamedTensors merge_stage_states(const ShardedSequential& model, const std::vector<nn::NamedTensors>& stages);
// stage_state: the whole model's optimizer state -> stage s's part, re-indexed. With
// model chunks, `stages` is p (0: one stage per chunk).
nn::NamedTensors stage_state(const ShardedSequential& model, size_t stage, const nn::NamedTensors& whole,
                             size_t stages = 0);

// The first layer of each of `devices.size()` stages under `balance`, and the sharded
// module. Distinct devices are not required (two stages on cpu:0 is legal, if useless).
std::vector<size_t> stage_boundaries(nn::Sequential& model, size_t stages, const Balance& balance);
std::shared_ptr<ShardedSequential> shard(std::shared_ptr<nn::Sequential> model, std::vector<Device> devices,
                                         const Balance& balance = {});

// INTERLEAVED SCHEDULES (schedule.h, virtual stages): the model cut into p * v chunks
// under `balance`, chunk k on devices[k % p], so stage s holds chunks s, s + p, ...
// The result is a ShardedSequential of p * v "stages" (one per chunk, each with its own
// state for merge_stage_states); stage_chunks gives stage s's chunks in chunk order,
// which is what PipelineStage takes.
std::shared_ptr<ShardedSequential> shard_interleaved(std::shared_ptr<nn::Sequential> model,
                                                     const std::vector<Device>& devices, int chunks,
                                                     const Balance& balance = {});
std::vector<std::shared_ptr<nn::Module>> stage_chunks(const ShardedSequential& model, size_t stages, size_t stage);

// Per-layer costs the balancers use: parameter elements, and measured forward + backward
// milliseconds on `sample` (each layer timed on the previous layer's real output list;
// backward from every output that needs a gradient).
std::vector<double> layer_param_costs(nn::Sequential& model);
std::vector<double> layer_time_costs(nn::Sequential& model, const nn::Tensors& sample, int repeats = 3);

}  // namespace weft::parallel
