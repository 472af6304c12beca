"""Writes a small deterministic Hugging Face-layout model with random weights, for tests.

The directory holds config.json, generation_config.json, model.safetensors (or shards with
model.safetensors.index.json) and a tokenizer from make_test_tokenizer. Weight scales are chosen
so that attention is neither uniform nor one-hot and the logits spread over a few units.

Usage: make_test_model.py OUT [--arch llama|qwen2|qwen3|mistral|gemma3] [--layers 2] [--hidden 64]
       [--intermediate 128] [--heads 4] [--kv-heads 2] [--head-dim N] [--tie] [--bias]
       [--rope-scaling none|llama3|linear] [--dtype f32|bf16|f16] [--tokenizer bpe|spm|gpt2]
       [--vocab 512] [--seed S] [--max-pos 2048] [--shards N] [--sliding-window 16]
       [--final-softcap 30] [--attn-softcap 0]
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
try:
    from safetensors.torch import save_file
except ImportError:  # a GPU machine's Python may have torch without safetensors

    def save_file(tensors, path, metadata=None):
        """The safetensors format by hand: an 8-byte header size, a JSON header, the data."""
        names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
        header, blobs, at = {}, [], 0
        for name, t in tensors.items():
            b = t.contiguous().view(torch.uint8).numpy().tobytes()
            header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                            "data_offsets": [at, at + len(b)]}
            blobs.append(b)
            at += len(b)
        if metadata:
            header["__metadata__"] = metadata
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(path, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for b in blobs:
                f.write(b)

sys.path.insert(0, str(Path(__file__).resolve().parent))

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
HF_DTYPE_NAMES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def _config(a, vocab: int, bos: int, eos: int) -> dict:
    head_dim = a.head_dim or a.hidden // a.heads
    c = {
        "architectures": [],
        "model_type": {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "mistral": "mistral",
                       "gemma3": "gemma3_text"}[a.arch],
        "vocab_size": vocab,
        "hidden_size": a.hidden,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": a.max_pos,
        "rms_norm_eps": 1e-6 if a.arch == "gemma3" else 1e-5,
        "tie_word_embeddings": bool(a.tie or a.arch == "gemma3"),
        "torch_dtype": HF_DTYPE_NAMES[a.dtype],
        "bos_token_id": bos,
        "eos_token_id": eos,
    }
    if a.rope_scaling == "llama3":
        c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0,
                             "original_max_position_embeddings": max(8, a.max_pos // 8)}
    elif a.rope_scaling == "linear":
        c["rope_scaling"] = {"rope_type": "linear", "factor": 8.0}
    else:
        c["rope_scaling"] = None
    if a.arch == "gemma3":
        c["architectures"] = ["Gemma3ForCausalLM"]
        c.update({
            "hidden_activation": "gelu_pytorch_tanh",
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            # Not head_dim, as in the larger Gemma 3 models, so that the scale is exercised.
            "query_pre_attn_scalar": head_dim * 3 // 2,
            "sliding_window": a.sliding_window or 16,
            # Every other layer global, so both kinds appear even in a 2-layer model.
            "layer_types": ["full_attention" if (i + 1) % 2 == 0 else "sliding_attention"
                            for i in range(a.layers)],
            "final_logit_softcapping": a.final_softcap or None,
            "attn_logit_softcapping": a.attn_softcap or None,
            "attention_bias": False,
        })
    else:
        c["architectures"] = [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                               "qwen3": "Qwen3ForCausalLM",
                               "mistral": "MistralForCausalLM"}[a.arch]]
        c["hidden_act"] = "silu"
        c["rope_theta"] = 500000.0 if a.rope_scaling == "llama3" else 10000.0
        if a.arch == "llama":
            c["attention_bias"] = bool(a.bias)
            c["mlp_bias"] = False
        if a.arch == "mistral":  # v0.1 windowed every layer; later versions write null
            c["sliding_window"] = a.sliding_window or None
        if a.arch in ("qwen2", "qwen3"):
            c["use_sliding_window"] = False
            c["sliding_window"] = a.max_pos
        if a.arch == "qwen3":
            c["attention_bias"] = False  # Qwen3 has no q/k/v biases; it norms q and k instead
    return c


def _weights(a, c: dict) -> dict:
    rng = np.random.RandomState(a.seed)
    H, I, V = a.hidden, a.intermediate, c["vocab_size"]
    D = c["head_dim"]
    Q, KV = a.heads * D, a.kv_heads * D
    gemma = a.arch == "gemma3"
    # Qwen2 always has q/k/v biases; Llama with attention_bias also biases o_proj.
    qkv_bias = a.arch == "qwen2" or (a.bias and a.arch == "llama")
    o_bias = a.bias and a.arch == "llama"
    norm_mean = 0.0 if gemma else 1.0  # Gemma multiplies by (1 + w)

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    w = {}
    embed = normal((V, H), 3.0 / math.sqrt(H))
    embed[:, rng.choice(H, size=min(3, H), replace=False)] *= 6.0  # a few outlier channels
    w["model.embed_tokens.weight"] = embed
    for layer in range(a.layers):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = normal((H,), 0.1, norm_mean)
        w[p + "self_attn.q_proj.weight"] = normal((Q, H), 1.5 / math.sqrt(H))
        w[p + "self_attn.k_proj.weight"] = normal((KV, H), 1.5 / math.sqrt(H))
        w[p + "self_attn.v_proj.weight"] = normal((KV, H), 1.0 / math.sqrt(H))
        w[p + "self_attn.o_proj.weight"] = normal((H, Q), 0.7 / math.sqrt(Q))
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = normal((Q,), 0.1)
            w[p + "self_attn.k_proj.bias"] = normal((KV,), 0.1)
            w[p + "self_attn.v_proj.bias"] = normal((KV,), 0.1)
        if o_bias:
            w[p + "self_attn.o_proj.bias"] = normal((H,), 0.1)
        w[p + "mlp.gate_proj.weight"] = normal((I, H), 1.0 / math.sqrt(H))
        w[p + "mlp.up_proj.weight"] = normal((I, H), 1.0 / math.sqrt(H))
        w[p + "mlp.down_proj.weight"] = normal((H, I), 0.7 / math.sqrt(I))
        if gemma or a.arch == "qwen3":  # per-head RMSNorm of q and k before RoPE
            w[p + "self_attn.q_norm.weight"] = normal((D,), 0.1, norm_mean)
            w[p + "self_attn.k_norm.weight"] = normal((D,), 0.1, norm_mean)
        if gemma:
            w[p + "post_attention_layernorm.weight"] = normal((H,), 0.1)
            w[p + "pre_feedforward_layernorm.weight"] = normal((H,), 0.1)
            w[p + "post_feedforward_layernorm.weight"] = normal((H,), 0.1)
        else:
            w[p + "post_attention_layernorm.weight"] = normal((H,), 0.1, 1.0)
    w["model.norm.weight"] = normal((H,), 0.1, norm_mean)
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = normal((V, H), 3.0 / math.sqrt(H))
    return {k: torch.from_numpy(v).to(DTYPES[a.dtype]).contiguous() for k, v in w.items()}


def _save(out: Path, tensors: dict, shards: int) -> None:
    meta = {"format": "pt"}
    if shards <= 1:
        save_file(tensors, str(out / "model.safetensors"), metadata=meta)
        return
    names = list(tensors)
    weight_map, total = {}, 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(out / fname), metadata=meta)
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _special_ids(out: Path) -> tuple:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    tc = json.loads((out / "tokenizer_config.json").read_text())

    def tid(key):
        v = tc.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return tok.token_to_id(v) if v else None

    return tid("bos_token"), tid("eos_token")


def make_test_model(out, arch="llama", layers=2, hidden=64, intermediate=128, heads=4,
                    kv_heads=2, head_dim=None, tie=False, bias=False, rope_scaling="none",
                    dtype="f32", tokenizer="bpe", vocab=512, seed=0, max_pos=2048, shards=1,
                    sliding_window=None, final_softcap=30.0, attn_softcap=0.0,
                    padded_vocab=None, tokenizer_from=None) -> Path:
    """Writes the model into `out` and returns its path. `padded_vocab`: the model's vocab_size
    when larger than the tokenizer's (real checkpoints pad it: Qwen2.5's is 151936 for 151665
    tokens), which also makes a sampling-sized vocabulary without training a tokenizer for it.
    `tokenizer_from`: a test model whose tokenizer files to copy instead of training one (where
    the `tokenizers` package is missing, as on a GPU machine)."""
    a = argparse.Namespace(**{k: v for k, v in locals().items() if k != "out"})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_from:
        src = Path(tokenizer_from)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (out / name).write_bytes((src / name).read_bytes())
        src_cfg = json.loads((src / "config.json").read_text())
        vocab_size, bos, eos = (src_cfg[k] for k in ("vocab_size", "bos_token_id", "eos_token_id"))
    else:
        from make_test_tokenizer import write_tokenizer

        vocab_size = write_tokenizer(out, tokenizer, vocab, seed)
        bos, eos = _special_ids(out)
    cfg = _config(a, max(vocab_size, padded_vocab or 0), bos, eos)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    gen = {"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2))
    _save(out, _weights(a, cfg), shards)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--arch", choices=["llama", "qwen2", "qwen3", "mistral", "gemma3"],
                    default="llama")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--tie", action="store_true")
    ap.add_argument("--bias", action="store_true")
    ap.add_argument("--rope-scaling", choices=["none", "llama3", "linear"], default="none")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--tokenizer", choices=["bpe", "spm", "gpt2"], default="bpe")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--padded-vocab", type=int, default=None,
                    help="the model's vocab_size, when larger than the tokenizer's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pos", type=int, default=2048)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--sliding-window", type=int, default=None,
                    help="gemma3: default 16; mistral: a window on every layer (v0.1)")
    ap.add_argument("--final-softcap", type=float, default=30.0)
    ap.add_argument("--attn-softcap", type=float, default=0.0)
    ap.add_argument("--tokenizer-from", default=None,
                    help="copy this test model's tokenizer instead of training one")
    a = ap.parse_args()
    kw = {k: v for k, v in vars(a).items() if k != "out"}
    out = make_test_model(a.out, **kw)
    print(f"wrote {a.arch} test model to {out}")


if __name__ == "__main__":
    main()
