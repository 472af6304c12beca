"""End-to-end tests of /v1/chat/completions, the sampling parameters of /v1/completions and CORS:
the real xquant-server binary on loopback with small generated models, the official `openai`
client, and jinja2 (as transformers configures it) as the reference renderer of chat templates.

The binary comes from $XQ_BUILD_DIR like in test_server_http.py; the tests skip when missing.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import requests

openai = pytest.importorskip("openai")
jinja2 = pytest.importorskip("jinja2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from test_server_http import BINARY, Server, tokenize  # noqa: E402

pytestmark = pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built")

MAX_LEN = 256
USER = [{"role": "user", "content": "Tell me about the quick brown fox."}]
OVERRIDE = ("{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}[ASSISTANT]{% endif %}")


def reference_render(model_dir: Path, messages, template=None, add_generation_prompt=True):
    """What transformers' apply_chat_template renders: jinja2 with trim/lstrip blocks."""
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                             extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(msg):
        raise jinja2.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template or cfg["chat_template"]).render(
        messages=messages, add_generation_prompt=add_generation_prompt,
        bos_token=cfg["bos_token"], eos_token=cfg["eos_token"])


def start(tmp_path_factory, model_dir, *flags):
    return Server(model_dir, tmp_path_factory.mktemp("log") / "server.log", "--served-model-name",
                  "tiny", *flags)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model") / "tiny", max_pos=MAX_LEN)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    s = start(tmp_path_factory, model_dir)
    yield s
    assert s.stop() == 0, s.log.read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def bare_model_dir(tmp_path_factory):
    """The same model with the chat template removed from tokenizer_config.json."""
    d = make_test_model(tmp_path_factory.mktemp("model") / "bare", max_pos=MAX_LEN)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def chat(client, n_tokens=12, messages=USER, **kw):
    return client.chat.completions.create(model="tiny", messages=messages, max_tokens=n_tokens,
                                          temperature=0, **kw)


# ---- chat: shapes, streaming, usage ----

def test_chat_shape_and_usage_matches_reference_rendering(client, server, model_dir):
    r = chat(client)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "tiny"
    assert len(r.choices) == 1 and r.choices[0].index == 0
    m = r.choices[0].message
    assert m.role == "assistant" and isinstance(m.content, str)
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].logprobs is None
    rendered = reference_render(model_dir, USER)
    assert rendered.startswith("<|begin_of_text|>")
    # The template wrote BOS: tokenizing must not add another one.
    assert r.usage.prompt_tokens == len(tokenize(server, rendered, special=False))
    assert r.usage.prompt_tokens + 1 == len(tokenize(server, rendered, special=True))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 1 <= r.usage.completion_tokens <= 12


def test_chat_text_parts_and_system_render_like_reference(client, server, model_dir):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "one"},
                                         {"type": "text", "text": "two"}]}]
    r = chat(client, 2, messages=msgs)
    ref = [msgs[0], {"role": "user", "content": "one\ntwo"}]
    assert r.usage.prompt_tokens == len(tokenize(server, reference_render(model_dir, ref), False))


