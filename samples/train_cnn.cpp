// train_cnn: conv3x3 32, ReLU, maxpool 2, conv3x3 64, ReLU, maxpool 2, fc 128, ReLU, fc 10
// on Fashion-MNIST, with the MLP's recipe for 5 epochs (common/recipes.h).
#include "common/models.h"
#include "common/trainer.h"

int main(int argc, char** argv) {
  return weft::samples::train_main(argc, argv, "train_cnn", weft::samples::cnn_recipe(), weft::samples::make_cnn);
}
