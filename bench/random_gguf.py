"""Writes a random-weight F16 GGUF of a Llama-architecture model (default: the Llama-3.1-8B shape)
with a generated SentencePiece-style vocabulary, for speed comparisons where only the shape
matters (llama.cpp's llama-bench / llama-batched-bench against xquant-bench --shape llama3-8b).

The weights are views of one noise buffer (N(0, 0.02) in fp16), so a 16 GB file is written with
about 1 GB of memory and at disk speed. Needs numpy and the `gguf` package (llama.cpp's gguf-py:
PYTHONPATH=<llama.cpp>/gguf-py).
    python3 bench/random_gguf.py /tmp/llama3-8b-f16.gguf
    python3 bench/random_gguf.py --layers 2 --hidden 256 --heads 4 --kv-heads 2 --ffn 512 \
        --vocab 1000 /tmp/tiny.gguf
"""

import argparse
import time

import gguf
import numpy as np

BASE = 1 << 24  # distinct noise values; tensors are windows into a tiling of them


def vocabulary(n_vocab: int):
    """<unk> <s> </s>, the 256 byte pieces SentencePiece falls back to, then made-up words."""
    if n_vocab < 259 + 1:
        raise SystemExit("--vocab must be at least 260 (3 specials + 256 byte pieces + 1 word)")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    n_words = n_vocab - len(tokens)
    tokens += [f"\u2581w{i}" for i in range(n_words)]
    types += [gguf.TokenType.NORMAL] * n_words
    scores = [0.0] * 259 + [-float(i) for i in range(n_words)]
    return tokens, scores, types


def tensor_shapes(a):
    """numpy shapes (rows = output features) in llama.cpp's tensor names."""
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    shapes = {"token_embd.weight": (a.vocab, a.hidden)}
    for i in range(a.layers):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": (a.hidden,), p + "attn_q.weight": (q, a.hidden),
            p + "attn_k.weight": (kv, a.hidden), p + "attn_v.weight": (kv, a.hidden),
            p + "attn_output.weight": (a.hidden, q), p + "ffn_norm.weight": (a.hidden,),
            p + "ffn_gate.weight": (a.ffn, a.hidden), p + "ffn_up.weight": (a.ffn, a.hidden),
            p + "ffn_down.weight": (a.hidden, a.ffn)})
    shapes["output_norm.weight"] = (a.hidden,)
    shapes["output.weight"] = (a.vocab, a.hidden)
    return shapes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=0, help="0: hidden / heads")
    ap.add_argument("--ffn", type=int, default=14336)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--context", type=int, default=131072)
    ap.add_argument("--rope-theta", type=float, default=500000.0)
    ap.add_argument("--rms-eps", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.head_dim = a.head_dim or a.hidden // a.heads
    t0 = time.time()

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(f"random llama {a.layers}x{a.hidden}")
    w.add_context_length(a.context)
    w.add_embedding_length(a.hidden)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_rope_dimension_count(a.head_dim)
    w.add_rope_freq_base(a.rope_theta)
    w.add_layer_norm_rms_eps(a.rms_eps)
    w.add_vocab_size(a.vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, scores, types = vocabulary(a.vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    shapes = tensor_shapes(a)
    largest = max(int(np.prod(s)) for s in shapes.values())
    rng = np.random.default_rng(a.seed)
    base = (rng.standard_normal(BASE, dtype=np.float32) * 0.02).astype(np.float16)
    noise = np.tile(base, largest // BASE + 2)  # every window below stays inside it
    ones = np.ones(max(a.hidden, 1), dtype=np.float32)
    total = 0
    for i, (name, shape) in enumerate(shapes.items()):
        n = int(np.prod(shape))
        if len(shape) == 1:
            t = ones[:n]
        else:
            start = (i * 1_000_003) % BASE  # tensors do not all begin with the same values
            t = noise[start:start + n].reshape(shape)
        w.add_tensor(name, t)
        total += t.nbytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {a.out}: {len(shapes)} tensors, {total / 1e9:.2f} GB in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
