"""The engine's logits (tests/tools/logits_cli) against the float64 reference forward pass, over
generated test models of both block layouts, and prefill-in-chunks vs token-by-token decode.

Binaries come from $XQ_BUILD_DIR (default build/release); the tests skip when it has none.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_test_model import make_test_model  # noqa: E402
from reference_model import ReferenceModel  # noqa: E402

REPO = HERE.parents[1]
BUILD = Path(os.environ.get("XQ_BUILD_DIR", REPO / "build" / "release"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
LOGITS_CLI = BUILD / "tests" / "logits_cli"

pytestmark = pytest.mark.skipif(
    not LOGITS_CLI.is_file(),
    reason=f"{LOGITS_CLI} not built (set XQ_BUILD_DIR to a build dir with the logits_cli target)")

# name -> make_test_model arguments. Each covers a feature the engine must get exactly right.
MODELS = {
    "llama_mha": dict(arch="llama", heads=4, kv_heads=4),
    "llama_gqa_tied_bias": dict(arch="llama", heads=4, kv_heads=2, tie=True, bias=True),
    "llama3_rope_scaling": dict(arch="llama", heads=4, kv_heads=1, rope_scaling="llama3",
                                max_pos=256),
    "llama_head_dim_sharded": dict(arch="llama", hidden=64, heads=4, kv_heads=2, head_dim=32,
                                   shards=3),
    "qwen2_bias": dict(arch="qwen2", heads=4, kv_heads=2, tokenizer="gpt2"),
    "mistral_spm": dict(arch="mistral", heads=8, kv_heads=2, hidden=128, tokenizer="spm",
                        layers=3),
    "gemma3_window_softcap": dict(arch="gemma3", heads=4, kv_heads=2, head_dim=32,
                                  sliding_window=12, final_softcap=30.0, attn_softcap=50.0,
                                  rope_scaling="linear", layers=3),
    "llama_bf16": dict(arch="llama", heads=4, kv_heads=2, dtype="bf16"),
    "gemma3_bf16": dict(arch="gemma3", heads=4, kv_heads=1, dtype="bf16", sliding_window=20),
    "qwen2_f16": dict(arch="qwen2", heads=4, kv_heads=2, dtype="f16"),
    "qwen3_qk_norm": dict(arch="qwen3", heads=4, kv_heads=2, head_dim=32, tokenizer="gpt2"),
    # Mistral 7B v0.1's layout: every layer windowed (10 here, shorter than the test's tokens).
    "mistral_v01_window": dict(arch="mistral", heads=4, kv_heads=2, sliding_window=10),
}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = make_test_model(tmp_path_factory.mktemp(name), seed=len(cache) + 1,
                                          **MODELS[name])
        return cache[name]

    return get


def engine_logits(model_dir, tokens, chunk=0, cache="fp16", tmp=None, bits=None):
    out = Path(tmp or model_dir) / f"logits_{chunk}_{cache}_{bits}.npy"
    cmd = [str(LOGITS_CLI), str(model_dir), "--tokens", ",".join(map(str, tokens)), "--out",
           str(out), "--cache", cache]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    if bits:
        cmd += ["--bits", str(bits)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"logits_cli failed: {r.stderr}"
    return np.load(out).astype(np.float64)


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def test_tokens(n, vocab, seed):
    return [int(t) for t in np.random.RandomState(seed).randint(0, vocab, size=n)]


test_tokens.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_match_float64_reference(model_dirs, name):
    d = model_dirs(name)
    ref = ReferenceModel(d)
    tokens = test_tokens(72, ref.w["model.embed_tokens.weight"].shape[0], 7)
    want = ref.logits(tokens)
    got = engine_logits(d, tokens)
    assert got.shape == want.shape
    # The logits must be informative for the comparison to mean anything.
    assert want.std() > 1.0
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < 1e-4, f"{name}: max relative error {rel:.2e}"
    lp_err = np.abs(log_softmax(got) - log_softmax(want)).max()
    assert lp_err < 1e-3, f"{name}: max log-softmax error {lp_err:.2e}"
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.95


@pytest.mark.parametrize("name", ["llama_gqa_tied_bias", "gemma3_window_softcap",
                                  "mistral_v01_window"])
def test_chunked_prefill_and_decode_match_one_shot(model_dirs, name, tmp_path):
    d = model_dirs(name)
    ref = ReferenceModel(d)
    tokens = test_tokens(48, ref.w["model.embed_tokens.weight"].shape[0], 11)
    want = log_softmax(ref.logits(tokens))
    whole = log_softmax(engine_logits(d, tokens, tmp=tmp_path))
    for chunk in (1, 5, 16):
        got = log_softmax(engine_logits(d, tokens, chunk=chunk, tmp=tmp_path))
        # Earlier chunks are read back from the fp16 cache: fp16 rounding, not more.
        assert np.abs(got - whole).max() < 5e-2, f"chunk {chunk} vs one shot"
        assert np.abs(got - want).max() < 5e-2, f"chunk {chunk} vs reference"
        assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.9


# Decoding 48 tokens one by one through a window of 12: the sliding layers forget old tokens
# (XQuant-CL splits its delta chain there), and with 16-bit X every format must still give the
# reference's logits.
@pytest.mark.parametrize("cache", ["xquant", "xquant-ch", "xquant-cl", "xquant-cl-ch",
                                   "xquant-cl-ch-normed"])
def test_sixteen_bit_x_formats_match_reference_past_the_window(model_dirs, cache, tmp_path):
    d = model_dirs("gemma3_window_softcap")
    ref = ReferenceModel(d)
    tokens = test_tokens(48, ref.w["model.embed_tokens.weight"].shape[0], 12)
    want = log_softmax(ref.logits(tokens))
    got = log_softmax(engine_logits(d, tokens, chunk=1, cache=cache, tmp=tmp_path, bits=16))
    assert np.abs(got - want).max() < 5e-2, cache
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.9


# XQuant-CL on GQA models (2 kv_dim < hidden) takes the paper's form: each layer caches its delta
# on the basis of [Wk | Wv] (2 kv_dim wide) and the accumulator stays in X space. That is lossless
# without quantization: at 16 bits, decoding token by token, the logits are the float64
# reference's (the Gemma model also splits the chain at its sliding layers).
@pytest.mark.parametrize("name", ["llama3_rope_scaling", "gemma3_bf16"])
@pytest.mark.parametrize("cache", ["xquant-cl", "xquant-cl-ch-normed"])
def test_xquant_cl_gqa_latent_sixteen_bits_matches_reference(model_dirs, name, cache, tmp_path):
    d = model_dirs(name)
    ref = ReferenceModel(d)
    cfg = json.loads((d / "config.json").read_text())
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    assert 2 * cfg["num_key_value_heads"] * head_dim < cfg["hidden_size"]  # the latent applies
    tokens = test_tokens(40, ref.w["model.embed_tokens.weight"].shape[0], 5)
    want = log_softmax(ref.logits(tokens))
    got = log_softmax(engine_logits(d, tokens, chunk=1, cache=cache, tmp=tmp_path, bits=16))
    assert np.abs(got - want).max() < 5e-2, name
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.9


def test_unknown_cache_format_fails_cleanly(model_dirs, tmp_path):
    d = model_dirs("llama_mha")
    r = subprocess.run([str(LOGITS_CLI), str(d), "--tokens", "1,2", "--cache", "nonsense",
                        "--out", str(tmp_path / "x.npy")], capture_output=True, text=True)
    assert r.returncode != 0
    assert "nonsense" in r.stderr


def test_default_size_model_decodes_fast(tmp_path):
    d = make_test_model(tmp_path / "m", layers=4, hidden=256, intermediate=512, heads=8,
                        kv_heads=4, seed=3)
    tokens = test_tokens(32, json.loads((d / "config.json").read_text())["vocab_size"], 5)
    r = subprocess.run([str(LOGITS_CLI), str(d), "--tokens", ",".join(map(str, tokens)),
                        "--chunk", "1", "--time"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seconds = float(r.stdout.split()[-1])
    assert seconds < 0.1, f"{seconds:.3f} s per decode step"
