"""SmolLM2-135M-Instruct (llama, tied embeddings, Q4_1/Q8_0) and Qwen2.5-Coder-0.5B-Instruct
(qwen2, q/k/v biases, padded vocabulary; Q5_0/Q8_0/Q4_K/Q6_K) from their GGUF files: the
engine's logits (logits_cli) against the float64 reference forward pass run on the tensors that
only the `gguf` package dequantized, under each model's published config.json. Short prompts,
to keep CI fast.

Needs the models (scripts/get-smollm2.sh, scripts/get-qwen25-coder.sh) and logits_cli +
gguf_dump_cli in $XQ_BUILD_DIR/tests; skips otherwise.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locations import BUILD  # noqa: E402
from real_bpe_models import ALL, write_hf_checkpoint  # noqa: E402
from reference_model import ReferenceModel  # noqa: E402

LOGITS_CLI = BUILD / "tests" / "logits_cli"
DUMP_CLI = BUILD / "tests" / "gguf_dump_cli"
pytestmark = pytest.mark.skipif(not (LOGITS_CLI.is_file() and DUMP_CLI.is_file()),
                                reason=f"logits_cli/gguf_dump_cli not built in {BUILD}")

PROMPTS = ["The capital of France is",
           "<|im_start|>user\ndef fib(n):\n    # 1, 1, 2, 3, 5<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="module", params=ALL, ids=lambda m: m.name)
def model(request, tmp_path_factory):
    m = request.param
    if not m.path.is_file():
        pytest.skip(m.skip_reason())
    # float32 weights (exact for these values) keep Qwen's reference near 2 GB.
    ref = ReferenceModel(write_hf_checkpoint(m, tmp_path_factory.mktemp(m.name)),
                         weights_dtype=torch.float32)
    return m, ref


def encode(m, texts):
    p = subprocess.run([str(DUMP_CLI), str(m.path), "encode"], input=json.dumps(texts),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def engine_logits(m, tokens, tmp_path):
    out = tmp_path / "logits.npy"
    p = subprocess.run([str(LOGITS_CLI), str(m.path), "--tokens", ",".join(map(str, tokens)),
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return np.load(out).astype(np.float64)


def log_softmax(x):
    mx = x.max(axis=-1, keepdims=True)
    return x - mx - np.log(np.exp(x - mx).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("prompt", PROMPTS, ids=["plain", "chat"])
def test_gguf_logits_match_float64_reference(model, prompt, tmp_path):
    m, ref = model
    tokens = encode(m, [prompt])[0]
    want = ref.logits(tokens)
    got = engine_logits(m, tokens, tmp_path)
    assert got.shape == want.shape == (len(tokens), m.hf_config["vocab_size"])
    assert want.std() > 1.0
    rel = np.abs(got - want).max() / np.abs(want).max()
    lp_err = np.abs(log_softmax(got) - log_softmax(want)).max()
    agree = (got.argmax(-1) == want.argmax(-1)).mean()
    print(f"{m.name}: {len(tokens)} tokens, max rel {rel:.2e}, log-softmax {lp_err:.2e}, "
          f"argmax agreement {agree:.3f}")
    assert rel < 1e-4, f"max relative error {rel:.2e}"
    assert lp_err < 5e-3, f"max log-softmax error {lp_err:.2e}"
    assert agree == 1.0


def test_knows_paris(model, tmp_path):
    m, _ = model
    prompt, paris = encode(m, ["The capital of France is", " Paris"])
    assert len(paris) == 1
    logits = engine_logits(m, prompt, tmp_path)[-1]
    assert paris[0] in np.argsort(-logits)[:3]
