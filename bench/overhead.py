#!/usr/bin/env python3
"""Server overhead: how much the HTTP side and the engine's bookkeeping cost next to the model.

Starts xquant-server on a CPU test model (make_test_model.py: hidden 256, 4 layers), runs N
concurrent streaming clients with serving_bench.py's client, and prints per step and per
generated token:
  - the engine's forward time and the rest of its steps (planning, sampling, detokenizing, stop
    checks, event posting), wall and the engine thread's CPU, from
    xquant:engine_*_seconds_total on /metrics;
  - the CPU time of the server's HTTP threads (named "xq-http"; /proc/<pid>/task/*/schedstat),
    which parse requests, assemble JSON/SSE chunks and write them, split into user and kernel
    time (the kernel's is the TCP sends: on loopback a send also runs the client's receive path
    and wakes it, all on the server's thread);
and each next to the engine's step time per token: the server's own work (HTTP user time plus
the engine's bookkeeping CPU), the kernel's sends, and both together.

    XQ_BUILD_DIR=build/lead .venv/bin/python bench/overhead.py --concurrency 64 --keep-alive

--stream-interval N starts the server with that flag: one SSE chunk per N tokens after the first,
so the events, chunks and socket writes per token drop N-fold.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
sys.path.insert(0, str(REPO / "bench"))
import serving_bench  # noqa: E402
from make_test_model import make_test_model  # noqa: E402


def find_binary(build):
    for p in (build / "xquant-server", build / "server" / "xquant-server"):
        if p.exists():
            return p
    sys.exit(f"no xquant-server in {build} (ninja -C {build} xquant-server)")


def start_server(binary, model, log, flags):
    proc = subprocess.Popen([str(binary), "--model", str(model), "--port", "0", *flags],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        m = re.search(r"listening on (http://[\d.]+:\d+)", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            sys.exit(f"server exited {proc.returncode}: {log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    sys.exit("server did not start: " + log.read_text())


def thread_cpu(pid):
    """CPU seconds per thread name, of the threads alive now (schedstat: ns on the CPU)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def thread_kernel_share(pid, name):
    """(user, kernel) CPU seconds of the threads called `name` alive now (/proc stat ticks: 10 ms
    each, so only long runs split finely)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = kernel = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() != name:
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        user += int(fields[11]) / tick
        kernel += int(fields[12]) / tick
    return user, kernel


def process_cpu(pid):
    """CPU seconds of the whole process, ended threads included (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url):
    text = requests.get(url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, val = line.rsplit(" ", 1)
            out[name] = float(val)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.environ.get("XQ_BUILD_DIR", str(REPO / "build/release")))
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--requests", type=int, default=512,
                    help="more requests split the HTTP threads' CPU into user and kernel finer "
                    "(/proc counts it in 10 ms ticks)")
    ap.add_argument("--prompt-tokens", type=int, default=32, help="prompt length in words")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--stream-interval", type=int, default=1,
                    help="the server's --stream-interval (tokens per streamed chunk)")
    ap.add_argument("--keep-alive", action="store_true",
                    help="clients reuse one connection each (default: one per request)")
    ap.add_argument("--server-flag", action="append", default=[],
                    help="extra xquant-server flag (repeat; e.g. --server-flag=--threads=1)")
    args = ap.parse_args()

    binary = find_binary(Path(args.build))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_test_model(tmp / "model", layers=args.layers, hidden=args.hidden,
                                intermediate=2 * args.hidden, heads=4, kv_heads=4, max_pos=1024)
        proc, url = start_server(binary, model, tmp / "server.log",
                                 ["--served-model-name", "bench", "--stream-interval",
                                  str(args.stream_interval), *args.server_flag])
        try:
            bench_args = argparse.Namespace(
                url=url, model="bench", api_key="", concurrency=args.concurrency,
                requests=args.requests, prompt_tokens=args.prompt_tokens,
                max_tokens=args.max_tokens, timeout=600, seed=0, keep_alive=args.keep_alive)
            serving_bench.run(argparse.Namespace(**{**vars(bench_args), "requests": 4,
                                                    "concurrency": 4}))  # warm up
            # The same load not streamed first: the engine's step time when the clients (on
            # this host) do not wake for every token. Streaming slows the forward pass too,
            # mostly through the clients' own CPU on the shared cores.
            b0 = scrape(url)
            serving_bench.run(argparse.Namespace(**{**vars(bench_args), "stream": False}))
            b1 = scrape(url)
            m0 = scrape(url)
            t0, p0 = thread_cpu(proc.pid), process_cpu(proc.pid)
            s0 = thread_kernel_share(proc.pid, "xq-http")
            _, results, errors, wall = serving_bench.run(bench_args)
            t1, p1 = thread_cpu(proc.pid), process_cpu(proc.pid)
            s1 = thread_kernel_share(proc.pid, "xq-http")
            m1 = scrape(url)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    def delta(name):
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    tokens = sum(r[3] for r in results)
    steps = delta("xquant:engine_steps_total")
    fwd = delta("xquant:engine_forward_seconds_total")
    rest = delta("xquant:engine_step_overhead_seconds_total")
    rest_cpu = delta("xquant:engine_step_overhead_cpu_seconds_total")
    http = t1.get("xq-http", 0.0) - t0.get("xq-http", 0.0)
    engine_thread = t1.get("xq-engine", 0.0) - t0.get("xq-engine", 0.0)
    proc_total = p1 - p0
    base_tokens = b1["xquant:generation_tokens_total"] - b0["xquant:generation_tokens_total"]
    base_step = sum(b1[k] - b0[k] for k in ("xquant:engine_forward_seconds_total",
                                            "xquant:engine_step_overhead_seconds_total"))
    step = base_step / base_tokens  # the denominator: the engine's step time, nothing streamed
    step_streamed = (fwd + rest) / tokens
    http_user, http_kernel = s1[0] - s0[0], s1[1] - s0[1]
    kernel_share = http_kernel / max(1e-9, http_user + http_kernel)
    # The HTTP threads' CPU split by the user/kernel ratio of their ticks (/proc stat).
    http_user_tok = http * (1 - kernel_share) / tokens
    http_kernel_tok = http * kernel_share / tokens
    own = http_user_tok + rest_cpu / tokens
    total = http / tokens + rest_cpu / tokens

    def pct(x):
        return f"{x / step * 100:.2f}%"

    rows = [
        ("clients x requests", f"{args.concurrency} x {len(results)} ({len(errors)} errors)"),
        ("model", f"hidden {args.hidden}, {args.layers} layers, prompt {args.prompt_tokens} "
                  f"words, {args.max_tokens} tokens"),
        ("stream interval", f"{args.stream_interval} tokens per chunk after the first"),
        ("connections", "one per client, kept alive" if args.keep_alive else "one per request"),
        ("wall time", f"{wall:.2f} s"),
        ("generated tokens", f"{tokens} ({tokens / wall:.0f} tok/s)"),
        ("engine steps", f"{steps:.0f} ({tokens / steps:.1f} tokens/step)"),
        ("engine forward / step", f"{fwd / steps * 1e3:.3f} ms"),
        ("engine step time / token", f"{step * 1e6:.1f} us not streamed (the same load first); "
                                     f"{step_streamed * 1e6:.1f} us streamed"),
        ("engine rest of step / token", f"{rest / tokens * 1e6:.1f} us wall, "
                                        f"{rest_cpu / tokens * 1e6:.1f} us CPU"),
        ("HTTP threads CPU / token", f"{http / tokens * 1e6:.1f} us: user {http_user_tok * 1e6:.1f}"
                                     f", kernel {http_kernel_tok * 1e6:.1f} (TCP sends)"),
        ("process CPU (all threads)", f"{proc_total:.2f} s (engine thread {engine_thread:.2f} s)"),
        ("server's own work / step time", f"{pct(own)} (HTTP user + engine rest CPU: parsing, "
                                          "JSON, SSE, scheduling, sampling, detokenizing)"),
        ("kernel TCP sends / step time", pct(http_kernel_tok)),
        ("all overhead / step time", pct(total)),
        ("own work under 5%?", "yes" if own < 0.05 * step else "no"),
        ("all of it under 5%?", "yes" if total < 0.05 * step else "no"),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    if errors:
        print("first error:", errors[0])


if __name__ == "__main__":
    main()
