#!/usr/bin/env bash
# Decode-step benchmark of the CUDA engine on a GPU machine, over what scripts/gpu_pack.sh packed
# into .gpu/: each shape and batch runs every format twice in one process each, with the
# split-context kernels (the default) and with the earlier ones (XQ_CUDA_SPLIT_ATTENTION=0), so
# the ratios compare builds side by side on the same GPU. Prints the tables last; logs to $OUT.
#   ./bench/gpu_decode.sh [quick]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_decode}"
mkdir -p "$OUT" /tmp/xq && tar -C /tmp/xq -xJf .gpu/lib.tar.xz
CUDA_LIBS=$(dirname "$(find / -name 'libcublasLt.so.13*' -not -path '*/proc/*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="/tmp/xq/lib:${CUDA_LIBS}:${LD_LIBRARY_PATH:-}"
B=.gpu/bin/xquant-bench
run() {  # label env... -- bench args
  local label=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  echo "## $label" | tee -a "$OUT/decode.md"
  env "${envs[@]}" "$B" --device cuda "$@" 2>&1 | tee "$OUT/$label.log" | grep -E '^\|' | tee -a "$OUT/decode.md"
}
S=XQ_CUDA_SPLIT_ATTENTION
run llama3-b32-ctx4k-new $S=1 -- --shape llama3-8b --layers 4 --batch 32 --context 4096 --steps 10 --formats fp16,xquant:4,xquant:2
run llama3-b32-ctx4k-old $S=0 -- --shape llama3-8b --layers 4 --batch 32 --context 4096 --steps 10 --formats fp16,xquant:4
run llama3-b1-ctx4k-new $S=1 -- --shape llama3-8b --layers 4 --batch 1 --context 4096 --formats fp16,xquant:4,xquant:2
run llama3-b1-ctx4k-old $S=0 -- --shape llama3-8b --layers 4 --batch 1 --context 4096 --formats fp16,xquant:4
run llama2-b16-ctx4k-new $S=1 -- --shape llama2-7b --layers 4 --batch 16 --context 4096 --steps 10 --formats fp16,xquant:4
run llama2-b16-ctx4k-old $S=0 -- --shape llama2-7b --layers 4 --batch 16 --context 4096 --steps 10 --formats fp16,xquant:4
run llama2-b1-ctx2k-new $S=1 -- --shape llama2-7b --layers 4 --batch 1 --context 2048 --formats fp16,xquant:4
if [ "${1:-}" != "quick" ]; then
  run llama3-full-b1-ctx1k-skinny XQ_CUDA_SKINNY=1 -- --shape llama3-8b --batch 1 --context 1024 --steps 30 --formats fp16
  run llama3-full-b1-ctx1k-cublas XQ_CUDA_SKINNY=0 -- --shape llama3-8b --batch 1 --context 1024 --steps 30 --formats fp16
  XQ_CUDA_PROFILE=1 "$B" --device cuda --shape llama3-8b --batch 1 --context 1024 --steps 20 --formats fp16 >"$OUT/profile_b1.log" 2>&1
  grep -A30 XQ_CUDA_PROFILE "$OUT/profile_b1.log" | head -30
fi
cat "$OUT/decode.md"
