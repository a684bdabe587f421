#!/usr/bin/env bash
# Builds weft with CUDA on a GPU machine and runs the CUDA tests, the GPU samples and
# the GPU benchmarks against PyTorch eager -- all in one call of the device tool.
#
# That machine has nvcc, meson, ninja and PyTorch (whose pip packages bring cuDNN and
# NCCL), but no Debian packages and no copy of Fashion-MNIST. So, on this machine:
#
#   bash scripts/gpu_check.sh prepare   # copies the Catch2 v2, CLI11, Eigen and nlohmann-json
#                                       # headers (and zlib's, used only where the machine
#                                       # lacks them) and the dataset into .device/ (git-ignored)
# then, through the device tool, carrying .device:
#
#   bash scripts/gpu_check.sh run       # build-gpu/, tests, samples, benchmarks
#
# `run` writes its logs and results.txt (the summary) under $OUT (default: gpu-out/);
# copy results.txt into bench/results/<gpu>-<date>.txt afterwards. A failing test's
# message (Catch2 prints it on the lines after FAILED) is in the summary.
# Environment: GPU_CHECK_STEPS=tests,samples,bench (the default; add cputests for the
# CPU suite, which CI runs anyway), WEFT_JOBS (16). Each step has a timeout, so a hang
# costs minutes, not the whole device call; a rerun with GPU_CHECK_STEPS=tests on the
# same warm machine rebuilds only what changed (build-gpu/ is kept there).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
here=$PWD

