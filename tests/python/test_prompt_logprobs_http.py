"""Teacher-forced prompt logprobs through the HTTP API (`echo: true, logprobs: 1, max_tokens: 0`,
the lm-evaluation-harness call) against the independent float64 reference forward pass, on model
shapes unlike the unit tests' (seeds and sizes of their own), fp32 weights."""

import sys
from pathlib import Path

import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from reference_model import ReferenceModel  # noqa: E402
from server_process import BINARY, Server  # noqa: E402

pytestmark = pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built")

SHAPES = {
    "llama_gqa_llama3": dict(arch="llama", layers=3, hidden=96, intermediate=160, heads=6,
                             kv_heads=2, rope_scaling="llama3", seed=21),
    "qwen2_untied_bias": dict(arch="qwen2", layers=2, hidden=64, heads=4, kv_heads=4,
                              tokenizer="gpt2", seed=22),
    "gemma3_window": dict(arch="gemma3", layers=3, hidden=64, heads=4, kv_heads=1, head_dim=32,
                          sliding_window=12, seed=23),
}


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_prompt_logprobs_match_float64_reference(name, tmp_path):
    d = make_test_model(tmp_path / name, **SHAPES[name])
    ref = ReferenceModel(d)
    vocab = ref.w["model.embed_tokens.weight"].shape[0]
    tokens = [int(t) for t in np.random.RandomState(5).randint(0, vocab, size=60)]
    want = log_softmax(ref.logits(tokens))

    server = Server(d, tmp_path / "server.log", "--served-model-name", "m")
    try:
        r = requests.post(server.url + "/v1/completions", json={
            "model": "m", "prompt": tokens, "echo": True, "logprobs": 1, "max_tokens": 0},
            timeout=120)
    finally:
        assert server.stop() == 0
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]
    got = lp["token_logprobs"]
    assert len(got) == len(tokens) and got[0] is None
    expected = [want[i - 1, tokens[i]] for i in range(1, len(tokens))]
    err = np.abs(np.array(got[1:], dtype=np.float64) - np.array(expected)).max()
    print(f"{name}: max |prompt logprob error| {err:.2e} over {len(tokens) - 1} tokens")
    assert err < 1e-3
