#include "async_parameter_server.h"

#include <algorithm>
#include <exception>
#include <limits>

#include "../../optim/grad_scaler.h"
#include "../comm/reduce.h"
#include "../trace.h"

namespace weft::parallel {

namespace {
constexpr int64_t kDoneClock = std::numeric_limits<int64_t>::max();  // a worker that left

// Copies outside autograd: the parameters handed in are usually a model's, which
// require gradients, and the server's copies are written in place.
std::vector<Tensor> clones(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.detach().clone());
  return out;
}
}  // namespace

// ---- StalenessStats --------------------------------------------------------------------

void StalenessStats::add(int64_t staleness) {
  if (int64_t(histogram.size()) <= staleness) histogram.resize(size_t(staleness) + 1, 0);
  ++histogram[size_t(staleness)];
  ++count;
  sum += staleness;
  max = std::max(max, staleness);
}

StalenessStats StalenessStats::since(const StalenessStats& earlier) const {
  StalenessStats d;
  for (size_t s = 0; s < histogram.size(); ++s) {
    const int64_t n = histogram[s] - (s < earlier.histogram.size() ? earlier.histogram[s] : 0);
    for (int64_t k = 0; k < n; ++k) d.add(int64_t(s));
  }
  return d;
}

ServerUpdate sgd_update(double lr) {
  return [lr](const std::vector<Tensor>& params, const std::vector<Tensor>& grad_sum, int, int world) {
    for (size_t i = 0; i < params.size(); ++i) {
      dispatch_floating(params[i].dtype(), "sgd_update", [&]<class T>() {
        T* p = params[i].data<T>();
        const T* g = grad_sum[i].data<T>();
        const T scale = T(lr / world);  // as ParameterServer::step, so S = 0 matches it bit for bit
        for (int64_t k = 0; k < params[i].numel(); ++k) p[k] -= scale * g[k];
      });
      params[i].storage()->bump_version();
    }
  };
}

ServerUpdate skip_nonfinite(ServerUpdate update, std::function<void(int count)> skipped) {
  return [update = std::move(update), skipped = std::move(skipped)](
             const std::vector<Tensor>& params, const std::vector<Tensor>& grad_sum, int count, int world) {
    if (!std::all_of(grad_sum.begin(), grad_sum.end(), [](const Tensor& g) { return optim::all_finite(g); })) {
      if (skipped) skipped(count);
      return;
    }
    update(params, grad_sum, count, world);
  };
}

// ---- construction and the worker's side ------------------------------------------------

AsyncParameterServer::AsyncParameterServer(Communicator& comm, std::vector<Tensor> params, ServerUpdate update,
                                           AsyncPSOptions options)
    : comm_(comm), params_(std::move(params)), update_(std::move(update)), options_(options) {
  const int n = comm.size();
  WEFT_CHECK(options_.server >= 0 && options_.server < n, "AsyncParameterServer: server rank ", options_.server,
             " is outside the group of ", n);
  WEFT_CHECK(update_ != nullptr, "AsyncParameterServer: no update function");
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string problem = tensor_problem(params_[i], kCPU);
    WEFT_CHECK(problem.empty(), "AsyncParameterServer: parameter ", i, ": ", problem);
    WEFT_CHECK(is_floating(params_[i].dtype()), "AsyncParameterServer: parameter ", i, " is ",
               dtype_name(params_[i].dtype()), ", expected a floating-point tensor");
  }
  if (comm.rank() != options_.server) return;
  server_params_ = clones(params_);
  for (int q = 0; q < n; ++q) {
    incoming_.push_back(clones(params_));
    reply_.push_back(clones(params_));
  }
  clock_.assign(size_t(n), 0);
  pending_.assign(size_t(n), false);
  for (int q = 0; q < n; ++q) threads_.emplace_back([this, q] { serve(q); });
}

