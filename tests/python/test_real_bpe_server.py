"""SmolLM2-135M-Instruct and Qwen2.5-Coder-0.5B-Instruct through the whole server with the
official openai client: their chat templates (from GGUF metadata) render as jinja2 renders
them, chat prompts are tokenized as HF `tokenizers` tokenizes the rendered text, and greedy
completions and chat answers are sane. The answers are printed (pytest -s).

Needs the models (scripts/get-smollm2.sh, scripts/get-qwen25-coder.sh) and the server binary;
skips otherwise.
"""

import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_bpe_models import ALL, QWEN_CODER, SMOLLM2, gguf_fields, hf_tokenizer  # noqa: E402
from server_process import BINARY, Server  # noqa: E402
from test_chat_template import ASSIST1, SYSTEM, TOOLS, USER1, USER2, base, check  # noqa: E402
from test_chat_template import reference as jinja2_render  # noqa: E402

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built")

CONVERSATIONS = {
    "one_turn": [USER1],
    "system_and_turns": [SYSTEM, USER1, ASSIST1, USER2],
    "no_system_two_turns": [USER1, ASSIST1, USER2],
}


@pytest.fixture(scope="module", params=ALL, ids=lambda m: m.name)
def model(request):
    m = request.param
    if not m.path.is_file():
        pytest.skip(m.skip_reason())
    template = gguf_fields(m.path)["tokenizer.chat_template"].contents()
    return m, template


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
def test_template_renders_like_jinja2(model, conversation, tmp_path):
    _, template = model
    check(template, base(CONVERSATIONS[conversation]), tmp_path)
    check(template, base(CONVERSATIONS[conversation], add_generation_prompt=False), tmp_path)


def test_qwen_template_with_tools_renders_like_jinja2(tmp_path):
    if not QWEN_CODER.path.is_file():
        pytest.skip(QWEN_CODER.skip_reason())
    template = gguf_fields(QWEN_CODER.path)["tokenizer.chat_template"].contents()
    check(template, base([USER1], tools=TOOLS), tmp_path)


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    m, template = model
    s = Server(m.path, tmp_path_factory.mktemp("srv") / "server.log", "--served-model-name", "m",
               "--max-model-len", "2048")
    client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
    yield m, template, s, client
    assert s.stop() == 0


def test_chat_prompt_is_the_rendered_template_tokenized_like_hf(served):
    m, template, _, client = served
    messages = [SYSTEM, USER1, ASSIST1, {"role": "user", "content": "Say OK."}]
    status, text = jinja2_render(template, {"messages": messages, "add_generation_prompt": True})
    assert status == "ok"
    r = client.chat.completions.create(model="m", messages=messages, max_tokens=1, temperature=0)
    assert r.usage.prompt_tokens == len(hf_tokenizer(m).encode(text).ids)


def test_tokenize_endpoint_matches_hf(served):
    m, _, s, _ = served
    text = "def add(a, b):\n    return a + b  # 2024 ✓ 中文"
    r = requests.post(s.url + "/tokenize", json={"model": "m", "prompt": text}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["tokens"] == hf_tokenizer(m).encode(text).ids


def test_greedy_completion_is_sane(served):
    m, _, _, client = served
    r = client.completions.create(model="m", prompt="The capital of France is", max_tokens=12,
                                  temperature=0)
    text = r.choices[0].text
    print(f"{m.name} completion: {text!r}")
    assert "Paris" in text


def test_chat_answers_and_stops(served):
    m, _, _, client = served
    r = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=40, temperature=0)
    answer = r.choices[0].message.content
    print(f"{m.name} chat: {answer!r} ({r.choices[0].finish_reason})")
    assert "Paris" in answer
    assert r.choices[0].finish_reason == "stop"
    assert "<|im_end|>" not in answer


def test_coder_writes_code(served):
    m, _, _, client = served
    if m is not QWEN_CODER:
        pytest.skip("the coding check is for the coder model")
    r = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content":
                              "Write a Python function add(a, b) that returns a + b. Code only."}],
        max_tokens=48, temperature=0)
    code = r.choices[0].message.content
    print(f"{m.name} code: {code!r}")
    assert "def add(a, b)" in code and "return a + b" in code


@pytest.mark.parametrize("cache", [["--cache", "xquant", "--cache-bits", "4"],
                                   ["--cache", "xquant-cl-ch", "--cache-bits", "4"]],
                         ids=["xquant4", "xquant-cl-ch4"])
def test_smollm2_answers_through_an_xquant_cache(cache, tmp_path):
    # The smaller model under the formats this server exists for (SmolLM2 is GQA 9/3: xquant
    # caches the SVD latent); a short chat still finds the answer.
    m = SMOLLM2
    if not m.path.is_file():
        pytest.skip(m.skip_reason())
    s = Server(m.path, tmp_path / "server.log", "--served-model-name", "m", *cache)
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=24, temperature=0)
        answer = r.choices[0].message.content
        print(f"{m.name} {' '.join(cache)}: {answer!r}")
        assert "Paris" in answer
    finally:
        assert s.stop() == 0
