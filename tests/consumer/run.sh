#!/usr/bin/env bash
# Builds and runs tests/consumer/consumer.cpp the two ways a research project uses weft,
# each in a fresh temporary directory, and prints one PASS or FAIL line per route:
#
#   subproject  weft in subprojects/weft (a symlink to this checkout), configured with
#               -Dweft:cuda=disabled; dependency('weft') and dependency('weft',
#               static: true) both link and run, and CUDA calls throw
#               "built without CUDA".
#   pkg-config  weft installed (meson install --destdir), then the consumer compiled with
#               plain `g++ -std=c++20 consumer.cpp $(pkg-config --cflags --libs weft)` and
#               run with LD_LIBRARY_PATH; then linked statically (all of libweft.a)
#               with `pkg-config --static --libs weft`.
#
# Usage: tests/consumer/run.sh [subproject] [pkg-config]     (both when none is named)
# Environment:
#   WEFT_INSTALL_FROM=DIR  install weft from this already built build directory (as
#                          scripts/test.sh does with build/) instead of configuring and
#                          building a fresh one for the pkg-config route
#   WEFT_JOBS=N            parallel compile jobs (default 2)
#   KEEP_TMP=1             keep the temporary directory, for a look after a failure
# Exit status: 0 when every route passed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
jobs=${WEFT_JOBS:-2}
routes=("$@")
[ ${#routes[@]} -eq 0 ] && routes=(subproject pkg-config)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-consumer.XXXXXX")
if [ "${KEEP_TMP:-0}" = 1 ]; then
  echo "consumer: keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi

# A GPU is visible when the driver's device nodes exist or nvidia-smi lists one. Without
# one, weft::cuda::is_available() must say false, whatever weft was built with.
has_gpu() { ls /dev/nvidia[0-9]* >/dev/null 2>&1 || nvidia-smi -L >/dev/null 2>&1; }
gpu_flag=--expect-no-gpu
has_gpu && gpu_flag=

# step LOG CMD...: runs CMD with its output appended to LOG; on failure says which step.
step() {
  local log=$1; shift
  echo "+ $*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    echo "step failed: $*" >>"$log"
    return 1
  fi
}

route_subproject() {
  local dir=$tmp/subproject log=$tmp/subproject.log
  mkdir -p "$dir/subprojects"
  cp "$here/meson.build" "$here/consumer.cpp" "$dir/"
  ln -s "$repo" "$dir/subprojects/weft"
  step "$log" meson setup "$dir/build" "$dir" --force-fallback-for=weft -Dweft:cuda=disabled &&
    step "$log" ninja -C "$dir/build" -j"$jobs" &&
    step "$log" "$dir/build/consumer" --expect-cuda-disabled --expect-no-gpu &&
    step "$log" "$dir/build/consumer_static" --expect-cuda-disabled --expect-no-gpu &&
    # dependency('weft') is the shared library; static: true needs no libweft.so.
    step "$log" bash -c "ldd '$dir/build/consumer' | grep -q libweft.so" &&
    step "$log" bash -c "! ldd '$dir/build/consumer_static' | grep -q libweft"
}

route_pkgconfig() {
  local dir=$tmp/pkg-config log=$tmp/pkg-config.log destdir=$tmp/destdir build
  mkdir -p "$dir"
  cp "$here/consumer.cpp" "$dir/"
  if [ -n "${WEFT_INSTALL_FROM:-}" ]; then
    build=$(cd "$WEFT_INSTALL_FROM" && pwd) || return 1
  else
    build=$tmp/weft-build
    step "$log" meson setup "$build" "$repo" -Dtests=false -Dsamples=false &&
      step "$log" meson compile -C "$build" -j "$jobs" weft:shared_library weft:static_library || return 1
  fi
  step "$log" meson install -C "$build" --no-rebuild --destdir "$destdir" --tags runtime,devel || return 1

  # Under DESTDIR the tree moved: $destdir$prefix instead of $prefix. Relocate weft.pc
  # accordingly (its other paths are relative to ${prefix}), as if weft had been
  # installed there, and put it first on pkg-config's path.
  local pc prefix pcdir=$tmp/pkgconfig
  pc=$(find "$destdir" -name weft.pc -print -quit)
  [ -n "$pc" ] || { echo "no weft.pc installed" >>"$log"; return 1; }
  prefix=$(sed -n 's/^prefix=//p' "$pc")
  mkdir -p "$pcdir"
  sed "s|^prefix=.*|prefix=$destdir$prefix|" "$pc" >"$pcdir/weft.pc"
  local -x PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  local cflags libs static_libs libdir requires
  cflags=$(pkg-config --cflags weft) &&
    libs=$(pkg-config --libs weft) &&
    static_libs=$(pkg-config --static --libs weft) &&
    libdir=$(pkg-config --variable=libdir weft) &&
    requires=$(pkg-config --print-requires --print-requires-private weft) || {
      echo "pkg-config failed on $pcdir/weft.pc:" >>"$log"
      pkg-config --cflags --libs weft >>"$log" 2>&1
      return 1
    }
  {
    echo "requires: $requires"
    echo "cflags: $cflags"
    echo "libs: $libs"
    echo "static libs: $static_libs"
  } >>"$log"
  # The public headers need nothing but weft: no Eigen, JSON, CUDA, MPI, OpenBLAS or zlib
  # flags or packages (Requires.private counts: pkg-config reads it for --cflags too), and
  # no -std, which would override a consumer's -std=c++23.
  if grep -Eiq 'eigen|nlohmann|cuda|mpi|openblas|zlib' <<<"$cflags $requires"; then
    echo "weft.pc drags a private dependency into --cflags or Requires" >>"$log"
    return 1
  fi
  if grep -q -- '-std=' <<<"$cflags"; then
    echo "weft.pc sets the C++ standard in Cflags: $cflags" >>"$log"
    return 1
  fi
  # shellcheck disable=SC2086  # the flags are meant to split
  (
    cd "$dir" &&
      step "$log" g++ -std=c++20 -Wall -Wextra consumer.cpp -o consumer $cflags $libs &&
      step "$log" env LD_LIBRARY_PATH="$libdir" ./consumer $gpu_flag &&
      step "$log" bash -c "LD_LIBRARY_PATH='$libdir' ldd ./consumer | grep -q '$libdir/libweft.so'" &&
      # Whole archive: every object of libweft.a must link with what weft.pc lists for
      # --static (zlib, cudart, ...), not just the few this program happens to use.
      step "$log" g++ -std=c++20 consumer.cpp -o consumer_static $cflags \
        ${static_libs/-lweft/-Wl,--whole-archive -l:libweft.a -Wl,--no-whole-archive} &&
      step "$log" ./consumer_static $gpu_flag
  )
}

failed=0
for route in "${routes[@]}"; do
  start=$SECONDS
  case $route in
    subproject) route_subproject ;;
    pkg-config) route_pkgconfig ;;
    *) echo "unknown route '$route' (subproject, pkg-config)" >&2; exit 2 ;;
  esac
  rc=$?
  log=$tmp/$route.log
  if [ $rc -eq 0 ]; then
    echo "PASS consumer/$route ($((SECONDS - start)) s)"
  else
    failed=1
    echo "---- consumer/$route log (last 40 lines of $log) ----"
    tail -n 40 "$log"
    echo "FAIL consumer/$route ($((SECONDS - start)) s)"
  fi
done
exit $failed
