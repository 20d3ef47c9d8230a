#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, fetches the default model, builds
# the release and the ASan+UBSan variants and runs every test suite in both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
export RQ_MODEL="$(scripts/fetch_model.sh)"
scripts/build.sh release
# Real post-RoPE K/V of the default model for tests/attention/test_real_kv.cpp (every SIMD target
# against the reference on real data); skipped when the shared text is absent.
text="../shared/data/sotu/1981_jimmy_carter_d.txt"
if [ -f "$text" ]; then
  build/src/cli/rotorquant kv-dump -m "$RQ_MODEL" -f "$text" --tokens 700 -o build/kv_dump_700.bin -t 2 >/dev/null
  export RQ_KV_DUMP="$PWD/build/kv_dump_700.bin"
fi
(cd build && ctest --output-on-failure)
scripts/build.sh asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-asan && RQ_SANITIZED=1 ctest --output-on-failure)
