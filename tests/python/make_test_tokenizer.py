"""Trains small, deterministic HF tokenizers shaped like real model tokenizers, for tests.

Styles:
  bpe  - Llama-3-like byte-level BPE: Split(Llama 3 regex) + ByteLevel(use_regex=False),
         ignore_merges, <|begin_of_text|> etc. appended at the end, BOS via TemplateProcessing.
  spm  - Llama-2/Mistral-like: BPE with byte_fallback, <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF>
         at 3..258, Prepend/Replace normalizer, no pre-tokenizer, [INST] chat template.
  gpt2 - GPT-2-like: ByteLevel(use_regex=True), <|endoftext|> at the end, no BOS.
  metaspace - spm as newer converters write it: Metaspace pre-tokenizer (prepend_scheme
         "first", split false) and Metaspace decoder instead of the Prepend/Replace normalizer.
  qwen2 - Qwen2-like: NFC normalizer, Split(Qwen2 regex: single digits) + ByteLevel, no BOS.

Usage: make_test_tokenizer.py OUT_DIR --style bpe|spm|gpt2 --vocab N
"""

import argparse
import json
import os
import random
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]

LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)

FALLBACK_TEXT = (
    "The quick brown fox jumps over the lazy dog. It's 12345 miles away, isn't it? "
    "We'll see: the committee's report (published in 1998) said that 42 percent of the "
    "respondents didn't know. Naïve café owners in Zürich sold 3 crêpes for 7.50 francs.\n"
)


def data_dir() -> Path:
    """WikiText-2 lives in shared/data beside the checkout; $XQ_DATA_DIR overrides."""
    env = os.environ.get("XQ_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def synthetic_lines(n: int = 3000, seed: int = 0) -> list[str]:
    """A deterministic English-like corpus (made-up words from syllables, numbers, punctuation,
    some accented, CJK and emoji text) for machines without the shared data: rich enough for
    vocabularies of a few thousand tokens."""
    rng = random.Random(seed)
    syllables = ("ba ke ri to mun sel ar on ex pro ing tion st re de la mi co ver al an the in "
                 "er ed es ly for com pre ent ous ment able ward sh qu ph gr tr str").split()
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(700)]
    words += FALLBACK_TEXT.replace(".", " ").replace(",", " ").split()
    words += ["café", "Zürich", "naïve", "東京", "😀", "über", "straße", "año"]
    lines = []
    for _ in range(n):
        sentence = [rng.choice(words) for _ in range(rng.randint(4, 18))]
        if rng.random() < 0.3:
            sentence.insert(rng.randrange(len(sentence)), str(rng.randint(0, 99999)))
        text = " ".join(sentence)
        text = text[0].upper() + text[1:] + rng.choice([".", ".", "?", "!", ";", ":"])
        lines.append(text + ("\n" if rng.random() < 0.8 else "\n\n"))
    return lines


def training_lines(max_lines: int = 2000) -> list[str]:
    path = data_dir() / "wikitext-2-raw-test.txt"
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            lines = [line for _, line in zip(range(max_lines), f)]
        if lines:
            return lines
    return synthetic_lines()


def _added(idx: int, content: str, special: bool = True) -> dict:
    return {
        "id": idx,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": special,
    }


