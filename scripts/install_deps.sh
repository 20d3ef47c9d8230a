#!/usr/bin/env bash
# Installs the system packages rotorquant builds with (Debian). Idempotent: does nothing when all
# are present, otherwise one `apt-get update` and one install.
set -euo pipefail

packages=(build-essential cmake ccache python3 python3-pip unzip
          libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libfmt-dev
          libspdlog-dev libhwy-dev clang libclang-rt-14-dev
          valgrind)  # valgrind: scripts/attention_instructions.sh (instruction counts)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "install_deps: nvcc found: CUDA kernels will be compiled (sm_90)"
else
  echo "install_deps: nvcc not found: CUDA kernels are skipped"
fi
