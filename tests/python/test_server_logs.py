"""What an operator reads: --log-format json (one object per line: time, level, message,
request_id), the X-Request-Id of every reply (the client's own when it sent one) and the
access-log line per request that carries it, and start-up progress with the time of each phase.
The real binary on a tiny model, over HTTP.
"""

import json
import re
import sys
from datetime import datetime
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from server_process import BINARY, BUILD, Server, check_disconnect_aborts  # noqa: E402

pytestmark = pytest.mark.skipif(
    not BINARY.exists(), reason=f"{BINARY} not built (ninja -C {BUILD} xquant-server)")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model") / "tiny", max_pos=256)


def complete(server, stream=False, headers=None):
    return requests.post(server.url + "/v1/completions", headers=headers or {}, json={
        "model": "tiny", "prompt": "the cat sat", "max_tokens": 5, "temperature": 0,
        "ignore_eos": True, "stream": stream})


def test_json_logs_request_ids_and_access_lines(model_dir, tmp_path):
    log = tmp_path / "server.log"
    server = Server(model_dir, log, "--served-model-name", "tiny", "--log-format", "json")
    try:
        plain = complete(server)
        streamed = complete(server, stream=True)
        given = complete(server, headers={"X-Request-Id": "client-id-42"})
        missing = requests.get(server.url + "/v1/nothing-here")
        health = requests.get(server.url + "/health")
    finally:
        assert server.stop() == 0
    ids = [r.headers.get("X-Request-Id") for r in (plain, streamed, given, missing, health)]
    assert all(ids) and len(set(ids)) == 5, ids
    assert ids[2] == "client-id-42"
    assert re.fullmatch(r"req-[0-9a-f]{16}", ids[0])

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for entry in lines:
        assert {"time", "level", "message"} <= entry.keys(), entry
        datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    access = {e["request_id"]: e for e in lines if "request_id" in e}
    for rid, (method, path, status) in zip(ids, [
            ("POST", "/v1/completions", 200), ("POST", "/v1/completions", 200),
            ("POST", "/v1/completions", 200), ("GET", "/v1/nothing-here", 404),
            ("GET", "/health", 200)]):
        entry = access[rid]
        assert entry["level"] == "info"
        assert entry["message"].startswith(f"{method} {path} {status} "), entry
        assert re.search(r" \d+\.\d+ms$", entry["message"]), entry
    for rid in ids[:3]:
        assert "prompt_tokens=" in access[rid]["message"]
        assert "completion_tokens=5 " in access[rid]["message"], access[rid]


def test_text_logs_prefix_the_request_id(model_dir, tmp_path):
    log = tmp_path / "server.log"
    server = Server(model_dir, log, "--served-model-name", "tiny")
    try:
        r = complete(server, headers={"X-Request-Id": "trace-7"})
        bad = complete(server, headers={"X-Request-Id": "has space"})
    finally:
        server.stop()
    assert r.headers["X-Request-Id"] == "trace-7"
    assert bad.headers["X-Request-Id"].startswith("req-")  # unusable ids are replaced
    text = log.read_text()
    assert re.search(r"^\S+ \S+ info \[trace-7\] POST /v1/completions 200 prompt_tokens=\d+ "
                     r"completion_tokens=5 \d+\.\d+ms$", text, re.M), text


def test_a_client_that_hangs_up_gets_a_499_access_line(model_dir, tmp_path):
    log = tmp_path / "server.log"
    server = Server(model_dir, log, "--served-model-name", "tiny", "--max-model-len", "256")
    try:
        check_disconnect_aborts(server, max_tokens=200)
    finally:
        server.stop()
    text = log.read_text()
    assert re.search(r"\[req-[0-9a-f]{16}\] cmpl-\S+: client went away, request aborted$", text,
                     re.M), text
    assert re.search(r"\[req-[0-9a-f]{16}\] POST /v1/completions 499 prompt_tokens=\d+ "
                     r"completion_tokens=\d+ \d+\.\d+ms$", text, re.M), text


def test_startup_progress_and_phase_times(model_dir, tmp_path):
    log = tmp_path / "server.log"
    server = Server(model_dir, log, "--served-model-name", "tiny")
    server.stop()
    text = log.read_text()
    # Not a terminal: a line every 10% of the bytes, ending at 100%.
    steps = [int(p) for p in re.findall(r"loading weights: (\d+)% \(\d+/\d+ tensors", text)]
    assert steps and steps == sorted(steps) and steps[-1] == 100, text
    assert len(steps) >= 3, steps
    m = re.search(r"load phases: open (\d+\.\d+)s, tensors \(read, convert\) (\d+\.\d+)s, after "
                  r"the last tensor \(latent bases, cache set-up\) (\d+\.\d+)s; (\d+\.\d+)s in all",
                  text)
    assert m, text
    parts = [float(x) for x in m.groups()]
    assert abs(sum(parts[:3]) - parts[3]) < 0.02
