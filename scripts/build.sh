#!/usr/bin/env bash
# Configures and builds the release preset (CPU always; CUDA for sm_90a when nvcc is found). The
# Dockerfile runs this script too. Extra arguments go to the configure step, e.g.
#   scripts/build.sh -DXQ_BUILD_TESTS=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release "$@" >/dev/null
cmake --build --preset release -j"$(nproc)"
