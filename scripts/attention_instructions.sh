#!/usr/bin/env bash
# Instructions per cached token and KV head of the fast CPU decode attention, counted with valgrind
# (deterministic, unlike timings on a shared VM): (I(1 + R repeats) - I(1 repeat)) / (R * tokens), so the
# first call's one-off costs (symbol lookups, SIMD dispatch, thread-local scratch) are not counted;
# only instructions inside rq::attend_fast_batch are collected (set-up and timers are not).
# Needs valgrind (apt-get install valgrind) and a build with RQ_BENCH=ON (the default).
#
#   scripts/attention_instructions.sh [BUILD=build] -- FORMAT GQA TOKENS [HEAD_DIM=128] [float]
#   e.g. scripts/attention_instructions.sh -- turbo3 4 4096 128
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
if [ "${1:-}" != "--" ] && [ $# -gt 0 ]; then BUILD=$1; shift; fi
[ "${1:-}" = "--" ] && shift
[ $# -ge 3 ] || { echo "usage: $0 [BUILD] -- FORMAT GQA TOKENS [HEAD_DIM] [float]" >&2; exit 2; }
BIN=$BUILD/bench/rq_attention_instructions
[ -x "$BIN" ] || { echo "missing $BIN (cmake --build $BUILD --target rq_attention_instructions)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)" >&2; exit 2; }
FORMAT=$1 GQA=$2 TOKENS=$3 DIM=${4:-128} MODE=${5:-integer}
REPEATS=3
count() {  # instructions of one run with $1 repeats
  OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    --toggle-collect='rq::attend_fast_batch*' \
    "$BIN" "$FORMAT" "$GQA" "$TOKENS" "$1" "$DIM" "$MODE" 2>&1 | awk '/Collected/ {print $4}'
}
i1=$(count $((REPEATS + 1)))
i0=$(count 1)
echo "$FORMAT head_dim=$DIM gqa=$GQA tokens=$TOKENS ($MODE): $(( (i1 - i0) / (REPEATS * TOKENS) )) instructions per token and KV head"
