"""The GGUF tokenizers of SmolLM2-135M-Instruct (pre-tokenizer "smollm") and
Qwen2.5-Coder-0.5B-Instruct ("qwen2") as the engine builds them, against HF `tokenizers` run on
the same vocabulary and merges with the pre-tokenizer each model's tokenizer.json declares, on
WikiText-2 (every line, and whole stretches of lines) when ../shared/data has it, and on code,
unicode, emoji, CJK and number snippets.

Needs the models (scripts/get-smollm2.sh, scripts/get-qwen25-coder.sh, or $XQ_SMOLLM2_GGUF /
$XQ_QWEN_CODER_GGUF) and gguf_dump_cli in $XQ_BUILD_DIR/tests; skips otherwise.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locations import BUILD, wikitext_path  # noqa: E402
from real_bpe_models import ALL, hf_tokenizer  # noqa: E402
from tokenizer_texts import BPE_EXTRA, CURATED, generated_texts  # noqa: E402

DUMP_CLI = BUILD / "tests" / "gguf_dump_cli"
pytestmark = pytest.mark.skipif(not DUMP_CLI.is_file(), reason=f"gguf_dump_cli not built in {BUILD}")


@pytest.fixture(scope="module", params=ALL, ids=lambda m: m.name)
def model(request):
    m = request.param
    if not m.path.is_file():
        pytest.skip(m.skip_reason())
    return m, hf_tokenizer(m)


def cli(m, cmd, payload):
    p = subprocess.run([str(DUMP_CLI), str(m.path), cmd], input=json.dumps(payload),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def wikitext_texts():
    path = wikitext_path()
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    # Every line on its own, and stretches of 40 lines joined (newline runs, article breaks).
    return [l for l in lines if l] + ["\n".join(lines[i:i + 40]) for i in range(0, len(lines), 40)]


def check_encode(m, tok, texts, label):
    ours = cli(m, "encode", texts)
    want = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    bad = [(t, o, w) for t, o, w in zip(texts, ours, want) if o != w]
    tokens = sum(len(w) for w in want)
    print(f"{m.name} {label}: {len(texts) - len(bad)}/{len(texts)} texts, {tokens} tokens agree")
    assert not bad, "\n".join(f"{t!r}:\n ours {o[:40]}\n hf   {w[:40]}" for t, o, w in bad[:5])


def test_file_asks_for_no_bos(model):
    m, tok = model
    assert cli(m, "encode", ["Hello"])[0] == tok.encode("Hello").ids


def test_snippets_encode_like_hf(model):
    m, tok = model
    check_encode(m, tok, CURATED + BPE_EXTRA + generated_texts(seed=11), "snippets")


def test_wikitext_encodes_like_hf(model):
    m, tok = model
    texts = wikitext_texts()
    if not texts:
        pytest.skip(f"{wikitext_path()} is absent")
    check_encode(m, tok, texts, "WikiText-2 test")


def test_decode_matches_hf(model):
    m, tok = model
    texts = CURATED + BPE_EXTRA
    ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert cli(m, "decode", ids) == [tok.decode(i, skip_special_tokens=True) for i in ids]


def test_chat_markers_are_single_tokens(model):
    m, tok = model
    text = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    ids = cli(m, "encode", [text])[0]
    assert ids == tok.encode(text).ids
    assert ids.count(tok.token_to_id("<|im_start|>")) == 2