prepare() {
  rm -rf .device && mkdir -p .device/include .device/pkgconfig .device/fallback .device/fashion-mnist
  cp -r /usr/include/catch2 /usr/include/CLI /usr/include/nlohmann .device/include/
  cp -r /usr/include/eigen3 .device/include/
  cp /usr/share/datasets/fashion-mnist/*.gz .device/fashion-mnist/
  for pc in catch2:Catch2:2.13.10: CLI11:CLI11:2.1.2: nlohmann_json:nlohmann_json:3.11.2: eigen3:Eigen3:3.4.0:/eigen3; do
    IFS=: read -r file name version sub <<<"$pc"
    cat > ".device/pkgconfig/$file.pc" <<PC
Name: $name
Description: carried header-only library
Version: $version
Cflags: -I\${pcfiledir}/../include$sub
PC
  done
  # zlib: its headers, and the machine's own runtime library (every Linux has libz.so.1;
  # not always the -dev symlink). Used only where pkg-config finds no zlib there.
  mkdir -p .device/zlib && cp /usr/include/zlib.h /usr/include/zconf.h .device/zlib/
  cat > .device/fallback/zlib.pc <<'PC'
Name: zlib
Description: carried headers, the machine's libz.so.1
Version: 1.2.13
Cflags: -I${pcfiledir}/../zlib
Libs: -l:libz.so.1
PC
  du -sh .device
}

run() {
  local out=${OUT:-$here/gpu-out}
  mkdir -p "$out"
  local steps=${GPU_CHECK_STEPS:-tests,samples,bench}
  local summary=$out/results.txt
  : > "$summary"
  say() { echo "$*" | tee -a "$summary"; }

  # cuDNN and NCCL from PyTorch's pip packages, when the CUDA toolkit lacks them.
  local py=${PYTHON:-python3}
  local nv
  nv=$($py -c "import nvidia, os; print(list(nvidia.__path__)[0])" 2>/dev/null || true)
  for lib in cudnn nccl; do
    if [[ -n "$nv" && -d "$nv/$lib/include" ]]; then
      export LD_LIBRARY_PATH="$nv/$lib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      # Meson looks for the libraries in the toolkit's lib64: link them in there (the
      # device machine is a throwaway), giving the linker the libfoo.so it wants.
      local cu=/usr/local/cuda
      if [[ ! -e $cu/lib64/lib$lib.so && -w $cu/lib64 ]]; then
        for so in "$nv/$lib/lib"/lib*.so*; do
          ln -sf "$so" "$cu/lib64/$(basename "$so")"
          ln -sf "$so" "$cu/lib64/$(basename "${so%%.so*}").so" 2>/dev/null
        done
        for h in "$nv/$lib/include"/*.h; do ln -sf "$h" "$cu/include/$(basename "$h")"; done
      fi
    fi
  done
  export PKG_CONFIG_PATH="$here/.device/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  pkg-config --exists zlib 2>/dev/null || export PKG_CONFIG_PATH="$PKG_CONFIG_PATH:$here/.device/fallback"
  local data=$here/.device/fashion-mnist
  export WEFT_FASHION_MNIST_DIR=$data

  say "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  if ! meson setup build-gpu -Dcuda=enabled -Dcudnn=enabled --reconfigure > "$out/setup.log" 2>&1 &&
     ! meson setup build-gpu -Dcuda=enabled -Dcudnn=enabled > "$out/setup.log" 2>&1; then
    say "FAIL meson setup (see setup.log)"; tail -30 "$out/setup.log"; return 1
  fi
  grep -E "CUDA|cudnn|nccl|Cuda" "$out/setup.log" | tee -a "$summary"
  if ! ninja -C build-gpu -j"${WEFT_JOBS:-16}" > "$out/build.log" 2>&1; then
    say "FAIL build (see build.log)"; grep -E "error" "$out/build.log" | head -40; return 1
  fi
  say "build ok"

  if [[ ,$steps, == *,tests,* ]]; then
    timeout 240 build-gpu/tests/weft_tests "[cuda],[nccl]" > "$out/cuda_tests.log" 2>&1
    local rc=$?
    say "[cuda] tests (exit $rc$([[ $rc == 124 ]] && echo ': timed out')): $(tail -2 "$out/cuda_tests.log" | head -1)"
    # Each failure with its context: the test's name above, the message below.
    grep -B6 -A10 -E "FAILED|unexpected exception" "$out/cuda_tests.log" | head -200 | tee -a "$summary"
    [[ $rc != 0 ]] && { say "-- last lines of cuda_tests.log:"; tail -30 "$out/cuda_tests.log" | tee -a "$summary"; }
  fi
  if [[ ,$steps, == *,cputests,* ]]; then
    timeout 300 build-gpu/tests/weft_tests "~[cuda]~[nccl]" > "$out/all_tests.log" 2>&1
    say "other tests (CPU): $(tail -2 "$out/all_tests.log" | head -1)"
  fi

  if [[ ,$steps, == *,samples,* ]]; then
    for cmd in "train_mlp" "train_mlp --cuda-graph" "train_cnn" "train_cnn --cuda-graph"; do
      local log=$out/$(echo "$cmd" | tr ' -' '__').log
      timeout 240 build-gpu/samples/$cmd --device cuda --data "$data" > "$log" 2>&1
      say "$cmd --device cuda (exit $?):"
      grep -aE "^epoch [0-9]+: (test_accuracy|cuda)|error|^test_accuracy" "$log" | sed 's/^/    /' | tail -12 | tee -a "$summary"
    done
    # DDP over NCCL, one rank per visible GPU, bootstrapped over threads (no MPI there).
    local gpus; gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)  # GPUs, not MIG slices
    timeout 300 build-gpu/samples/train_ddp --backend nccl --replicas "$gpus" --model cnn --epochs 2 --data "$data" \
      > "$out/train_ddp_nccl.log" 2>&1
    say "train_ddp --backend nccl --replicas $gpus --model cnn --epochs 2 (exit $?):"
    grep -aE "^epoch|error|^test_accuracy" "$out/train_ddp_nccl.log" | sed 's/^/    /' | tail -6 | tee -a "$summary"
  fi

  if [[ ,$steps, == *,bench,* ]]; then
    say "GPU training step, batch 128, samples/s (median of 5 x 200 steps):"
    say "$(printf '%-5s %-6s %12s %12s %8s %s' model mode weft torch ratio weft_cudaMalloc_in_timed_steps)"
    for model in mlp cnn; do
      for mode in eager graph bf16; do
        local flag=""; [[ $mode == graph ]] && flag="--graph"; [[ $mode == bf16 ]] && flag="--precision bf16"
        local w t
        w=$(build-gpu/bench/gpu_train_step --model "$model" $flag --data "$data" 2>>"$out/bench.err")
        t=$(cd bench && $py gpu_train_step.py --model "$model" $flag --data "$data" 2>>"$out/bench.err")
        echo "$w" >> "$out/bench.jsonl"; echo "$t" >> "$out/bench.jsonl"
        $py - "$model" "$mode" "$w" "$t" <<'PY' | tee -a "$summary"
import json, sys
m, mode, w, t = sys.argv[1:5]
try:
    w, t = json.loads(w), json.loads(t)
    print(f"{m:5s} {mode:6s} {w['samples_per_s']:12.0f} {t['samples_per_s']:12.0f} {w['samples_per_s']/t['samples_per_s']:7.2f}x {w['cudaMalloc_calls_timed']}")
except Exception as e:
    print(f"{m:5s} {mode:6s} failed: {e}")
PY
      done
    done
    # Against eager PyTorch, the reference for both of weft's modes.
    $py - "$out/bench.jsonl" <<'PY' | tee -a "$summary"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
get = lambda impl, m, mode: next((r["samples_per_s"] for r in rows if r["impl"] == impl and r["model"] == m
                                  and r["mode"] == mode and r.get("precision", "fp32") == "fp32"), None)
for m in ("mlp", "cnn"):
    te = get("torch", m, "eager")
    for mode in ("eager", "graph"):
        w = get("weft", m, mode)
        if te and w:
            print(f"{m}: weft {mode} / torch eager = {w / te:.2f}x")
PY
  fi
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash scripts/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac
