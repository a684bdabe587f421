// train_mlp: a 784-512-256-10 ReLU MLP on Fashion-MNIST.
//
// Default recipe: AdamW, linear warmup then cosine decay, label smoothing 0.1, inputs
// normalised with the training set's mean and std.
#include "common/trainer.h"

using namespace weft;

int main(int argc, char** argv) {
  const samples::Recipe recipe{.epochs = 10, .batch_size = 128, .lr = 2e-3};
  return samples::train_main(argc, argv, "train_mlp", recipe, [] {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Flatten>(),                                                       // (B,1,28,28) -> (B,784)
        std::make_shared<nn::Linear>(784, 512), std::make_shared<nn::ReLU>(),                // (B,512)
        std::make_shared<nn::Linear>(512, 256), std::make_shared<nn::ReLU>(),                // (B,256)
        std::make_shared<nn::Linear>(256, 10)});                                             // (B,10) logits
  });
}
