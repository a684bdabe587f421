#!/usr/bin/env bash
# Per-op overhead, weft next to PyTorch: builds bench/op_overhead, then runs it and its
# PyTorch twin (bench/op_overhead.py) alternately -- weft, torch, weft, torch, ... -- so
# that a burst of load on a shared machine hits both alike, and prints the medians over
# all samples side by side with the ratio torch_ns / weft_ns (> 1: weft is faster).
#
#   bench/run_op_overhead.sh                     # 5 rounds x 5 reps, 10,000 ops, numel 16
#   ROUNDS=9 REPS=7 OPS=10000 NUMEL=16 BUILD_DIR=build-bench bench/run_op_overhead.sh
#   TORCH_PYTHON=/path/to/python bench/run_op_overhead.sh
#
# It prints the load average it saw. Both programs report wall time and process CPU time;
# on an idle machine the two agree, on a busy one the wall time also counts time the core
# spent on other processes, so trust the CPU-time columns more. PyTorch is needed only
# here, never to build or test weft; without it the script reports weft's numbers alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
build="${BUILD_DIR:-build}"
rounds="${ROUNDS:-5}"
reps="${REPS:-5}"
ops="${OPS:-10000}"
numel="${NUMEL:-16}"
torch_python="${TORCH_PYTHON:-/opt/torchbench/bin/python}"

cd "$root"
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" >/dev/null
fi
ninja -C "$build" bench/op_overhead >/dev/null

have_torch=1
if ! "$torch_python" -c 'import torch' >/dev/null 2>&1; then
  echo "note: no PyTorch at $torch_python (set TORCH_PYTHON); reporting weft alone" >&2
  have_torch=0
fi

load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
samples="$(mktemp)"
trap 'rm -f "$samples"' EXIT
args=(--ops "$ops" --numel "$numel" --reps "$reps")
for ((r = 1; r <= rounds; r++)); do
  echo "round $r/$rounds" >&2
  "$build/bench/op_overhead" "${args[@]}" 2>/dev/null >>"$samples"
  if [ "$have_torch" = 1 ]; then
    OMP_NUM_THREADS=1 "$torch_python" bench/op_overhead.py "${args[@]}" 2>/dev/null >>"$samples"
  fi
done

# Any Python 3 will do for the table; the torch venv's if there is no other.
py="$(command -v python3 || true)"
[ -n "$py" ] || py="$torch_python"
load_after="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
"$py" - "$samples" "$rounds" "$reps" "$load_before" "$load_after" "$(nproc 2>/dev/null || echo '?')" <<'EOF'
import json, statistics, sys

path, rounds, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
load_before, load_after, ncpu = sys.argv[4], sys.argv[5], sys.argv[6]
runs = [json.loads(line) for line in open(path) if line.strip()]
by_impl = {}
for run in runs:
    by_impl.setdefault(run["impl"], []).append(run)

def med(impl, clock, phase):
    if impl not in by_impl:
        return None
    return statistics.median(v for run in by_impl[impl] for v in run[clock][phase])

first = runs[0]
print(f"chain of {first['ops']} ops (mul_scalar, add, relu, cycling) on a {first['numel']}-element float32 "
      f"leaf, 1 thread; median ns/op over {rounds} interleaved rounds x {reps} reps")
if "torch" in by_impl:
    print(f"PyTorch {by_impl['torch'][0]['version']}")
print(f"load average (1, 5, 15 min) on {ncpu} CPUs: {load_before} before, {load_after} after"
      + ("  -- a busy machine: trust the CPU-time table" if load_before.split()[0].replace('.', '', 1).isdigit()
         and ncpu.isdigit() and float(load_before.split()[0]) > 0.5 * int(ncpu) else ""))
phases = [("forward_grad", "forward, grad on (recording)"),
          ("backward", "backward"),
          ("forward_nograd", "forward, NoGradGuard / no_grad")]
for clock, title in (("cpu", "process CPU time"), ("wall", "wall-clock time")):
    print(f"\n{title}")
    print(f"  {'phase':<32} {'weft ns/op':>11} {'torch ns/op':>12} {'torch/weft':>11}")
    for phase, label in phases:
        w, t = med("weft", clock, phase), med("torch", clock, phase)
        ts = f"{t:12.0f}" if t is not None else f"{'-':>12}"
        rs = f"{t / w:10.2f}x" if t is not None else f"{'-':>11}"
        print(f"  {label:<32} {w:11.0f} {ts} {rs}")

if "torch" in by_impl:
    w, t = by_impl["weft"][-1], by_impl["torch"][-1]
    ok = abs(w["loss"] - t["loss"]) <= 1e-3 * abs(t["loss"]) and abs(w["grad0"] - t["grad0"]) <= 1e-3 * abs(t["grad0"])
    print(f"\nsame result: loss {w['loss']:.6g} (weft) vs {t['loss']:.6g} (torch), "
          f"dloss/dx[0] {w['grad0']:.6g} vs {t['grad0']:.6g} -> {'agree' if ok else 'DISAGREE'}")
EOF
