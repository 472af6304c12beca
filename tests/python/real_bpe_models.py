"""The real byte-level BPE models the tests run when they are fetched (scripts/get-smollm2.sh,
scripts/get-qwen25-coder.sh), and references built from their GGUF files without the engine:
an HF `tokenizers` Tokenizer from tokenizer.ggml.* with the pre-tokenizer each model's own
tokenizer.json declares, and a float64 reference model from the tensors that the `gguf` package
dequantizes."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gguf
import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from locations import qwen_coder_path, smollm2_path

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
               r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _smollm2_pre():
    # HuggingFaceTB/SmolLM2-135M-Instruct tokenizer.json: single digits, then GPT-2's ByteLevel.
    return None, pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


def _qwen2_pre():
    # Qwen/Qwen2.5-Coder-0.5B-Instruct tokenizer.json: NFC, Qwen2's split, ByteLevel.
    return normalizers.NFC(), pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


@dataclass
class RealModel:
    name: str
    path: Path
    pre: str                     # tokenizer.ggml.pre the file must carry
    hf_pre: Callable             # -> (normalizer or None, pre-tokenizer), from tokenizer.json
    hf_config: dict              # the model's published config.json (the fields used)
    permuted_qk: bool            # llama.cpp's converter interleaved q/k rows (arch llama)
    script: str                  # what fetches it

    def skip_reason(self) -> str:
        return f"{self.path} is absent: run {self.script}"


SMOLLM2 = RealModel(
    "smollm2-135m", smollm2_path(), "smollm", _smollm2_pre,
    {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
     "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
     "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "rope_scaling": None,
     "tie_word_embeddings": True, "vocab_size": 49152},
    True, "scripts/get-smollm2.sh")

QWEN_CODER = RealModel(
    "qwen2.5-coder-0.5b", qwen_coder_path(), "qwen2", _qwen2_pre,
    {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
     "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
     "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
     "tie_word_embeddings": False, "vocab_size": 151936, "use_sliding_window": False},
    False, "scripts/get-qwen25-coder.sh")

ALL = [SMOLLM2, QWEN_CODER]

CONTROL, USER_DEFINED = 3, 4


def _strings(field_):
    return [bytes(field_.parts[i]).decode("utf-8") for i in field_.data]


def _ints(field_):
    return [int(field_.parts[i][0]) for i in field_.data]


def gguf_fields(path: Path) -> dict:
    return gguf.GGUFReader(str(path)).fields


_TOKENIZERS = {}


def hf_tokenizer(m: RealModel) -> Tokenizer:
    """tokenizers.Tokenizer from the GGUF vocabulary, merges and token types (built once)."""
    if m.name not in _TOKENIZERS:
        _TOKENIZERS[m.name] = _build_hf_tokenizer(m)
    return _TOKENIZERS[m.name]


def _build_hf_tokenizer(m: RealModel) -> Tokenizer:
    f = gguf_fields(m.path)
    assert f["tokenizer.ggml.pre"].contents() == m.pre
    tokens = _strings(f["tokenizer.ggml.tokens"])
    types = _ints(f["tokenizer.ggml.token_type"])
    merges = [tuple(s.split(" ", 1)) for s in _strings(f["tokenizer.ggml.merges"])]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    norm, pre = m.hf_pre()
    if norm is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t, ty in zip(tokens, types) if ty == CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False)
                    for t, ty in zip(tokens, types) if ty == USER_DEFINED])
    return tok


def _unpermute(w, n_head):
    """Undoes the row interleaving llama.cpp's converter applies to llama q/k weights."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def _hf_name(name):
    fixed = {"token_embd.weight": "model.embed_tokens.weight",
             "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    _, layer, base, kind = name.split(".")
    return f"model.layers.{layer}.{LAYER_NAMES[base]}.{kind}"


def write_hf_checkpoint(m: RealModel, out: Path) -> Path:
    """A Hugging Face directory (float32 safetensors + config.json) of the GGUF's tensors as the
    `gguf` package dequantizes them, q/k rows put back in HF order."""
    out.mkdir(parents=True, exist_ok=True)
    c = m.hf_config
    tensors = {}
    for t in gguf.GGUFReader(str(m.path)).tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        name = _hf_name(t.name)
        if m.permuted_qk and ".q_proj." in name:
            w = _unpermute(w, c["num_attention_heads"])
        elif m.permuted_qk and ".k_proj." in name:
            w = _unpermute(w, c["num_key_value_heads"])
        tensors[name] = np.ascontiguousarray(w)
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(c))
    return out
