#!/usr/bin/env bash
# Speed from sparsity (docs/pruning.md quotes its output):
#   1. dense Linear vs SparseLinear (CSR) inference at batch 1 and 64 across sparsity
#      levels 0..99%, with the ratio dense/sparse and the break-even sparsity
#      (bench/sparse_linear.cpp);
#   2. the sample CNN with 50% of its channels physically removed vs the dense CNN
#      (bench/structured_cnn.cpp).
# Both time the two variants interleaved in one process, so load bursts hit both alike.
# Runs under `flock /tmp/weft-bench.lock` so benchmarks on a shared machine do not overlap.
#
#   bench/run_sparse_bench.sh                     # 1 thread, MLP-sized layer 784 -> 512
#   THREADS=2 IN=1024 OUT=1024 bench/run_sparse_bench.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
build="${BUILD_DIR:-build}"
threads="${THREADS:-1}"
in="${IN:-784}"
out="${OUT:-512}"
rounds="${ROUNDS:-15}"

cd "$root"
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" >/dev/null
fi
ninja -C "$build" bench/sparse_linear bench/structured_cnn >/dev/null

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
flock /tmp/weft-bench.lock "$build/bench/sparse_linear" --in "$in" --out "$out" --threads "$threads" --rounds "$rounds"
echo
flock /tmp/weft-bench.lock "$build/bench/structured_cnn" --threads "$threads" --rounds "$rounds"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
