#!/usr/bin/env bash
# Builds xquant-server and starts it on the default model. Extra arguments go to the server
# (e.g. --port 8080 --cache xquant --cache-bits 4). With no --model, the default model is used.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
./scripts/build.sh
args=("$@")
if [[ " $* " != *" --model "* ]]; then
  model=models/tiny-llama
  if [ ! -f "$model/config.json" ]; then
    .venv/bin/python tests/python/make_test_model.py "$model" --layers 4 --hidden 256 \
      --intermediate 688 --heads 8 --kv-heads 2 --tokenizer bpe --vocab 2048 --seed 1
  fi
  args=(--model "$model" "${args[@]}")
fi
exec build/release/xquant-server "${args[@]}"
