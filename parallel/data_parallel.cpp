#include "data_parallel.h"

#include <exception>
#include <thread>

#include "../autograd/functions.h"
#include "../autograd/tape.h"
#include "../tensor/raw.h"

namespace weft::parallel {

DataParallel::DataParallel(std::shared_ptr<nn::Module> module, std::vector<Device> devices)
    : DataParallel(module, nullptr, std::move(devices)) {}

DataParallel::DataParallel(std::shared_ptr<nn::Module> module, nn::ModuleFactory make, std::vector<Device> devices)
    : devices_(std::move(devices)) {
  WEFT_CHECK(module != nullptr, "DataParallel: the module is null");
  WEFT_CHECK(!devices_.empty(), "DataParallel: no devices given");
  for (size_t i = 0; i < devices_.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      WEFT_CHECK(!(devices_[i] == devices_[j]), "DataParallel: device ", devices_[i],
                 " is listed twice; each replica needs its own device");
  module->to(devices_[0]);
  replicas_.push_back(std::move(module));
  for (size_t r = 1; r < devices_.size(); ++r)
    replicas_.push_back(make ? nn::replicate(*replicas_[0], make, devices_[r]) : replicas_[0]->clone(devices_[r]));
}

int64_t DataParallel::shard_size(int64_t batch, size_t num_replicas, size_t r) {
  const int64_t n = static_cast<int64_t>(num_replicas);
  return batch / n + (static_cast<int64_t>(r) < batch % n ? 1 : 0);
}

void DataParallel::sync_replicas() {
  for (size_t r = 1; r < replicas_.size(); ++r) {
    nn::copy_state(*replicas_[0], *replicas_[r]);
    replicas_[r]->train(replicas_[0]->is_training());
  }
}

double DataParallel::run_replica(size_t r, const Tensor& x, const Tensor& y, int64_t batch, const LossFn& loss_fn) {
  int64_t begin = 0;
  for (size_t q = 0; q < r; ++q) begin += shard_size(batch, replicas_.size(), q);
  const int64_t n = shard_size(batch, replicas_.size(), r);
  // Scatter: rows [begin, begin + n) of the batch, copied to this replica's device.
  const Tensor xs = x.narrow(0, begin, n).to(devices_[r]);
  const Tensor ys = y.narrow(0, begin, n).to(devices_[r]);
  const Tensor loss = loss_fn((*replicas_[r])(xs), ys);
  WEFT_CHECK(loss.numel() == 1, "DataParallel: the loss function must return one element, got shape ", loss.shape());
  // The shard's mean loss weighted by its share of the batch: the weighted gradients of
  // all shards add up to the gradient of the batch's mean loss.
  const double weight = static_cast<double>(n) / static_cast<double>(batch);
  (loss * weight).backward();
  return loss.item<double>() * weight;
}

void DataParallel::reduce_gradients(size_t replicas_used) {
  autograd::NoGradGuard no_grad;
  const std::vector<Tensor> primary = replicas_[0]->parameters();
  for (size_t r = 1; r < replicas_used; ++r) {
    const std::vector<Tensor> params = replicas_[r]->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor g = params[i].grad();
      if (!g.defined()) continue;  // the parameter took no part in this replica's loss
      Tensor p = primary[i];
      const Tensor here = raw::to_device(g, devices_[0]);  // a copy unless already there
      if (!p.grad().defined()) p.set_grad(here.is_same(g) ? raw::clone(g) : here);
      else raw::axpy_(p.grad(), 1.0, here);
    }
  }
}

double DataParallel::forward_backward(const Tensor& x, const Tensor& y, const LossFn& loss_fn) {
  const int64_t batch = x.size(0);
  WEFT_CHECK(batch >= 1, "DataParallel: the batch is empty");
  WEFT_CHECK(y.size(0) == batch, "DataParallel: inputs have ", batch, " samples but targets have ", y.size(0));
  const size_t used = std::min<size_t>(replicas_.size(), static_cast<size_t>(batch));
  sync_replicas();
  for (size_t r = 1; r < used; ++r) replicas_[r]->zero_grad();

  // Replica 0 runs on the calling thread, the others on threads of their own; each gets
  // an equal slice of the cores this thread may use.
  const int limit = std::max(1, num_threads() / static_cast<int>(used));
  std::vector<double> losses(used, 0.0);
  std::vector<std::exception_ptr> errors(used);
  auto work = [&](size_t r) {
    try {
      ThreadLimit cap(limit);
      losses[r] = run_replica(r, x, y, batch, loss_fn);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (size_t r = 1; r < used; ++r) threads.emplace_back(work, r);
  work(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);

  reduce_gradients(used);
  double total = 0;
  for (double l : losses) total += l;
  return total;
}

}  // namespace weft::parallel
