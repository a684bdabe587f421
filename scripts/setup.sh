#!/usr/bin/env bash
# Sets weft up on a fresh Debian 12 machine and runs the main job:
#   1. apt-get installs every package weft needs (as root, or through sudo);
#   2. configures build/ (release) -- or reconfigures it when it exists -- and builds it;
#   3. runs MAIN_JOB.
# Usage: bash scripts/setup.sh        (WEFT_JOBS=N to change the 2 parallel compile jobs)
set -euo pipefail

# The main job: what a new user sees weft do.
MAIN_JOB="build/samples/train_mlp"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

log "Installing packages"
install_packages

log "Configuring build/"
configure build --buildtype=release

log "Building (ninja -j$WEFT_JOBS)"
ninja -C build -j"$WEFT_JOBS"

log "Running the main job: $MAIN_JOB"
$MAIN_JOB