def test_chat_stream_equals_non_stream(client):
    full = chat(client, 16)
    chunks = list(chat(client, 16, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    with_choices = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in with_choices]
    assert finishes[-1] == full.choices[0].finish_reason and not any(finishes[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage.prompt_tokens == full.usage.prompt_tokens
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage_ends_with_done(server):
    body = {"model": "tiny", "messages": USER, "max_tokens": 4, "stream": True}
    r = requests.post(server.url + "/v1/chat/completions", json=body, stream=True)
    lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == b"data: [DONE]"
    payloads = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert all("usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_chat_n2_gives_two_indexed_choices(client):
    r = client.chat.completions.create(model="tiny", messages=USER, max_tokens=8, n=2,
                                       temperature=1.0, seed=3)
    assert sorted(c.index for c in r.choices) == [0, 1]
    again = client.chat.completions.create(model="tiny", messages=USER, max_tokens=8, n=2,
                                           temperature=1.0, seed=3)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]


def test_chat_logprobs_shape(client):
    r = chat(client, 6, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-5)
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True)
    # A character split across tokens shows as U+FFFD in each token's text: join the bytes.
    joined = b"".join(bytes(e.bytes) for e in content).decode("utf-8", "replace")
    assert joined == r.choices[0].message.content
    plain = chat(client, 6, logprobs=True)
    assert all(e.top_logprobs == [] for e in plain.choices[0].logprobs.content)


def test_chat_logprobs_name_tokens_by_id_on_request(client):
    by_text = chat(client, 6, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    by_id = chat(client, 6, logprobs=True, top_logprobs=2,
                 extra_body={"return_tokens_as_token_ids": True}).choices[0].logprobs.content
    assert len(by_id) == len(by_text)
    for a, b in zip(by_text, by_id):
        assert re.fullmatch(r"token_id:\d+", b.token), b.token
        assert b.bytes == a.bytes and b.logprob == pytest.approx(a.logprob)
        assert b.top_logprobs[0].token == b.token  # greedy: the chosen token is the best


def test_chat_logprobs_streamed(client):
    chunks = list(chat(client, 6, stream=True, logprobs=True, top_logprobs=2))
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs
               for e in c.choices[0].logprobs.content]
    assert len(entries) == 6 or chunks[-1].choices[0].finish_reason == "stop"
    assert all(len(e.top_logprobs) == 2 for e in entries)


def test_chat_stop_string_cuts_the_text(client):
    text = chat(client, 24).choices[0].message.content
    words = [w for w in text.split(" ") if w][2:]
    if not words:
        pytest.skip("greedy output too short to pick a stop string from")
    stop = words[0]
    r = chat(client, 24, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[:text.index(stop)]


def test_chat_bad_requests_name_the_parameter(server):
    url = server.url + "/v1/chat/completions"
    for body, param in [
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         "messages[0].content"),
        ({"messages": []}, "messages"),
        ({"messages": USER, "logprobs": True, "top_logprobs": 30}, "top_logprobs"),
        ({"messages": USER, "max_completion_tokens": -1}, "max_completion_tokens"),
        ({"messages": USER, "temperature": "warm"}, "temperature"),
    ]:
        r = requests.post(url, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, r.text


def test_chat_continue_final_message(client, server, model_dir):
    msgs = USER + [{"role": "assistant", "content": "The fox"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=2, temperature=0,
                                       extra_body={"continue_final_message": True,
                                                   "add_generation_prompt": False})
    full = reference_render(model_dir, msgs, add_generation_prompt=False)
    cut = full[:full.rindex("The fox") + len("The fox")]
    assert r.usage.prompt_tokens == len(tokenize(server, cut, special=False))


# ---- chat: templates ----

def test_template_raise_is_a_400_with_its_message(tmp_path_factory):
    spm = make_test_model(tmp_path_factory.mktemp("model") / "spm", tokenizer="spm",
                          max_pos=MAX_LEN)
    s = start(tmp_path_factory, spm)
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as e:
            chat(c, 2, messages=[{"role": "user", "content": "a"},
                                 {"role": "user", "content": "b"}])
        assert "Conversation roles must alternate" in e.value.response.json()["error"]["message"]
        ok = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
              {"role": "user", "content": "c"}]
        r = chat(c, 2, messages=ok)
        assert r.usage.prompt_tokens == len(tokenize(s, reference_render(spm, ok), False))
    finally:
        assert s.stop() == 0


def test_model_without_template_and_override(bare_model_dir, tmp_path_factory):
    s = start(tmp_path_factory, bare_model_dir)
    try:
        r = requests.post(s.url + "/v1/chat/completions", json={"messages": USER})
        assert r.status_code == 400
        assert "has no chat template; pass --chat-template FILE" in r.json()["error"]["message"]
    finally:
        assert s.stop() == 0
    path = tmp_path_factory.mktemp("tmpl") / "override.jinja"
    path.write_text(OVERRIDE)
    s = start(tmp_path_factory, bare_model_dir, "--chat-template", str(path))
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        r = chat(c, 2)
        ref = reference_render(bare_model_dir, USER, template=OVERRIDE)
        assert ref.startswith("[USER] Tell me")
        assert r.usage.prompt_tokens == len(tokenize(s, ref, False))
    finally:
        assert s.stop() == 0


# ---- /v1/completions sampling parameters ----

def complete(client, **kw):
    kw.setdefault("max_tokens", 12)
    return client.completions.create(model="tiny", prompt="The quick brown fox", **kw)


def greedy_text(client, **kw):
    return complete(client, temperature=0, **kw).choices[0].text


def test_top_k_1_and_min_p_1_equal_greedy(client):
    g = greedy_text(client)
    assert complete(client, temperature=1.0, seed=7, extra_body={"top_k": 1}).choices[0].text == g
    assert complete(client, temperature=1.0, seed=7, extra_body={"min_p": 1.0}).choices[0].text == g
    # And plain sampling at a high temperature does differ somewhere over a few seeds.
    samples = {complete(client, temperature=2.0, seed=s).choices[0].text for s in range(4)}
    assert samples != {g}


def test_logit_bias_forces_a_token(client, server):
    token = tokenize(server, " fox", special=False)[0]
    piece = requests.post(server.url + "/detokenize", json={"tokens": [token]}).json()["prompt"]
    assert piece
    r = complete(client, temperature=1.0, seed=1, max_tokens=4, logit_bias={str(token): 100},
                 extra_body={"ignore_eos": True})
    assert r.choices[0].text == piece * 4
    banned = greedy_text(client, max_tokens=1)
    ban_id = tokenize(server, banned, special=False)
    assert len(ban_id) == 1
    assert greedy_text(client, max_tokens=1, logit_bias={str(ban_id[0]): -100}) != banned


def test_penalties_change_the_output(client):
    g = greedy_text(client, max_tokens=32)
    for kw in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0},
               {"extra_body": {"repetition_penalty": 3.0}}):
        assert greedy_text(client, max_tokens=32, **kw) != g, kw


def test_stop_token_ids_end_generation(client, server):
    r = complete(client, temperature=0, max_tokens=12, logprobs=0)
    toks = r.choices[0].logprobs.tokens
    for i in range(2, len(toks)):
        ids = tokenize(server, toks[i], special=False)
        if len(ids) == 1 and all(tokenize(server, t, False) != ids for t in toks[:i]):
            break
    else:
        pytest.skip("no single-token piece to stop on")
    s = complete(client, temperature=0, max_tokens=12, extra_body={"stop_token_ids": ids})
    assert s.choices[0].finish_reason == "stop"
    assert s.usage.completion_tokens == i + 1
    assert r.choices[0].text.startswith(s.choices[0].text)


def test_sampling_params_bad_values(server):
    url = server.url + "/v1/completions"
    for extra, param in [({"top_k": -3}, "top_k"), ({"min_p": 2}, "min_p"),
                         ({"repetition_penalty": 0}, "repetition_penalty"),
                         ({"stop_token_ids": ["a"]}, "stop_token_ids"),
                         ({"skip_special_tokens": "no"}, "skip_special_tokens")]:
        r = requests.post(url, json={"prompt": "hi", **extra})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (extra, r.text)


# ---- CORS ----

def test_cors_is_off_by_default(server):
    r = requests.get(server.url + "/v1/models", headers={"Origin": "http://a.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(server.url + "/v1/chat/completions",
                         headers={"Origin": "http://a.example",
                                  "Access-Control-Request-Method": "POST"})
    assert r.status_code == 405


def test_cors_allowed_origins(model_dir, tmp_path_factory):
    s = start(tmp_path_factory, model_dir, "--allowed-origins", "http://a.example,http://b.example",
              "--api-key", "k")
    try:
        pre = requests.options(s.url + "/v1/chat/completions",
                               headers={"Origin": "http://b.example",
                                        "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code == 204, pre.text
        assert pre.headers["Access-Control-Allow-Origin"] == "http://b.example"
        assert "POST" in pre.headers["Access-Control-Allow-Methods"]
        assert pre.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        r = requests.get(s.url + "/v1/models", headers={"Origin": "http://a.example",
                                                        "Authorization": "Bearer k"})
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "http://a.example"
        st = requests.post(s.url + "/v1/chat/completions", stream=True,
                           headers={"Origin": "http://a.example", "Authorization": "Bearer k"},
                           json={"messages": USER, "max_tokens": 2, "stream": True})
        assert st.headers["Access-Control-Allow-Origin"] == "http://a.example"
        assert st.content.endswith(b"data: [DONE]\n\n")
        other = requests.get(s.url + "/health", headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        bad = requests.options(s.url + "/v1/models", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
        assert bad.status_code == 403
    finally:
        assert s.stop() == 0
