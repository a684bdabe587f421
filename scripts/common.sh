# Shared by scripts/setup.sh and scripts/test.sh (sourced, not run).

# Every Debian 12 package weft needs to build, test and run its samples.
WEFT_PACKAGES=(
  meson ninja-build g++ pkg-config   # the build (g++ brings libasan/libubsan for test.sh)
  libeigen3-dev                      # CPU matmul and convolution kernels
  libopenblas-dev libdnnl-dev        # GEMM candidates beside Eigen (tensor/cpu/gemm_backends.h)
  catch2                             # the test suite (Catch2 v2)
  zlib1g-dev                         # reading the gzipped IDX data sets
  nlohmann-json3-dev                 # safetensors headers
  libcli11-dev                       # command lines of the samples and benchmarks
  dataset-fashion-mnist              # /usr/share/datasets/fashion-mnist/*.gz
  fortunes                           # /usr/share/games/fortunes: train_charlm's text (2.4 MB of English)
  libopenmpi-dev openmpi-bin         # the MPI communicator
  clang libclang-rt-14-dev           # a second compiler, with its sanitizer runtimes
)

# Parallel compile jobs; the reference machine has 2 cores.
WEFT_JOBS=${WEFT_JOBS:-2}

log() { printf '\n==> %s  [at %d s]\n' "$*" "$SECONDS"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# Prints the packages of WEFT_PACKAGES that are not installed, one per line.
missing_packages() {
  local p
  for p in "${WEFT_PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" = "ii " ] || echo "$p"
  done
}

# install_packages [--if-missing]: apt-get update + install of WEFT_PACKAGES. With
# --if-missing, nothing happens when every package is already there (no network needed).
install_packages() {
  local missing
  missing=$(missing_packages)
  if [ "${1:-}" = --if-missing ] && [ -z "$missing" ]; then
    echo "all ${#WEFT_PACKAGES[@]} packages are installed"
    return 0
  fi
  [ -n "$missing" ] && echo "missing: $(echo $missing)"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q; then
    [ -z "$missing" ] || die "apt-get update failed and packages are missing"
    echo "warning: apt-get update failed; every package is installed already, going on"
    return 0
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${WEFT_PACKAGES[@]}" </dev/null ||
    die "apt-get install failed"
}

# configure BUILD_DIR MESON_ARGS...: meson setup, or reconfigure when BUILD_DIR already
# holds a configured build (with a wipe as the last resort, e.g. after a Meson upgrade).
configure() {
  local dir=$1; shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$@" || meson setup --wipe "$dir" "$@"
  else
    meson setup "$dir" "$@"
  fi
}