def _train(pre_tokenizer, vocab_size: int, limit_alphabet=None, initial_alphabet=None):
    """Trains a BPE model and returns (vocab dict token->id, merges list of [a, b])."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    kwargs = {"vocab_size": vocab_size, "show_progress": False, "min_frequency": 2}
    if limit_alphabet is not None:
        kwargs["limit_alphabet"] = limit_alphabet
    if initial_alphabet is not None:
        kwargs["initial_alphabet"] = initial_alphabet
    tok.train_from_iterator(training_lines(), trainers.BpeTrainer(**kwargs))
    model = json.loads(tok.to_str())["model"]
    merges = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model["merges"]]
    return model["vocab"], merges


def _bpe_model(vocab: dict, merges: list, **extra) -> dict:
    model = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": vocab,
        "merges": merges,
    }
    model.update(extra)
    return model


def _byte_level(use_regex: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
            "use_regex": use_regex}


def _build_bpe(vocab_size: int):
    split = {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated",
             "invert": False}
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    vocab, merges = _train(pre, vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    n = len(vocab)
    specials = [_added(n + i, s) for i, s in enumerate(LLAMA3_SPECIALS)]
    bos = LLAMA3_SPECIALS[0]
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": specials,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence",
                          "pretokenizers": [split, _byte_level(False)]},
        "post_processor": {"type": "Sequence", "processors": [
            _byte_level(True),
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos, "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos: {"id": bos, "ids": [n], "tokens": [bos]}}},
        ]},
        "decoder": _byte_level(True),
        "model": _bpe_model(vocab, merges, ignore_merges=True),
    }
    cfg = {
        "bos_token": bos,
        "eos_token": "<|eot_id|>",
        "clean_up_tokenization_spaces": True,
        "model_max_length": 131072,
        "chat_template": LLAMA3_CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return tj, cfg


def _build_gpt2(vocab_size: int):
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    vocab, merges = _train(pre, vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    n = len(vocab)
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added(n, "<|endoftext|>")],
        "normalizer": None,
        "pre_tokenizer": _byte_level(True),
        "post_processor": _byte_level(True),
        "decoder": _byte_level(True),
        "model": _bpe_model(vocab, merges),
    }
    cfg = {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "add_prefix_space": False,
        "model_max_length": 1024,
        "tokenizer_class": "GPT2Tokenizer",
    }
    return tj, cfg


def _build_spm(vocab_size: int):
    # Train with a Metaspace pre-tokenizer so that merges stay within words (as SentencePiece
    # does), then ship the Llama-2 layout: normalizer does the ▁ work, no pre-tokenizer. A small
    # alphabet leaves rare characters to the byte fallback.
    pre = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    trained, merges = _train(pre, vocab_size, limit_alphabet=80)
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for token, _ in sorted(trained.items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    bos = "<s>"
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added(i, s) for i, s in enumerate(specials)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [1], "tokens": [bos]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": _bpe_model(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True),
    }
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": bos,
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "legacy": False,
        "model_max_length": 32768,
        "chat_template": MISTRAL_CHAT_TEMPLATE,
        "tokenizer_class": "LlamaTokenizer",
    }
    return tj, cfg


def _build_metaspace(vocab_size: int):
    tj, cfg = _build_spm(vocab_size)
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                           "prepend_scheme": "first", "split": False}
    tj["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]}
    return tj, cfg


def _build_qwen2(vocab_size: int):
    split = {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated",
             "invert": False}
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    vocab, merges = _train(pre, vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    n = len(vocab)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added(n + i, s) for i, s in enumerate(specials)],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence",
                          "pretokenizers": [split, _byte_level(False)]},
        "post_processor": _byte_level(False),
        "decoder": _byte_level(False),
        "model": _bpe_model(vocab, merges),
    }
    cfg = {
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 32768,
        "tokenizer_class": "Qwen2Tokenizer",
    }
    return tj, cfg


BUILDERS = {"bpe": _build_bpe, "spm": _build_spm, "gpt2": _build_gpt2,
            "metaspace": _build_metaspace, "qwen2": _build_qwen2}


def write_tokenizer(out_dir, style: str, vocab_size: int = 512, seed: int = 0) -> int:
    """Writes tokenizer.json + tokenizer_config.json into out_dir; returns the full vocab size.

    Training is deterministic; `seed` is accepted for API stability (the BPE trainer has no
    randomness to seed).
    """
    if style not in BUILDERS:
        raise ValueError(f"unknown tokenizer style {style!r}; expected one of {sorted(BUILDERS)}")
    tj, cfg = BUILDERS[style](vocab_size)
    text = json.dumps(tj, ensure_ascii=False, indent=2)
    tok = Tokenizer.from_str(text)  # validates the hand-assembled JSON
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(text, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    return tok.get_vocab_size(with_added_tokens=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--style", choices=sorted(BUILDERS), default="bpe")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = write_tokenizer(args.out_dir, args.style, args.vocab, args.seed)
    print(f"wrote {args.style} tokenizer with {n} tokens to {args.out_dir}")


if __name__ == "__main__":
    main()
