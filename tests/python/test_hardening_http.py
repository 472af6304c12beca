"""What a hostile or careless client finds (issue 10), each kept fixed: the real binary on
loopback with a small generated model, the official `openai` client where it applies, raw
requests and sockets where the wire matters.

The binary comes from $XQ_BUILD_DIR like in test_server_http.py; the tests skip when missing.
"""

import json
import socket
import sys
from pathlib import Path

import pytest
import requests

openai = pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from server_process import BINARY, Server, scrape_metrics  # noqa: E402

pytestmark = pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built")

MAX_LEN = 256
CHAT = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model") / "tiny", max_pos=MAX_LEN)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    s = Server(model_dir, tmp_path_factory.mktemp("log") / "server.log", "--served-model-name",
               "tiny", "--max-body-bytes", "1MiB")
    yield s
    assert s.stop() == 0, s.log.read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def post(server, path, body, **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(server.url + path, data=data,
                         headers={"Content-Type": "application/json"}, timeout=60, **kw)


def alive(server):
    assert server.proc.poll() is None, server.log.read_text()[-2000:]
    assert requests.get(server.url + "/health", timeout=5).status_code == 200


def assert_400(r, param=None):
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param, err
    return err


def tokenize(server, text, special=False):
    return post(server, "/tokenize", {"prompt": text, "add_special_tokens": special}).json()["tokens"]


def nested(depth):
    return "[" * depth + "]" * depth


# ---- 1: nesting ----

@pytest.mark.parametrize("path,template", [
    ("/v1/chat/completions",
     '{"messages":[{"role":"user","content":"hi","extra":%s}],"max_tokens":1}'),
    ("/v1/chat/completions",
     '{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":'
     '{"name":"f","parameters":{"x":%s}}}],"max_tokens":1}'),
    ("/v1/chat/completions",
     '{"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":{"x":%s},'
     '"max_tokens":1}'),
    ("/v1/chat/completions",
     '{"messages":[{"role":"assistant","content":"hi","tool_calls":[%s]}],"max_tokens":1}'),
    ("/v1/completions", '{"prompt":"hi","max_tokens":1,"x":%s}'),
    ("/tokenize", '{"prompt":"hi","x":%s}'),
    ("/detokenize", '{"tokens":[1],"x":%s}'),
])
def test_deep_json_is_a_400_not_a_crash(server, path, template):
    for depth in (20000, 200000):
        r = post(server, path, template % nested(depth))
        err = assert_400(r)
        assert err["code"] == "json_too_deep", err
    alive(server)
    # Depths real requests use still go through.
    r = post(server, path, template % nested(20))
    assert r.status_code == 200 or r.json()["error"]["code"] != "json_too_deep", r.text


def test_brackets_inside_strings_do_not_count(server):
    r = post(server, "/v1/completions", {"prompt": "[" * 5000 + "{" * 5000, "max_tokens": 1})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"]["code"] != "json_too_deep"


# ---- 2: work per request ----

def test_choices_and_prompts_per_request_are_capped(server):
    r = post(server, "/v1/completions", {"prompt": ["a"] * 5000, "n": 128, "max_tokens": 1})
    assert "1024" in assert_400(r, "prompt")["message"]
    r = post(server, "/v1/completions", {"prompt": ["a"] * 600, "n": 2, "max_tokens": 1})
    assert "1200" in assert_400(r, "n")["message"]
    r = post(server, "/v1/completions", {"prompt": ["a"] * 100, "best_of": 11, "max_tokens": 1})
    assert_400(r, "best_of")
    r = post(server, "/v1/completions", {"prompt": ["a"] * 512, "n": 2, "max_tokens": 1})
    assert r.status_code == 200 and len(r.json()["choices"]) == 1024
    alive(server)


# ---- 4: numbers no double holds ----

@pytest.mark.parametrize("path,body", [
    ("/v1/completions", '{"prompt":"hi","max_tokens":1e400}'),
    ("/v1/completions", '{"prompt":"hi","temperature":1e309}'),
    ("/v1/chat/completions", '{"messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}'),
    ("/v1/chat/completions", '{"messages":[{"role":"user","content":"hi"}],"top_p":-1e999}'),
    ("/tokenize", '{"prompt":"hi","x":1e400}'),
    ("/detokenize", '{"tokens":[1e400]}'),
])
def test_out_of_range_numbers_are_a_400(server, path, body):
    assert_400(post(server, path, body))


# ---- 5: parameters ----

@pytest.mark.parametrize("extra,param", [
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ({"tool_choice": "bogus"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
     "response_format"),
    ({"response_format": {"type": "bogus"}}, "response_format"),
    ({"guided_json": {"type": "object"}}, "guided_json"),
])
def test_unsupported_chat_parameters_are_named(server, extra, param):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    for with_tools in (False, True):
        body = {"messages": CHAT, "max_tokens": 1, **extra}
        if with_tools:
            body["tools"] = tools
        assert_400(post(server, "/v1/chat/completions", body), param)


def test_supported_tool_choice_and_text_format_pass(client):
    r = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2,
                                       tool_choice="none", response_format={"type": "text"})
    assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("extra,param", [
    ({"suffix": "end"}, "suffix"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"best_of": 1, "n": 2}, "best_of"),
    ({"best_of": 3, "stream": True}, "best_of"),
    ({"min_tokens": 5, "max_tokens": 4}, "min_tokens"),
    ({"min_tokens": -1}, "min_tokens"),
    ({"include_stop_str_in_output": "yes"}, "include_stop_str_in_output"),
])
def test_completion_parameter_errors_are_named(server, extra, param):
    assert_400(post(server, "/v1/completions", {"prompt": "hi", "max_tokens": 4, **extra}), param)


