"""--stream-interval: the same greedy requests against a server that streams every token and one
that batches 4 tokens per chunk give the same text, logprobs, finish reasons and usage; only the
chunking differs (the first token alone, then groups of 4, the last chunk taking what is left).

The binary comes from $XQ_BUILD_DIR (default build/release), found by server_process.py; the
tests skip when it is missing.
"""

import subprocess
import sys
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from server_process import (BUILD, BINARY, Server,  # noqa: E402,F401
                            check_disconnect_aborts, scrape_metrics as _scrape)

pytestmark = pytest.mark.skipif(
    not BINARY.exists(), reason=f"{BINARY} not built (ninja -C {BUILD} xquant-server)")

MAX_LEN = 256
INTERVAL = 4
PROMPT = "the cat sat on the"
MESSAGES = [{"role": "user", "content": "Tell me about the cat."}]
NO_EOS = {"ignore_eos": True}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model") / "tiny", max_pos=MAX_LEN)


def _start(tmp_path_factory, model_dir, interval):
    return Server(model_dir, tmp_path_factory.mktemp("log") / "server.log", "--served-model-name",
                  "tiny", "--stream-interval", str(interval))


@pytest.fixture(scope="module")
def servers(model_dir, tmp_path_factory):
    every, batched = (_start(tmp_path_factory, model_dir, i) for i in (1, INTERVAL))
    yield every, batched
    for s in (every, batched):
        assert s.stop() == 0, s.log.read_text()


@pytest.fixture(scope="module")
def clients(servers):
    return [openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
            for s in servers]


def expected_sizes(n_tokens, interval):
    """Tokens per content chunk: the first alone, then `interval` at a time."""
    rest = n_tokens - 1
    return [1] + [interval] * (rest // interval) + ([rest % interval] if rest % interval else [])


def completion_stream(client, n_tokens, **kw):
    chunks = list(client.completions.create(
        model="tiny", prompt=PROMPT, max_tokens=n_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True}, **kw))
    content = [c for c in chunks if c.choices]
    return chunks, content


def chat_stream(client, n_tokens, **kw):
    chunks = list(client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=n_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True}, **kw))
    # The first chunk only names the role; the rest carry content.
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks[1:] if c.choices]
    return chunks, content


@pytest.mark.parametrize("n_tokens", [1, 9, 13, 23])
def test_completion_stream_same_text_and_logprobs_in_fewer_chunks(clients, n_tokens):
    results = []
    for client in clients:
        chunks, content = completion_stream(client, n_tokens, logprobs=3, extra_body=NO_EOS)
        text = "".join(c.choices[0].text for c in content)
        tokens, token_lps, top, offsets = [], [], [], []
        for c in content:
            lp = c.choices[0].logprobs
            tokens += lp.tokens
            token_lps += lp.token_logprobs
            top += lp.top_logprobs
            offsets += lp.text_offset
        assert content[-1].choices[0].finish_reason == "length"
        assert all(c.choices[0].finish_reason is None for c in content[:-1])
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == n_tokens
        results.append({"text": text, "tokens": tokens, "lps": token_lps, "top": top,
                        "offsets": offsets, "usage": chunks[-1].usage.model_dump(),
                        "sizes": [len(c.choices[0].logprobs.tokens) for c in content]})
    every, batched = results
    assert every["sizes"] == [1] * n_tokens
    assert batched["sizes"] == expected_sizes(n_tokens, INTERVAL)
    for key in ("text", "tokens", "lps", "top", "offsets", "usage"):
        assert batched[key] == every[key], key


def test_completion_stream_without_logprobs_concatenates_to_the_same_text(clients):
    n = 21
    texts, counts = [], []
    for client in clients:
        chunks, content = completion_stream(client, n, extra_body=NO_EOS)
        texts.append("".join(c.choices[0].text for c in content))
        counts.append(len(content))
        assert chunks[-1].usage.completion_tokens == n
    whole = clients[1].completions.create(model="tiny", prompt=PROMPT, max_tokens=n,
                                          temperature=0, extra_body=NO_EOS)
    assert texts[0] == texts[1] == whole.choices[0].text
    # A chunk goes out only with new text (or the finish reason), so at most one per group.
    assert counts[1] <= len(expected_sizes(n, INTERVAL)) < counts[0]


@pytest.mark.parametrize("n_tokens", [2, 14])
def test_chat_stream_same_content_and_logprobs_in_fewer_chunks(clients, n_tokens):
    results = []
    for client in clients:
        chunks, content = chat_stream(client, n_tokens, logprobs=True, top_logprobs=2,
                                      extra_body=NO_EOS)
        lps = [e.model_dump() for c in content for e in c.choices[0].logprobs.content]
        assert content[-1].choices[0].finish_reason == "length"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == n_tokens
        results.append({"text": "".join(c.choices[0].delta.content or "" for c in content),
                        "lps": lps, "usage": chunks[-1].usage.model_dump(),
                        "sizes": [len(c.choices[0].logprobs.content) for c in content]})
    every, batched = results
    assert every["sizes"] == [1] * n_tokens
    assert batched["sizes"] == expected_sizes(n_tokens, INTERVAL)
    assert len(batched["lps"]) == n_tokens
    for key in ("text", "lps", "usage"):
        assert batched[key] == every[key], key
    whole = clients[1].chat.completions.create(model="tiny", messages=MESSAGES,
                                               max_tokens=n_tokens, temperature=0,
                                               extra_body=NO_EOS)
    assert whole.choices[0].message.content == every["text"]


def test_stop_string_cuts_the_same_text_at_any_interval(clients):
    full = clients[0].completions.create(model="tiny", prompt=PROMPT, max_tokens=24,
                                         temperature=0, extra_body=NO_EOS).choices[0].text
    # A stop string from the middle of the text: found across token and chunk boundaries.
    middle = full[len(full) // 2:len(full) // 2 + 3]
    assert middle.strip(), full
    outs = []
    for client in clients:
        chunks, content = completion_stream(client, 24, stop=[middle], logprobs=1,
                                            extra_body=NO_EOS)
        outs.append(("".join(c.choices[0].text for c in content),
                     content[-1].choices[0].finish_reason,
                     sum(len(c.choices[0].logprobs.tokens) for c in content),
                     chunks[-1].usage.completion_tokens))
    assert outs[0] == outs[1]
    assert outs[0][0] == full[:full.index(middle)] and outs[0][1] == "stop"
    assert outs[0][2] == outs[0][3]  # every token generated has its logprobs entry


def test_n2_choices_each_batched(clients):
    n = 10
    chunks = list(clients[1].completions.create(
        model="tiny", prompt=PROMPT, max_tokens=n, temperature=0, n=2, stream=True, logprobs=1,
        extra_body=NO_EOS))
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        assert [len(c.logprobs.tokens) for c in mine] == expected_sizes(n, INTERVAL)


def test_client_disconnect_aborts_at_once(servers, clients):
    server = servers[1]
    check_disconnect_aborts(server, MAX_LEN - 8)
    clients[1].completions.create(model="tiny", prompt="after", max_tokens=2)
    assert _scrape(server)["xquant:num_requests_running"] == 0


def test_bad_interval_exits_2_naming_the_flag():
    for bad in ("0", "-1", "x"):
        r = subprocess.run([str(BINARY), "--model", "m", "--stream-interval", bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--stream-interval" in r.stderr, (bad, r.stderr)
