#!/usr/bin/env bash
# Runs on a GPU machine over what scripts/gpu_pack.sh packed into .gpu/: the CUDA kernel and
# model tests (against the CPU references), the server on --device cuda against the same server
# on the CPU (greedy completions over HTTP, /metrics), then xquant-bench. Prints a short table
# last; logs go to $OUT when set.
#   ./scripts/gpu_check.sh [bench args...]
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh /tmp/gpu_check
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
SUMMARY=()
for t in engine_cuda_ops_test engine_cuda_paged_rows_test kernels_cuda_attention_test engine_cuda_xquant_decode_test engine_cuda_sample_test engine_cuda_edit_rows_test engine_cuda_latent_svd_test engine_cuda_cl_rows_test engine_cuda_cl_plan_test engine_cuda_channel_blocks_test engine_cuda_cl_channel_rows_test engine_cuda_model_test engine_cuda_model_rings_test; do
  .gpu/bin/$t --gtest_brief=1 >"$OUT/$t.log" 2>&1
  rc=$?
  tail -n 25 "$OUT/$t.log" | grep -E "FAILED|Failure|error|worst|PASSED|SKIPPED" | head -20
  SUMMARY+=("$t: rc=$rc $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$OUT/$t.log" | tr '\n' ' ')")
done

# The server on the GPU and on the CPU: greedy completions over HTTP, compared.
serve() {  # device port [flags...]
  local dev=$1 port=$2; shift 2
  .gpu/bin/xquant-server --model .gpu/model --device "$dev" --port "$port" --cache-memory 64MiB \
    --gpu-memory-utilization 0.5 "$@" >"$OUT/server_$port.log" 2>&1 &
  for _ in $(seq 100); do grep -q "listening on" "$OUT/server_$port.log" && return 0; sleep 0.2; done
  echo "server on $dev did not start:"; tail -5 "$OUT/server_$port.log"; return 1
}
serve cuda 8101 --gpu-cache-memory 1GiB && serve cpu 8102 && python3 - <<'PY' | tee "$OUT/server_compare.txt"
import json, urllib.request
def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
name = json.load(urllib.request.urlopen("http://127.0.0.1:8101/v1/models"))["data"][0]["id"]
same = 0
prompts = ["hello world", "the quick brown fox", "a b c d e f", "xquant caches inputs"]
for p in prompts:
    body = {"model": name, "prompt": p, "max_tokens": 24, "temperature": 0, "logprobs": 1}
    g, c = post(8101, body), post(8102, body)
    gt, ct = g["choices"][0]["logprobs"]["tokens"], c["choices"][0]["logprobs"]["tokens"]
    n = next((i for i, (a, b) in enumerate(zip(gt, ct)) if a != b), len(gt))
    same += n == len(gt)
    print(f"prompt {p!r}: first {n}/{len(gt)} greedy tokens equal (gpu vs cpu)")
# Greedy with penalties, bias and min_tokens: the edits are made on the GPU's rows (the CPU
# server makes them on the host), so the tokens should agree as plain greedy ones do.
for extra in ({"repetition_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.3},
              {"logit_bias": {"5": 4, "6": -100}, "min_tokens": 8, "frequency_penalty": 0.8}):
    body = {"model": name, "prompt": "a b c d e f", "max_tokens": 24, "temperature": 0,
            "logprobs": 2, **extra}
    g, c = post(8101, body), post(8102, body)
    gt, ct = g["choices"][0]["logprobs"]["tokens"], c["choices"][0]["logprobs"]["tokens"]
    n = next((i for i, (a, b) in enumerate(zip(gt, ct)) if a != b), len(gt))
    print(f"penalized greedy {extra}: first {n}/{len(gt)} tokens equal (gpu vs cpu)")
# Sampled draws come from the GPU's row summaries (or whole rows where a long top-p head needs
# them): a seed repeats its text; every kind of draw answers.
for extra in ({"temperature": 0.9, "seed": 7}, {"temperature": 0.7, "top_p": 0.9, "seed": 3},
              {"temperature": 1.0, "min_p": 0.05, "top_k": 20, "seed": 5, "logprobs": 3},
              {"temperature": 0.8, "presence_penalty": 1.0, "logit_bias": {"5": 3}, "seed": 9}):
    body = {"model": name, "prompt": "the quick brown fox", "max_tokens": 24, **extra}
    a, b = post(8101, body), post(8101, body)
    print(f"sampled {extra}: repeat equal: {a['choices'][0]['text'] == b['choices'][0]['text']}, "
          f"{a['usage']['completion_tokens']} tokens")
m = urllib.request.urlopen("http://127.0.0.1:8101/metrics").read().decode()
print("\n".join(l for l in m.splitlines() if l.startswith(("xquant:cache_blocks", "xquant:cache_bytes_per_token"))))
print(f"server: {same}/{len(prompts)} greedy completions identical on cuda and cpu")
PY
grep -E "GPU 0|cache format" "$OUT/server_8101.log" | head -3

# Preemption on the GPU: 64 concurrent greedy requests against a cache of 64 blocks, then the
# same prompts one at a time on the roomy server; every request must finish, the pool must be
# full again, and outputs should match (batch shapes differ, so bf16 near-ties may not).
serve cuda 8103 --gpu-cache-memory 4MiB && python3 - <<'PY' | tee -a "$OUT/server_compare.txt"
import concurrent.futures as cf, json, urllib.request
def post(port, prompt):
    body = {"model": name, "prompt": prompt, "max_tokens": 48, "temperature": 0, "ignore_eos": True}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=300))["choices"][0]["text"]
