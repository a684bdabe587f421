#include "parameter_server.h"

#include "../comm/reduce.h"
#include "../trace.h"

namespace weft::parallel {

ParameterServer::ParameterServer(Communicator& comm, std::vector<Tensor> params, int server, int tag)
    : comm_(comm), params_(std::move(params)), server_(server), tag_(tag) {
  WEFT_CHECK(server >= 0 && server < comm.size(), "ParameterServer: server rank ", server,
             " is outside the group of ", comm.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string problem = tensor_problem(params_[i], kCPU);
    WEFT_CHECK(problem.empty(), "ParameterServer: parameter ", i, ": ", problem);
    WEFT_CHECK(is_floating(params_[i].dtype()), "ParameterServer: parameter ", i, " is ",
               dtype_name(params_[i].dtype()), ", expected a floating-point tensor");
    if (comm.rank() == server) incoming_.push_back(empty_like(params_[i]));
  }
}

void ParameterServer::check_grads(const std::vector<Tensor>& grads) const {
  WEFT_CHECK(grads.size() == params_.size(), "ParameterServer::step: ", grads.size(), " gradients for ",
             params_.size(), " parameters");
  for (size_t i = 0; i < grads.size(); ++i) {
    const std::string problem = tensor_problem(grads[i], kCPU);
    WEFT_CHECK(problem.empty(), "ParameterServer::step: gradient ", i, ": ", problem);
    WEFT_CHECK(grads[i].shape() == params_[i].shape() && grads[i].dtype() == params_[i].dtype(),
               "ParameterServer::step: gradient ", i, " is ", grads[i].shape(), " ", dtype_name(grads[i].dtype()),
               ", its parameter ", params_[i].shape(), " ", dtype_name(params_[i].dtype()));
  }
}

void ParameterServer::pull() {
  if (comm_.rank() == server_) {
    for (int q = 0; q < comm_.size(); ++q)
      if (q != server_)
        for (const Tensor& p : params_) comm_.send(p, q, tag_);
  } else {
    for (const Tensor& p : params_) comm_.recv(p, server_, tag_);
  }
}

void ParameterServer::step(const std::vector<Tensor>& grads, double lr) {
  check_grads(grads);
  trace::Scope scope("parameter_server_step", "comm", comm_.trace_rank());
  const int n = comm_.size();
  if (comm_.rank() != server_) {
    for (const Tensor& g : grads) comm_.send(g, server_, tag_);  // push
    pull();
    return;
  }
  // The server: sum everyone's gradients into a copy of its own, then p -= lr * sum / n.
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor sum = grads[i].clone();
    for (int q = 0; q < n; ++q) {
      if (q == server_) continue;
      comm_.recv(incoming_[i], q, tag_);
      reduce_into(sum.raw_data(), incoming_[i].raw_data(), sum.numel(), sum.dtype(), ReduceOp::Sum);
    }
    dispatch_floating(sum.dtype(), "ParameterServer::step", [&]<class T>() {
      T* p = params_[i].data<T>();
      const T* g = sum.data<T>();
      const T scale = T(lr / n);
      for (int64_t k = 0; k < sum.numel(); ++k) p[k] -= scale * g[k];
    });
    params_[i].storage()->bump_version();
  }
  pull();
}

}  // namespace weft::parallel
