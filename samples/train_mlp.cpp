// train_mlp: a 784-512-256-10 ReLU MLP on Fashion-MNIST.
//
// Its recipe (common/recipes.h): AdamW, linear warmup then cosine decay, label smoothing
// 0.1, 10 epochs; inputs normalised with the training set's mean and std.
#include "common/models.h"
#include "common/trainer.h"

int main(int argc, char** argv) {
  return weft::samples::train_main(argc, argv, "train_mlp", weft::samples::mlp_recipe(), weft::samples::make_mlp);
}
