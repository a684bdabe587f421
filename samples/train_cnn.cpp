// train_cnn: conv3x3 32, ReLU, maxpool 2, conv3x3 64, ReLU, maxpool 2, fc 128, ReLU, fc 10.
//
// The convolutions are padded ("same"), so the feature maps go 28 -> 14 -> 7.
#include "common/trainer.h"

using namespace weft;

int main(int argc, char** argv) {
  const samples::Recipe recipe{.epochs = 5, .batch_size = 128, .lr = 2e-3};
  return samples::train_main(argc, argv, "train_cnn", recipe, [] {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv2d>(1, 32, 3, 1, 1), std::make_shared<nn::ReLU>(),  // (B,32,28,28)
        std::make_shared<nn::MaxPool2d>(2),                                           // (B,32,14,14)
        std::make_shared<nn::Conv2d>(32, 64, 3, 1, 1), std::make_shared<nn::ReLU>(), // (B,64,14,14)
        std::make_shared<nn::MaxPool2d>(2),                                           // (B,64,7,7)
        std::make_shared<nn::Flatten>(),                                              // (B,3136)
        std::make_shared<nn::Linear>(64 * 7 * 7, 128), std::make_shared<nn::ReLU>(),  // (B,128)
        std::make_shared<nn::Linear>(128, 10)});                                      // (B,10)
  });
}
