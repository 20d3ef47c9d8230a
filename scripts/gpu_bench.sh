#!/usr/bin/env bash
# Builds the CUDA kernels and the GPU check/benchmark program with plain g++/nvcc (no third-party
# libraries), checks the kernels against the CPU reference codec, times them next to PyTorch
# baselines, and writes one JSON result file.
#
#   scripts/gpu_bench.sh [OUT_DIR]       (OUT_DIR defaults to $OUT, else build-gpu/results)
#
# Environment: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc), JOBS (parallel compiles),
# BUILD (build folder, default build-gpu), RQ_BUILD_ONLY=1 (compile and stop), RQ_CHECK_ONLY=1,
# RQ_DECODE_ONLY=1 (decode checks, tensor-core decode timings and SDPA only), RQ_APPEND_ONLY=1 (append
# checks, append timings and the PyTorch quantize pipeline only), RQ_WITH_EXACT=1 (also time the
# exact fp32 decode kernel; by default decode timings are the tensor-core kernel's), RQ_GTEST=PATH (first
# run that CUDA GoogleTest binary, e.g. build/tests/rq_cuda_tests built elsewhere and carried: the
# device machine has no GoogleTest), RQ_NVFLAGS (extra nvcc flags, e.g. -D switches of an A/B).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build-gpu}
OUT_DIR=${1:-${OUT:-$BUILD/results}}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_INC=$(dirname "$(dirname "$NVCC")")/include
JOBS=${JOBS:-$(nproc)}
mkdir -p "$BUILD/obj" "$OUT_DIR"

CXXFLAGS="-std=c++20 -O2 -Iinclude"
NVFLAGS="-std=c++17 -O3 -arch=sm_90 -Iinclude -Ibench/cuda ${RQ_NVFLAGS:-}"
echo "== build ($NVCC, $JOBS jobs)"
{
  for f in $(find src/quant -name '*.cpp' | sort); do
    echo "g++ $CXXFLAGS -c $f -o $BUILD/obj/$(echo "$f" | tr '/' '_').o"
  done
  echo "g++ $CXXFLAGS -I$CUDA_INC -c cuda/codec_tables.cpp -o $BUILD/obj/cuda_codec_tables.o"
  for f in cuda/*.cu bench/cuda/gpu_check_bench.cu; do
    echo "$NVCC $NVFLAGS -c $f -o $BUILD/obj/$(echo "$f" | tr '/' '_').o"
  done
} | xargs -P "$JOBS" -I{} sh -c '{} || exit 255'
"$NVCC" -arch=sm_90 -o "$BUILD/gpu_check_bench" "$BUILD"/obj/*.o
[ "${RQ_BUILD_ONLY:-0}" = 1 ] && { echo "built $BUILD/gpu_check_bench"; exit 0; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true
gtest_status=0
if [ -n "${RQ_GTEST:-}" ]; then  # the CUDA GoogleTest suite, built where GoogleTest is installed (docs/gpu.md)
  echo "== CUDA GoogleTest suite ($RQ_GTEST)"
  "$RQ_GTEST" --gtest_brief=1 || gtest_status=$?
  echo "CUDA GoogleTest suite: $([ "$gtest_status" = 0 ] && echo PASS || echo "FAIL (exit $gtest_status)")"
fi
if [ "${RQ_CHECK_ONLY:-0}" = 1 ]; then
  "$BUILD/gpu_check_bench" --check-only || exit $?
  exit $gtest_status
fi
echo "== check + benchmark (CUDA)"
status=$gtest_status
DEC=""; [ "${RQ_DECODE_ONLY:-0}" = 1 ] && DEC="--decode-only"
[ "${RQ_APPEND_ONLY:-0}" = 1 ] && DEC="--append-only"
[ "${RQ_WITH_EXACT:-0}" = 1 ] && DEC="$DEC --with-exact"
"$BUILD/gpu_check_bench" --json "$OUT_DIR/cuda_raw.json" $DEC || status=$?
echo "== PyTorch baselines"
PYTHONUNBUFFERED=1 python3 bench/cuda/torch_baselines.py --json "$OUT_DIR/torch_raw.json" ${DEC/--with-exact/} || status=$?
echo "== results"
python3 bench/cuda/merge_results.py --cuda "$OUT_DIR/cuda_raw.json" --torch "$OUT_DIR/torch_raw.json" \
  --command "${RQ_DECODE_ONLY:+RQ_DECODE_ONLY=$RQ_DECODE_ONLY }${RQ_APPEND_ONLY:+RQ_APPEND_ONLY=$RQ_APPEND_ONLY }${RQ_WITH_EXACT:+RQ_WITH_EXACT=$RQ_WITH_EXACT }scripts/gpu_bench.sh" --out "$OUT_DIR/gpu_bench.json" || status=$?
exit $status
