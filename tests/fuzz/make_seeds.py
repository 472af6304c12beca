"""Writes the seed model files of the gguf and safetensors fuzz targets into tests/fuzz/corpus:
tiny but complete checkpoints (each architecture and tokenizer kind the loader knows, every
metadata value type, every tensor type) that the fuzzer then truncates, corrupts and recombines.
The files are committed; rerun this only to change them.

Usage: .venv/bin/python tests/fuzz/make_seeds.py
"""

import json
import struct
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT

CORPUS = Path(__file__).resolve().parent / "corpus"
RNG = np.random.default_rng(11)
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def spm_vocab(n_bytes=8):
    pieces = ["<unk>", "<s>", "</s>"] + BYTES[:n_bytes] + ["▁", "h", "e", "l", "o", "▁h", "he",
                                                            "ll", "llo", "<start_of_turn>"]
    types = [2, 3, 3] + [6] * n_bytes + [1] * 9 + [3]
    scores = [-float(i) for i in range(len(pieces))]
    return pieces, types, scores


def gpt2_vocab():
    pieces = [chr(c) for c in range(33, 127)] + ["Ġ", "Ġt", "he", "Ġthe", "<|endoftext|>"]
    merges = ["Ġ t", "h e", "Ġt he"]
    types = [1] * (len(pieces) - 1) + [3]
    return pieces, types, merges


def hyper(w, vocab, hidden=32, layers=1):
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_bos_token_id(1 if vocab > 2 else 0)
    w.add_eos_token_id(2 if vocab > 2 else 0)


def quantized(qtype, rows, cols):
    """Random block bytes (the python package quantizes only the simple types)."""
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    return RNG.integers(0, 256, size=(rows, cols // block * nbytes), dtype=np.uint8)


def write_gguf(name, arch, tok, tensors, extra=None):
    path = CORPUS / "gguf" / name
    w = gguf.GGUFWriter(str(path), arch=arch)
    pieces = tok["pieces"]
    hyper(w, len(pieces))
    w.add_tokenizer_model(tok["model"])
    if "pre" in tok:
        w.add_tokenizer_pre(tok["pre"])
    w.add_token_list(pieces)
    w.add_token_types(tok["types"])
    if "scores" in tok:
        w.add_token_scores(tok["scores"])
    if "merges" in tok:
        w.add_token_merges(tok["merges"])
    w.add_chat_template("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    for k, v in (extra or {}).items():
        v(w, k)
    w.add_tensor("token_embd.weight", RNG.standard_normal((len(pieces), 32)).astype(np.float16))
    for tname, arr in tensors.items():
        if isinstance(arr, tuple):
            w.add_tensor(tname, arr[0], raw_dtype=arr[1])
        else:
            w.add_tensor(tname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_seeds():
    (CORPUS / "gguf").mkdir(parents=True, exist_ok=True)
    pieces, types, scores = spm_vocab()
    spm = {"model": "llama", "pieces": pieces, "types": types, "scores": scores}
    write_gguf("llama_spm.gguf", "llama", spm, {
        "blk.0.attn_q.weight": (quantized(QT.Q8_0, 32, 32), QT.Q8_0),
        "blk.0.attn_norm.weight": np.ones(32, dtype=np.float32),
        "output_norm.weight": np.ones(32, dtype=np.float32),
    })
    write_gguf("gemma3_spm.gguf", "gemma3", dict(spm), {
        "blk.0.post_ffw_norm.weight": np.zeros(32, dtype=np.float32),
        "blk.0.ffn_down.weight": (quantized(QT.Q4_K, 1, 256), QT.Q4_K),
    }, {"gemma3.attention.sliding_window": lambda w, k: w.add_uint32(k, 16)})
    pieces, types, merges = gpt2_vocab()
    bpe = {"model": "gpt2", "pre": "qwen2", "pieces": pieces, "types": types, "merges": merges}
    write_gguf("qwen2_bpe.gguf", "qwen2", bpe, {
        "blk.0.attn_q.bias": np.zeros(32, dtype=np.float32),
        "blk.0.ffn_up.weight": (quantized(QT.Q6_K, 1, 256), QT.Q6_K),
    })
    bpe3 = dict(bpe, pre="llama-bpe")
    write_gguf("llama3_bpe.gguf", "llama", bpe3, {
        "blk.0.ffn_gate.weight": (quantized(QT.Q5_0, 1, 32), QT.Q5_0),
    }, {"test.nested": lambda w, k: w.add_array(k, [[1, 2], [3]]),
        "test.f64": lambda w, k: w.add_float64(k, 0.5),
        "test.i64": lambda w, k: w.add_int64(k, -5),
        "test.u64": lambda w, k: w.add_uint64(k, 2**63 + 1),
        "test.bool": lambda w, k: w.add_bool(k, True),
        "test.i8": lambda w, k: w.add_int8(k, -1),
        "test.i16": lambda w, k: w.add_int16(k, -2),
        "llama.rope.scaling.type": lambda w, k: w.add_string(k, "linear"),
        "llama.rope.scaling.factor": lambda w, k: w.add_float32(k, 2.0)})


def write_safetensors(name, tensors, metadata=None, header_patch=None):
    header, blobs, offset = {}, [], 0
    for tname, (dtype, shape, raw) in tensors.items():
        header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    if header_patch:
        header_patch(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (CORPUS / "safetensors" / name).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def safetensors_seeds():
    (CORPUS / "safetensors").mkdir(parents=True, exist_ok=True)
    f32 = RNG.standard_normal((2, 3)).astype(np.float32).tobytes()
    f16 = RNG.standard_normal((4,)).astype(np.float16).tobytes()
    bf16 = (RNG.standard_normal((2, 2)).astype(np.float32).view(np.uint32) >> 16).astype(
        np.uint16).tobytes()
    write_safetensors("dense.safetensors", {
        "model.embed_tokens.weight": ("F32", [2, 3], f32),
        "model.norm.weight": ("F16", [4], f16),
        "lm_head.weight": ("BF16", [2, 2], bf16),
    }, {"format": "pt"})
    write_safetensors("empty_dims.safetensors", {"a": ("F32", [0, 5], b""), "s": ("F32", [], f32[:4])})
    # What the reader must refuse, as starting points for the fuzzer's mutations.
    write_safetensors("shape_mismatch.safetensors", {"a": ("F32", [3, 3], f32)})
    write_safetensors("bad_dtype.safetensors", {"a": ("I64", [3], f32[:24])})
    write_safetensors("offsets_past_end.safetensors", {"a": ("F32", [2, 3], f32)},
                      header_patch=lambda h: h["a"].update(data_offsets=[0, 1 << 40]))


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
