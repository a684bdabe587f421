// DataLoader: passes over the sample order, and the prefetch thread that overlaps
// making batch k+1 with the caller's step on batch k.
#include "dataloader.h"

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "../tensor/creation.h"
#include "../tensor/generator.h"

namespace weft::data {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct TimedBatch {
  Batch batch;
  double seconds = 0;  // how long Dataset::get took
};

// Batch k of a pass: samples order[k*bs, min((k+1)*bs, N)).
TimedBatch make_batch(const Dataset& ds, const Tensor& order, int64_t k, int64_t batch_size) {
  const auto t0 = Clock::now();
  const int64_t begin = k * batch_size;
  const int64_t len = std::min(batch_size, order.numel() - begin);
  const Tensor indices = order.narrow(0, begin, len);
  Batch b = ds.get(indices);
  if (!b.index.defined()) b.index = indices;  // a custom Dataset may leave it out
  return {std::move(b), seconds_since(t0)};
}

}  // namespace

// ---- BatchPrefetcher ----------------------------------------------------------------

// One pass's worker thread. It makes batches 0..n-1 in order and hands each over
// through a one-slot queue: it starts batch k+1 only once the caller has taken batch k,
// so the caller's step on k and the making of k+1 overlap, and no more than two batches
// are alive at once. The worker never touches the loader, only `make`'s captures.
class BatchPrefetcher {
 public:
  using MakeBatch = std::function<TimedBatch(int64_t k)>;

  BatchPrefetcher(int64_t num_batches, MakeBatch make)
      : num_batches_(num_batches), make_(std::move(make)), thread_([this] { run(); }) {}

  // Stops the worker after the batch it may be making, and joins it.
  ~BatchPrefetcher() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Blocks until the next batch is ready and takes it; rethrows what the worker threw.
  TimedBatch take() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return slot_.has_value() || error_; });
    if (!slot_) std::rethrow_exception(error_);
    TimedBatch b = std::move(*slot_);
    slot_.reset();
    lk.unlock();
    cv_.notify_all();  // the slot is free: the worker starts the next batch
    return b;
  }

 private:
  void run() {
    for (int64_t k = 0; k < num_batches_; ++k) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !slot_.has_value(); });
        if (stop_) return;
      }
      try {
        TimedBatch b = make_(k);  // the slow part, outside the lock
        std::lock_guard<std::mutex> lk(mu_);
        slot_ = std::move(b);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        error_ = std::current_exception();
      }
      cv_.notify_all();
      if (error_) return;  // only this thread writes error_
    }
  }

  const int64_t num_batches_;
  const MakeBatch make_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<TimedBatch> slot_;  // made, not yet taken
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // last: it starts running once everything above exists
};

// ---- DataLoader -----------------------------------------------------------------------

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, const DataLoaderOptions& opt)
    : dataset_(std::move(dataset)), opt_(opt) {
  WEFT_CHECK(dataset_ != nullptr, "DataLoader: the dataset is null");
  WEFT_CHECK(opt_.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", opt_.batch_size);
  WEFT_CHECK(!(opt_.sampler && opt_.shuffle),
             "DataLoader: shuffle and sampler exclude each other (the sampler decides the order; shuffle in it)");
}

DataLoader::DataLoader(const TensorDataset& dataset, const DataLoaderOptions& opt)
    : DataLoader(std::make_shared<const TensorDataset>(dataset), opt) {}

DataLoader::~DataLoader() { stop(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = opt_.sampler ? opt_.sampler->num_samples() : dataset_->size(), bs = opt_.batch_size;
  return opt_.drop_last ? n / bs : (n + bs - 1) / bs;
}

void DataLoader::set_epoch(int64_t e) {
  WEFT_CHECK(e >= 0, "DataLoader::set_epoch: the epoch must be >= 0, got ", e);
  stop();
  next_epoch_ = e;
}

// Epoch e's permutation uses counters [e*N, (e+1)*N) of the seed's Philox stream: the
// same numbers as the (e+1)-th randperm(N) from one Generator(seed), computed directly.
Tensor DataLoader::order(int64_t e) const {
  WEFT_CHECK(e >= 0, "DataLoader::order: the epoch must be >= 0, got ", e);
  if (opt_.sampler) {
    Tensor idx = opt_.sampler->indices(e);
    WEFT_CHECK(idx.dim() == 1 && idx.dtype() == kInt64 && idx.numel() == opt_.sampler->num_samples(),
               "DataLoader: the sampler's indices(", e, ") must be 1-D int64 with num_samples() = ",
               opt_.sampler->num_samples(), " elements, got shape ", idx.shape());
    return idx.contiguous();
  }
  const int64_t n = dataset_->size();
  if (!opt_.shuffle) return arange(n);
  Generator gen(opt_.seed);
  gen.set_offset(static_cast<uint64_t>(e) * static_cast<uint64_t>(n));
  return randperm(n, gen);
}

void DataLoader::stop() { pass_.reset(); }  // ~BatchPrefetcher joins the worker

void DataLoader::start_pass() {
  stop();
  Pass p;
  p.order = order(next_epoch_++);
  if (opt_.prefetch) {
    // The worker gets its own handles to the dataset and the order, never `this`.
    p.prefetcher = std::make_unique<BatchPrefetcher>(
        num_batches(), [ds = dataset_, order = p.order, bs = opt_.batch_size](int64_t k) {
          return make_batch(*ds, order, k, bs);
        });
  }
  pass_ = std::move(p);
  stats_ = {};
}

std::optional<Batch> DataLoader::next() {
  if (!pass_) start_pass();
  Pass& p = *pass_;
  if (p.handed == num_batches()) {
    stop();
    return std::nullopt;
  }
  const auto t0 = Clock::now();
  TimedBatch b;
  try {
    b = p.prefetcher ? p.prefetcher->take() : make_batch(*dataset_, p.order, p.handed, opt_.batch_size);
  } catch (...) {
    stop();  // the pass is over; the next call starts a new one
    throw;
  }
  stats_.wait_seconds += seconds_since(t0);
  stats_.prepare_seconds += b.seconds;
  ++stats_.batches;
  ++p.handed;
  return std::move(b.batch);
}

DataLoader::Iterator DataLoader::begin() {
  start_pass();
  return Iterator(this);
}

}  // namespace weft::data
