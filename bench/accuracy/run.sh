#!/usr/bin/env bash
# Runs one `xquant-eval ppl` accuracy measurement and saves the command and its table:
#   bench/accuracy/run.sh OUT.txt MODEL.gguf CTX CACHE_LIST
# WikiText-2 test, one window of CTX tokens (the first CTX tokens), G 128, no fp16 window in any
# format, teacher-forced token by token through the cache, CPU, niced (the cores are shared).
set -euo pipefail
out=$1 model=$2 ctx=$3 caches=$4
here=$(cd "$(dirname "$0")/../.." && pwd)
cmd=(nice -n 5 "${XQ_BUILD_DIR:-$here/build/cpu}/xquant-eval" ppl --model "$model"
     --text "$here/../shared/data/wikitext-2-raw-test.txt" --ctx "$ctx" --max-tokens "$ctx"
     --group 128 --cache-fp16-window 0 --threads 2 --cache "$caches")
start=$(date +%s)
# stdout carries the load log too; keep the table.
table=$("${cmd[@]}" 2> >(tee "${out%.txt}.log" >&2) | grep -v '^\[20')
{
  echo "# xquant-eval ppl --model $(basename "$model") --text ../shared/data/wikitext-2-raw-test.txt" \
    "--ctx $ctx --max-tokens $ctx --group 128 --cache-fp16-window 0 --threads 2 --cache $caches"
  echo "# $(date -u +%FT%TZ), $(( $(date +%s) - start )) s wall on 2 shared CPU cores"
  echo "$table"
} > "$out"
cat "$out"
