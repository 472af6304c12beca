"""A streaming client that stops reading: the server's socket buffer fills, the rest of the
stream waits in the server (it writes to the socket directly while the socket takes it, and
through an async write once it does not), other clients are served meanwhile, and when the
client reads again it gets the whole stream, in order, equal to the same request not streamed.
With one HTTP thread (the default: no strands, events handed to a session inline) and with two.

The binary comes from $XQ_BUILD_DIR (default build/release), found by server_process.py; the
tests skip when it is missing.
"""

import http.client
import json
import socket
import sys
import time
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_test_model import make_test_model  # noqa: E402
from server_process import BUILD, BINARY, Server, scrape_metrics  # noqa: E402

pytestmark = pytest.mark.skipif(
    not BINARY.exists(), reason=f"{BINARY} not built (ninja -C {BUILD} xquant-server)")

# With 20 top logprobs a token's chunk is ~1.5 KB: 4 x 1200 of them are more than the kernel
# buffers for a socket (Linux's tcp_wmem allows a send buffer of up to 4 MiB by default).
MAX_TOKENS, N = 1200, 4
REQUEST = {"model": "tiny", "prompt": "the cat sat on the", "max_tokens": MAX_TOKENS, "n": N,
           "temperature": 0, "ignore_eos": True, "logprobs": 20}


@pytest.fixture(scope="module", params=[1, 2], ids=["http-threads-1", "http-threads-2"])
def server(tmp_path_factory, request):
    model = make_test_model(tmp_path_factory.mktemp("model") / "tiny", max_pos=2048)
    s = Server(model, tmp_path_factory.mktemp("log") / "server.log", "--served-model-name",
               "tiny", "--http-threads", str(request.param))
    yield s
    assert s.stop() == 0, s.log.read_text()


def send_queue(local_port, remote_port):
    """Bytes queued for sending on the loopback socket local_port -> remote_port (/proc/net/tcp),
    or None if there is no such socket."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == local_port and int(f[2].split(":")[1], 16) == remote_port:
            return int(f[4].split(":")[0], 16)
    return None


def test_stalled_reader_gets_the_whole_stream_and_blocks_no_one(server):
    host, port = server.url.split("//")[1].split(":")
    port = int(port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills at once
    sock.connect((host, port))
    conn = http.client.HTTPConnection(host, port)
    conn.sock = sock
    conn.request("POST", "/v1/completions", body=json.dumps({**REQUEST, "stream": True}),
                 headers={"Content-Type": "application/json"})

    # While the stalled client's tokens pile up in the server, another client is answered.
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                           timeout=60)
    whole = client.completions.create(
        **{k: v for k, v in REQUEST.items() if k != "ignore_eos"}, extra_body={"ignore_eos": True})
    assert [c.finish_reason for c in whole.choices] == ["length"] * N

    # The engine finishes the stalled request's generation while nothing is read.
    finished = 'xquant:request_success_total{finished_reason="length"}'
    deadline = time.time() + 60
    while scrape_metrics(server).get(finished, 0) < 2 * N and time.time() < deadline:
        time.sleep(0.05)
    assert scrape_metrics(server).get(finished, 0) == 2 * N
    queued = send_queue(port, sock.getsockname()[1])
    assert queued is not None and queued > 0, "the server's socket should hold unread bytes"

    res = conn.getresponse()
    assert res.status == 200
    text, tokens, done = [""] * N, [[] for _ in range(N)], False
    for raw in res.read().split(b"\n"):
        if not raw.startswith(b"data: "):
            continue
        if raw == b"data: [DONE]":
            done = True
            continue
        for choice in json.loads(raw[6:])["choices"]:
            text[choice["index"]] += choice["text"]
            tokens[choice["index"]] += choice["logprobs"]["tokens"]
    conn.close()
    assert done
    for i, c in enumerate(whole.choices):
        assert len(tokens[i]) == MAX_TOKENS
        assert tokens[i] == c.logprobs.tokens
        assert text[i] == c.text
