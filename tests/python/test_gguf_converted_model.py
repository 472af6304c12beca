"""A llama.cpp user's GGUF of a Llama-architecture model against the Hugging Face directory it
was converted from: a generated Llama model with a Llama-3-style byte-level BPE tokenizer
(pre-tokenizer "llama-bpe", BOS, chat template) is converted by gguf_from_hf.py as llama.cpp's
converter lays Llama files out, then the engine's logits, /tokenize, /v1/chat/completions and
/v1/completions must agree between the GGUF and the directory.

Binaries come from $XQ_BUILD_DIR (default build/release); the tests skip when they are missing.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from gguf import GGMLQuantizationType as QT
from safetensors.numpy import save_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_from_hf import convert  # noqa: E402
from locations import BUILD  # noqa: E402
from make_test_model import make_test_model  # noqa: E402
from server_process import BINARY, Server  # noqa: E402

openai = pytest.importorskip("openai")

LOGITS_CLI = BUILD / "tests" / "logits_cli"
pytestmark = [
    pytest.mark.skipif(not LOGITS_CLI.is_file(), reason=f"{LOGITS_CLI} not built"),
    pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built"),
]

MAX_LEN = 512
# Enough merges that pre-tokenizer differences (digit runs, punctuation before letters) change
# the ids of the texts below.
VOCAB = 2000
# One matrix quantized, the rest F16: the engine must undo llama.cpp's Q/K row interleaving
# on both (attn_k of layer 0 is the quantized one: its rows move as whole blocks).
MIXED = {"model.layers.0.self_attn.k_proj.weight": QT.Q8_0,
         "model.layers.1.mlp.down_proj.weight": QT.Q8_0}

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog. It's 12345 miles away, isn't it?",
    "  leading spaces and trailing   ",
    "tabs\tand\t\ttabs\nline\n\n\nbreaks\r\n",
    "Naïve café owners in Zürich sold 3 crêpes for 7.50 francs.",
    "東京 😀 über straße año 👨‍👩‍👧 Привет",
    "numbers 1234567 3.14159 and they'll've WE'RE",
    "1234567890 and 2026-11-23, (parenthesized) \"quoted\" words; x=42*y",
    "I'M SURE THEY'RE HERE, aren't they?  @-@ 1 @,@ 000 ( km ) .",
    "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The HF directory, its F32 GGUF, a mixed F16/Q8_0 GGUF, and an HF directory holding the
    mixed file's values (what storing them did to the weights) for an exact comparison."""
    root = tmp_path_factory.mktemp("converted")
    hf = make_test_model(root / "hf", arch="llama", tokenizer="bpe", layers=2, hidden=64,
                         intermediate=128, heads=4, kv_heads=2, dtype="f32", max_pos=MAX_LEN,
                         vocab=VOCAB, seed=5)
    # As Llama 3.1 ships: generation stops at <|end_of_text|> as well as at the tokenizer's
    # eos_token <|eot_id|>. The GGUF names only the latter (llama.cpp's converter keeps one id).
    tok = Tokenizer.from_file(str(hf / "tokenizer.json"))
    eos = [tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")]
    for name in ("config.json", "generation_config.json"):
        cfg = json.loads((hf / name).read_text())
        cfg["eos_token_id"] = eos
        (hf / name).write_text(json.dumps(cfg, indent=2))
    f32 = root / "model-f32.gguf"
    convert(hf, f32)
    mixed = root / "model-f16-q8_0.gguf"
    stored = convert(hf, mixed, qtypes=MIXED, default_2d=QT.F16)
    rounded = root / "hf-rounded"
    rounded.mkdir()
    for f in hf.glob("*.json"):
        shutil.copy(f, rounded / f.name)
    save_file(stored, str(rounded / "model.safetensors"), metadata={"format": "pt"})
    return {"hf": hf, "f32": f32, "mixed": mixed, "rounded": rounded}


def engine_logits(model, tokens, out):
    r = subprocess.run([str(LOGITS_CLI), str(model), "--tokens", ",".join(map(str, tokens)),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"logits_cli {model} failed: {r.stderr}"
    return np.load(out).astype(np.float64)


def max_rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module")
def logits(models, tmp_path_factory):
    vocab = json.loads((models["hf"] / "config.json").read_text())["vocab_size"]
    tokens = [int(t) for t in np.random.RandomState(3).randint(0, vocab, size=48)]
    out = tmp_path_factory.mktemp("logits")
    return {name: engine_logits(path, tokens, out / f"{name}.npy")
            for name, path in models.items()}


def test_f32_gguf_logits_equal_the_hf_directory(logits):
    want = logits["hf"]
    assert want.std() > 1.0  # informative logits, or the comparison means little
    rel = max_rel(logits["f32"], want)
    assert rel < 1e-5, f"F32 GGUF vs HF: max relative difference {rel:.2e}"


def test_qwen3_gguf_logits_equal_the_hf_directory(tmp_path):
    # Qwen3: no Q/K permutation in the file, per-head q/k RMSNorm weights (attn_q_norm).
    hf = make_test_model(tmp_path / "qwen3", arch="qwen3", tokenizer="gpt2", layers=2, hidden=64,
                         intermediate=128, heads=4, kv_heads=2, head_dim=32, dtype="f32",
                         max_pos=MAX_LEN, seed=6)
    path = tmp_path / "qwen3.gguf"
    convert(hf, path)
    vocab = json.loads((hf / "config.json").read_text())["vocab_size"]
    tokens = [int(t) for t in np.random.RandomState(4).randint(0, vocab, size=32)]
    want = engine_logits(hf, tokens, tmp_path / "hf.npy")
    assert want.std() > 1.0
    rel = max_rel(engine_logits(path, tokens, tmp_path / "gguf.npy"), want)
    assert rel < 1e-5, f"Qwen3 F32 GGUF vs HF: max relative difference {rel:.2e}"


def test_mixed_gguf_logits_equal_its_stored_values(logits):
    # Same weights as the GGUF holds (F16 and Q8_0 rounding applied in HF layout): only the
    # order of float operations may differ.
    rel = max_rel(logits["mixed"], logits["rounded"])
    assert rel < 1e-5, f"F16/Q8_0 GGUF vs HF with its values: max relative difference {rel:.2e}"
    # Against the original F32 weights, the difference is that of the storage rounding.
    rounding = max_rel(logits["mixed"], logits["hf"])
    assert 1e-6 < rounding < 3e-2, f"F16/Q8_0 GGUF vs F32 HF: {rounding:.2e}"
    assert (logits["mixed"].argmax(-1) == logits["hf"].argmax(-1)).mean() > 0.9


@pytest.fixture(scope="module")
def servers(models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    started = {}
    try:
        for name in ("hf", "f32"):
            started[name] = Server(models[name], logs / f"{name}.log", "--served-model-name",
                                   "tiny", "--threads", "1", "--max-model-len", str(MAX_LEN))
        yield started
    finally:
        for s in started.values():
            assert s.stop() == 0, s.log.read_text()


def tokenize(server, text, special):
    r = requests.post(server.url + "/tokenize",
                      json={"prompt": text, "add_special_tokens": special}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


@pytest.mark.parametrize("special", [True, False])
def test_tokenize_matches_hf_tokenizers(models, servers, special):
    hf = Tokenizer.from_file(str(models["hf"] / "tokenizer.json"))
    bos = hf.token_to_id("<|begin_of_text|>")
    for text in TEXTS:
        want = hf.encode(text, add_special_tokens=special).ids
        assert (want[:1] == [bos]) == special, "the tokenizer should add BOS by itself"
        assert tokenize(servers["f32"], text, special) == want, text
        assert tokenize(servers["hf"], text, special) == want, text


def clients(servers):
    return {n: openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
            for n, s in servers.items()}


CONVERSATIONS = [
    [{"role": "user", "content": "Hello! Who are you?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris."},
     {"role": "user", "content": "  And of Zürich's country?\n"}],
]


def hf_chat_prompt_ids(model_dir, messages):
    """The prompt transformers' apply_chat_template would give: jinja2 with trim/lstrip blocks
    and the config's bos/eos strings, tokenized without adding specials again."""
    jinja2 = pytest.importorskip("jinja2")
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(cfg["chat_template"]).render(
        messages=messages, add_generation_prompt=True, bos_token=cfg["bos_token"],
        eos_token=cfg["eos_token"])
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return tok.encode(text, add_special_tokens=False).ids


def test_chat_completions_equal(models, servers):
    c = clients(servers)
    for messages in CONVERSATIONS:
        # The GGUF's chat template and BOS string render the prompt HF would (one BOS).
        prompt_len = len(hf_chat_prompt_ids(models["hf"], messages))
        got = {}
        for name, client in c.items():
            r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10,
                                               temperature=0)
            got[name] = (r.choices[0].message.content, r.choices[0].finish_reason,
                         r.usage.prompt_tokens, r.usage.completion_tokens)
        assert got["hf"][0], "empty completion: nothing compared"
        assert got["f32"] == got["hf"], messages
        assert got["f32"][2] == prompt_len, messages


def test_completions_equal(servers):
    c = clients(servers)
    for prompt in ["The quick brown fox", "Naïve café in Zürich", "1, 2, 3,"]:
        got = {}
        for name, client in c.items():
            r = client.completions.create(model="tiny", prompt=prompt, max_tokens=12,
                                          temperature=0, logprobs=1)
            ch = r.choices[0]
            got[name] = (ch.text, ch.finish_reason, r.usage.prompt_tokens, ch.logprobs.tokens)
            lp = np.array(ch.logprobs.token_logprobs)
            got[name + "_lp"] = lp
        assert got["hf"][0], "empty completion: nothing compared"
        assert got["f32"][:4] == got["hf"][:4], prompt
        np.testing.assert_allclose(got["f32_lp"], got["hf_lp"], atol=1e-4, err_msg=prompt)


# The other byte-level BPE layouts a converted Llama may carry: GPT-2's (tokenizer.ggml.pre
# "gpt-2", no BOS, no chat template) and Qwen2's (single digits). The file's tokenizer is run
# through gguf_dump_cli, which builds it as the server does.
DUMP_CLI = BUILD / "tests" / "gguf_dump_cli"


@pytest.mark.skipif(not DUMP_CLI.is_file(), reason=f"{DUMP_CLI} not built")
@pytest.mark.parametrize("style", ["gpt2", "qwen2"])
def test_other_byte_level_tokenizers_encode_and_decode_like_hf(style, tmp_path):
    hf = make_test_model(tmp_path / style, arch="llama", tokenizer=style, layers=1, hidden=32,
                         intermediate=64, heads=2, kv_heads=1, vocab=VOCAB, seed=9)
    path = tmp_path / f"{style}.gguf"
    convert(hf, path)
    tok = Tokenizer.from_file(str(hf / "tokenizer.json"))
    texts = TEXTS + ["<|endoftext|>a<|im_start|>b", "x" * 300 + " 0123456789 " + "\u00a0" * 3]

    def cli(cmd, payload):
        r = subprocess.run([str(DUMP_CLI), str(path), cmd], input=json.dumps(payload),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    want = [tok.encode(t, add_special_tokens=True).ids for t in texts]
    got = cli("encode", texts)
    for text, g, w in zip(texts, got, want):
        assert g == w, text
    decoded = cli("decode", want)
    for text, d, ids in zip(texts, decoded, want):
        assert d == tok.decode(ids, skip_special_tokens=True), text


def test_end_of_generation_ids_are_the_hf_directorys(models):
    # The GGUF stores one eos id; the engine must still stop where the HF directory says.
    want = set(json.loads((models["hf"] / "generation_config.json").read_text())["eos_token_id"])
    r = subprocess.run([str(DUMP_CLI), str(models["f32"]), "config"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["eos_token_ids"]
    assert set(got) == want
    # The file's own eos id stays first: it is the chat template's eos_token.
    eot = Tokenizer.from_file(str(models["hf"] / "tokenizer.json")).token_to_id("<|eot_id|>")
    assert got[0] == eot


def test_generation_stops_at_end_of_text_on_both(models, servers):
    # A bias makes <|end_of_text|> the greedy choice: both servers must stop there.
    end = Tokenizer.from_file(str(models["hf"] / "tokenizer.json")).token_to_id("<|end_of_text|>")
    got = {}
    for name, client in clients(servers).items():
        r = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=6,
                                      temperature=0, logit_bias={str(end): 100})
        got[name] = (r.choices[0].text, r.choices[0].finish_reason, r.usage.completion_tokens)
    assert got["hf"][1] == "stop", got
    assert got["f32"] == got["hf"]
