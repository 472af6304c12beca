#!/usr/bin/env bash
# Configures and builds the release preset (CPU always; CUDA for sm_90a when nvcc is found).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
