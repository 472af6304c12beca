#!/usr/bin/env bash
# The serving benchmark on a GPU machine, over what scripts/gpu_pack.sh packed into .gpu/: a
# random-weight Llama-shaped model (GQA 16/4 heads, hidden 2048, 16 layers, ~0.7B parameters,
# bf16) served with each cache format in turn on --device cuda, concurrent streaming clients
# (bench/serving_bench.py, keep-alive). Prints one table row per format and temperature.
#   [VOCAB=131072] [TEMPERATURES="0 1"] ./bench/gpu_serving.sh ["fp16" "xquant --cache-bits 4" ...]
# VOCAB pads the model's vocab_size (a real checkpoint's 128k-262k rows cost the logits copy and
# the draws what they would); TEMPERATURES > 0 sample every token (the OpenAI API's default is 1).
# The load: CONCURRENCY (64) clients, REQUESTS (256) requests of PROMPT (256) words and
# MAX_TOKENS (128) generated tokens, --max-model-len MAX_MODEL_LEN (4096); SERVER_FLAGS go to
# every server (--max-num-seqs is CONCURRENCY already). Where capacity decides (more long
# sequences than an fp16 cache holds; 3400 words are ~6k tokens of the test model's tokenizer):
#   CONCURRENCY=128 REQUESTS=256 PROMPT=3400 MAX_TOKENS=256 MAX_MODEL_LEN=8192 \
#     SERVER_FLAGS="--gpu-cache-memory 8GiB" ./bench/gpu_serving.sh \
#     fp16 "xquant --cache-bits 4" "xquant --cache-bits 2"
# DEVICE=cpu BIN=build/release/xquant-server LAYERS=2 HIDDEN=256 try the plumbing without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_serving}"
mkdir -p "$OUT" /tmp/xq
DEVICE="${DEVICE:-cuda}"
BIN="${BIN:-.gpu/bin/xquant-server}"
CONCURRENCY="${CONCURRENCY:-64}" REQUESTS="${REQUESTS:-256}" PROMPT="${PROMPT:-256}"
MAX_TOKENS="${MAX_TOKENS:-128}" MAX_MODEL_LEN="${MAX_MODEL_LEN:-4096}"
LAYERS="${LAYERS:-16}" HIDDEN="${HIDDEN:-2048}"
if [ "$DEVICE" = cuda ]; then
  [ -d /tmp/xq/lib ] || tar -C /tmp/xq -xJf .gpu/lib.tar.xz
  [ -f .gpu/bin.tar.xz ] && [ ! -d .gpu/bin ] && tar -C .gpu -xJf .gpu/bin.tar.xz
fi
CUDA_LIBS=$(dirname "$(find / -name 'libcublasLt.so.13*' -not -path '*/proc/*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="/tmp/xq/lib:${CUDA_LIBS}:${LD_LIBRARY_PATH:-}"
VOCAB="${VOCAB:-}"
# The packed test model's tokenizer where there is one (a GPU machine's Python may lack the
# `tokenizers` package that training one needs).
TOKENIZER_FROM="${TOKENIZER_FROM:-$([ -f .gpu/model/tokenizer.json ] && echo .gpu/model)}"
MODEL=/tmp/xq/model-l$LAYERS-h$HIDDEN${VOCAB:+-v$VOCAB}
[ -d "$MODEL" ] || python3 tests/python/make_test_model.py "$MODEL" --layers "$LAYERS" \
  --hidden "$HIDDEN" --intermediate $((HIDDEN * 11 / 4)) --heads 16 --kv-heads 4 --dtype bf16 \
  --max-pos $((MAX_MODEL_LEN > 8192 ? MAX_MODEL_LEN : 8192)) \
  ${VOCAB:+--padded-vocab $VOCAB} ${TOKENIZER_FROM:+--tokenizer-from $TOKENIZER_FROM} >/dev/null \
  || { echo "gpu_serving: no model made"; exit 1; }
FORMATS=("$@")
[ ${#FORMATS[@]} -gt 0 ] || FORMATS=("fp16" "xquant --cache-bits 4" "xquant --cache-bits 2")
ROWS=()
for f in "${FORMATS[@]}"; do
for temp in ${TEMPERATURES:-0}; do
  tag=$(echo "$f t$temp" | tr -c 'a-z0-9' '_')
  # shellcheck disable=SC2086
  "$BIN" --model "$MODEL" --device "$DEVICE" --cache $f --port 8200 \
    --max-num-seqs "$CONCURRENCY" --max-model-len "$MAX_MODEL_LEN" ${SERVER_FLAGS:-} \
    >"$OUT/server_$tag.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -q "listening on" "$OUT/server_$tag.log" && break; sleep 0.2; done
  if ! grep -q "listening on" "$OUT/server_$tag.log"; then
    echo "gpu_serving: the server ($f) did not start:"; tail -5 "$OUT/server_$tag.log"
    kill $pid 2>/dev/null; wait $pid 2>/dev/null; continue
  fi
  python3 bench/serving_bench.py --url http://127.0.0.1:8200 --concurrency "$CONCURRENCY" \
    --requests "$REQUESTS" --prompt-tokens "$PROMPT" --max-tokens "$MAX_TOKENS" --keep-alive \
    --temperature "$temp" \
    --json "$OUT/$tag.json" >"$OUT/bench_$tag.txt" 2>&1
  blocks=$(python3 -c "import urllib.request as u; print([l.split()[1] for l in u.urlopen('http://127.0.0.1:8200/metrics').read().decode().splitlines() if l.startswith('xquant:cache_blocks ')][0])")
  kill $pid; wait $pid 2>/dev/null
  ROWS+=("$(python3 -c "
import json; s = json.load(open('$OUT/$tag.json'))
print(f\"| $f | $temp | $blocks | {s['out_tok_per_s']:.0f} | {s['ttft_p50_ms']:.0f} / {s['ttft_p99_ms']:.0f} | {s['tpot_p50_ms']:.1f} / {s['tpot_p99_ms']:.1f} | {s['errors']} |\")")")
done
done
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name --format=csv,noheader
echo "model: random-weight Llama shape, $LAYERS layers, hidden $HIDDEN, vocab_size ${VOCAB:-512}; $CONCURRENCY clients, $REQUESTS requests of $PROMPT words, $MAX_TOKENS out; server flags: ${SERVER_FLAGS:-none}"
echo "| cache | temperature | blocks of 16 tokens | output tokens/s | TTFT p50/p99 ms | TPOT p50/p99 ms | errors |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
