#!/usr/bin/env bash
# Installs the system packages (scripts/install-deps.sh), then configures and builds ktune in
# build/ with CMake, Ninja and ccache. Extra arguments go to `cmake --build`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
jobs="${KTUNE_BUILD_JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${KTUNE_BUILD_TYPE:-RelWithDebInfo}" \
  ${KTUNE_DATASETS_DIR:+-DKTUNE_DATASETS_DIR="$KTUNE_DATASETS_DIR"}
cmake --build build -j "$jobs" "$@"
