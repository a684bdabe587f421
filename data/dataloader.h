// DataLoader: a dataset as a sequence of batches, shuffled, with the next batch prepared
// on a background thread while the training step runs.
//
//   DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 1});
//   for (int epoch = 0; epoch < 10; ++epoch) {
//     loader.set_epoch(epoch);              // optional: see "Epochs" below
//     for (const Batch& b : loader) step(b.x, b.y);   // b.x (64,1,28,28), b.y (64)
//   }
//
// Order. Each pass over the data is one epoch. Without shuffle the order is 0..N-1.
// With shuffle it is randperm(N) drawn from Generator(seed) at counter offset epoch*N --
// exactly the permutation a single generator would give on its (epoch+1)-th draw -- so
// the order depends on (seed, epoch) and nothing else: the same seed gives the same
// batches, and a run resumed at epoch e sees the order the original run saw.
//
// Samplers. With options.sampler set, the order of epoch e is sampler->indices(e)
// instead (shuffle must then be off: the sampler decides the order). A
// DistributedSampler (data/distributed_sampler.h) gives each rank its share this way.
//
// Epochs. Every pass takes the epoch number epoch() and then advances it by one, whether
// or not the pass is iterated to the end. set_epoch(e) pins the epoch of the next pass,
// which is how a resumed run (or a DistributedSampler-style loop) says where it is.
//
// Passes. begin() starts a new pass, abandoning any in progress. next() hands out the
// next batch of the current pass (starting one if none is in progress) and returns
// nullopt once at its end; the call after that starts the next pass. So
// `while (auto b = loader.next())` runs exactly one epoch.
//
// Prefetch. With prefetch on, a pass owns one worker thread and a one-slot queue: as soon
// as the caller takes batch k, the worker starts on batch k+1, so Dataset::get runs
// while the caller's step does. At most two batches exist at once (the caller's and the
// one being made). An exception thrown while making a batch is rethrown by the next()
// that would have returned that batch, and ends the pass. Abandoning a pass -- begin(), set_epoch(), or
// destroying the loader, mid-epoch or not -- stops the worker and joins it; that waits
// for at most the one Dataset::get in flight. prefetch off makes the same batches in
// the calling thread.
//
// One loader is used by one thread at a time (the consumer); the worker only touches
// the dataset and the pass's order, never the loader.
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>

#include "dataset.h"
#include "sampler.h"

namespace weft::data {

struct DataLoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = false;
  uint64_t seed = 0;       // the shuffle's Generator seed
  bool drop_last = false;  // drop the last batch when it would be smaller than batch_size
  bool prefetch = true;    // make the next batch on a background thread
  std::shared_ptr<const Sampler> sampler{};  // when set, the order of each epoch (see "Samplers")
};

// What the current (or last) pass has done: watch wait_seconds to see whether loading
// is hidden behind the training step (near 0) or is the bottleneck.
struct LoaderStats {
  int64_t batches = 0;         // handed out so far in this pass
  double prepare_seconds = 0;  // spent in Dataset::get, on whichever thread made the batches
  double wait_seconds = 0;     // the caller spent blocked in next(), waiting for a batch
};

class BatchPrefetcher;  // the worker thread and its one-slot queue (dataloader.cpp)

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, const DataLoaderOptions& opt = {});
  // A TensorDataset is two tensor handles: the loader keeps its own copy (no data copied).
  DataLoader(const TensorDataset& dataset, const DataLoaderOptions& opt = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  const Dataset& dataset() const { return *dataset_; }
  const DataLoaderOptions& options() const { return opt_; }
  // ceil(N / batch_size), or floor with drop_last; N is the sampler's num_samples() when
  // there is one.
  int64_t num_batches() const;

  // The epoch the next pass will use (see "Epochs" above).
  int64_t epoch() const { return next_epoch_; }
  // Pins the next pass to epoch `e` and abandons a pass in progress.
  void set_epoch(int64_t e);
  // The sample order (N) int64 of epoch `e`.
  Tensor order(int64_t e) const;

  // The next batch of the current pass, or nullopt at its end.
  std::optional<Batch> next();
  // Abandons the pass in progress, if any, and stops its worker.
  void stop();
  LoaderStats stats() const { return stats_; }

  class Iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    explicit Iterator(DataLoader* loader) : loader_(loader), current_(loader->next()) {}
    const Batch& operator*() const { return *current_; }
    const Batch* operator->() const { return &*current_; }
    Iterator& operator++() {
      current_ = loader_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

   private:
    DataLoader* loader_ = nullptr;
    std::optional<Batch> current_;
  };
  // Starts a new pass and fetches its first batch.
  Iterator begin();
  std::default_sentinel_t end() const { return {}; }

 private:
  struct Pass {
    Tensor order;        // (N) int64: the sample order of this epoch
    int64_t handed = 0;  // batches handed out so far
    std::unique_ptr<BatchPrefetcher> prefetcher;  // null when prefetch is off
  };
  void start_pass();

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions opt_;
  int64_t next_epoch_ = 0;
  std::optional<Pass> pass_;
  LoaderStats stats_;
};

}  // namespace weft::data