// ": <what>" of the server's own failure, if it had one; else "".
std::string AsyncParameterServer::server_error_text() const {
  std::lock_guard lock(mu_);
  if (!error_) return "";
  try {
    std::rethrow_exception(error_);
  } catch (const std::exception& e) {
    return detail::str(": ", e.what());
  } catch (...) {
  }
  return "";
}

AsyncParameterServer::~AsyncParameterServer() {
  // An exception is unwinding this rank before it finished: the other ranks (and this
  // rank's server threads) wait for messages it will never send. Tell them first, or
  // finish() below would wait for them until the timeout.
  if (!finished_ && std::uncaught_exceptions() > 0)
    comm_.abort(detail::str("rank ", comm_.rank(), " left the parameter server with an error before finish()",
                            server_error_text()));
  try {
    finish();
  } catch (...) {
  }
}

// Worker -> server: a header {kind, read_version} and, for a push, the gradients;
// server -> worker: a header {version} and the parameters (not for kDone).
int64_t AsyncParameterServer::request(Kind kind, int64_t read_version, const std::vector<Tensor>& grads) {
  const int s = options_.server, tag = options_.tag;
  Tensor header = tensor(std::vector<int64_t>{int64_t(kind), read_version});
  comm_.send(header, s, tag);
  for (const Tensor& g : grads) comm_.send(g, s, tag + 1);
  if (kind == kDone) return version_;
  Tensor version = tensor(std::vector<int64_t>{0});
  comm_.recv(version, s, tag + 2);
  for (const Tensor& p : params_) {
    comm_.recv(p, s, tag + 3);
    p.storage()->bump_version();
  }
  version_ = version.item<int64_t>();
  return version_;
}

int64_t AsyncParameterServer::pull() {
  WEFT_CHECK(!finished_, "AsyncParameterServer::pull after finish() (this worker's server thread has stopped)");
  return request(kPull, version_);
}

int64_t AsyncParameterServer::step(const std::vector<Tensor>& grads) {
  WEFT_CHECK(!finished_, "AsyncParameterServer::step after finish()");
  WEFT_CHECK(grads.size() == params_.size(), "AsyncParameterServer::step: ", grads.size(), " gradients for ",
             params_.size(), " parameters");
  for (size_t i = 0; i < grads.size(); ++i)
    WEFT_CHECK(grads[i].shape() == params_[i].shape() && grads[i].dtype() == params_[i].dtype() &&
                   tensor_problem(grads[i], kCPU).empty(),
               "AsyncParameterServer::step: gradient ", i, " is ", grads[i].shape(), " ",
               dtype_name(grads[i].dtype()), ", its parameter ", params_[i].shape(), " ",
               dtype_name(params_[i].dtype()), " (contiguous, on the CPU)");
  trace::Scope scope("ps_step", "ps", comm_.trace_rank());
  return request(kPush, version_, grads);
}

