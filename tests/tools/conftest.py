"""Real servers on loopback ports for the tools tests, and the tools as subprocesses.

Each server is a subprocess whose output goes to a file (a pipe nobody reads would
fill up and stall it): ``wscompat serve`` (ready at its "listening on" log line), the
``websockets`` echo server (``websockets_echo.py``) and Node's ``ws`` echo server
(``tests/peers/node/ws_echo.js``, its package installed by ``npm install`` in
tests/run.sh), both ready at ``listening PORT``. The tools run as ``python -m
wscompat.tools``, each bounded by :data:`RUN_BOUND`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
NODE_PEER = ROOT / "tests" / "peers" / "node"
START_BOUND = 20.0
"""Seconds a server may take to listen (an interpreter or node start, on a slow CI)."""
RUN_BOUND = 60.0
"""Seconds one run of a tool may take; the tests pass far tighter bounds to the tools."""
TOOL = (sys.executable, "-m", "wscompat")
IDLE = 1.0
"""The idle timeout of ``late_hixie_server``, whose closes the client tests watch."""
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}


@dataclass
class Server:
    """A server process, the port it listens on, and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(name: str, argv: Sequence[str], log: Path, ready: str, cwd: Path = ROOT) -> Server:
    """Start ``argv``; return once its output has a line matching ``ready``, whose
    group 1 is the port."""
    with log.open("wb") as output:
        process = subprocess.Popen(list(argv), cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT)
    server = Server(name, process, log)
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(ready, server.output())
        if match:
            server.port = int(match.group(1))
            return server
        time.sleep(0.05)
    server.stop()
    pytest.fail(f"{name} did not start:\n{server.output()[-2000:]}", pytrace=False)


def start_wscompat(log: Path, *flags: str) -> Server:
    argv = [sys.executable, "-m", "wscompat", "serve", "--port", "0", *flags]
    return start("wscompat serve", argv, log, r"listening on \S+ port (\d+)")


@dataclass
class TLSFiles:
    """A test CA's certificate, and a server certificate for 127.0.0.1 it issued."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key))
    return files


@pytest.fixture(scope="session")
def wscompat_server(tmp_path_factory: pytest.TempPathFactory,
                    tls_files: TLSFiles) -> Iterator[Server]:
    """The echo server with its defaults, and TLS on the same port."""
    log = tmp_path_factory.mktemp("wscompat") / "serve.log"
    server = start_wscompat(log, "--certfile", str(tls_files.cert),
                            "--keyfile", str(tls_files.key))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def late_hixie_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """wscompat answering hixie-76 only once key3 is there, with hixie-76 and RFC 6455
    the only drafts enabled, and connections idle for :data:`IDLE` seconds closed."""
    log = tmp_path_factory.mktemp("late") / "serve.log"
    server = start_wscompat(log, "--no-hixie76-early-head", "--drafts", "76,13",
                            "--idle-timeout", str(IDLE))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def websockets_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("websockets") / "server.log"
    server = start("the websockets server",
                   [sys.executable, str(HERE / "websockets_echo.py"), "0"], log,
                   r"listening (\d+)")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: tests/run.sh installs Node.js and the ws "
                    "package", pytrace=False)
    if not (NODE_PEER / "node_modules" / "ws").is_dir():
        pytest.fail("Node's ws package is missing: run 'npm install' in tests/peers/node "
                    "(tests/run.sh does)", pytrace=False)
    log = tmp_path_factory.mktemp("node") / "server.log"
    server = start("Node's ws server", [node, str(NODE_PEER / "ws_echo.js"), "0"], log,
                   r"listening (\d+)", cwd=NODE_PEER)
    yield server
    server.stop()


def run_tool(*args: str, stdin: str | None = None,
             bound: float = RUN_BOUND) -> subprocess.CompletedProcess[str]:
    """Run ``wscompat client|probe ...`` to its end, with ``stdin`` as its input (none
    when None: standard input is then empty)."""
    return subprocess.run(
        [*TOOL, *args], cwd=ROOT, input=stdin if stdin is not None else "",
        capture_output=True, encoding="utf-8", timeout=bound, check=False, env=ENV,
    )
