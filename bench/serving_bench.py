#!/usr/bin/env python3
"""Serving benchmark: N concurrent streaming clients against an OpenAI-compatible server.

Prints requests/s, output tokens/s, and TTFT / TPOT / end-to-end latency percentiles as a table.
Works against xquant-server and against llama.cpp's server (same /v1/completions API), so the two
can be compared side by side on one machine:

    bench/serving_bench.py --url http://127.0.0.1:8000 --concurrency 64 --requests 256 \
        --prompt-tokens 128 --max-tokens 64
"""
import argparse
import concurrent.futures
import json
import random
import statistics
import threading
import time

import requests


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "if so no will its more who out up can said about what some time into than only other").split()


def make_prompt(rng, n_words):
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def one_request(session, url, model, prompt, max_tokens, headers, timeout, stream=True,
                temperature=0.0):
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
            "stream": stream, "ignore_eos": True}
    t0 = time.perf_counter()
    if not stream:  # one JSON reply: no TTFT or TPOT, only the end-to-end time
        r = session.post(url + "/v1/completions", json=body, headers=headers, timeout=timeout)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        return None, None, time.perf_counter() - t0, r.json()["usage"]["completion_tokens"]
    body["stream_options"] = {"include_usage": True}
    ttft, times, n_tokens = None, [], 0
    with session.post(url + "/v1/completions", json=body, headers=headers, stream=True,
                      timeout=timeout) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        # Bytes split at b"\n" only: str.splitlines would also cut at U+0085 or U+2028, which
        # JSON carries unescaped.
        for raw in r.iter_lines(delimiter=b"\n"):
            line = raw.decode("utf-8")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                continue  # read on to the body's end, so that the connection can be reused
            chunk = json.loads(data)
            if chunk.get("usage"):
                n_tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices"):
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - t0
                times.append(now)
    e2e = time.perf_counter() - t0
    tpot = (times[-1] - times[0]) / (n_tokens - 1) if n_tokens > 1 and len(times) > 1 else None
    return ttft, tpot, e2e, n_tokens


def run(args):
    rng = random.Random(args.seed)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    model = args.model
    if not model:
        model = requests.get(args.url + "/v1/models", headers=headers, timeout=30).json()["data"][0]["id"]
    prompts = [make_prompt(rng, args.prompt_tokens) for _ in range(args.requests)]
    results, errors = [], []

    # A fresh connection per request (many distinct clients), or one per client thread kept
    # alive across its requests (an SDK client).
    local = threading.local()

    stream = getattr(args, "stream", True)
    temperature = getattr(args, "temperature", 0.0)

    def task(p):
        if not getattr(args, "keep_alive", False):
            with requests.Session() as session:
                return one_request(session, args.url, model, p, args.max_tokens, headers,
                                   args.timeout, stream, temperature)
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return one_request(local.session, args.url, model, p, args.max_tokens, headers,
                           args.timeout, stream, temperature)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        for fut in [pool.submit(task, p) for p in prompts]:
            try:
                results.append(fut.result())
            except Exception as e:  # report, keep going
                errors.append(str(e))
    wall = time.perf_counter() - t0
    return model, results, errors, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=64, help="prompt length in words")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="0: greedy; the OpenAI API's default is 1 (every token sampled)")
    ap.add_argument("--keep-alive", action="store_true",
                    help="each client thread keeps one connection for all its requests")
    ap.add_argument("--json", default="", help="also write the numbers to this file")
    args = ap.parse_args()
    model, results, errors, wall = run(args)
    ttft = [r[0] for r in results if r[0] is not None]
    tpot = [r[1] for r in results if r[1] is not None]
    e2e = [r[2] for r in results]
    out_tokens = sum(r[3] for r in results)
    summary = {
        "model": model, "temperature": args.temperature, "concurrency": args.concurrency,
        "requests": len(results),
        "errors": len(errors), "wall_s": wall, "req_per_s": len(results) / wall,
        "out_tok_per_s": out_tokens / wall,
        "ttft_p50_ms": percentile(ttft, .5) * 1e3, "ttft_p99_ms": percentile(ttft, .99) * 1e3,
        "tpot_p50_ms": percentile(tpot, .5) * 1e3, "tpot_p99_ms": percentile(tpot, .99) * 1e3,
        "e2e_p50_s": percentile(e2e, .5), "e2e_p99_s": percentile(e2e, .99),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    if errors:
        print(f"{len(errors)} errors, first: {errors[0]}")
    w = max(len(k) for k in summary)
    for k, v in summary.items():
        print(f"{k:<{w}}  {v:.3f}" if isinstance(v, float) else f"{k:<{w}}  {v}")


if __name__ == "__main__":
    main()
