"""Backends written by others, started once per session, and a gateway per test.

The ``websockets`` asyncio server (``websockets_backend.py``) and Node's ``ws`` server
(``tests/peers/node/ws_backend.js``, its ``ws`` package installed by ``npm install`` in
``tests/run.sh``) run as subprocesses; each prints ``listening PORT`` when ready. The
gateway runs in the test's own trio run, in front of whichever backend a test names.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import wscompat
from wscompat.gateway import GatewayConfig, RouteTable, serve_gateway

HERE = Path(__file__).parent
PEERS = HERE.parent / "peers" / "node"
NODE_BACKEND = PEERS / "ws_backend.js"
PY_BACKEND = HERE / "websockets_backend.py"
START_TIMEOUT = 20.0

GatewayStarter = Callable[..., Awaitable[wscompat.Server]]


class Backend:
    """A backend process; ``port`` (or ``unix``) is where it listens."""

    def __init__(self, argv: list[str], name: str, cwd: Path | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline().decode() if ready else ""
        if not line.startswith("listening "):
            self.stop()
            errors = self.process.stderr.read().decode()[-2000:] if self.process.stderr else ""
            pytest.fail(f"{name} did not start ({line!r}):\n{errors}", pytrace=False)
        self.where = line.split(maxsplit=1)[1].strip()

    @property
    def port(self) -> int:
        return int(self.where)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="session")
def py_backend() -> Iterator[Backend]:
    """The ``websockets`` asyncio server, on a loopback port."""
    backend = Backend([sys.executable, str(PY_BACKEND)], "the websockets backend")
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_backend(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[Backend]:
    """The ``websockets`` server over TLS, its certificate (for 127.0.0.1) signed by
    ``tls_ca``."""
    pem = tmp_path_factory.mktemp("tls") / "backend.pem"
    cert = tls_ca.issue_cert("127.0.0.1")
    pem.write_bytes(cert.private_key_and_cert_chain_pem.bytes())
    backend = Backend([sys.executable, str(PY_BACKEND), "--tls", str(pem)],
                      "the websockets backend over TLS")
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def unix_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The ``websockets`` server on a Unix socket (``backend.where`` is its path)."""
    path = tmp_path_factory.mktemp("unix") / "backend.sock"
    backend = Backend([sys.executable, str(PY_BACKEND), "--unix", str(path)],
                      "the websockets backend on a Unix socket")
    yield backend
    backend.stop()


def node_or_fail() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the gateway tests need Node.js and its ws "
                    "package (tests/run.sh installs both)", pytrace=False)
    probe = subprocess.run([node, "-e", "require('ws')"], cwd=PEERS, capture_output=True,
                           timeout=30, check=False)
    if probe.returncode != 0:
        pytest.fail("Node's ws package is missing: run 'npm install' in tests/peers/node "
                    f"(tests/run.sh does): {probe.stderr.decode()[-300:]}", pytrace=False)
    return node


@pytest.fixture(scope="session")
def node_backend() -> Iterator[Backend]:
    """Node's ``ws`` server, on a loopback port."""
    backend = Backend([node_or_fail(), str(NODE_BACKEND), "0"], "the Node ws backend",
                      cwd=PEERS)
    yield backend
    backend.stop()


@pytest.fixture
async def start_gateway(nursery: trio.Nursery) -> GatewayStarter:
    """Start a gateway on a free loopback port; ``upstream`` and ``routes`` are URLs,
    other keywords GatewayConfig fields or ServerOptions fields."""
    config_fields = set(GatewayConfig.__dataclass_fields__) - {"routes"}

    async def start(upstream: str | None = None, routes: dict[str, str] | None = None,
                    **kwargs: Any) -> wscompat.Server:
        config = GatewayConfig(
            RouteTable.of(upstream, routes),
            **{k: v for k, v in kwargs.items() if k in config_fields},
        )
        options = {k: v for k, v in kwargs.items() if k not in config_fields}
        server: wscompat.Server = await nursery.start(
            lambda task_status: serve_gateway(config, "127.0.0.1", 0,
                                              task_status=task_status, **options))
        return server

    return start


async def backend_view(ws: wscompat.Connection) -> dict[str, Any]:
    """The first message of a ``/headers`` connection: what the backend saw."""
    with trio.fail_after(10):
        first = await ws.receive()
    assert isinstance(first, str), first
    view: dict[str, Any] = json.loads(first)
    return view


def header(view: dict[str, Any], name: str) -> list[str]:
    """Every value of one header field the backend received."""
    return [value for key, value in view["headers"] if key.lower() == name.lower()]
