#!/usr/bin/env bash
# Training-step throughput and memory, weft next to PyTorch, for the two sample models
# (784-512-256-10 MLP, and the two-conv CNN of samples/train_cnn.cpp).
#
# Builds bench/train_step and samples/train_mlp, then for each round runs, for mlp and
# cnn at 1 and 2 threads, bench/train_step and its PyTorch twin bench/train_step.py one
# after the other -- weft, torch, weft, torch, ... -- so a burst of load on a shared
# machine hits both alike. Prints the median samples/s over every timed run, the ratio
# weft/torch (> 1: weft is faster), the per-step phase breakdown, the CNN's 2-thread over
# 1-thread scaling, and the peak RSS of `train_mlp --epochs 1` next to the PyTorch
# script's equivalent one-epoch run (both measured with /usr/bin/time -v). The header
# names the CPU (model, family/model numbers, vector extensions) and any OpenBLAS or
# WEFT_GEMM variable set in the environment, and the table gives the GEMM kernels weft
# chose for each model (tensor/kernels.h), so that every figure says where it came from.
#
#   bench/run_train_bench.sh                      # 3 rounds, 5 timed runs per program
#   ROUNDS=5 REPEATS=5 THREADS="1 2" MODELS="mlp cnn" BUILD_DIR=build bench/run_train_bench.sh
#   MLP_STEPS=200 CNN_STEPS=30 BATCH_SIZE=128 SKIP_RSS=1 TORCH_PYTHON=/path/to/python ...
#
# The machine should be otherwise idle: wall-clock throughput is what is compared, and
# the load average is printed before, during and after. PyTorch is needed only here, never to
# build or test weft; without it the script reports weft's numbers alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
build="${BUILD_DIR:-build}"
rounds="${ROUNDS:-3}"
repeats="${REPEATS:-5}"
threads_list="${THREADS:-1 2}"
models="${MODELS:-mlp cnn}"
batch="${BATCH_SIZE:-128}"
mlp_steps="${MLP_STEPS:-200}"
cnn_steps="${CNN_STEPS:-30}"
torch_python="${TORCH_PYTHON:-/opt/torchbench/bin/python}"
data="${DATA:-/usr/share/datasets/fashion-mnist}"

cd "$root"
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" >/dev/null
fi
ninja -C "$build" bench/train_step samples/train_mlp >/dev/null

have_torch=1
if ! "$torch_python" -c 'import torch' >/dev/null 2>&1; then
  echo "note: no PyTorch at $torch_python (set TORCH_PYTHON); reporting weft alone" >&2
  have_torch=0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
samples="$work/samples.jsonl"
: >"$samples"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# The CPU the figures come from, and the environment variables that change weft's kernels.
cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
cpu_ids="family $(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -n1) model $(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
cpu_isa="$( (grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_tile)$' || true) | tr '\n' ' ')"
cpu_line="CPU: $cpu_model ($cpu_ids; ${cpu_isa:-no AVX2})"
env_line="environment: $( (env | grep -E '^(OPENBLAS_[A-Z_]*|WEFT_GEMM|OMP_NUM_THREADS)=' || true) | tr '\n' ' ')"
[ "$env_line" = "environment: " ] && env_line="environment: no OPENBLAS_*, WEFT_GEMM or OMP_NUM_THREADS set"

# Runs one program, appending its JSON line; on failure shows its stderr and stops.
run() {
  if ! "$@" --data "$data" 2>"$work/stderr" >>"$samples"; then
    cat "$work/stderr" >&2
    echo "failed: $*" >&2
    exit 1
  fi
}

for ((r = 1; r <= rounds; r++)); do
  for model in $models; do
    steps="$mlp_steps"
    [ "$model" = cnn ] && steps="$cnn_steps"
    for t in $threads_list; do
      cut -d' ' -f1 /proc/loadavg >>"$work/load"
      echo "round $r/$rounds: $model, $t thread(s), load average $(tail -n1 "$work/load")" >&2
      args=(--model "$model" --threads "$t" --batch-size "$batch" --steps "$steps" --repeats "$repeats")
      run "$build/bench/train_step" "${args[@]}"
      if [ "$have_torch" = 1 ]; then
        run "$torch_python" bench/train_step.py "${args[@]}"
      fi
    done
  done
