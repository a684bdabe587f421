#!/usr/bin/env bash
# Runs weft's whole test suite:
#   1. installs the Debian packages when some are missing (see scripts/common.sh);
#   2. builds build/ (release: library, tests, samples, benchmarks) and runs the Catch2
#      suite, build/tests/weft_tests, and build/tests/tensor_only (tensor/ linked alone);
#   3. builds and runs tests/consumer the two ways a project uses weft: as a Meson
#      subproject, and installed + pkg-config (installing from build/);
#   4. builds the suite again under AddressSanitizer + UndefinedBehaviorSanitizer in
#      build-asan/ (with clang++ when installed, GEMMs through Eigen alone instead of
#      the measured choice of Eigen, OpenBLAS and oneDNN) and runs it there;
#   5. fuzzes the safetensors header parser with libFuzzer for FUZZ_SECONDS (60).
# Its last line is "N passed, N failed": Catch2 test cases of both runs, plus one per
# consumer route, plus one failure for each step that could not run (a build that broke,
# a test binary that crashed). The exit status is 0 only when nothing failed.
#
# Usage: bash scripts/test.sh
#   WEFT_JOBS=N            parallel compile jobs (default 2)
#   WEFT_TEST_TIMEOUT=S    seconds each run of weft_tests may take (default 1800)
#   WEFT_ASAN_CXX=c++      the compiler of build-asan/ (default clang++, else g++)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

# A hung test binary must not eat the whole CI budget: each run gets this long.
test_timeout=${WEFT_TEST_TIMEOUT:-1800}
passed=0
failed=0
problems=()
t_start=$SECONDS

# A step that failed outright counts as one failed test.
broken() {
  failed=$((failed + 1))
  problems+=("$1")
  echo "FAIL $1"
}

# Reads a Catch2 XML report: prints "PASSED FAILED", then for each failed test case its
# name and what failed (file:line, the expression or exception). A report cut short (the
# binary crashed or was killed) counts the finished cases, and the unfinished one fails.
catch2_report() {
  python3 - "$1" <<'EOF'
import html, re, sys
text = open(sys.argv[1], errors="replace").read()
passed = failed = 0
lines = []
def clean(s):
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", s)).split())[:300]
for block in re.split(r"<TestCase ", text)[1:]:
    name = html.unescape(re.match(r'name="([^"]*)"', block).group(1))
    result = re.search(r'<OverallResult success="(true|false)"', block)
    if result and result.group(1) == "true":
        passed += 1
        continue
    failed += 1
    lines.append(f"  failed: {name}" + ("" if result else "   <- did not finish (crashed or killed)"))
    pattern = (r'<(Expression success="false"|Exception|FatalErrorCondition|Failure)[^>]*?'
               r'filename="([^"]*)" line="(\d+)"[^>]*>(.*?)</(?:Expression|Exception|FatalErrorCondition|Failure)>')
    for m in list(re.finditer(pattern, block, re.S))[:5]:
        kind, body = m.group(1).split()[0], m.group(4)
        if kind == "Expression":
            orig = re.search(r"<Original>(.*?)</Original>", body, re.S)
            expd = re.search(r"<Expanded>(.*?)</Expanded>", body, re.S)
            rest = clean(re.sub(r"<(Original|Expanded)>.*?</\1>", "", body, flags=re.S))
            body = clean(orig.group(1) if orig else "") + "  with  " + clean(expd.group(1) if expd else "")
            if rest:
                body += "  (" + rest + ")"
        else:
            body = clean(body)
        lines.append(f"      {m.group(2)}:{m.group(3)}: {kind}: {body}")
totals = re.findall(r'<OverallResultsCases successes="(\d+)" failures="(\d+)"', text)
if totals:
    passed, failed = int(totals[-1][0]), int(totals[-1][1])
print(passed, failed)
print("\n".join(lines))
EOF
}

# run_catch2 LABEL BINARY: runs the suite with the XML reporter into BINARY.xml (the
# binary's own stderr, sanitizer reports included, goes to the terminal) and adds up
# its counts. When the array `launcher` is set, the binary runs under it (mpirun ...),
# and the report goes to XML (third argument) instead.
launcher=()
run_catch2() {
  local label=$1 bin=$2 xml=${3:-$2.xml} rc report p f t0=$SECONDS
  rm -f "$xml"
  timeout --kill-after=30 "$test_timeout" "${launcher[@]}" "$bin" --reporter xml --out "$xml" </dev/null
  rc=$?
  [ "$rc" -eq 124 ] && echo "$label: killed after ${test_timeout} s"
  report=$(catch2_report "$xml")
  read -r p f <<<"$(head -n1 <<<"$report")"
  p=${p:-0} f=${f:-0}
  passed=$((passed + p))
  failed=$((failed + f))
  echo "$label: $p passed, $f failed ($((SECONDS - t0)) s; report in $xml)"
  if [ "$f" -gt 0 ]; then
    tail -n +2 <<<"$report"
    problems+=("$label: $f failed")
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    broken "$label exited with status $rc"
  fi
}

log "Packages"
(install_packages --if-missing) || broken "installing packages"

log "Release build (build/)"
release_ok=0
if configure build --buildtype=release -Dtests=true && ninja -C build -j"$WEFT_JOBS"; then
  release_ok=1
else
  broken "release build"
fi

