"""``wscompat proxy`` as an operator runs it, each case a real process (run as
``python -m wscompat.gateway proxy``, which the ``wscompat`` command hands over to):
every draft through it, its usage errors, ``--workers`` and ``--metrics``."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from wscompat import Draft

from ..live.legacy_helpers import KEY3, hixie_request
from ..test_serve_operations import ENV, HOST, Served, http_get, metric
from .conftest import Backend

COMMAND = [sys.executable, "-m", "wscompat.gateway", "proxy"]


class Proxied(Served):
    """``wscompat proxy ...`` in a child process, stderr read by a thread."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen([*COMMAND, "--host", HOST, *flags],
                                     stderr=subprocess.PIPE, text=True, env=ENV)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()


@pytest.fixture
def proxied() -> Iterator[list[Proxied]]:
    started: list[Proxied] = []
    yield started
    for one in started:
        one.kill()


def start(proxied: list[Proxied], *flags: str) -> tuple[Proxied, int]:
    one = Proxied(*flags)
    proxied.append(one)
    port = int(one.wait_for(r"listening on \S+ port (\d+)").group(1))
    return one, port


def hixie76_echo(port: int, message: str) -> str:
    """One hixie-76 exchange over a blocking socket: the draft's example keys."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(hixie_request(port, "/cli", Draft.HIXIE76) + KEY3)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 16:
            data += sock.recv(4096)
        sock.sendall(b"\x00" + message.encode() + b"\xff")
        rest = data.partition(b"\r\n\r\n")[2][16:]
        while not rest.endswith(b"\xff"):
            rest += sock.recv(4096)
        sock.sendall(b"\xff\x00")
    return rest[1:-1].decode()


def test_every_draft_through_the_command(proxied: list[Proxied], node_backend: Backend
                                         ) -> None:
    one, port = start(proxied, "--port", "0", "--upstream", node_backend.url,
                      "--hixie-binary", "drop", "--log-open")
    assert hixie76_echo(port, "hixie-76 via the command") == "hixie-76 via the command"
    ws = websocket.create_connection(f"ws://{HOST}:{port}/x", timeout=5)
    ws.send("rfc6455 via the command")
    assert ws.recv() == "rfc6455 via the command"
    ws.close()
    one.wait_for(r"/x rfc6455 plain .* close=1000")
    assert one.stop(signal.SIGINT) == 0
    assert "Traceback" not in "".join(one.lines)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--app", "chat:handler", "--upstream", "ws://127.0.0.1:9/"],
         "argument --app: the backend is the application"),
        ([], "give --upstream URL, or at least one --route PREFIX=URL"),
        (["--upstream", "http://127.0.0.1:9/"], "an upstream is ws://, wss://"),
        (["--upstream", "tcp://127.0.0.1"], "tcp:// needs a port"),
        (["--route", "chat=ws://127.0.0.1:9/"], "a route is /PREFIX=URL"),
        (["--route", "/a=ws://h:1/", "--route", "/a/=ws://h:2/"], "two routes for /a"),
        (["--upstream", "ws://h:1/", "--forward-headers", "Cookie,Host"],
         "Host cannot be forwarded"),
        (["--upstream", "ws://h:1/", "--upstream-failure-code", "1006"], "invalid choice"),
    ],
    ids=["app", "no-upstream", "http", "tcp-port", "route", "same-route", "host",
         "failure-code"],
)
def test_usage_errors(flags: list[str], message: str) -> None:
    done = subprocess.run([*COMMAND, *flags], capture_output=True, text=True, timeout=30,
                          env=ENV, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("usage: wscompat proxy"), done.stderr
    assert message in done.stderr


def test_an_unusable_cafile_is_one_line(tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not a certificate\n")
    done = subprocess.run([*COMMAND, "--upstream", "wss://h/", "--upstream-cafile",
                           str(cafile)], capture_output=True, text=True, timeout=30, env=ENV,
                          check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"wscompat: error: --upstream-cafile '{cafile}': ")
    assert len(done.stderr.splitlines()) == 1


def test_workers_and_metrics(proxied: list[Proxied], py_backend: Backend) -> None:
    one, port = start(proxied, "--port", "0", "--workers", "2", "--metrics",
                      "--upstream", py_backend.url)
    one.wait_for(r"\[w[12]\]: listening on")
    for i in range(20):
        ws = websocket.create_connection(f"ws://{HOST}:{port}/", timeout=5)
        ws.send(f"message {i}")
        assert ws.recv() == f"message {i}"
        ws.close()
    status, body = http_get(port, "/metrics")
    assert status == 200
    assert metric(body, "wscompat_handshakes_total", draft="rfc6455",
                  outcome="accepted") == 20
    assert one.stop() == 0
    closed = [line for line in one.lines if " rfc6455 plain " in line]
    assert {line.partition("[w")[2][:1] for line in closed} == {"1", "2"}