def greedy_ids(client, prompt, n):
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=n, temperature=0,
                                  logprobs=0, extra_body={"ignore_eos": True,
                                                          "return_tokens_as_token_ids": True})
    return [int(t.split(":")[1]) for t in r.choices[0].logprobs.tokens]


def test_min_tokens_holds_off_stop_token_ids(client):
    ids = greedy_ids(client, "the cat sat", 12)
    first = ids[0]
    r = client.completions.create(model="tiny", prompt="the cat sat", max_tokens=12,
                                  temperature=0, extra_body={"stop_token_ids": [first]})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 1
    assert r.model_extra is not None
    assert r.choices[0].model_extra["stop_reason"] == first
    r = client.completions.create(model="tiny", prompt="the cat sat", max_tokens=12,
                                  temperature=0, logprobs=0,
                                  extra_body={"stop_token_ids": [first], "min_tokens": 4,
                                              "ignore_eos": True,
                                              "return_tokens_as_token_ids": True})
    got = [int(t.split(":")[1]) for t in r.choices[0].logprobs.tokens]
    assert len(got) >= 4 and first not in got[:4]
    # min_tokens also holds off EOS: with ignore_eos off the text still has min_tokens tokens.
    r = client.completions.create(model="tiny", prompt="x", max_tokens=20, temperature=1.0,
                                  seed=1, extra_body={"min_tokens": 20})
    assert r.usage.completion_tokens == 20


def test_include_stop_str_in_output_and_stop_reason(client):
    full = client.completions.create(model="tiny", prompt="stop here", max_tokens=24,
                                     temperature=0, extra_body={"ignore_eos": True}).choices[0].text
    stops = [full[i:i + 2] for i in range(2, len(full) - 2)
             if full[i:i + 2].strip() and "\ufffd" not in full[i:i + 2]]
    if not stops:
        pytest.skip("generated text has no usable stop string")
    stop = stops[0]
    for include in (False, True):
        r = client.completions.create(model="tiny", prompt="stop here", max_tokens=24,
                                      temperature=0, stop=[stop],
                                      extra_body={"ignore_eos": True,
                                                  "include_stop_str_in_output": include})
        c = r.choices[0]
        cut = full.index(stop) + (len(stop) if include else 0)
        assert c.text == full[:cut] and c.finish_reason == "stop"
        assert c.model_extra["stop_reason"] == stop


def test_best_of_returns_the_most_likely_candidates(client):
    kw = dict(model="tiny", prompt="once upon", max_tokens=8, temperature=1.0, seed=11,
              extra_body={"ignore_eos": True})
    all3 = client.completions.create(n=3, logprobs=0, **kw)
    scores = [sum(c.logprobs.token_logprobs) for c in all3.choices]
    order = sorted(range(3), key=lambda i: -scores[i])
    best = client.completions.create(n=1, best_of=3, **kw)
    assert len(best.choices) == 1 and best.choices[0].index == 0
    assert best.choices[0].text == all3.choices[order[0]].text
    two = client.completions.create(n=2, best_of=3, **kw)
    assert [c.text for c in two.choices] == [all3.choices[i].text for i in order[:2]]
    assert [c.index for c in two.choices] == [0, 1]
    assert two.usage.completion_tokens == 16


# ---- 7: repetition penalty over the prompt ----

def test_repetition_penalty_counts_the_prompt(client, server):
    import random
    rng = random.Random(4)
    vocab = 300
    for _ in range(60):
        prompt = [rng.randrange(3, vocab) for _ in range(40)]
        plain = greedy_ids(client, prompt, 1)[0]
        if plain in prompt:
            break
    else:
        pytest.skip("no prompt whose greedy next token repeats a prompt token")
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=1, temperature=0,
                                  logprobs=0, extra_body={"repetition_penalty": 50.0,
                                                          "ignore_eos": True,
                                                          "return_tokens_as_token_ids": True})
    penalized = int(r.choices[0].logprobs.tokens[0].split(":")[1])
    assert penalized != plain


