// What the training samples share around weft's training loop (training/loop.h): the
// common flags, the data, evaluation, and train_main, the whole of train_mlp and
// train_cnn. train_ddp and train_pruned use the pieces (flags, data, evaluation) and run
// the loop themselves.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "../../weft.h"
#include "recipes.h"

namespace CLI {
class App;
}

namespace weft::samples {

// Everything the common flags set.
struct Config {
  Recipe r;
  int threads = 0;  // 0: leave weft's default
  uint64_t seed = 0;
  std::string data = data::kFashionMnistDir;
  std::string device = "cpu";
  std::string checkpoint, resume;
  int64_t limit = 0;  // train on the first N samples only (quick runs)
  bool cuda_graph = false;  // capture the step as a CUDA graph (GPU only)
  // --precision: fp32, or bf16 / fp16 for mixed precision (Autocast over the forward and
  // the loss, float32 master weights; fp16 adds loss scaling). Evaluation runs the same way.
  DType precision = kFloat32;
  // --stop-after-epoch: end after this epoch (its checkpoint written), on --epochs'
  // schedule; 0: train all epochs (training::Loop::stop_after_epoch).
  int stop_after_epoch = 0;
};

// --epochs --batch-size --lr --optimizer --weight-decay --label-smoothing --threads
// --seed --data --device --checkpoint --resume --limit --precision --stop-after-epoch,
// with c's values as defaults.
// Each value is checked as it is parsed (flags.h): CLI::ValidationError names the flag
// and the value; a --checkpoint that cannot be written is one.
void add_flags(CLI::App& app, Config& c);

// Sets r to `recipe`, except the fields whose flag (add_flags) was given on the command
// line: for a sample whose recipe depends on another flag (train_ddp's --model).
void apply_recipe(const CLI::App& app, const Recipe& recipe, Recipe& r);

// Fashion-MNIST, normalised with the training set's mean and std; --limit applied.
struct FashionMnist {
  data::TensorDataset train, test;
};
FashionMnist load_data(const Config& c);

inline std::unique_ptr<optim::Optimizer> make_optimizer(const Config& c, const std::vector<Tensor>& params) {
  return make_optimizer(c.r, params);
}

// How many samples of `test` the model classifies correctly (eval mode, no tape).
int64_t count_correct(nn::Module& model, const data::TensorDataset& test, Device device);
// The fraction of `test` classified correctly (then back to train mode).
double evaluate(nn::Module& model, const data::TensorDataset& test, Device device);

// MPI_COMM_WORLD for a sample run under mpirun (--backend mpi), or an error saying how to
// build weft with MPI. Open MPI is asked to yield the core while a rank waits (see
// trainer.cpp); call it before anything else starts MPI.
std::shared_ptr<parallel::MpiCommunicator> mpi_world();

// --backend nccl: throws unless weft has NCCL and a GPU is visible. nccl_over: an NCCL
// communicator over `boot` (MPI or threads) for this rank, on cuda:device, made the
// calling thread's current device (weft's kernels run there).
void check_nccl();
std::shared_ptr<parallel::Communicator> nccl_over(std::shared_ptr<parallel::Communicator> boot, int device);

// Parses the command line (defaults from `recipe`), trains the model `make_model`
// builds on Fashion-MNIST, and prints `test_accuracy=... train_samples_per_s=...` last.
// Returns the process exit code.
int train_main(int argc, char** argv, const std::string& name, const Recipe& recipe,
               const std::function<std::shared_ptr<nn::Module>()>& make_model);

}  // namespace weft::samples
