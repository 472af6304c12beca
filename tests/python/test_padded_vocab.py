"""A checkpoint whose vocab_size is larger than its tokenizer's (real ones pad it: Qwen2.5 has
151936 rows for 151665 tokens). Only ids the tokenizer knows may be drawn or listed in
logprobs: the padded rows have no text. With random weights most of the probability sits on the
padding here (8192 rows, ~520 tokens), so sampling at temperature 1 would draw padding at once.

The binary comes from $XQ_BUILD_DIR (default build/release), found by server_process.py; the
tests skip when it is missing.
"""

import json
import sys
from pathlib import Path

import pytest
import requests

openai = pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from server_process import BUILD, BINARY, Server  # noqa: E402

pytestmark = pytest.mark.skipif(
    not BINARY.exists(), reason=f"{BINARY} not built (ninja -C {BUILD} xquant-server)")

PADDED = 8192


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model") / "padded", padded_vocab=PADDED)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    s = Server(model_dir, tmp_path_factory.mktemp("log") / "server.log", "--served-model-name",
               "padded")
    yield s
    assert s.stop() == 0, s.log.read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def tokenizer_vocab(model_dir):
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    return len(tok["model"]["vocab"]) + len(tok.get("added_tokens", []))


def test_the_model_is_padded(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["vocab_size"] == PADDED > 2 * tokenizer_vocab(model_dir)


def test_sampling_and_logprobs_stay_inside_the_tokenizer(server, client):
    r = client.completions.create(model="padded", prompt="the cat sat", max_tokens=24, n=4,
                                  temperature=1.0, seed=3, logprobs=5, echo=True,
                                  extra_body={"ignore_eos": True})
    for c in r.choices:
        assert c.finish_reason == "length"
        assert len(c.logprobs.tokens) > 24
        for top in c.logprobs.top_logprobs[1:]:  # the first prompt token has none
            assert 1 <= len(top) <= 6
    assert r.usage.completion_tokens == 4 * 24
    chunks = list(client.chat.completions.create(
        model="padded", messages=[{"role": "user", "content": "hi"}], max_tokens=16,
        temperature=1.0, stream=True, extra_body={"ignore_eos": True}))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert requests.get(server.url + "/health").status_code == 200


def test_logprobs_normalize_over_every_row(server, model_dir):
    """As transformers and vLLM report them: log-softmax over all 8192 rows, padding included,
    while padded ids are never listed (they have no text)."""
    import numpy as np
    from reference_model import ReferenceModel

    ref = ReferenceModel(model_dir)
    vocab = tokenizer_vocab(model_dir)
    tokens = [int(t) for t in np.random.RandomState(7).randint(3, vocab, size=12)]
    logits = ref.logits(tokens)
    assert logits.shape[-1] == PADDED
    x = logits - logits.max(-1, keepdims=True)
    want = x - np.log(np.exp(x).sum(-1, keepdims=True))
    r = requests.post(server.url + "/v1/completions", json={
        "model": "padded", "prompt": tokens, "echo": True, "logprobs": 5, "max_tokens": 1,
        "temperature": 0, "ignore_eos": True, "return_tokens_as_token_ids": True}, timeout=60)
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]
    got = np.array(lp["token_logprobs"][1:len(tokens)], dtype=np.float64)
    expected = np.array([want[i - 1, tokens[i]] for i in range(1, len(tokens))])
    assert np.abs(got - expected).max() < 1e-3, (got, expected)
    # The generated token too: the greedy pick among the tokenizer's ids, normalized over all.
    pick = int(np.argmax(logits[-1, :vocab]))
    assert lp["tokens"][-1] == f"token_id:{pick}"
    assert abs(lp["token_logprobs"][-1] - want[-1, pick]) < 1e-3
    for top in lp["top_logprobs"][1:]:
        assert all(int(k.split(":")[1]) < vocab for k in top)
