"""Starts the real xquant-server binary on a free loopback port for a test, its log in a file."""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from locations import BUILD
BINARY = next((p for p in (BUILD / "xquant-server", BUILD / "server" / "xquant-server")
               if p.exists()), BUILD / "xquant-server")


class Server:
    """One xquant-server process on a free port (--port 0; the port is read from its log)."""

    def __init__(self, model: Path, log: Path, *flags: str, start_timeout: float = 120,
                 preexec_fn=None):
        self.log = log
        self.proc = subprocess.Popen(
            [str(BINARY), "--model", str(model), "--port", "0", *flags],
            stdout=log.open("w"), stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        self.url = self._wait_listening(start_timeout)
        self._wait_healthy()

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"listening on (http://[\d.]+:\d+)", self.log.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("server did not start: " + self.log.read_text())

    def _wait_healthy(self) -> None:
        for _ in range(200):
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("no /health")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def scrape_metrics(server):
    """The xquant:* samples of /metrics, keyed by name with labels."""
    text = requests.get(server.url + "/metrics").text
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^(xquant:[a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def check_disconnect_aborts(server, max_tokens):
    """A streaming client that reads the response head and hangs up: the server must count its
    request as aborted at once."""
    aborted = 'xquant:request_success_total{finished_reason="abort"}'
    before = scrape_metrics(server).get(aborted, 0)
    body = {"model": "tiny", "prompt": "go", "max_tokens": max_tokens, "stream": True,
            "ignore_eos": True}
    host, port = server.url.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)))
    payload = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
    for _ in range(100):
        if scrape_metrics(server).get(aborted, 0) > before:
            break
        time.sleep(0.02)
    assert scrape_metrics(server).get(aborted, 0) == before + 1
