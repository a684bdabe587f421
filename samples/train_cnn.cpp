// train_cnn: conv3x3 32, ReLU, maxpool 2, conv3x3 64, ReLU, maxpool 2, fc 128, ReLU, fc 10
// on Fashion-MNIST, with the same recipe as train_mlp.
#include "common/models.h"
#include "common/trainer.h"

int main(int argc, char** argv) {
  const weft::samples::Recipe recipe{.epochs = 5, .batch_size = 128, .lr = 2e-3};
  return weft::samples::train_main(argc, argv, "train_cnn", recipe, weft::samples::make_cnn);
}
