"""The real pretrained model through the whole server: Gemma 3 270M (GGUF from PyPI, fetched by
scripts/get-gemma3.sh; its path in $XQ_GEMMA_GGUF) answers greedy completions in English, under
the fp16 baseline and under each XQuant cache format. The continuations are printed (pytest -s,
or the CI log's captured output on failure)."""

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locations import gemma_path  # noqa: E402
from server_process import BINARY, Server  # noqa: E402

openai = pytest.importorskip("openai")

GGUF = gemma_path()
pytestmark = [
    pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built"),
    pytest.mark.skipif(not GGUF.is_file(),
                       reason="Gemma 3 270M not fetched: export XQ_GEMMA_GGUF=$(scripts/get-gemma3.sh)"),
]

PROMPTS = [
    "The capital of France is",
    "The history of the Roman Empire",
    "Water boils at a temperature of",
]
COMMON = set("""the a an of and to in is was for on that with as by at from it this be are were
which or his her their its has have had been not but also one first city century degrees
empire roman paris france capital water boils temperature celsius fahrenheit at sea level""".split())


def englishness(text: str) -> float:
    words = re.findall(r"[A-Za-z]+", text)
    if not words:
        return 0.0
    return sum(w.lower() in COMMON for w in words) / len(words)


@pytest.fixture(scope="module", params=["fp16", "xquant:4", "xquant-cl-ch:3", "kivi:4"])
def gemma(request, tmp_path_factory):
    fmt, _, bits = request.param.partition(":")
    flags = ["--served-model-name", "gemma", "--cache", fmt]
    if bits:
        flags += ["--cache-bits", bits]
    s = Server(GGUF, tmp_path_factory.mktemp("gemma") / "server.log", *flags)
    yield request.param, s
    assert s.stop() == 0


def test_greedy_continuations_are_english(gemma):
    fmt, server = gemma
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    texts = []
    for p in PROMPTS:
        r = client.completions.create(model="gemma", prompt=p, max_tokens=24, temperature=0)
        texts.append(r.choices[0].text)
        print(f"[{fmt}] {p!r} -> {r.choices[0].text!r}")
    assert "France" in texts[0] or "Paris" in texts[0], texts[0]
    assert "100 degrees" in texts[2], texts[2]
    joined = " ".join(texts)
    assert sum(c.isascii() for c in joined) / max(1, len(joined)) > 0.95
    assert englishness(joined) > 0.2, joined
