#!/usr/bin/env bash
# DDP weak scaling of samples/train_ddp on this machine: 1 rank vs 2 ranks (per-rank
# batch fixed, one intra-op thread per rank), for the threads and MPI backends, with
# the all-reduce overlapped with backward and without. Rounds alternate the
# configurations so that a burst of load from elsewhere hits them alike; the ratios are
# medians over rounds. Run it on an idle machine (the load average is printed), and
# beside other weft benchmarks only under: flock /tmp/weft-bench.lock bench/run_ddp_scaling.sh
#
# Linux shares the CPU fairly between sessions (autogroup): while another session
# compiles, a 2-rank run gets one core whatever its nice value. On a shared machine,
# raise this session for the run (root):
#   setsid bash -c 'echo -15 > /proc/self/autogroup; bench/run_ddp_scaling.sh'
#
# Each run trains on 30,000 samples (half an epoch): the first steps (cold caches, the
# allocator filling its free lists, ~30 ms extra) are then under 1% of a run, and a
# burst of load from elsewhere is averaged over 5-10 s rather than decides a 2 s run.
# The configurations run in a different order each round (reversed every other round),
# so none of them always follows the same neighbour.
#
#   bench/run_ddp_scaling.sh                      # CNN, 30000 samples a run, 5 rounds (~5 min)
#   MODEL=mlp LIMIT=60000 ROUNDS=3 bench/run_ddp_scaling.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build="${BUILD_DIR:-build}"
bin="$build/samples/train_ddp"
model="${MODEL:-cnn}" limit="${LIMIT:-30000}" rounds="${ROUNDS:-5}" np="${NP:-2}"
ninja -C "$build" samples/train_ddp >/dev/null
common=(--model "$model" --epochs 1 --limit "$limit" --rank-threads 1)
mpirun_cmd=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && mpirun_cmd+=(--allow-run-as-root)
have_mpi=0
command -v mpirun >/dev/null && "${mpirun_cmd[@]}" -np 1 "$bin" --backend mpi --help >/dev/null 2>&1 && have_mpi=1

rate() { "$@" 2>/dev/null | tail -n1 | sed -n 's/.*train_samples_per_s=\([0-9.]*\).*/\1/p'; }
declare -A runs
configs=("threads 1" "threads $np" "threads $np --no-overlap")
[ $have_mpi = 1 ] && configs+=("mpi 1" "mpi $np" "mpi $np --no-overlap")

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; model $model, $limit samples a run"
for ((i = 1; i <= rounds; i++)); do
  line="round $i:"
  order=("${configs[@]}")
  if ((i % 2 == 0)); then  # every other round back to front
    order=(); for ((k = ${#configs[@]} - 1; k >= 0; k--)); do order+=("${configs[k]}"); done
  fi
  for cfg in "${order[@]}"; do
    read -r backend n extra <<<"$cfg"
    if [ "$backend" = threads ]; then
      r=$(rate "$bin" "${common[@]}" --replicas "$n" $extra)
    else
      r=$(rate "${mpirun_cmd[@]}" -np "$n" "$bin" --backend mpi "${common[@]}" $extra)
    fi
    runs["$cfg"]+="$r "
    line+=" [$cfg] $r"
  done
  echo "$line"
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

# Median over rounds of the ratio a/b, each round's a over the same round's b.
median_ratio() {
  python3 -c '
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
r = [x / y for x, y in zip(a, b)]
print("%.2fx (rounds: %s)" % (statistics.median(r), " ".join("%.2f" % x for x in r)))' "$1" "$2"
}
median_of() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1].split()):.0f}")' "$1"; }
for backend in threads mpi; do
  [ "$backend" = mpi ] && [ $have_mpi = 0 ] && { echo "mpi: SKIP (no mpirun or weft built without MPI)"; continue; }
  echo "$backend: 1 rank $(median_of "${runs["$backend 1"]}") samples/s, $np ranks $(median_of "${runs["$backend $np"]}") samples/s"
  echo "  weak scaling $np ranks / 1 rank: $(median_ratio "${runs["$backend $np"]}" "${runs["$backend 1"]}")"
  echo "  overlap on / off at $np ranks:   $(median_ratio "${runs["$backend $np"]}" "${runs["$backend $np --no-overlap"]}")"
done
