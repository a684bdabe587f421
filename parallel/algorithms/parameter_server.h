// A synchronous parameter server, over send/recv.
//
// One rank (the server, rank 0 by default) holds the authoritative parameters. Every
// step, every rank -- the server too, it also computes gradients -- has a gradient for
// each parameter:
//   1. push: each worker sends its gradients to the server;
//   2. the server averages them (its own included) and applies SGD: p -= lr * mean(g);
//   3. pull: the server sends the new parameters to every worker.
// Afterwards every rank holds the same parameters, exactly as if one process had
// trained on all ranks' batches together.
//
// The price is the server's link: it receives and sends n-1 copies of the model per
// step, so it scales like the naive all-reduce, not like the ring. Its appeal is
// elsewhere: the server can apply updates asynchronously and hold a model that no
// worker could (see docs/data-parallel.md, "Parameter server").
#pragma once

#include <vector>

#include "../comm/communicator.h"

namespace weft::parallel {

class ParameterServer {
 public:
  // `params` are this rank's parameter tensors (contiguous CPU float32/float64, the same
  // shapes on every rank). They are updated in place by step().
  ParameterServer(Communicator& comm, std::vector<Tensor> params, int server = 0, int tag = 7300);

  // One synchronous step with this rank's gradients (one per parameter, same shapes).
  void step(const std::vector<Tensor>& grads, double lr);

  // Makes every rank's parameters equal to the server's (call once before training).
  void pull();

  int server() const { return server_; }

 private:
  void check_grads(const std::vector<Tensor>& grads) const;

  Communicator& comm_;
  std::vector<Tensor> params_;
  int server_;
  int tag_;
  std::vector<Tensor> incoming_;  // the server's receive buffers, one per parameter
};

}  // namespace weft::parallel
