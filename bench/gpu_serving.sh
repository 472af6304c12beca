#!/usr/bin/env bash
# The serving benchmark on a GPU machine, over what scripts/gpu_pack.sh packed into .gpu/: a
# random-weight Llama-shaped model (GQA 16/4 heads, hidden 2048, 16 layers, ~0.7B parameters,
# bf16) served with each cache format in turn on --device cuda, 64 concurrent streaming clients
# (bench/serving_bench.py, keep-alive). Prints one table row per format and temperature.
#   [VOCAB=131072] [TEMPERATURES="0 1"] ./bench/gpu_serving.sh ["fp16" "xquant --cache-bits 4" ...]
# VOCAB pads the model's vocab_size (a real checkpoint's 128k-262k rows cost the logits copy and
# the draws what they would); TEMPERATURES > 0 sample every token (the OpenAI API's default is 1).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_serving}"
mkdir -p "$OUT" /tmp/xq
[ -d /tmp/xq/lib ] || tar -C /tmp/xq -xJf .gpu/lib.tar.xz
[ -f .gpu/bin.tar.xz ] && [ ! -d .gpu/bin ] && tar -C .gpu -xJf .gpu/bin.tar.xz
CUDA_LIBS=$(dirname "$(find / -name 'libcublasLt.so.13*' -not -path '*/proc/*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="/tmp/xq/lib:${CUDA_LIBS}:${LD_LIBRARY_PATH:-}"
VOCAB="${VOCAB:-}"
MODEL=/tmp/xq/model-0.7b${VOCAB:+-v$VOCAB}
[ -d "$MODEL" ] || python3 tests/python/make_test_model.py "$MODEL" --layers 16 --hidden 2048 \
  --intermediate 5632 --heads 16 --kv-heads 4 --dtype bf16 --max-pos 8192 \
  ${VOCAB:+--padded-vocab $VOCAB} >/dev/null
FORMATS=("$@")
[ ${#FORMATS[@]} -gt 0 ] || FORMATS=("fp16" "xquant --cache-bits 4" "xquant --cache-bits 2")
ROWS=()
for f in "${FORMATS[@]}"; do
for temp in ${TEMPERATURES:-0}; do
  tag=$(echo "$f t$temp" | tr -c 'a-z0-9' '_')
  # shellcheck disable=SC2086
  .gpu/bin/xquant-server --model "$MODEL" --device cuda --cache $f --port 8200 \
    --max-num-seqs 64 --max-model-len 4096 >"$OUT/server_$tag.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -q "listening on" "$OUT/server_$tag.log" && break; sleep 0.2; done
  python3 bench/serving_bench.py --url http://127.0.0.1:8200 --concurrency 64 --requests 256 \
    --prompt-tokens 256 --max-tokens 128 --keep-alive --temperature "$temp" \
    --json "$OUT/$tag.json" >"$OUT/bench_$tag.txt" 2>&1
  blocks=$(python3 -c "import urllib.request as u; print([l.split()[1] for l in u.urlopen('http://127.0.0.1:8200/metrics').read().decode().splitlines() if l.startswith('xquant:cache_blocks_total')][0])")
  kill $pid; wait $pid 2>/dev/null
  ROWS+=("$(python3 -c "
import json; s = json.load(open('$OUT/$tag.json'))
print(f\"| $f | $temp | $blocks | {s['out_tok_per_s']:.0f} | {s['ttft_p50_ms']:.0f} / {s['ttft_p99_ms']:.0f} | {s['tpot_p50_ms']:.1f} / {s['tpot_p99_ms']:.1f} | {s['errors']} |\")")")
done
done
nvidia-smi --query-gpu=name --format=csv,noheader
echo "model: 0.7B random-weight Llama shape, vocab_size ${VOCAB:-512}"
echo "| cache | temperature | blocks of 16 tokens | output tokens/s | TTFT p50/p99 ms | TPOT p50/p99 ms | errors |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
