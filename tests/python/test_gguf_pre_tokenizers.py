"""Every tokenizer.ggml.pre name the engine accepts for byte-level BPE GGUFs, against HF
`tokenizers` with that pre-tokenizer, on a small vocabulary trained here (no download): a GGUF
holding only the tokenizer and a tiny embedding goes through gguf_dump_cli, which builds the
tokenizer as the server does. The references are written independently of the engine's table:
HF's own Digits/ByteLevel steps where the models' tokenizer.json files use them, else the regex
lists of llama.cpp (src/llama-vocab.cpp) in its spelling, or the tokenizer.json original where
llama.cpp had to rewrite it for std::regex."""

import json
import re
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locations import BUILD  # noqa: E402
from tokenizer_texts import BPE_EXTRA, CURATED, generated_texts  # noqa: E402

DUMP_CLI = BUILD / "tests" / "gguf_dump_cli"
pytestmark = pytest.mark.skipif(not DUMP_CLI.is_file(), reason=f"gguf_dump_cli not built in {BUILD}")

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
QWEN35 = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
UPPER, LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
TEKKEN = (rf"[^\r\n\p{{L}}\p{{N}}]?{UPPER}*{LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{UPPER}+{LOWER}*|\p{{N}}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CI = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
GPT4O = (rf"[^\r\n\p{{L}}\p{{N}}]?{UPPER}*{LOWER}+{CI}?|[^\r\n\p{{L}}\p{{N}}]?{UPPER}+{LOWER}*{CI}?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BLOOM = " ?[^(\\s|.,!?…。，、।۔،)]+"
CJK = "[一-龥ࠀ-一가-퟿]+"
# DeepSeek LLM's letter class, as llama.cpp lists it (characters written as code points).
DS_LETTERS = (r"\s?["
              r"A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}"
              r"\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}"
              r"\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}"
              r"\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}"
              r"\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}"
              r"\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}"
              r"\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}"
              r"\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}"
              r"\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}"
              r"\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}"
              r"\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}"
              r"\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}"
              r"\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}"
              r"\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}"
              r"\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}"
              r"\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}"
              r"\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}"
              r"\x{1E900}-\x{1E943}" r"]+")
DS_V3 = (r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
         r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def split(*regexes):
    return [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in regexes]


BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
GPT2_BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
DIGITS = pre_tokenizers.Digits(individual_digits=True)

# name -> (HF pre-tokenizer steps, NFC first, ignore_merges), and the names sharing each.
REFERENCES = {
    "gpt-2": ([GPT2_BYTE_LEVEL], False, False),
    "smollm": ([DIGITS, GPT2_BYTE_LEVEL], False, False),
    "llama-bpe": (split(LLAMA3) + [BYTE_LEVEL], False, True),
    "dbrx": (split(LLAMA3) + [BYTE_LEVEL], False, False),
    "qwen2": (split(QWEN2) + [BYTE_LEVEL], True, False),
    "stablelm2": (split(QWEN2) + [BYTE_LEVEL], False, False),
    "qwen35": (split(QWEN35) + [BYTE_LEVEL], True, False),
    "default": (split(r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]") + [BYTE_LEVEL],
                False, False),
    "falcon": (split(r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]") + [BYTE_LEVEL], False,
               False),
    "deepseek-llm": (split("[\r\n]", DS_LETTERS, r"\s?[!-/:-~！-／：-～‘-‟　-。]+", r"\s+$", CJK,
                           r"\p{N}+") + [BYTE_LEVEL], False, False),
    "deepseek-coder": (split("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}") + [BYTE_LEVEL],
                       False, False),
    "deepseek-v3": (split(r"\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", DS_V3) + [BYTE_LEVEL], False, False),
    "bloom": (split(BLOOM) + [BYTE_LEVEL], False, False),
    "viking": (split(BLOOM, r"\p{N}") + [BYTE_LEVEL], False, False),
    "tekken": (split(TEKKEN) + [BYTE_LEVEL], False, True),
    "chameleon": (split("<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                        "([\t\n]|    |  )", r"\p{N}", r"[\p{P}!-/:-@\[-`{-~]", GPT2)
                  + [BYTE_LEVEL], False, False),
    "gpt-4o": (split(GPT4O) + [BYTE_LEVEL], False, False),
    "tiny_aya": (split(r"\d{1,3}(?=(?:\d{3})*\b)", GPT4O) + [BYTE_LEVEL], False, False),
    "seed-coder": (split(CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}"
                         r"| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+") + [BYTE_LEVEL],
                   False, False),
    "bailingmoe": (split(r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}"
                         r"| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+") + [BYTE_LEVEL],
                   False, False),
    "minicpm5": (split(r"\p{N}{1,3}", QWEN2.replace(r"|\p{N}|", r"|\p{N}+|")) + [BYTE_LEVEL],
                 False, True),
    "exaone-moe": (split(CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+"
                         r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+")
                   + [BYTE_LEVEL], False, False),
    "laguna": (split("[^\n]+|[\n]+", QWEN2) + [BYTE_LEVEL], False, False),
}
SAME_AS = {
    "gpt-2": ["gpt2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4",
              "gigachat", "a.x-4.0", "mellum"],
    "smollm": ["starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"],
    "llama-bpe": ["llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"],
    "dbrx": ["smaug-bpe", "chatglm-bpe", "glm4"],
    "qwen2": ["deepseek-r1-qwen"],
    "stablelm2": ["kormo", "f2llmv2", "megrez", "hunyuan", "solar-open", "grok-2"],
    "deepseek-v3": ["hunyuan-dense", "joyai-llm"],
    "bloom": ["poro-chat", "gpt3-finnish"],
    "gpt-4o": ["llama4", "kanana2", "minimax-m2"],
    "tiny_aya": ["cohere2moe"],
    "bailingmoe": ["bailingmoe2", "llada-moe"],
}
REFERENCE_OF = {n: n for n in REFERENCES} | {a: n for n, al in SAME_AS.items() for a in al}

TEXTS = CURATED + BPE_EXTRA + ["<sentinel:12> IMGIMGABZ x", "a<|endoftext|>b"] + \
    generated_texts(seed=3)[:150]


def hf_reference(name):
    steps, nfc, ignore_merges = REFERENCES[name]
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TEXTS, trainer)
    if ignore_merges:
        j = json.loads(tok.to_str())
        j["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(j))
    return tok


def write_gguf(tok, pre, path, add_bos=False, bos=None):
    """A GGUF with the tokenizer, a 1-layer llama shape and a zero embedding (nothing runs)."""
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    tokens = [None] * len(vocab)
    for piece, i in vocab.items():
        tokens[i] = piece
    types = [gguf.TokenType.NORMAL] * len(tokens)
    types[tok.token_to_id("<|endoftext|>")] = gguf.TokenType.CONTROL
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_tokenizer_model("gpt2")
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]])
    w.add_eos_token_id(tok.token_to_id("<|endoftext|>"))
    if bos is not None:
        w.add_bos_token_id(bos)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def cli(path, cmd, payload):
    return subprocess.run([str(DUMP_CLI), str(path), cmd], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=120)


def run_ok(path, cmd, payload):
    p = cli(path, cmd, payload)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def references():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = hf_reference(name)
        return cache[name]
    return get


@pytest.fixture(scope="module")
def supported_names(tmp_path_factory, references):
    path = write_gguf(references("gpt-2"), "no-such-pre-tokenizer",
                      tmp_path_factory.mktemp("unknown") / "t.gguf")
    p = cli(path, "encode", ["x"])
    assert p.returncode != 0
    m = re.search(r"tokenizer.ggml.pre 'no-such-pre-tokenizer' is not supported "
                  r"\(supported: ([^)]*)\)", p.stderr)
    assert m, p.stderr
    return m.group(1).split(", ")


def test_every_supported_name_has_a_reference(supported_names):
    assert set(supported_names) == set(REFERENCE_OF), set(supported_names) ^ set(REFERENCE_OF)


@pytest.mark.parametrize("name", sorted(REFERENCE_OF))
def test_pre_tokenizer_encodes_and_decodes_like_hf(name, references, tmp_path):
    tok = references(REFERENCE_OF[name])
    path = write_gguf(tok, name, tmp_path / "t.gguf")
    want = [e.ids for e in tok.encode_batch(TEXTS, add_special_tokens=False)]
    got = run_ok(path, "encode", TEXTS)
    bad = [(t, g, w) for t, g, w in zip(TEXTS, got, want) if g != w]
    assert not bad, "\n".join(
        f"{t!r}:\n ours {[tok.id_to_token(i) for i in g]}\n hf   {[tok.id_to_token(i) for i in w]}"
        for t, g, w in bad[:3])
    texts = CURATED + BPE_EXTRA
    ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert run_ok(path, "decode", ids) == [tok.decode(i, skip_special_tokens=True) for i in ids]


def test_pre_tokenizers_really_differ(references):
    # The references are not all one split: each family cuts this text its own way.
    text = "I'LL pay 1234567 for CamelCase 中文字 — ok?!\n\n  x`y 12"
    cuts = {n: tuple(references(n).pre_tokenizer.pre_tokenize_str(text)) for n in
            ("gpt-2", "smollm", "llama-bpe", "qwen2", "falcon", "default", "deepseek-coder",
             "bloom", "tekken", "gpt-4o")}
    assert len(set(cuts.values())) == len(cuts)


def test_missing_pre_is_default(references, tmp_path):
    tok = references("default")
    path = write_gguf(tok, None, tmp_path / "t.gguf")
    assert run_ok(path, "encode", TEXTS) == [e.ids for e in tok.encode_batch(TEXTS,
                                                                          add_special_tokens=False)]


@pytest.mark.parametrize("name,add_bos", [("llama-bpe", True), ("tekken", True),
                                          ("smollm", False), ("qwen2", False)])
def test_bos_follows_the_name_when_the_file_does_not_say(name, add_bos, references, tmp_path):
    tok = references(REFERENCE_OF[name])
    path = write_gguf(tok, name, tmp_path / "t.gguf", add_bos=None, bos=1)
    ids = run_ok(path, "encode", ["hello"])[0]
    assert ids == [1] * add_bos + tok.encode("hello").ids


def test_chatglm_drops_bos_even_when_asked(references, tmp_path):
    tok = references("dbrx")
    path = write_gguf(tok, "chatglm-bpe", tmp_path / "t.gguf", add_bos=True, bos=1)
    assert run_ok(path, "encode", ["hello"])[0] == tok.encode("hello").ids
    path = write_gguf(tok, "dbrx", tmp_path / "u.gguf", add_bos=True, bos=1)
    assert run_ok(path, "encode", ["hello"])[0] == [1] + tok.encode("hello").ids