done

# Peak RSS: train_mlp's default run for one epoch (all cores, as train_mlp defaults to)
# against the PyTorch script's equivalent, and a bare `import torch` for reference.
rss_file="$work/rss.txt"
: >"$rss_file"
if [ -z "${SKIP_RSS:-}" ]; then
  if [ ! -x /usr/bin/time ]; then
    echo "note: /usr/bin/time missing (apt-get install time); skipping peak RSS" >&2
  else
    max_rss() { sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$1"; }
    echo "peak RSS: train_mlp --epochs 1" >&2
    /usr/bin/time -v -o "$work/time_weft" "$build/samples/train_mlp" --epochs 1 --data "$data" >"$work/train_mlp.out" 2>&1
    echo "weft_train_mlp $(max_rss "$work/time_weft")" >>"$rss_file"
    if [ "$have_torch" = 1 ]; then
      echo "peak RSS: train_step.py --rss-epoch" >&2
      /usr/bin/time -v -o "$work/time_torch" "$torch_python" bench/train_step.py --rss-epoch \
        --threads "$(nproc)" --data "$data" >"$work/torch_rss.out" 2>&1
      echo "torch_epoch $(max_rss "$work/time_torch")" >>"$rss_file"
      /usr/bin/time -v -o "$work/time_import" "$torch_python" -c 'import torch' >/dev/null 2>&1
      echo "torch_import $(max_rss "$work/time_import")" >>"$rss_file"
    fi
  fi
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# Any Python 3 will do for the table; the torch venv's if there is no other.
py="$(command -v python3 || true)"
[ -n "$py" ] || py="$torch_python"
"$py" - "$samples" "$rss_file" "$rounds" "$repeats" "$load_before" "$load_after" "$(nproc)" "$work/load" \
  "$cpu_line" "$env_line" <<'EOF'
import json, statistics, sys

path, rss_path, rounds, repeats, load_before, load_after, ncpu, load_path, cpu_line, env_line = sys.argv[1:11]
loads = [float(x) for x in open(load_path).read().split()]
runs = [json.loads(line) for line in open(path) if line.strip()]
groups = {}
for run in runs:
    groups.setdefault((run["impl"], run["model"], run["threads"]), []).append(run)
have_torch = any(k[0] == "torch" for k in groups)

def rates(impl, model, threads):
    g = groups.get((impl, model, threads))
    return [v for run in g for v in run["samples_per_s_all"]] if g else None

# The median is the headline; the best run is what the code does when nothing else
# competes for the cores (a burst of load only ever makes a run slower).
def rate(impl, model, threads, best=False):
    v = rates(impl, model, threads)
    return (max(v) if best else statistics.median(v)) if v else None

def phase(impl, model, threads, key):
    g = groups.get((impl, model, threads))
    return statistics.median(run[key] for run in g) if g else None

def fmt(v, spec):
    return format(v, spec) if v is not None else "-".rjust(len(format(0.0, spec)))

w0 = runs[0]
print(f"training steps on Fashion-MNIST, batch {w0['batch_size']}; median samples/s over {rounds} interleaved "
      f"rounds x {repeats} timed runs")
print(f"{ncpu} CPUs; load average (1, 5, 15 min) before {load_before}, after {load_after}; 1-min load at the "
      f"start of each pair of runs: {min(loads):.2f} to {max(loads):.2f}")
versions = {k[0]: groups[k][0]["version"] for k in groups}
print("weft " + versions.get("weft", "?") + (f", PyTorch {versions['torch']}" if have_torch else ""))
print(cpu_line)
print(env_line)
keys = sorted({(k[1], k[2]) for k in groups}, key=lambda mt: (["mlp", "cnn"].index(mt[0]), mt[1]))
target = {"mlp": 2.0, "cnn": 1.8}

print("\n  samples/s: median over all timed runs, and the best run; ratio = weft/torch (> 1: weft faster)")
print(f"  {'model':<5} {'threads':>7} {'weft med':>9} {'torch med':>10} {'ratio':>7} {'weft best':>10} {'torch best':>11}"
      f" {'ratio':>7} {'target':>7}")
for model, t in keys:
    cells = []
    for best in (False, True):
        w, tr = rate("weft", model, t, best), rate("torch", model, t, best)
        cells.append((w, tr, f"{w / tr:6.2f}x" if w and tr else "-".rjust(7)))
    (w, tr, r), (wb, tb, rb) = cells
    ok = ("ok" if w / tr >= target[model] else "MISS") if w and tr else ""
    print(f"  {model:<5} {t:>7} {fmt(w, '9.0f')} {fmt(tr, '10.0f')} {r} {fmt(wb, '10.0f')} {fmt(tb, '11.0f')} {rb}"
          f" {'>=' + format(target[model], '.1f') + 'x':>7} {ok}")

print("\n  per-step breakdown, ms (median): forward = model + loss, backward, optimizer = zero_grad + step")
print(f"  {'model':<5} {'threads':>7} {'impl':>6} {'step':>8} {'forward':>8} {'backward':>9} {'optim':>7} {'CPU ms':>8}")
for model, t in keys:
    for impl in ("weft", "torch"):
        if (impl, model, t) not in groups:
            continue
        r = rate(impl, model, t)
        step = 1e3 * w0["batch_size"] / r
        print(f"  {model:<5} {t:>7} {impl:>6} {step:8.2f} {phase(impl, model, t, 'forward_ms'):8.2f}"
              f" {phase(impl, model, t, 'backward_ms'):9.2f} {phase(impl, model, t, 'optimizer_ms'):7.2f}"
              f" {phase(impl, model, t, 'cpu_ms_per_step'):8.2f}")

print("\n  GEMM kernels weft ran (the last run of each; tensor/kernels.h)")
for model, t in keys:
    g = groups.get(("weft", model, t))
    if g and "gemm" in g[-1]:
        print(f"  {model:<5} {t:>7}  {g[-1]['gemm']}")

threads = sorted({t for _, t in keys})
if "cnn" in {m for m, _ in keys} and 1 in threads and 2 in threads:
    print("\n  cnn scaling, 2 threads / 1 thread (target: weft >= 1.70x)")
    for impl in ("weft", "torch"):
        a, b = rate(impl, "cnn", 1), rate(impl, "cnn", 2)
        ab, bb = rate(impl, "cnn", 1, True), rate(impl, "cnn", 2, True)
        if a and b:
            ok = (" ok" if b / a >= 1.7 else " MISS") if impl == "weft" else ""
            print(f"  {impl:>6}: {b / a:5.2f}x (medians), {bb / ab:5.2f}x (best runs){ok}")

rss = dict(line.split() for line in open(rss_path) if len(line.split()) == 2)
if rss:
    mib = lambda k: int(rss[k]) / 1024
    print("\n  peak RSS (/usr/bin/time -v, Maximum resident set size), one epoch of the MLP")
    print(f"  {'weft  train_mlp --epochs 1':<40} {mib('weft_train_mlp'):8.1f} MiB")
    if "torch_epoch" in rss:
        print(f"  {'torch train_step.py --rss-epoch':<40} {mib('torch_epoch'):8.1f} MiB")
        print(f"  {'torch: import torch alone':<40} {mib('torch_import'):8.1f} MiB")
        r = mib("weft_train_mlp") / mib("torch_epoch")
        print(f"  weft/torch {r:.2f} (target <= 0.50) {'ok' if r <= 0.5 else 'MISS'}")
EOF
