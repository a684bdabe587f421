// The intra-op thread pool: how one op (a GEMM, a conv, a big elementwise loop, a
// reduction) uses several cores.
//
// parallel_for(begin, end, grain, fn) splits [begin, end) into at most num_threads()
// contiguous chunks of at least `grain` items and runs fn(chunk_begin, chunk_end) on
// each, the calling thread taking the first chunk. With chunks_per_thread = c > 1 it
// cuts up to c times as many, which the workers and the caller take one at a time, so a
// thread that is held up (descheduled on a busy machine) leaves the rest of its share to
// the others instead of making them wait: the ops whose chunks are all alike (per-sample
// convolutions, pooling, elementwise loops) ask for 4. The cut depends only on the range,
// the grain, c and the thread count, never on timing, so results are reproducible. Small
// ranges run inline, so tiny ops pay nothing. A parallel_for inside a chunk runs inline too (no nested parallelism, no
// deadlock). Several threads may call parallel_for at once (data-parallel replicas do);
// their chunks share the workers.
//
// Hand-off cost is what decides whether 2 threads beat 1 on small training steps: a
// worker woken through a futex takes tens of microseconds to start, longer than many
// ops take. So idle workers spin for a short while (kSpinMicros) before they sleep, and
// a caller waiting for its chunks spins too; during a training step the workers never
// sleep, and between steps they do not burn a core.
#pragma once

#include <cstdint>
#include <functional>

namespace weft {

// Sets the number of threads ops may use (>= 1), counting the caller. The default is
// the WEFT_NUM_THREADS environment variable, else the number of hardware threads.
void set_num_threads(int n);
// The threads an op on this thread may use: the pool's size, capped by a ThreadLimit.
int num_threads();

// While alive, ops called from this thread use at most `n` threads (n >= 1). Data
// parallelism gives each rank thread ThreadLimit(1) so that N ranks on N cores do not
// fight over the pool's workers. Limits nest; the innermost wins.
class ThreadLimit {
 public:
  explicit ThreadLimit(int n);
  ~ThreadLimit();
  ThreadLimit(const ThreadLimit&) = delete;
  ThreadLimit& operator=(const ThreadLimit&) = delete;

 private:
  int previous_;
};

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn, int chunks_per_thread = 1);

// True inside a parallel_for chunk (used to keep nested work serial).
bool in_parallel_region();

}  // namespace weft
