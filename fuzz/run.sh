#!/usr/bin/env bash
# Fuzzes the safetensors reader (nn/safetensors.cpp) with libFuzzer for a bounded time.
#
#   bash fuzz/run.sh                    60 seconds
#   FUZZ_SECONDS=600 bash fuzz/run.sh   longer
#
# Builds weft's library with clang under AddressSanitizer + UndefinedBehaviorSanitizer in
# build-fuzz/ (CPU only, library target only), then the target fuzz/safetensors_fuzz.cpp
# with nn/safetensors.cpp compiled beside it, so the parser carries libFuzzer's coverage
# instrumentation. The run starts from the seeds in fuzz/corpus/ plus whatever earlier
# runs kept in build-fuzz/corpus/, with the format's keywords in fuzz/safetensors.dict.
#
# Exits non-zero when the fuzzer finds a crash, a sanitizer report, a leak or an input
# that takes over 10 s; the input is saved as build-fuzz/artifacts/crash-* (or leak-,
# timeout-, oom-), and `build-fuzz/safetensors_fuzz FILE` replays it.
#
# Needs clang and its sanitizer runtimes (Debian: clang libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-60}
jobs=${WEFT_JOBS:-2}
build=build-fuzz
cxx=${FUZZ_CXX:-clang++}
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"

command -v "$cxx" >/dev/null || { echo "fuzz/run.sh: $cxx not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

echo "==> Library under ASan + UBSan with $cxx ($build/)"
# The library needs no fuzzer instrumentation: only the parser's coverage guides the search.
# No OpenBLAS or oneDNN either: the target links libweft.a alone, and the tensor code the
# parser pulls in reaches the GEMM (every op routes 16-bit tensors through float32 ones).
opts=(--buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
      "-Dcpp_args=-fno-sanitize-recover=all" -Dcuda=disabled -Dmpi=disabled -Dblas=disabled -Donednn=disabled
      -Dtests=false -Dsamples=false -Dnative=false)
if [ -f "$build/meson-private/coredata.dat" ]; then
  meson setup --reconfigure "$build" "${opts[@]}" >/dev/null || meson setup --wipe "$build" "${opts[@]}" >/dev/null
else
  CXX="$cxx" meson setup "$build" "${opts[@]}" >/dev/null
fi
ninja -C "$build" -j"$jobs" libweft.a

echo "==> Fuzz target"
# nn/safetensors.cpp is compiled here even when libweft.a has its own copy: the linker
# takes these definitions first and never pulls the archive's uninstrumented object.
target="$build/safetensors_fuzz"
stale=$([ -x "$target" ] && echo 0 || echo 1)
for f in fuzz/safetensors_fuzz.cpp nn/safetensors.cpp nn/safetensors.h "$build/libweft.a"; do
  [ "$f" -nt "$target" ] && stale=1
done
if [ "$stale" = 1 ]; then
  "$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer $sanitize -I. -I"$build" \
    fuzz/safetensors_fuzz.cpp nn/safetensors.cpp "$build/libweft.a" -lpthread -o "$target"
else
  echo "$target is up to date"
fi

echo "==> Fuzzing for $seconds s"
mkdir -p "$build/corpus" "$build/artifacts"
export ASAN_OPTIONS=detect_leaks=1:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}
log="$build/fuzz.log"
echo "(libFuzzer's own output goes to $log)"
status=0
"$target" "$build/corpus" fuzz/corpus \
  -dict=fuzz/safetensors.dict -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$build/artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  tail -n 80 "$log" >&2
  echo "fuzz: FAILED (status $status); the input is in $build/artifacts/" >&2
  exit 1
fi
grep -E '^(Done|stat::)' "$log" || true
echo "fuzz: no crash in $seconds s ($(ls "$build/corpus" | wc -l) inputs kept in $build/corpus/)"
