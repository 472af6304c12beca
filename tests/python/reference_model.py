"""An independent float64 numpy forward pass of Llama/Mistral/Qwen2 and Gemma 3 text models,
written from the Hugging Face modeling definitions, to check the engine's logits against.

    logits = ReferenceModel(model_dir).logits(token_ids)   # [n, vocab] float64
"""

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file


def _load_tensors(model_dir: Path, dtype) -> dict:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors in {model_dir}")
    out = {}
    for f in files:
        # The stored (possibly bf16/f16-rounded) values, widened exactly to float64 (or to
        # float32, which holds them exactly too and halves the memory of a large model; every
        # product is still taken in float64, as the activations are float64).
        out.update({k: v.to(dtype).numpy() for k, v in load_file(str(f)).items()})
    return out


def _rms_norm(x, w, eps, one_plus):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * ((1.0 + w) if one_plus else w)


def _inv_freq(dim, base, scaling):
    inv = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "linear":
        inv = inv / scaling["factor"]
    elif kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wl) & (wavelen <= low_wl)
        inv = np.where(medium, smoothed, scaled)
    return inv


def _rope(x, pos, inv):
    # x: [n, heads, d]; HF rotate_half: (x1, x2) -> (-x2, x1) with halves of the head.
    ang = pos[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :]
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _llama_family_windows(c):
    """transformers' rules: Mistral windows every layer when sliding_window is set; Qwen2/3 the
    layers from max_window_layers on, only with use_sliding_window; listed layer_types win."""
    n = c["num_hidden_layers"]
    qwen = c["model_type"] in ("qwen2", "qwen3")
    window = c.get("sliding_window") if (c.get("use_sliding_window") if qwen else
                                         c["model_type"] == "mistral") else None
    if not window:
        return [False] * n
    if "layer_types" in c:
        return [t == "sliding_attention" for t in c["layer_types"]]
    first = c.get("max_window_layers", n) if qwen else 0
    return [i >= first for i in range(n)]


class ReferenceModel:
    def __init__(self, model_dir, weights_dtype=torch.float64):
        self.dir = Path(model_dir)
        self.cfg = json.loads((self.dir / "config.json").read_text())
        self.w = _load_tensors(self.dir, weights_dtype)
        c = self.cfg
        self.gemma = c["model_type"] in ("gemma3_text", "gemma3")
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads", self.heads)
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        if self.gemma:
            layer_types = c["layer_types"]
            self.sliding = [t == "sliding_attention" for t in layer_types]
            self.scale = c["query_pre_attn_scalar"] ** -0.5
        else:
            self.sliding = _llama_family_windows(c)
            self.scale = self.head_dim ** -0.5

    def _attention(self, layer, x, pos):
        p = f"model.layers.{layer}.self_attn."
        w, n, d = self.w, x.shape[0], self.head_dim

        def proj(name):
            y = x @ w[p + name + ".weight"].T
            b = w.get(p + name + ".bias")
            return y if b is None else y + b

        q = proj("q_proj").reshape(n, self.heads, d)
        k = proj("k_proj").reshape(n, self.kv_heads, d)
        v = proj("v_proj").reshape(n, self.kv_heads, d)
        if p + "q_norm.weight" in w:
            q = _rms_norm(q, w[p + "q_norm.weight"], self.eps, self.gemma)
            k = _rms_norm(k, w[p + "k_norm.weight"], self.eps, self.gemma)
        c = self.cfg
        if self.gemma and self.sliding[layer]:
            inv = _inv_freq(d, c.get("rope_local_base_freq", 10000.0), None)
        else:
            inv = _inv_freq(d, c.get("rope_theta", 10000.0), c.get("rope_scaling"))
        q, k = _rope(q, pos, inv), _rope(k, pos, inv)
        group = self.heads // self.kv_heads
        k = np.repeat(k, group, axis=1)
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) * self.scale
        cap = c.get("attn_logit_softcapping") if self.gemma else None
        if cap:
            scores = cap * np.tanh(scores / cap)
        i, j = np.arange(n)[:, None], np.arange(n)[None, :]
        allowed = j <= i
        if self.sliding[layer]:
            allowed &= j > i - c["sliding_window"]
        scores = np.where(allowed[None], scores, -np.inf)
        scores = scores - scores.max(axis=-1, keepdims=True)
        prob = np.exp(scores)
        prob /= prob.sum(axis=-1, keepdims=True)
        out = np.einsum("hqk,khd->qhd", prob, v).reshape(n, self.heads * d)
        y = out @ w[p + "o_proj.weight"].T
        b = w.get(p + "o_proj.bias")
        return y if b is None else y + b

    def _mlp(self, layer, x):
        p = f"model.layers.{layer}.mlp."
        g = x @ self.w[p + "gate_proj.weight"].T
        u = x @ self.w[p + "up_proj.weight"].T
        act = _gelu_tanh(g) if self.gemma else _silu(g)
        return (act * u) @ self.w[p + "down_proj.weight"].T

    def logits(self, tokens):
        w, c, eps, gm = self.w, self.cfg, self.eps, self.gemma
        tokens = np.asarray(tokens, dtype=np.int64)
        pos = np.arange(len(tokens), dtype=np.float64)
        h = w["model.embed_tokens.weight"][tokens].astype(np.float64)
        if gm:
            h = h * math.sqrt(c["hidden_size"])
        for layer in range(c["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            a = self._attention(layer, _rms_norm(h, w[p + "input_layernorm.weight"], eps, gm),
                                pos)
            if gm:
                a = _rms_norm(a, w[p + "post_attention_layernorm.weight"], eps, True)
            h = h + a
            norm = "pre_feedforward_layernorm" if gm else "post_attention_layernorm"
            m = self._mlp(layer, _rms_norm(h, w[p + norm + ".weight"], eps, gm))
            if gm:
                m = _rms_norm(m, w[p + "post_feedforward_layernorm.weight"], eps, True)
            h = h + m
        h = _rms_norm(h, w["model.norm.weight"], eps, gm)
        head = w.get("lm_head.weight")
        if head is None or c.get("tie_word_embeddings", False):
            head = w["model.embed_tokens.weight"]
        logits = h @ head.T
        cap = c.get("final_logit_softcapping") if gm else None
        if cap:
            logits = cap * np.tanh(logits / cap)
        return logits
