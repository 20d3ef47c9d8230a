#!/usr/bin/env bash
# Interleaved A/B rounds of the GPU check/benchmark program (on the device machine, after
# scripts/gpu_bench.sh built it): every round runs the program once per variant, in order, and prints
# the lines that match PATTERN, so that drift of the machine hits every variant alike.
#
#   scripts/gpu_ab.sh [-r ROUNDS] [-p PATTERN] VARIANT... [-- PROGRAM ARGS]
#
# A variant is one word of space-separated NAME=VALUE settings for the program's environment, "-" for
# none; BIN=PATH in it runs another build of the program (e.g. one built with RQ_NVFLAGS into its own
# BUILD folder). Defaults: 3 rounds, PATTERN "tensor-core B=|default:" (decode and append rows),
# program build-gpu/gpu_check_bench, args --bench-only. Example (docs/gpu.md, "Session 20"):
#
#   scripts/gpu_ab.sh -p "tensor-core B=" - BIN=build-x/gpu_check_bench -- --bench-only --decode-only
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
pattern="tensor-core B=|default:"
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    -r) rounds=$2; shift 2 ;;
    -p) pattern=$2; shift 2 ;;
    --) shift; break ;;
    *) variants+=("$1"); shift ;;
  esac
done
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--bench-only)
[ ${#variants[@]} -eq 0 ] && { echo "usage: scripts/gpu_ab.sh [-r ROUNDS] [-p PATTERN] VARIANT... [-- ARGS]" >&2; exit 2; }
for ((r = 1; r <= rounds; ++r)); do
  for v in "${variants[@]}"; do
    bin=build-gpu/gpu_check_bench
    settings=()
    if [ "$v" != "-" ]; then
      for kv in $v; do
        case "$kv" in
          BIN=*) bin=${kv#BIN=} ;;
          *=*) settings+=("$kv") ;;
          *) echo "gpu_ab.sh: not NAME=VALUE: $kv" >&2; exit 2 ;;
        esac
      done
    fi
    echo "# round $r: $v"
    env "${settings[@]}" "$bin" "${args[@]}" 2>&1 | grep -E "$pattern" || echo "(no line matched; exit ${PIPESTATUS[0]})"
  done
done