void AsyncParameterServer::finish() {
  if (finished_) return;
  finished_ = true;
  std::exception_ptr send_error;  // the server failed, or a peer left: still join below
  try {
    request(kDone, version_);
  } catch (...) {
    send_error = std::current_exception();
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  if (error_) std::rethrow_exception(error_);
  if (send_error) std::rethrow_exception(send_error);
}

StalenessStats AsyncParameterServer::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// ---- the server's side -----------------------------------------------------------------

int64_t AsyncParameterServer::min_clock() const {
  int64_t v = kDoneClock;
  for (int64_t c : clock_) v = std::min(v, c);
  return v != kDoneClock ? v : max_clock_;  // every worker left: the furthest one reached
}

// S = 0: every worker still training has pushed this clock. Sum their gradients as
// ParameterServer::step does -- a copy of the server rank's, then the others in rank
// order -- and apply the sum once.
void AsyncParameterServer::apply_clock() {
  const int n = comm_.size(), s = options_.server;
  std::vector<Tensor> sum;
  int count = 0;
  for (int k = 0; k < n; ++k) {
    const int q = k == 0 ? s : (k <= s ? k - 1 : k);  // s first, then the rest ascending
    if (!pending_[size_t(q)]) continue;
    pending_[size_t(q)] = false;
    ++count;
    if (sum.empty()) {
      sum = clones(incoming_[size_t(q)]);
      continue;
    }
    for (size_t i = 0; i < sum.size(); ++i)
      reduce_into(sum[i].raw_data(), incoming_[size_t(q)][i].raw_data(), sum[i].numel(), sum[i].dtype(),
                  ReduceOp::Sum);
  }
  if (count > 0) update_(server_params_, sum, count, n);
}

void AsyncParameterServer::on_push(int q, int64_t read_version) {
  const int64_t version = min_clock();  // before this gradient counts
  const int64_t staleness = version - read_version;
  stats_.add(staleness);
  {
    trace::Scope span("ps_apply", "ps", comm_.trace_rank(),
                      detail::str("from rank ", q, ", staleness ", staleness, ", version ", version));
    if (options_.staleness == 0) {
      pending_[size_t(q)] = true;  // applied with the rest of its clock, below
    } else {
      update_(server_params_, incoming_[size_t(q)], 1, comm_.size());
    }
  }
  ++clock_[size_t(q)];
  max_clock_ = std::max(max_clock_, clock_[size_t(q)]);
}

void AsyncParameterServer::serve(int q) {
  const int tag = options_.tag;
  try {
    Tensor header = tensor(std::vector<int64_t>{0, 0});
    for (;;) {
      comm_.recv(header, q, tag);
      const auto kind = Kind(header.data<int64_t>()[0]);
      const int64_t read_version = header.data<int64_t>()[1];
      if (kind == kPush)
        for (const Tensor& g : incoming_[size_t(q)]) comm_.recv(g, q, tag + 1);
      std::unique_lock lock(mu_);
      if (kind == kDone) clock_[size_t(q)] = kDoneClock;
      if (kind == kPush) on_push(q, read_version);
      // S = 0: the last gradient of a clock applies the whole clock.
      // (With S = 0 nobody pushes clock c + 1 before clock c is applied, so what is
      // pending is one clock's gradients.)
      if (options_.staleness == 0 && min_clock() > applied_version_) {
        apply_clock();
        applied_version_ = min_clock();
      }
      cv_.notify_all();
      if (kind == kDone) return;
      // The bound: worker q may not run more than S clocks ahead of the slowest.
      if (kind == kPush && options_.staleness >= 0) {
        trace::Scope wait("ps_wait", "ps", comm_.trace_rank(), detail::str("rank ", q));
        const int64_t need = clock_[size_t(q)] - options_.staleness;
        auto ready = [&] { return error_ != nullptr || min_clock() >= need; };
        WEFT_CHECK(cv_.wait_for(lock, comm_.timeout(), ready), "AsyncParameterServer: rank ", q,
                   " waited more than the timeout for the slowest worker to reach clock ", need);
        if (error_) return;
      }
      const int64_t version = min_clock();
      for (size_t i = 0; i < server_params_.size(); ++i) reply_[size_t(q)][i].copy_(server_params_[i]);
      lock.unlock();
      comm_.send(tensor(std::vector<int64_t>{version}), q, tag + 2);
      for (const Tensor& p : reply_[size_t(q)]) comm_.send(p, q, tag + 3);
    }
  } catch (...) {
    std::string what = "an unknown exception";
    try {
      throw;
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    // The workers wait in recv for this server's reply: tell them (on the threads
    // backend their recv then fails naming this rank and the reason) rather than let
    // them wait out the timeout. Before this rank's own worker hears of it below: its
    // unwinding aborts too, and the first reason given is the one the others see.
    comm_.abort(detail::str("the parameter server's thread for rank ", q, " failed: ", what));
    std::lock_guard lock(mu_);
    if (!error_) error_ = std::current_exception();
    cv_.notify_all();
  }
}

}  // namespace weft::parallel
