"""Gemma 3 270M from its Q4_K_M GGUF end to end: the engine's logits (logits_cli on the .gguf)
against the float64 reference forward pass run on weights that only the `gguf` Python package
dequantized, under google/gemma-3-270m's published config.json.

Needs scripts/get-gemma3.sh to have run (or $XQ_GEMMA_GGUF) and logits_cli + gguf_dump_cli in
$XQ_BUILD_DIR/tests (default build/release); skips otherwise.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from reference_model import ReferenceModel  # noqa: E402

REPO = HERE.parents[1]
from locations import BUILD, gemma_path  # noqa: E402
LOGITS_CLI = BUILD / "tests" / "logits_cli"
DUMP_CLI = BUILD / "tests" / "gguf_dump_cli"


pytestmark = [
    pytest.mark.skipif(not gemma_path().exists(),
                       reason=f"{gemma_path()} is absent: run scripts/get-gemma3.sh"),
    pytest.mark.skipif(not (LOGITS_CLI.is_file() and DUMP_CLI.is_file()),
                       reason=f"logits_cli/gguf_dump_cli not built in {BUILD}"),
]

# google/gemma-3-270m config.json (the fields the reference reads).
HF_CONFIG = {
    "model_type": "gemma3_text", "hidden_size": 640, "intermediate_size": 2048,
    "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0, "rope_scaling": None, "sliding_window": 512,
    "query_pre_attn_scalar": 256, "final_logit_softcapping": None,
    "attn_logit_softcapping": None, "tie_word_embeddings": True, "vocab_size": 262144,
    "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                    for i in range(18)],
}

# llama.cpp tensor names -> Hugging Face names, written out independently of the engine's map.
LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def hf_name(name):
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    _, layer, base, _ = name.split(".")
    return f"model.layers.{layer}.{LAYER_NAMES[base]}.weight"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("gemma3_hf")
    reader = gguf.GGUFReader(str(gemma_path()))
    tensors = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if t.name.endswith("norm.weight"):
            # llama.cpp's converter stored Gemma's RMSNorm weights as 1 + w.
            w = w - np.float32(1)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    save_file(tensors, str(d / "model.safetensors"))
    del tensors
    (d / "config.json").write_text(json.dumps(HF_CONFIG))
    return ReferenceModel(d)


def encode(texts):
    p = subprocess.run([str(DUMP_CLI), str(gemma_path()), "encode"], input=json.dumps(texts),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def engine_logits(tokens, tmp_path, chunk=0):
    out = tmp_path / "logits.npy"
    p = subprocess.run([str(LOGITS_CLI), str(gemma_path()), "--tokens",
                        ",".join(map(str, tokens)), "--out", str(out),
                        *(["--chunk", str(chunk)] if chunk else [])],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return np.load(out).astype(np.float64)


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


PARAGRAPH = ("The river bends twice before it reaches the old mill, where the water slows and "
             "the children of the village come to swim in summer. In 1887 a flood carried the "
             "wheel away; it was rebuilt with oak from the northern forest. ")


# "in_chunks": prefilled 100 tokens at a time, so later chunks read the sliding layers' window
# back from a cache that has already dropped the tokens before it.
@pytest.mark.parametrize("kind", ["short", "past_the_sliding_window", "in_chunks"])
def test_gguf_logits_match_float64_reference(reference, tmp_path, kind):
    if kind == "short":
        text = "The capital of France is"
    else:
        text = "".join(f"Chapter {i}. " + PARAGRAPH for i in range(10))
    tokens = encode([text])[0]
    assert tokens[0] == 2  # <bos>
    if kind != "short":
        assert len(tokens) > HF_CONFIG["sliding_window"] + 16, len(tokens)
    want = reference.logits(tokens)
    got = engine_logits(tokens, tmp_path, chunk=100 if kind == "in_chunks" else 0)
    assert got.shape == want.shape == (len(tokens), 262144)
    assert want.std() > 1.0
    rel = np.abs(got - want).max() / np.abs(want).max()
    lp_err = np.abs(log_softmax(got) - log_softmax(want)).max()
    agree = (got.argmax(-1) == want.argmax(-1)).mean()
    print(f"{kind}: {len(tokens)} tokens, max rel {rel:.2e}, log-softmax {lp_err:.2e}, "
          f"argmax agreement {agree:.3f}")
    # In chunks, earlier tokens come back from the fp16 K/V cache: fp16 rounding (measured the
    # same, 7e-4 / 3e-2, on a 500-token prefix that drops nothing), not more.
    fp16_read = kind == "in_chunks"
    assert rel < (2e-3 if fp16_read else 1e-4), f"max relative error {rel:.2e}"
    assert lp_err < (6e-2 if fp16_read else 5e-3), f"max log-softmax error {lp_err:.2e}"
    assert agree > 0.97


def test_gemma_knows_paris(tmp_path):
    prompt, paris = encode(["The capital of France is", " Paris"])
    assert len(paris) == 2  # <bos> "▁Paris"
    logits = engine_logits(prompt, tmp_path)[-1]
    # A 270M base model puts " Paris" among its first guesses (next to " the", " a").
    assert paris[1] in np.argsort(-logits)[:5]
