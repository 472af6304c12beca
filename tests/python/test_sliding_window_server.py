"""The memory budget of a model with sliding-window layers (Gemma 3's layout) through the real
server: a sliding layer holds only its window, so a sequence far longer than the cache would hold
at every layer's full cost is admitted and runs to the end, and /metrics reports a token's mean
cost at the context length.

A tiny generated Gemma 3 model: 4 layers, sliding and global alternating (0 and 2 slide), window
16, 4 KV heads of 64: fp16 K+V cost 2 x 256 x 2 = 1024 bytes per token and layer, 4096 over the
four layers, so the 1 MiB minimum of --cache-memory holds 256 tokens at full cost (16 blocks).
"""

import sys
from pathlib import Path

import pytest
import requests

prom_parser = pytest.importorskip("prometheus_client.parser")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from server_process import BINARY, Server  # noqa: E402

pytestmark = pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built")

MAX_POS = 1024
WINDOW = 16
LAYER_BYTES = 2 * 4 * 64 * 2  # K and V, 4 heads of 64, fp16
MODEL = dict(arch="gemma3", layers=4, hidden=128, intermediate=256, heads=4, kv_heads=4,
             head_dim=64, max_pos=MAX_POS, sliding_window=WINDOW)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = make_test_model(tmp_path_factory.mktemp("model") / "gemma", **MODEL)
    s = Server(model, tmp_path_factory.mktemp("log") / "server.log", "--served-model-name", "tiny",
               "--cache-memory", "1MiB", "--cache", "fp16")
    yield s
    assert s.stop() == 0, s.log.read_text()


def complete(server, max_tokens):
    body = {"model": "tiny", "prompt": "the long road", "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True}
    return requests.post(server.url + "/v1/completions", json=body, timeout=300)


def samples(server):
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {s.name: s.value for fam in prom_parser.text_string_to_metric_families(text)
            for s in fam.samples}


def test_a_sequence_longer_than_the_full_cost_cache_runs_to_the_end(server):
    # 420 tokens at full cost would need 27 blocks of the 16; with the global layers alone
    # growing past the window they need 14.
    r = complete(server, 400)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 400
    assert r.json()["choices"][0]["finish_reason"] == "length"
    m = samples(server)
    assert m["xquant:cache_blocks"] == 16
    assert m["xquant:cache_blocks_free"] == 16, "the finished sequence gave its blocks back"


def test_a_sequence_beyond_what_the_pool_holds_is_refused(server):
    # The longest sequence: 15 window tokens at full cost, then 241 blocks' worth at half.
    r = complete(server, 600)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_metrics_count_the_window_once(server):
    m = samples(server)
    full_context = MAX_POS * 2 * LAYER_BYTES + (WINDOW - 1) * 2 * LAYER_BYTES
    assert m["xquant:cache_bytes_per_token"] == pytest.approx(full_context / MAX_POS)
    assert m["xquant:cache_bytes_per_token"] < 4 * LAYER_BYTES * 0.6
    assert m["xquant:cache_compression_ratio"] == pytest.approx(1.0)
    assert "sliding-window layers hold a sequence's last 15 tokens" in server.log.read_text()