def metric(port, key):
    m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return float(next(l.split()[-1] for l in m.splitlines() if l.startswith(key)))
name = json.load(urllib.request.urlopen("http://127.0.0.1:8103/v1/models"))["data"][0]["id"]
prompts = [" ".join(f"w{(i * 7 + j * 3) % 97}" for j in range(20 + i % 30)) for i in range(64)]
with cf.ThreadPoolExecutor(64) as pool:
    loaded = list(pool.map(lambda p: post(8103, p), prompts))
alone = [post(8101, p) for p in prompts]
same = sum(a == b for a, b in zip(loaded, alone))
pre = metric(8103, "xquant:num_preemptions_total")
free, total = metric(8103, "xquant:cache_blocks_free"), metric(8103, "xquant:cache_blocks")
print(f"preemption: 64/64 finished, {pre:.0f} preemptions, blocks free {free:.0f}/{total:.0f}, "
      f"{same}/64 outputs equal to the request run alone")
PY
# The paper's Table 4 setting on both devices (2 bits, the first 3 layers at 4), for xquant,
# xquant-cl (X-wide deltas on this MHA model) and xquant-cl-ch (per-channel deltas of the
# residual stream; also without its fp16 window, the paper's perplexity setting): the GPU's
# per-layer pages must cost the CPU format's bytes per token; greedy completions compared.
port=8104
for fmt in xquant xquant-cl xquant-cl-ch "xquant-cl-ch --cache-fp16-window 0"; do
  # shellcheck disable=SC2206 # $fmt: the format and its flags, split
  HP=(--cache $fmt --cache-bits 2 --cache-high-precision-layers 3 --cache-high-precision-bits 4)
  serve cuda $port --gpu-cache-memory 1GiB "${HP[@]}" && serve cpu $((port + 1)) "${HP[@]}" &&
    GPU_PORT=$port FMT=$fmt python3 - <<'PY' | tee -a "$OUT/server_compare.txt"
import json, os, urllib.request
gpu = int(os.environ["GPU_PORT"])
def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
def bytes_per_token(port):
    m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return [l for l in m.splitlines() if l.startswith("xquant:cache_bytes_per_token")]
name = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gpu}/v1/models"))["data"][0]["id"]
same = 0
for p in ["hello world", "the quick brown fox"]:
    body = {"model": name, "prompt": p, "max_tokens": 24, "temperature": 0}
    same += post(gpu, body)["choices"][0]["text"] == post(gpu + 1, body)["choices"][0]["text"]
g, c = bytes_per_token(gpu), bytes_per_token(gpu + 1)
print(f"{os.environ['FMT']}, high-precision layers: bytes per token equal on cuda and cpu: "
      f"{g == c} ({g}); {same}/2 greedy completions identical")
PY
  port=$((port + 2))
done
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null

if [ "$#" -gt 0 ]; then
  .gpu/bin/xquant-bench --device cuda "$@" 2>&1 | tee "$OUT/bench.txt"
fi
echo; printf '%s\n' "${SUMMARY[@]}"; tail -n 2 "$OUT/server_compare.txt" 2>/dev/null
