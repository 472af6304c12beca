#!/usr/bin/env bash
# The project's side of the llama.cpp comparison (issue 12), on a GPU machine over what
# scripts/gpu_pack.sh packed into .gpu/: xquant-bench on random weights in the Llama-3.1-8B shape,
# all 32 layers, fp16 cache, at the shapes llama.cpp's benchmarks measure:
#   decode, batch 1, 1K context   ~ llama-bench tg128, llama-batched-bench -npp 1024 -npl 1
#   decode, batch 32 x 4K context ~ llama-batched-bench -npp 4096 -npl 32 (S_TG)
#   prefill, a warm 512-token prompt ~ llama-bench pp512
# Prints a table and the runs' own tables (also to $OUT/xquant.md, the only file it leaves in
# $OUT: a device call brings back at most 8); logs to /tmp/gpu_peer_shapes_logs.
# XQ_PEER_FORMATS (default fp16) adds formats, e.g. fp16,xquant:4; XQ_PEER_ARGS is added to every
# run (e.g. "--layers 4").
#   ./bench/gpu_peer_shapes.sh
#   XQ_BENCH=build/cpu/xquant-bench XQ_PEER_DEVICE=cpu XQ_PEER_ARGS="--layers 1" \
#     OUT=/tmp/peer-shapes ./bench/gpu_peer_shapes.sh          (a CPU check of the script)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${XQ_BENCH:-}" ]; then
  . scripts/gpu_env.sh /tmp/gpu_peer_shapes
else
  OUT=${OUT:-/tmp/gpu_peer_shapes} && mkdir -p "$OUT"
fi
B=${XQ_BENCH:-.gpu/bin/xquant-bench}
DEVICE=${XQ_PEER_DEVICE:-cuda}
F=${XQ_PEER_FORMATS:-fp16}
ROWS=()
LOGS=/tmp/gpu_peer_shapes_logs && rm -rf "$LOGS" && mkdir -p "$LOGS"
row() {  # label format step_ms batch prefill_tokens prefill_ms
  awk -v l="$1" -v f="$2" -v s="$3" -v b="$4" -v n="$5" -v p="$6" 'BEGIN {
    printf "| %s | %s | %.0f (%.2f ms/step) | %s |", l, f, b * 1000 / s, s,
           n > 0 ? sprintf("%.0f (%d tokens in %.2f ms, warm)", n * 1000 / p, n, p) : "" }'
}
run() {  # name batch context chunk steps prefill_tokens
  local name=$1 batch=$2 context=$3 chunk=$4 steps=$5 pp=$6 log="$LOGS/$1.log"
  # shellcheck disable=SC2086  # XQ_PEER_ARGS is a list of flags
  "$B" --device "$DEVICE" --shape llama3-8b ${XQ_PEER_ARGS:-} --batch "$batch" \
    --context "$context" --chunk "$chunk" --steps "$steps" --prefill "$pp" --formats "$F" \
    >"$log" 2>&1 || { tail -5 "$log"; return; }
  # "  fp16       prefill 1.23s (first, cold), decode step 6.51 ms"
  # "  fp16       prefill 512 tokens (warm, median of 3): 30.12 ms = 17000 tok/s"
  while read -r fmt step; do
    local pms
    pms=$(sed -nE "s/^ +$fmt +prefill [0-9]+ tokens \(warm, median of 3\): ([0-9.]+) ms.*/\1/p" "$log")
    ROWS+=("$(row "batch $batch x $context context" "$fmt" "$step" "$batch" "${pms:+$pp}" "${pms:-0}")")
  done < <(sed -nE 's/^ +([^ ]+) +prefill [0-9.]+s \(first, cold\), decode step ([0-9.]+) ms/\1 \2/p' "$log")
}
# Batch-1 decode at 1K context and a warm 512-token prompt (llama-bench tg128 and pp512).
run b1-c1024 1 1024 2048 30 512
run b32-c4096 32 4096 2048 10 0
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
{
  echo "xquant-bench $(git rev-parse --short HEAD 2>/dev/null) on ${GPU:-$DEVICE}," \
    "llama3-8b shape ${XQ_PEER_ARGS:-(32 layers)}"
  echo
  echo "| shape | format | decode tok/s | prefill tok/s |"
  echo "|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  for f in "$LOGS"/*.log; do
    echo && echo "$(basename "$f" .log): $(head -1 "$f")" && grep '^|' "$f"
  done
} | tee "$OUT/xquant.md"