if [ $release_ok = 1 ]; then
  log "Unit tests (release)"
  run_catch2 "weft_tests (release)" build/tests/weft_tests
  # tensor/ and its CUDA backend linked alone, without autograd/ and above (it would
  # not link if tensor/ called into them), and its views and kernels run there.
  if build/tests/tensor_only; then
    echo "PASS tensor_only"
    passed=$((passed + 1))
  else
    echo "FAIL tensor_only"
    failed=$((failed + 1))
  fi
fi

# The MPI communicator and the algorithms over it, under mpirun with 2, 3 and 4 ranks
# (4 makes the pipeline x data grid 2 x 2; oversubscribed: CI has 2 cores), then the
# dead-rank cases. Every rank runs every
# test case; rank 0's report is counted (the others write .rankN reports beside it).
log "MPI tests (mpirun -np 2, -np 3, -np 4)"
if [ $release_ok = 1 ] && ! command -v mpirun >/dev/null; then
  echo "SKIP MPI tests: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
elif [ $release_ok = 1 ] && [ ! -x build/tests/weft_mpi_tests ]; then
  echo "SKIP MPI tests: weft was configured without MPI (build/tests/weft_mpi_tests not built)"
elif [ $release_ok = 1 ]; then
  mpirun_cmd=(mpirun --oversubscribe)
  [ "$(id -u)" = 0 ] && mpirun_cmd+=(--allow-run-as-root)
  for np in 2 3 4; do
    launcher=("${mpirun_cmd[@]}" -np "$np")
    run_catch2 "weft_mpi_tests (mpirun -np $np)" build/tests/weft_mpi_tests build/tests/weft_mpi_tests.np$np.xml
  done
  launcher=()
  dead_log=$(mktemp)
  bash tests/parallel/mpi_dead_rank.sh build | tee "$dead_log"
  passed=$((passed + $(grep -c '^PASS mpi_dead_rank' "$dead_log")))
  d_fail=$(grep -c '^FAIL mpi_dead_rank' "$dead_log")
  failed=$((failed + d_fail))
  [ "$d_fail" -gt 0 ] && problems+=("mpi_dead_rank: $d_fail failed")
  rm -f "$dead_log"
fi

log "Consumer projects (tests/consumer/run.sh)"
consumer_log=$(mktemp)
if [ $release_ok = 1 ]; then
  WEFT_INSTALL_FROM=build bash tests/consumer/run.sh | tee "$consumer_log"
else
  bash tests/consumer/run.sh | tee "$consumer_log"
fi
consumer_rc=${PIPESTATUS[0]}
c_pass=$(grep -c '^PASS consumer/' "$consumer_log")
c_fail=$(grep -c '^FAIL consumer/' "$consumer_log")
passed=$((passed + c_pass))
failed=$((failed + c_fail))
[ "$c_fail" -gt 0 ] && problems+=("consumer: $(grep '^FAIL' "$consumer_log" | cut -d' ' -f2 | paste -sd' ' -)")
[ "$consumer_rc" -ne 0 ] && [ "$c_fail" -eq 0 ] && broken "tests/consumer/run.sh exited with status $consumer_rc"
rm -f "$consumer_log"

# The sanitizer build uses clang when there is one: GCC 12 with -fsanitize takes about
# four times longer on the Eigen-heavy kernels (matmul.cpp: 190 s against 53 s), and a
# second compiler catches what the first lets through. WEFT_ASAN_CXX picks another.
asan_cxx=${WEFT_ASAN_CXX:-$(command -v clang++ >/dev/null && echo clang++ || echo g++)}
# Meson keeps the compiler a build directory was set up with: start afresh on a change.
asan_had=$(sed -n '/^rule cpp_COMPILER$/{n;s/^ *command = \([^ ]*\).*/\1/p;q}' build-asan/build.ninja 2>/dev/null)
if [ -n "$asan_had" ] && [ "$(basename "$asan_had")" != "$(basename "$asan_cxx")" ]; then
  echo "build-asan/ was set up with $asan_had; setting it up afresh with $asan_cxx"
  rm -rf build-asan
fi
log "AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/, $asan_cxx)"
# -Dblas=disabled -Donednn=disabled: every GEMM goes through Eigen, so the suite runs
# on Eigen alone here and on the measured choice (mostly oneDNN and OpenBLAS) in the
# release build (tensor/cpu/gemm.h); tests/tensor/test_gemm.cpp checks each backend.
if CXX=$asan_cxx configure build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled -Dblas=disabled -Donednn=disabled &&
  ninja -C build-asan -j"$WEFT_JOBS" tests/weft_tests tests/gemm_probe; then
  log "Unit tests (ASan + UBSan)"
  # protect_shadow_gap=0: the CUDA driver maps memory where ASan would otherwise
  # reserve its shadow gap (harmless without a GPU).
  ASAN_OPTIONS=detect_leaks=1:protect_shadow_gap=0:${ASAN_OPTIONS:-} \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-} \
    run_catch2 "weft_tests (ASan+UBSan)" build-asan/tests/weft_tests
else
  broken "ASan+UBSan build"
fi

log "Fuzzing the safetensors header parser (fuzz/run.sh, ${FUZZ_SECONDS:-60} s)"
# libFuzzer under ASan+UBSan; a crash fails the run and leaves the input in build-fuzz/.
if FUZZ_SECONDS=${FUZZ_SECONDS:-60} bash fuzz/run.sh; then
  passed=$((passed + 1))
  echo "PASS fuzz/safetensors"
else
  broken "fuzz/safetensors (see build-fuzz/fuzz.log)"
fi

log "Summary ($((SECONDS - t_start)) s)"
for p in "${problems[@]}"; do echo "  problem: $p"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