# ---- 8, 9: logprob naming and offsets ----

def test_echo_text_offsets_never_go_back(client):
    r = client.completions.create(model="tiny", prompt="one two three", max_tokens=4, echo=True,
                                  logprobs=1, temperature=0, extra_body={"ignore_eos": True})
    offsets = r.choices[0].logprobs.text_offset
    assert offsets == sorted(offsets), offsets
    assert offsets[0] == 0


def test_a_byte_token_is_listed_once_in_top_logprobs(server):
    ids = tokenize(server, "\u00e9\u4e2d")  # é and 中: byte tokens in the tiny byte-level BPE
    for tok in ids:
        body = {"prompt": "x", "max_tokens": 1, "logprobs": 5, "temperature": 0,
                "logit_bias": {str(tok): 100}, "ignore_eos": True}
        r = post(server, "/v1/completions", body)
        assert r.status_code == 200, r.text
        pairs = json.loads(r.text, object_pairs_hook=lambda kv: kv)
        choice = dict(dict(pairs)["choices"][0])
        top = dict(choice["logprobs"])["top_logprobs"][0]
        keys = [k for k, _ in top]
        assert len(keys) == len(set(keys)), keys


# ---- 10: HTTP ----

def raw(server, request: bytes) -> bytes:
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_sse_to_http10_is_not_chunked(server):
    body = json.dumps({"prompt": "hi", "max_tokens": 4, "stream": True}).encode()
    out = raw(server, b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"chunked" not in head.lower()
    assert rest.startswith(b"data: ") and rest.endswith(b"data: [DONE]\n\n"), rest[-200:]


def test_head_gets_headers_only_and_405_has_allow(server):
    out = raw(server, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and rest == b""
    assert b"content-length: 15" in head.lower()
    r = requests.post(server.url + "/health", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = requests.delete(server.url + "/v1/completions", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


# ---- 11 ----

@pytest.mark.parametrize("key", ["messages", "bos_token", "eos_token", "tools",
                                 "add_generation_prompt"])
def test_template_kwargs_cannot_override_the_servers_variables(server, key):
    body = {"messages": CHAT, "max_tokens": 1, "chat_template_kwargs": {key: "x"}}
    assert_400(post(server, "/v1/chat/completions", body), "chat_template_kwargs")


@pytest.mark.parametrize("key", [" 5", "+5", "5 ", "05x", "", "99999999999999999999"])
def test_logit_bias_keys_must_be_plain_ids(server, key):
    r = post(server, "/v1/completions", {"prompt": "hi", "max_tokens": 1, "logit_bias": {key: 1}})
    assert_400(r, "logit_bias")


# ---- 14 and the vLLM extras ----

def test_context_errors_say_what_was_sent(server):
    ids = [5] * MAX_LEN
    err = assert_400(post(server, "/v1/completions", {"prompt": ids, "max_tokens": 0}), "prompt")
    assert "you requested" not in err["message"] and "prompt" in err["message"]
    assert "messages" not in err["message"]
    err = assert_400(post(server, "/v1/completions", {"prompt": ids[:200], "max_tokens": 100}))
    assert "300" in err["message"] and "messages" not in err["message"]


def test_metrics_names_and_tpot_buckets(server):
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert "xquant:cache_blocks_total" not in text
    assert "\nxquant:cache_blocks " in text
    assert 'xquant:time_per_output_token_seconds_bucket{le="0.001"}' in text
    assert "xquant:request_queue_full_total" in text


def test_model_by_id(server, client):
    assert client.models.retrieve("tiny").id == "tiny"
    r = requests.get(server.url + "/v1/models/other", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_tokenize_messages_equals_chat_prompt(server, client):
    r = post(server, "/tokenize", {"messages": CHAT})
    assert r.status_code == 200, r.text
    ids = r.json()["tokens"]
    chat = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=1)
    assert len(ids) == chat.usage.prompt_tokens
    assert_400(post(server, "/tokenize", {"messages": CHAT, "prompt": "x"}))


def test_chat_stop_reason_in_stream_and_body(client):
    full = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=16,
                                          temperature=0).choices[0]
    assert "stop_reason" in full.model_extra
    chunks = list(client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=16,
                                                 temperature=0, stream=True))
    last = [c for c in chunks if c.choices][-1].choices[0]
    assert last.finish_reason is not None and "stop_reason" in last.model_extra
