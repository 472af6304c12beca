"""The raw-vocabulary tokenizer factories (what the GGUF loader uses) against references.

- make_spm_tokenizer vs the `sentencepiece` library on a BPE model trained here with byte
  fallback (the Llama 2 / Mistral recipe: identity normalization, whitespace kept as is).
- make_gpt2_bpe_tokenizer vs HF `tokenizers` on the Llama-3-like tokenizer from
  make_test_tokenizer.py, its vocab and merges passed as GGUF stores them.

Runs through tests/tools/tokenize_cli (XQ_BUILD_DIR, default build/release).
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_tokenizer import LLAMA3_REGEX, training_lines, write_tokenizer  # noqa: E402
from test_tokenizer import CLI, TRICKY, run_batch, wikitext_lines  # noqa: E402

pytestmark = pytest.mark.skipif(not CLI.is_file(), reason=f"{CLI} is missing (set XQ_BUILD_DIR)")

# GGUF token types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def cases() -> list[str]:
    return TRICKY + wikitext_lines(200)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    out = tmp_path_factory.mktemp("spm")
    corpus = out / "corpus.txt"
    corpus.write_text("".join(training_lines()), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "m"), model_type="bpe", vocab_size=800,
        byte_fallback=True, character_coverage=0.98, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, split_digits=True,
        add_dummy_prefix=True, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(out / "m.model"))
    pieces, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        pieces.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i)
                     else BYTE if sp.is_byte(i) else UNUSED if sp.is_unused(i) else NORMAL)
    spec = {"kind": "spm", "pieces": pieces, "scores": scores, "types": types,
            "bos": sp.bos_id(), "eos": [sp.eos_id()], "add_bos": True, "add_space_prefix": True}
    (out / "vocab_spec.json").write_text(json.dumps(spec), encoding="utf-8")
    return sp, out


def test_spm_factory_matches_sentencepiece(spm_model):
    sp, out = spm_model
    # SentencePiece does not look for control-token text (<s>, </s>) in its input; we do.
    texts = [t for t in cases() if "<s>" not in t and "</s>" not in t and "<unk>" not in t]
    ours = run_batch(out, ["encode", "--no-special"], texts)
    bad = [(t, o, sp.encode(t)) for t, o in zip(texts, ours) if o != sp.encode(t)]
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]!r}"


def test_spm_factory_bos_and_decode(spm_model):
    sp, out = spm_model
    texts = [t for t in cases() if t and "<" not in t]
    ours = run_batch(out, ["encode"], texts)
    assert all(ids[0] == sp.bos_id() and ids[1:] == sp.encode(t) for t, ids in zip(texts, ours))
    decoded = run_batch(out, ["decode", "--skip-special"], ours)
    assert decoded == [sp.decode(sp.encode(t)) for t in texts]


@pytest.fixture(scope="module")
def gpt2_vocab(tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers")
    hf_dir = tmp_path_factory.mktemp("bpe_hf")
    write_tokenizer(hf_dir, "bpe")
    tj = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = dict(tj["model"]["vocab"])
    types = {}
    for t in tj["added_tokens"]:
        vocab[t["content"]] = t["id"]
        types[t["id"]] = CONTROL
    pieces = [None] * len(vocab)
    for text, i in vocab.items():
        pieces[i] = text
    bos = vocab["<|begin_of_text|>"]
    spec = {"kind": "gpt2", "pieces": pieces,
            "types": [types.get(i, NORMAL) for i in range(len(pieces))],
            "merges": [" ".join(m) for m in tj["model"]["merges"]],
            "regexes": [LLAMA3_REGEX], "ignore_merges": True,
            "bos": bos, "eos": [vocab["<|eot_id|>"]], "add_bos": True}
    out = tmp_path_factory.mktemp("bpe_vocab")
    (out / "vocab_spec.json").write_text(json.dumps(spec), encoding="utf-8")
    return tokenizers.Tokenizer.from_file(str(hf_dir / "tokenizer.json")), out


def test_gpt2_factory_matches_hf(gpt2_vocab):
    hf, out = gpt2_vocab
    texts = cases()
    ours = run_batch(out, ["encode"], texts)
    bad = [(t, o, hf.encode(t).ids) for t, o in zip(texts, ours) if o != hf.encode(t).ids]
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]!r}"
    decoded = run_batch(out, ["decode"], ours)
    assert decoded == [hf.decode(ids, skip_special_tokens=False) for ids in ours]
