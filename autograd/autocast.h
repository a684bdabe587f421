// Autocast: mixed-precision training by op lists, as torch.autocast.
//
//   {
//     Autocast ac(kBFloat16);            // this thread, until the end of the scope
//     Tensor logits = model->forward(x); // Linear and Conv2d run in bfloat16
//     Tensor loss = nn::cross_entropy(logits, y);  // in float32
//   }
//   loss.backward();                     // each gradient in its input's dtype:
//                                        // float32 for the float32 parameters
//
// The parameters stay float32 (the "master weights"): an op on the lower-precision list
// casts its float32 inputs to the autocast dtype as it runs -- a differentiable cast, so
// the gradient flows back and arrives in float32 -- and an op on the float32 list casts
// 16-bit inputs up. Every other op runs in its inputs' dtype, and one that mixes a 16-bit
// tensor with a float32 one computes in float32 (tensor/cpu/elementwise.cpp, mixes_half).
//
//   lower precision: matmul, linear, conv2d (and so attention's two products)
//   float32:         softmax, log_softmax, cross_entropy, nll_loss, mse_loss,
//                    layer_norm, rms_norm, batch_norm
//
// The lists follow PyTorch's CUDA lists, which keep exponentials, logarithms and
// normalisations in float32. PyTorch's CPU autocast leaves softmax and the norms off
// its float32 list (they run in bfloat16 there); weft uses one list on every device, so
// a model trains the same on the CPU and the GPU. Sums and means need no list: weft's
// reductions accumulate in float32 for 16-bit inputs anyway.
//
// float16 has a narrow range (largest 65504, smallest normal 6e-5): small gradients
// underflow to zero, so train in float16 with optim::GradScaler. bfloat16 has float32's
// range and needs none.
//
// The scope is per thread, as PyTorch's is: a thread that runs a forward (a DDP rank, a
// pipeline stage) opens its own. Unlike PyTorch, weft does not cache the 16-bit copy of a
// weight within a scope: a weight used twice in one forward is cast twice.
#pragma once

#include <string>
#include <vector>

#include "../tensor/tensor.h"

namespace weft {

class Autocast {
 public:
  // dtype: kBFloat16 or kFloat16. enabled = false opens a scope where autocast is off
  // (a float32 island inside an autocast region).
  explicit Autocast(DType dtype = kBFloat16, bool enabled = true);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

namespace autocast {

bool enabled();  // on this thread
DType dtype();   // the lower-precision dtype of the innermost scope

// The scope a training precision asks for: Autocast(precision) for bfloat16 / float16,
// a scope with autocast off for float32 -- so a loop opens it whatever the precision:
//   { const Autocast ac = autocast::for_precision(p); loss = ...; }
Autocast for_precision(DType precision);

// For an op on the lower-precision list: t cast to dtype() when autocast is on and t is
// float32 (or the other 16-bit type); else t itself (an undefined t stays undefined).
Tensor lower(const Tensor& t);
// For an op on the float32 list: t cast to float32 when autocast is on and t is 16-bit.
Tensor to_float32(const Tensor& t);

// The two lists, by op name (for documentation and tests).
const std::vector<std::string>& lower_precision_ops();
const std::vector<std::string>& float32_ops();

}  // namespace autocast
}  // namespace weft
