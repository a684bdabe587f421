// train_mlp: a 784-512-256-10 ReLU MLP on Fashion-MNIST.
//
// Default recipe: AdamW, linear warmup then cosine decay, label smoothing 0.1, inputs
// normalised with the training set's mean and std.
#include "common/models.h"
#include "common/trainer.h"

int main(int argc, char** argv) {
  const weft::samples::Recipe recipe{.epochs = 10, .batch_size = 128, .lr = 2e-3};
  return weft::samples::train_main(argc, argv, "train_mlp", recipe, weft::samples::make_mlp);
}
