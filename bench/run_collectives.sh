#!/usr/bin/env bash
# All-reduce bus bandwidth of weft's communicators and hand-written algorithms next to
# Open MPI's own MPI_Allreduce, in one run (bench/collectives.cpp says what each column is).
#
#   bench/run_collectives.sh                    # 2 ranks, 1..64 MiB, 3 rounds
#   NP=3 ROUNDS=5 MIN_MIB=1 MAX_MIB=16 SECONDS_PER=0.5 bench/run_collectives.sh
#
# Prints a table of bus bandwidth (GB/s, nccl-tests' definition: bytes/time * 2(n-1)/n)
# and two ratios: the threads backend over MPI_Allreduce (target >= 2) and the ring
# written over the MPI backend's send/recv over MPI_Allreduce (target >= 0.8). Run it on
# an otherwise idle machine (the load average is printed before and after); when other
# weft benchmarks may run, wrap it: flock /tmp/weft-bench.lock bench/run_collectives.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"
build="${BUILD_DIR:-build}"
np="${NP:-2}"

if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
  exit 0
fi
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" bench/collectives >/dev/null || {
  echo "bench/collectives did not build: is weft configured with MPI (-Dmpi=enabled)?"
  exit 1
}
mpirun_cmd=(mpirun --oversubscribe -np "$np")
[ "$(id -u)" = 0 ] && mpirun_cmd+=(--allow-run-as-root)

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $(mpirun --version | head -1)"
"${mpirun_cmd[@]}" "$build/bench/collectives" --min-mib "${MIN_MIB:-1}" --max-mib "${MAX_MIB:-64}" \
  --rounds "${ROUNDS:-3}" --seconds "${SECONDS_PER:-0.25}" --threads-ranks "${THREADS_RANKS:-$np}"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
