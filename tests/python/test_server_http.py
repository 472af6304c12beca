"""End-to-end tests of xquant-server: the real binary on loopback, a small generated model, the
official `openai` client for the happy paths and raw `requests` for malformed input.

The binary comes from $XQ_BUILD_DIR (default build/release), found by server_process.py; the
tests skip when it is missing.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

openai = pytest.importorskip("openai")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from server_process import (BUILD, BINARY, Server,  # noqa: E402,F401
                            check_disconnect_aborts, scrape_metrics as _scrape)

pytestmark = pytest.mark.skipif(
    not BINARY.exists(), reason=f"{BINARY} not built (ninja -C {BUILD} xquant-server)")

MAX_LEN = 256
BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model") / "tiny", max_pos=MAX_LEN)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    s = Server(model_dir, tmp_path_factory.mktemp("log") / "server.log", "--served-model-name",
               "tiny", "--max-body-bytes", f"{BODY_LIMIT // 1024}KiB")
    yield s
    assert s.stop() == 0, s.log.read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def tokenize(server, text, special=True):
    r = requests.post(server.url + "/tokenize", json={"prompt": text, "add_special_tokens": special})
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


def greedy(client, prompt, n_tokens=8, **kw):
    return client.completions.create(model="tiny", prompt=prompt, max_tokens=n_tokens,
                                     temperature=0, **kw)


# ---- happy paths with the openai client ----

def test_models_lists_the_served_name(client, server):
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"]
    raw = requests.get(server.url + "/v1/models").json()["data"][0]
    assert raw["owned_by"] == "xquant-server" and raw["max_model_len"] == MAX_LEN


def test_completion_shape_and_usage(client, server):
    r = greedy(client, "hello world", 5)
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == "tiny"
    assert len(r.choices) == 1 and r.choices[0].index == 0
    assert isinstance(r.choices[0].text, str)
    assert r.choices[0].finish_reason in ("length", "stop")
    prompt_len = len(tokenize(server, "hello world"))
    assert r.usage.prompt_tokens == prompt_len
    assert r.usage.total_tokens == prompt_len + r.usage.completion_tokens
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 5


def test_greedy_is_deterministic_and_streaming_matches(client):
    a = greedy(client, "the cat sat", 12, extra_body={"ignore_eos": True})
    b = greedy(client, "the cat sat", 12, extra_body={"ignore_eos": True})
    assert a.choices[0].text == b.choices[0].text
    chunks = list(greedy(client, "the cat sat", 12, stream=True,
                         stream_options={"include_usage": True},
                         extra_body={"ignore_eos": True}))
    text_chunks = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in text_chunks) == a.choices[0].text
    assert text_chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in text_chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert len({c.id for c in chunks}) == 1


def test_stream_ends_with_done(server):
    body = {"model": "tiny", "prompt": "abc", "max_tokens": 3, "stream": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == b"data: [DONE]"
    assert all(ln.startswith(b"data: ") for ln in lines)
    for ln in lines[:-1]:
        assert json.loads(ln[6:])["object"] == "text_completion"


def test_echo_logprobs_max_tokens_zero_scores_the_prompt(client, server):
    ids = tokenize(server, "one two three four", special=False)
    r = client.completions.create(model="tiny", prompt=ids, max_tokens=0, echo=True, logprobs=1)
    c = r.choices[0]
    text = requests.post(server.url + "/detokenize", json={"tokens": ids}).json()["prompt"]
    assert c.text == text
    lp = c.logprobs
    assert len(lp.tokens) == len(ids) == len(lp.token_logprobs) == len(lp.top_logprobs)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:])
    for top, tok, x in zip(lp.top_logprobs[1:], lp.tokens[1:], lp.token_logprobs[1:]):
        assert tok in top and top[tok] == pytest.approx(x)
        assert max(top.values()) >= x - 1e-6
    assert lp.text_offset == sorted(lp.text_offset)
    assert r.usage.completion_tokens == 0


def test_prompt_logprobs_agree_with_generation_logprobs(client, server):
    """The logprob of a greedily generated token, rescored as part of an echoed prompt."""
    ids = tokenize(server, "a b c d", special=False)
    # vLLM's return_tokens_as_token_ids names the generated token by its id.
    g = client.completions.create(model="tiny", prompt=ids, max_tokens=1, temperature=0,
                                  logprobs=1, extra_body={"ignore_eos": True,
                                                          "return_tokens_as_token_ids": True})
    gen_lp = g.choices[0].logprobs.token_logprobs[0]
    gen_tok = g.choices[0].logprobs.tokens[0]
    assert gen_tok.startswith("token_id:"), gen_tok
    next_id = int(gen_tok.split(":")[1])
    assert gen_tok in g.choices[0].logprobs.top_logprobs[0]
    r = requests.post(server.url + "/detokenize", json={"tokens": [next_id]}, timeout=10)
    assert r.json()["prompt"] == g.choices[0].text
    e = client.completions.create(model="tiny", prompt=ids + [next_id], max_tokens=0, echo=True,
                                  logprobs=1)
    assert e.choices[0].logprobs.token_logprobs[-1] == pytest.approx(gen_lp, abs=1e-3)


def test_stop_string_cuts_the_text(client):
    full = greedy(client, "stop here", 24, extra_body={"ignore_eos": True}).choices[0].text
    candidates = [full[i:i + 2] for i in range(2, len(full) - 2)
                  if full[i:i + 2].strip() and "\ufffd" not in full[i:i + 2]]
    if not candidates:
        pytest.skip("generated text has no usable stop string")
    stop = candidates[0]
    r = greedy(client, "stop here", 24, stop=[stop], extra_body={"ignore_eos": True})
    assert r.choices[0].text == full[:full.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_seed_reproducibility(client):
    def sample(seed):
        return client.completions.create(model="tiny", prompt="once upon", max_tokens=16,
                                         temperature=1.0, seed=seed,
                                         extra_body={"ignore_eos": True}).choices[0].text
    assert sample(123) == sample(123)
    assert any(sample(s) != sample(123) for s in (124, 125, 126))


def test_token_id_prompt_equals_text_prompt(client, server):
    ids = tokenize(server, "hello there")
    a = greedy(client, "hello there", 8, extra_body={"ignore_eos": True})
    b = greedy(client, ids, 8, extra_body={"ignore_eos": True})
    assert a.choices[0].text == b.choices[0].text
    assert b.usage.prompt_tokens == len(ids)


def test_list_prompts_and_n_give_ordered_choices(client):
    prompts = ["first prompt", "second one"]
    singles = [greedy(client, p, 6, extra_body={"ignore_eos": True}).choices[0].text
               for p in prompts]
    r = greedy(client, prompts, 6, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1]
    assert [c.text for c in r.choices] == singles
    rn = client.completions.create(model="tiny", prompt=prompts, max_tokens=6, n=2, seed=7,
                                   extra_body={"ignore_eos": True})
    assert [c.index for c in rn.choices] == [0, 1, 2, 3]
    assert rn.usage.completion_tokens == 24


def test_tokenize_detokenize_round_trip(server):
    text = "Round trip: héllo, wörld! 123"
    r = requests.post(server.url + "/tokenize", json={"model": "tiny", "prompt": text,
                                                      "add_special_tokens": False}).json()
    assert r["count"] == len(r["tokens"]) and r["max_model_len"] == MAX_LEN
    back = requests.post(server.url + "/detokenize", json={"tokens": r["tokens"]}).json()
    assert back["prompt"] == text
    with_bos = requests.post(server.url + "/tokenize", json={"prompt": text}).json()
    assert with_bos["count"] >= r["count"]


def test_metrics_count_tokens(server, client):
    before = _scrape(server)
    greedy(client, "count me", 4, extra_body={"ignore_eos": True})
    after = _scrape(server)
    assert after["xquant:generation_tokens_total"] - before["xquant:generation_tokens_total"] == 4
    assert after["xquant:prompt_tokens_total"] > before["xquant:prompt_tokens_total"]
    assert after['xquant:request_success_total{finished_reason="length"}'] >= 1
    assert after["xquant:cache_compression_ratio"] == pytest.approx(1.0)
    assert after["xquant:num_requests_running"] == 0


def test_client_disconnect_mid_stream_aborts(server, client):
    check_disconnect_aborts(server, MAX_LEN - 8)
    # The engine dropped it: after one more request nothing is left running.
    greedy(client, "after", 2)
    assert _scrape(server)["xquant:num_requests_running"] == 0
    assert requests.get(server.url + "/health").status_code == 200


def test_client_disconnect_while_waiting_for_a_whole_response_aborts(server):
    aborted = 'xquant:request_success_total{finished_reason="abort"}'
    before = _scrape(server).get(aborted, 0)
    body = json.dumps({"prompt": "go", "max_tokens": MAX_LEN - 8, "ignore_eos": True}).encode()
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n" + body)
    for _ in range(100):
        if _scrape(server).get(aborted, 0) > before:
            break
        time.sleep(0.02)
    assert _scrape(server).get(aborted, 0) == before + 1


def test_concurrent_streams_all_complete(server):
    from concurrent.futures import ThreadPoolExecutor

    def run(i):
        c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        chunks = list(c.completions.create(model="tiny", prompt=f"client {i}", max_tokens=10 + i,
                                           stream=True, stream_options={"include_usage": True},
                                           extra_body={"ignore_eos": True}))
        return chunks[-1].usage.completion_tokens, "".join(
            ch.choices[0].text for ch in chunks if ch.choices)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    assert [n for n, _ in results] == [10 + i for i in range(8)]


# ---- malformed input: a 4xx OpenAI error each, and the server keeps serving ----

def _post(server, body, path="/v1/completions", **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data,
                         headers={"Content-Type": "application/json"}, **kw)


LONG_IDS = list(range(MAX_LEN))
BAD = [
    ("broken json", lambda s: _post(s, b'{"prompt": "x",'), 400, None),
    ("empty body", lambda s: _post(s, b""), 400, None),
    ("not an object", lambda s: _post(s, b"[1, 2]"), 400, None),
    ("huge body", lambda s: _post(s, b'{"prompt": "' + b"a" * (2 * BODY_LIMIT) + b'"}'), 413, None),
    ("negative max_tokens", lambda s: _post(s, {"prompt": "x", "max_tokens": -1}), 400,
     "max_tokens"),
    ("non-UTF-8", lambda s: _post(s, b'{"prompt": "\xff\xfe"}'), 400, None),
    ("token id out of range", lambda s: _post(s, {"prompt": [1, 10 ** 6]}), 400, "prompt"),
    ("negative token id", lambda s: _post(s, {"prompt": [-3]}), 400, "prompt"),
    ("too long prompt", lambda s: _post(s, {"prompt": LONG_IDS, "max_tokens": 16}), 400,
     "prompt"),
    ("temperature type", lambda s: _post(s, {"prompt": "x", "temperature": "hot"}), 400,
     "temperature"),
    ("stream type", lambda s: _post(s, {"prompt": "x", "stream": "yes"}), 400, "stream"),
    ("unknown model", lambda s: _post(s, {"model": "gpt-9", "prompt": "x"}), 404, "model"),
    ("bad logprobs", lambda s: _post(s, {"prompt": "x", "logprobs": 50}), 400, "logprobs"),
    ("empty prompt", lambda s: _post(s, {"prompt": ""}), 400, "prompt"),
    ("empty prompt list", lambda s: _post(s, {"prompt": []}), 400, "prompt"),
    ("missing prompt", lambda s: _post(s, {"model": "tiny"}), 400, "prompt"),
    ("n zero", lambda s: _post(s, {"prompt": "x", "n": 0}), 400, "n"),
    ("too many stops", lambda s: _post(s, {"prompt": "x", "stop": list("abcde")}), 400, "stop"),
    ("top_p zero", lambda s: _post(s, {"prompt": "x", "top_p": 0}), 400, "top_p"),
    ("logit_bias key", lambda s: _post(s, {"prompt": "x", "logit_bias": {"x": 1}}), 400,
     "logit_bias"),
    ("stream_options alone", lambda s: _post(s, {"prompt": "x", "stream_options": {}}), 400,
     "stream_options"),
    ("wrong method", lambda s: requests.get(s.url + "/v1/completions"), 405, None),
    ("unknown path", lambda s: requests.get(s.url + "/v1/nothing"), 404, None),
    ("detokenize out of range", lambda s: _post(s, {"tokens": [10 ** 6]}, "/detokenize"), 400,
     "tokens"),
    ("tokenize without prompt", lambda s: _post(s, {"text": "x"}, "/tokenize"), 400, "prompt"),
]


@pytest.mark.parametrize("name,call,status,param", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_openai_error(server, name, call, status, param):
    r = call(server)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param:
        assert err["param"] == param
    if status == 404 and param == "model":
        assert err["code"] == "model_not_found"
    assert requests.get(server.url + "/health").status_code == 200


def test_context_length_message(server):
    r = _post(server, {"prompt": LONG_IDS[:250], "max_tokens": 10})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(
        f"This model's maximum context length is {MAX_LEN} tokens. However, you requested 260 "
        "tokens (250 in the prompt, 10 in the completion)")


def test_malformed_http_gets_400_and_server_survives(server):
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")
    assert requests.get(server.url + "/health").status_code == 200


def _raw(server, data: bytes, *more: bytes) -> bytes:
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        reply = s.recv(65536)
        for chunk in more:
            s.sendall(chunk)
            reply += s.recv(65536)
    return reply


def test_expect_100_continue_is_answered(server):
    body = json.dumps({"prompt": "x", "max_tokens": 1, "user": "u" * 2000}).encode()
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
    reply = _raw(server, head, body)
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert b"HTTP/1.1 200 OK" in reply


def test_oversized_headers_get_431(server):
    reply = _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "invalid_request_error"
    assert requests.get(server.url + "/health").status_code == 200


def test_keep_alive_serves_many_requests_on_one_connection(server):
    with requests.Session() as sess:
        for i in range(5):
            r = sess.post(server.url + "/v1/completions", json={"prompt": f"n{i}", "max_tokens": 2})
            assert r.status_code == 200
            bad = sess.post(server.url + "/v1/completions", json={"prompt": ""})
            assert bad.status_code == 400


# ---- process behaviour: auth, flags, startup errors, shutdown ----

def test_api_key_guards_v1_only(model_dir, tmp_path):
    s = Server(model_dir, tmp_path / "auth.log", "--api-key", "sekret")
    try:
        r = requests.get(s.url + "/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        bad = requests.get(s.url + "/v1/models", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="sekret", max_retries=0)
        assert good.models.list().data[0].id == "tiny"
        assert requests.get(s.url + "/health").status_code == 200
    finally:
        assert s.stop() == 0


def test_bad_flags_exit_2_and_help_exits_0():
    bad = subprocess.run([str(BINARY), "--model", "x", "--cache", "fp8"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "--cache" in bad.stderr
    bits = subprocess.run([str(BINARY), "--model", "x", "--cache", "fp16", "--cache-bits", "4"],
                          capture_output=True, text=True)
    assert bits.returncode == 2 and "--cache-bits" in bits.stderr
    missing = subprocess.run([str(BINARY)], capture_output=True, text=True)
    assert missing.returncode == 2 and "--model" in missing.stderr
    helped = subprocess.run([str(BINARY), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--max-num-seqs" in helped.stdout


def test_bad_model_dir_exits_1_with_one_line(tmp_path):
    r = subprocess.run([str(BINARY), "--model", str(tmp_path / "nope"), "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xquant-server: error:"), r.stderr


def test_sigterm_drains_a_running_stream_then_exits_0(model_dir, tmp_path):
    s = Server(model_dir, tmp_path / "drain.log")
    body = {"model": "tiny", "prompt": "go", "max_tokens": 64, "stream": True, "ignore_eos": True}
    with requests.post(s.url + "/v1/completions", json=body, stream=True) as r:
        s.proc.send_signal(signal.SIGTERM)
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == b"data: [DONE]"
    assert s.proc.wait(timeout=30) == 0
    assert "stopped" in s.log.read_text()
