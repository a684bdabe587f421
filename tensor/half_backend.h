// HalfBackend: how every op runs on bfloat16 and float16 tensors, on any device.
//
// A raw op whose input is a 16-bit float is routed here (backend.h's routed() and
// backend_for()), exactly as a GPU tensor is routed to the CUDA backend. Each op then
//
//   1. widens its 16-bit inputs to float32 (exact),
//   2. runs the float32 op -- the CPU loops, or the device's backend for a GPU tensor,
//   3. rounds the result once into the 16-bit output the raw op allocated.
//
// So a 16-bit op is its float32 op rounded once: what PyTorch's CPU kernels compute
// element by element, and what a reduction or a matrix product accumulating in float32
// gives. Integer and bool inputs (indices, targets, conditions) pass through untouched.
//
// Why not native 16-bit kernels: on a CPU, the arithmetic is float32 either way (x86 has
// no bf16 add; AVX-512 BF16 has only a bf16 dot product into float32), so a native
// element-wise kernel saves the round trip through memory and nothing else. For GEMM and
// convolution bench/autocast measured the conversion against the float32 kernels on the
// development machine (bench/results/autocast.md). The cost: a 16-bit op allocates
// float32 temporaries, so 16 bits save memory in storage (weights, checkpoints, messages,
// activations kept for backward) rather than inside an op.
#pragma once

#include "backend.h"

namespace weft {

// The never-destroyed HalfBackend.
DeviceBackend& half_backend();

}  // namespace weft
