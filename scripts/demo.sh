#!/usr/bin/env bash
# The main job (README): installs what is missing, builds, fetches the default model and generates a
# short answer with a 3-bit compressed K and V cache (TurboQuant turbo3: on this model's real keys it
# keeps far more quality than rotor3, see docs/results.md), printing tokens/s and KV bytes against
# f16. Extra arguments go to `rotorquant generate` and override (e.g. --ctk rotor3 --ctv rotor3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh >&2
model="$(scripts/fetch_model.sh)"
echo "demo: building (the first build takes several minutes on 2 cores)" >&2
scripts/build.sh release >/dev/null
exec build/src/cli/rotorquant generate -m "$model" --chat -n 96 --ctk turbo3 --ctv turbo3 \
  -p "Explain in three sentences why compressing the KV cache helps long-context inference." "$@"
