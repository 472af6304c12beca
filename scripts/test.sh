#!/usr/bin/env bash
# The whole test suite from a fresh clone: dependencies, build, C++ unit tests, Python tests
# (float64 references, the real binary over HTTP with the official openai client).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
./scripts/build.sh
ctest --test-dir build/release --output-on-failure -j"$(nproc)" --timeout 600
XQ_BUILD_DIR="$PWD/build/release" .venv/bin/python -m pytest -q -ra tests/python
