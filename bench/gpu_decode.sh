#!/usr/bin/env bash
# Decode-step benchmark of the CUDA engine on a GPU machine, over what scripts/gpu_pack.sh packed
# into .gpu/: each setting runs in its own process (xquant-bench, random weights in the named
# shape), the settings of one shape one after another, so their ratios compare side by side on the
# same GPU. Settings are the engine's switches: XQ_CUDA_GRAPHS, XQ_CUDA_FOLD, XQ_CUDA_FUSED_DECODE,
# XQ_CUDA_SPLIT_ATTENTION (engine/cuda/split_attention.cpp); "default" sets none. Prints the tables
# last; logs to $OUT.
#   ./bench/gpu_decode.sh
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh /tmp/gpu_decode
B=.gpu/bin/xquant-bench
run() {  # label env... -- bench args
  local label=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" "$B" --device cuda "$@" >"$OUT/$label.log" 2>&1
  grep -E '^\| [a-z]' "$OUT/$label.log" | grep -v '^| format' | sed "s/^/| $label /" >>"$OUT/decode.md"
  grep -E 'prefill' "$OUT/$label.log" | sed "s/^/$label: /" >>"$OUT/prefill.txt"
}
echo "| run | format | bytes/token | vs first | decode step ms | vs first | tokens/s | GB read/step | TB/s | remat TFLOP/step | remat TFLOP/s |" >"$OUT/decode.md"
L3="--shape llama3-8b --layers 4 --context 4096 --steps 10"
L2="--shape llama2-7b --layers 4 --steps 10"
run 8b-b1-default X=1 -- --shape llama3-8b --batch 1 --context 1024 --steps 30 --formats fp16
run 8b-b1-latent X=1 -- --shape llama3-8b --batch 1 --context 1024 --steps 30 --formats xquant:4
run l3-b32-default X=1 -- $L3 --batch 32 --formats fp16,xquant:4,xquant:2
run l3-b1-default X=1 -- $L3 --batch 1 --formats fp16,xquant:4
run l2-b16-default X=1 -- $L2 --context 4096 --batch 16 --formats fp16,xquant:4
XQ_CUDA_PROFILE=1 "$B" --device cuda $L3 --batch 32 --formats xquant:4 >"$OUT/profile_l3_b32.log" 2>&1
grep -h -A16 "XQ_CUDA_PROFILE:" "$OUT"/profile_*.log
grep -h "GPU weights" "$OUT"/8b-b1-*.log
cat "$OUT/prefill.txt" "$OUT/decode.md"
