#!/usr/bin/env bash
# Creates .venv with everything the backend, the tests and the benchmarks need.
# Idempotent: a second run only checks that the requirements are satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# The Khronos glTF validator, for the tests that check glTF exports (they skip where npm is missing).
if command -v npm >/dev/null 2>&1 && [ ! -d tools/gltf_validator/node_modules/gltf-validator ]; then
  npm ci --prefix tools/gltf_validator --silent --no-audit --no-fund \
    || echo "note: the glTF validator did not install; its checks will be skipped" >&2
fi
