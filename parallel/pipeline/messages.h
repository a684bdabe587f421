// What crosses between neighbouring pipeline stages, and how (stage.h runs the stages).
//
// FORWARD: a microbatch's activations, a list of one or more tensors -- (x), or
// (x, mask), or (hidden, aux_loss) -- each sent as two messages under the same tag:
//
//   header (int64): dtype, dims, wants_grad, index i, count n, rows, then the sizes
//   data   (that dtype and shape)
//
// The receiver learns everything from the headers: the count from the first, each
// tensor's dtype and shape from its own, and the microbatch's rows -- how many rows of
// the model's input it holds, whatever the shapes of the tensors in between -- which the
// last stage of an evaluation needs to average a 0-d output over the microbatches. Putting the count in every header rather than in
// a message of its own keeps a one-tensor activation at two messages, as before lists.
// A bool tensor's data crosses as int64 (the communicators move float32, float64 and
// int64 only), 8 bytes an element: a (B, 1, T, T) mask costs more than its size in bool.
// Messages of one (source, tag) arrive in the order they were sent, so the tensors of a
// list arrive in order; NCCL, which has no tags, keeps that order per pair of ranks.
//
// BACKWARD: a gradient goes back for exactly the tensors whose header said wants_grad,
// in list order, with no header: the sender of the activation knows their shapes and
// dtypes, since it sent them. So both sides agree on what comes back without guessing.
// The sender sets wants_grad (stage.cpp, send_activations) for a floating-point tensor
// that requires grad -- one on the tape, made from the stage's parameters or from an
// input that wants a gradient itself. Integer ids and bool masks never do: they cross
// forward only. A float mask built from the model's input (needing no gradient) does not
// either, except from a stage that recomputes that microbatch: its first forward runs
// without the tape, so it cannot tell yet, and asks for the gradient of every
// floating-point tensor (it drops at B those of tensors that turn out to need none).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "../../nn/module.h"
#include "../comm/communicator.h"

namespace weft::parallel::pipeline {

// Sends in flight, each with the tensor it reads from, kept alive until it completes.
using PendingSends = std::vector<std::pair<WorkHandle, Tensor>>;

// One microbatch's activations as received: the tensors, on the wire device, and per
// tensor whether the sender wants its gradient back.
struct Activations {
  nn::Tensors tensors;
  std::vector<bool> wants_grad;
  int64_t rows = 0;  // the microbatch's rows of the model's input
};

// Posts `ts` (contiguous on `wire`, the device messages travel from) to rank `dst` under
// `tag`; wants_grad[i] as above. Throws for an empty list or a tensor of too many dims.
// Returns the data bytes posted, as they travel (headers not counted).
int64_t send_activations(Communicator& comm, const nn::Tensors& ts, const std::vector<bool>& wants_grad, int64_t rows,
                      int dst, int tag, PendingSends& pending);
// Receives one list sent by send_activations, into tensors on `wire`.
Activations receive_activations(Communicator& comm, int src, int tag, Device wire);

// Gradients back: posts each of `grads` (contiguous on the wire device) in order.
// Returns the bytes posted.
int64_t send_gradients(Communicator& comm, const nn::Tensors& grads, int dst, int tag, PendingSends& pending);
// Receives the gradients of tensors of these shapes and dtypes, in order, on `wire`.
nn::Tensors receive_gradients(Communicator& comm, const std::vector<std::pair<Shape, DType>>& expected, int src,
                              int tag, Device wire);

}  // namespace weft::parallel::pipeline
