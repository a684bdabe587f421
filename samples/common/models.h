// The two sample models, shared by the samples and the benchmarks so both always
// measure the same network.
#pragma once

#include <memory>

#include "../../nn/nn.h"

namespace weft::samples {

// 784-512-256-10 with ReLU: (B,1,28,28) -> (B,10) logits.
inline std::shared_ptr<nn::Sequential> make_mlp() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Flatten>(),                                         // (B,784)
      std::make_shared<nn::Linear>(784, 512), std::make_shared<nn::ReLU>(),  // (B,512)
      std::make_shared<nn::Linear>(512, 256), std::make_shared<nn::ReLU>(),  // (B,256)
      std::make_shared<nn::Linear>(256, 10)});                               // (B,10)
}

// conv3x3 32, ReLU, maxpool 2, conv3x3 64, ReLU, maxpool 2, fc 128, ReLU, fc 10. The
// convolutions are padded ("same"), so the feature maps go 28 -> 14 -> 7.
inline std::shared_ptr<nn::Sequential> make_cnn() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(1, 32, 3, 1, 1), std::make_shared<nn::ReLU>(),  // (B,32,28,28)
      std::make_shared<nn::MaxPool2d>(2),                                           // (B,32,14,14)
      std::make_shared<nn::Conv2d>(32, 64, 3, 1, 1), std::make_shared<nn::ReLU>(), // (B,64,14,14)
      std::make_shared<nn::MaxPool2d>(2),                                           // (B,64,7,7)
      std::make_shared<nn::Flatten>(),                                              // (B,3136)
      std::make_shared<nn::Linear>(64 * 7 * 7, 128), std::make_shared<nn::ReLU>(),  // (B,128)
      std::make_shared<nn::Linear>(128, 10)});                                      // (B,10)
}

}  // namespace weft::samples
