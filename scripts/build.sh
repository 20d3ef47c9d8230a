#!/usr/bin/env bash
# Configures and builds one variant. Usage: scripts/build.sh [release|asan] (default release).
# Build trees: build/ (release, with CUDA when nvcc exists) and build-asan/ (ASan + UBSan, no CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
variant="${1:-release}"
jobs="$(nproc)"
if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null 2>&1; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
case "$variant" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRQ_SANITIZE=ON -DRQ_CUDA=OFF -DRQ_BENCH=OFF) ;;
  *) echo "usage: scripts/build.sh [release|asan]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$jobs"
