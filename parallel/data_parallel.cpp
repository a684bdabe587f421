#include "data_parallel.h"

#include <exception>
#include <thread>

#include "../autograd/autocast.h"
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

RowRanges DataParallel::shards(int64_t batch) const {
  const size_t used = std::min<size_t>(replicas_.size(), static_cast<size_t>(batch));
  RowRanges rows;
  int64_t begin = 0;
  for (size_t r = 0; r < used; ++r) {
    const int64_t n = shard_size(batch, replicas_.size(), r);
    rows.emplace_back(begin, begin + n);
    begin += n;
  }
  return rows;
}

void DataParallel::on_replicas(size_t n, const std::function<void(size_t)>& work) {
  const int limit = std::max(1, num_threads() / static_cast<int>(n));
  // Grad mode and autocast are per thread: pass the caller's on to every replica.
  const bool grad = autograd::is_grad_enabled(), cast = autocast::enabled();
  const DType cast_dtype = autocast::dtype();
  std::vector<std::exception_ptr> errors(n);
  auto run = [&](size_t r) {
    try {
      ThreadLimit cap(limit);
      autograd::set_grad_enabled(grad);
      Autocast ac(cast_dtype, cast);
      work(r);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (size_t r = 1; r < n; ++r) threads.emplace_back(run, r);
  run(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

double DataParallel::run_replica(size_t r, const nn::Tensors& inputs, const Tensor& y, const RowRanges& rows,
                                 const MultiLossFn& loss_fn) {
  const auto [begin, end] = rows[r];
  const int64_t n = end - begin, batch = rows.back().second;
  // Scatter: rows [begin, end) of every input and of the targets, copied to this
  // replica's device.
  nn::Tensors shard;
  for (const Tensor& x : inputs) shard.push_back(x.narrow(0, begin, n).to(devices_[r]));
  const Tensor ys = y.narrow(0, begin, n).to(devices_[r]);
  const Tensor loss = loss_fn((*replicas_[r])(shard), ys);
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
  return forward_backward(nn::Tensors{x}, y,
                          [&loss_fn](const nn::Tensors& out, const Tensor& target) { return loss_fn(out.at(0), target); });
}

double DataParallel::forward_backward(const nn::Tensors& inputs, const Tensor& y, const MultiLossFn& loss_fn) {
  const int64_t batch = batch_rows(inputs, "DataParallel");
  WEFT_CHECK(batch >= 1, "DataParallel: the batch is empty");
  WEFT_CHECK(y.size(0) == batch, "DataParallel: inputs have ", batch, " samples but targets have ", y.size(0));
  const RowRanges rows = shards(batch);
  sync_replicas();
  for (size_t r = 1; r < rows.size(); ++r) replicas_[r]->zero_grad();

  std::vector<double> losses(rows.size(), 0.0);
  on_replicas(rows.size(), [&](size_t r) { losses[r] = run_replica(r, inputs, y, rows, loss_fn); });

  reduce_gradients(rows.size());
  double total = 0;
  for (double l : losses) total += l;
  return total;
}

nn::Tensors DataParallel::forward_many(const nn::Tensors& inputs) {
  autograd::NoGradGuard no_grad;
  const int64_t batch = batch_rows(inputs, "DataParallel");
  WEFT_CHECK(batch >= 1, "DataParallel: the batch is empty");
  const RowRanges rows = shards(batch);
  sync_replicas();
  const std::vector<nn::Tensors> pieces = scatter_rows(inputs, rows);
  std::vector<nn::Tensors> outs(rows.size());
  on_replicas(rows.size(), [&](size_t r) {
    nn::Tensors shard;
    for (const Tensor& t : pieces[r]) shard.push_back(t.to(devices_[r]));
    outs[r] = (*replicas_[r])(shard);
  });
  return gather_rows(outs, rows, devices_[0], "DataParallel");
}

Tensor DataParallel::forward(const Tensor& x) {
  nn::Tensors out = forward_many({x});
  WEFT_CHECK(out.size() == 1, "DataParallel::forward: the module returned ", out.size(),
             " tensors; call forward_many to get them all");
  return out[0];
}

}  // namespace weft::parallel
