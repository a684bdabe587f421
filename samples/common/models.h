// The two sample models, shared by the samples and the benchmarks so both always
// measure the same network.
#pragma once

#include <memory>
#include <string>

#include "../../nn/nn.h"

namespace weft::samples {

// 784-512-256-10 with ReLU: (B,1,28,28) -> (B,10) logits.
inline std::shared_ptr<nn::Sequential> make_mlp() {
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Flatten>();                          // (B,784)
  net->add<nn::Linear>(784, 512), net->add<nn::ReLU>();  // (B,512)
  net->add<nn::Linear>(512, 256), net->add<nn::ReLU>();  // (B,256)
  net->add<nn::Linear>(256, 10);                    // (B,10)
  return net;
}

// conv3x3 32, ReLU, maxpool 2, conv3x3 64, ReLU, maxpool 2, fc 128, ReLU, fc 10. The
// convolutions are padded ("same"), so the feature maps go 28 -> 14 -> 7.
inline std::shared_ptr<nn::Sequential> make_cnn() {
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Conv2d>(1, 32, nn::Conv2dOptions{.kernel_size = 3, .padding = 1});   // (B,32,28,28)
  net->add<nn::ReLU>(), net->add<nn::MaxPool2d>(2);                                 // (B,32,14,14)
  net->add<nn::Conv2d>(32, 64, nn::Conv2dOptions{.kernel_size = 3, .padding = 1});  // (B,64,14,14)
  net->add<nn::ReLU>(), net->add<nn::MaxPool2d>(2);                                 // (B,64,7,7)
  net->add<nn::Flatten>();                                                          // (B,3136)
  net->add<nn::Linear>(64 * 7 * 7, 128), net->add<nn::ReLU>();                      // (B,128)
  net->add<nn::Linear>(128, 10);                                                    // (B,10)
  return net;
}

// The model pipelining is for: a deep stack of wide layers whose work splits evenly.
// Flatten, 784 -> 1024, then 6 x (1024 -> 1024), then 1024 -> 512 -> 10, with ReLU
// between: 18 layers, 7.6 M parameters. In units of one 1024 x 1024 layer's three
// products (forward, input gradient, weight gradient), the first layer costs 0.5 (784
// inputs, and no input gradient: nothing before it wants one), the middle ones 1, the
// 1024 -> 512 layer 0.5: two stages cut after the fourth Linear get 3.5 and 3.5, and
// four get at most 2 of 7. (Ending in 1024 -> 10 instead, as before, left two stages
// 3.5 and 3.0, and the slower one set every step's pace.)
inline std::shared_ptr<nn::Sequential> make_deep_mlp() {
  auto net = std::make_shared<nn::Sequential>();
  net->add<nn::Flatten>();                                   // (B,784)
  net->add<nn::Linear>(784, 1024), net->add<nn::ReLU>();     // (B,1024)
  for (int i = 0; i < 6; ++i) net->add<nn::Linear>(1024, 1024), net->add<nn::ReLU>();
  net->add<nn::Linear>(1024, 512), net->add<nn::ReLU>();     // (B,512)
  net->add<nn::Linear>(512, 10);                             // (B,10)
  return net;
}

// --model mlp | cnn | deep-mlp
inline std::shared_ptr<nn::Sequential> make_model(const std::string& name) {
  if (name == "mlp") return make_mlp();
  if (name == "cnn") return make_cnn();
  if (name == "deep-mlp") return make_deep_mlp();
  throw Error(detail::str("--model: unknown model '", name, "' (use mlp, cnn or deep-mlp)"));
}

}  // namespace weft::samples
