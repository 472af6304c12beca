"""Converts a small Hugging Face Llama or Qwen3 directory (make_test_model's layout, byte-level
BPE tokenizer.json) into a GGUF file laid out as llama.cpp's converter writes those models, with
the `gguf` package: {arch}.* hyper-parameters, blk.N.* tensors (Llama's Q/K rows interleaved per
head; Qwen3's left as they are, with their q/k norms), and the tokenizer as tokenizer.ggml.*
arrays. Tests use it to check that the engine reads
such a file exactly like the directory it came from.
"""

import json
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from make_test_tokenizer import LLAMA3_REGEX, QWEN2_REGEX

# tokenizer.ggml.pre names of the pre-tokenizer regexes (what llama.cpp calls them).
PRE_BY_REGEX = {LLAMA3_REGEX: "llama-bpe", QWEN2_REGEX: "qwen2"}

HF_TO_GGUF_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def permute_like_llama_cpp(w, n_head):
    """What convert_hf_to_gguf.py does to llama q/k rows (interleaves each head's halves)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_name(hf_name: str) -> str:
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
             "output_norm.weight", "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    parts = hf_name.split(".")
    if parts[:2] != ["model", "layers"]:
        raise ValueError(f"no GGUF name for {hf_name}")
    stem, kind = ".".join(parts[3:-1]), parts[-1]
    return f"blk.{parts[2]}.{HF_TO_GGUF_LAYER[stem]}.{kind}"


def stored_values(arr: np.ndarray, qtype: QT) -> np.ndarray:
    """The float32 values a tensor has after being stored as qtype (what a reader gets back)."""
    if qtype == QT.F32:
        return arr.astype(np.float32)
    if qtype == QT.F16:
        return arr.astype(np.float16).astype(np.float32)
    return gguf.quants.dequantize(gguf.quants.quantize(arr.astype(np.float32), qtype), qtype)


def _pre_tokenizer_name(tj: dict) -> str:
    pre = tj["pre_tokenizer"]
    if pre["type"] == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if pre["type"] == "Sequence":
        splits = [p for p in pre["pretokenizers"] if p["type"] == "Split"]
        if len(splits) == 1 and splits[0]["pattern"].get("Regex") in PRE_BY_REGEX:
            return PRE_BY_REGEX[splits[0]["pattern"]["Regex"]]
    raise ValueError(f"no tokenizer.ggml.pre for pre-tokenizer {json.dumps(pre)[:200]}")


def _add_tokenizer(w: gguf.GGUFWriter, model_dir: Path, vocab_size: int) -> None:
    tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tc = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    if tj["model"]["type"] != "BPE":
        raise ValueError("only byte-level BPE tokenizers are converted")
    tokens = [None] * vocab_size
    types = [gguf.TokenType.NORMAL] * vocab_size
    for piece, i in tj["model"]["vocab"].items():
        tokens[i] = piece
    for a in tj["added_tokens"]:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:  # embedding rows past the tokenizer, as llama.cpp pads them
            tokens[i], types[i] = f"[PAD{i}]", gguf.TokenType.UNUSED
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_tokenizer_name(tj))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m)
                        for m in tj["model"]["merges"]])
    hf = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def token_id(key):
        v = tc.get(key)
        v = v.get("content") if isinstance(v, dict) else v
        return hf.token_to_id(v) if v else None

    bos, eos = token_id("bos_token"), token_id("eos_token")
    if bos is not None:
        w.add_bos_token_id(bos)
    if eos is not None:
        w.add_eos_token_id(eos)
    # Whether the tokenizer puts BOS in front on its own (its post-processor, or the config's
    # add_bos_token), as the converter records it.
    plain = hf.encode("a", add_special_tokens=False).ids
    with_special = hf.encode("a", add_special_tokens=True).ids
    prepends_bos = len(with_special) > len(plain) and with_special[0] == bos
    w.add_add_bos_token(bool(tc.get("add_bos_token", prepends_bos)))
    if tc.get("chat_template"):
        w.add_chat_template(tc["chat_template"])


def convert(model_dir, out, qtypes=None, default_2d=QT.F32) -> dict:
    """Writes the GGUF of model_dir to `out`. Matrices are stored as default_2d (F32 or F16)
    unless qtypes maps their HF name to another type; 1-D tensors stay F32, as llama.cpp keeps
    them. Returns {hf name: float32 values as stored}, in HF layout (for a reference model)."""
    model_dir, qtypes = Path(model_dir), dict(qtypes or {})
    cfg = json.loads((model_dir / "config.json").read_text())
    arch = cfg["model_type"]
    if arch not in ("llama", "qwen3"):
        raise ValueError(f"{model_dir}: model_type {arch} is neither llama nor qwen3")
    weights = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(str(f)))
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    embd = weights["model.embed_tokens.weight"]

    w = gguf.GGUFWriter(str(out), arch=arch)
    w.add_name(model_dir.name)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if default_2d == QT.F32 and not qtypes
                    else gguf.LlamaFileType.MOSTLY_F16)
    w.add_vocab_size(embd.shape[0])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    if head_dim != cfg["hidden_size"] // heads:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    if cfg.get("rope_scaling"):
        raise ValueError("rope_scaling is not converted by this helper")
    _add_tokenizer(w, model_dir, embd.shape[0])

    stored = {}
    for name, arr in weights.items():
        arr = arr.astype(np.float32)
        qtype = qtypes.pop(name, QT.F32 if arr.ndim == 1 else default_2d)
        stored[name] = stored_values(arr, qtype)
        if arch == "llama" and name.endswith("q_proj.weight"):
            arr = permute_like_llama_cpp(arr, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            arr = permute_like_llama_cpp(arr, kv_heads)
        if qtype in (QT.F32, QT.F16):
            w.add_tensor(gguf_name(name), arr.astype(np.float16 if qtype == QT.F16 else np.float32))
        else:
            w.add_tensor(gguf_name(name), gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
    if qtypes:
        raise ValueError(f"no such tensors: {sorted(qtypes)}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored
