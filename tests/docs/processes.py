"""Programs the pages start, run as a reader would run them: real processes, real ports.

Every process runs the checkout under test (``PYTHONPATH`` starts with the repository
root, ``PATH`` with the directory of the installed ``wscompat``), writes its output to
a file (so no pipe can fill up and stall it), and is killed when its test ends, whatever
happened. A server is ready when its port accepts a TCP connection; it is then checked
with a WebSocket echo, and stopped with the signal a reader (Ctrl-C) or an init system
(SIGTERM) sends.

A gateway (``wscompat proxy``) is checked through to its backend: a WebSocket backend
must echo the message back (after a greeting or two of its own, as the gateway page's
Node backend sends), a byte-stream backend (``tcp://``, ``unix:``) its bytes, carried
in binary messages, or in base64 text to a hixie client, which has no binary.

Node programs run with ``NODE_PATH`` at the packages of ``tests/peers/node``, which the
test command installs there from its ``package.json``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
import trustme

from wscompat import Draft, connect

from .blocks import ROOT

START_BOUND = 20.0
"""Seconds a server may take to listen (an interpreter start and imports, on a slow CI)."""
STOP_BOUND = 10.0
"""Seconds a server may take to exit after SIGINT or SIGTERM with no client connected."""
ECHO_BOUND = 10.0
"""Seconds for one WebSocket echo: connect, handshake, send, receive, close."""
MESSAGE = "from the docs"
ORIGIN = "https://app.example"
"""The origin the echo checks send: the one the pages' origin examples allow."""
GREETINGS = 3
"""Messages a gateway's backend may send a client on its own before the echo."""
NODE_PEERS = ROOT / "tests" / "peers" / "node"
NODE_MODULES = NODE_PEERS / "node_modules"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wscompat_executable() -> str:
    """The installed ``wscompat`` command, as a reader's shell finds it."""
    found = shutil.which("wscompat")
    assert found is not None, "no wscompat command on PATH: install the project first"
    return found


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT), env.get("PYTHONPATH", "")) if part
    )
    env["PATH"] = os.pathsep.join(
        (str(Path(wscompat_executable()).parent), str(Path(sys.executable).parent),
         env.get("PATH", ""))
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Process:
    """A program a page starts, and the file its stdout and stderr go to."""

    argv: Sequence[str]
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        return f"{' '.join(self.argv)} (exit {self.popen.poll()}):\n{self.output()}"

    async def wait(self, bound: float) -> int | None:
        """The exit status, or None if it is still running after ``bound`` seconds."""
        with trio.move_on_after(bound):
            while self.popen.poll() is None:
                await trio.sleep(0.02)
        return self.popen.poll()

    async def stop(self, signum: signal.Signals, bound: float = STOP_BOUND) -> int:
        """Send ``signum`` and return the exit status; fails if it does not exit in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
        status = await self.wait(bound)
        assert status is not None, f"still running {bound} s after {signum.name}: {self.describe()}"
        return status


@asynccontextmanager
async def started(
    argv: Sequence[str], cwd: Path, log: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Process]:
    """Run ``argv`` in ``cwd`` (``env`` added to the environment); killed on leaving the
    block if it is still running."""
    with log.open("wb") as output:
        popen = subprocess.Popen(
            list(argv), cwd=cwd, env={**environment(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=output, stderr=subprocess.STDOUT,
        )
    process = Process(argv, popen, log)
    try:
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait()


async def listening(process: Process, port: int) -> None:
    """Wait until ``port`` accepts connections; fails if the process exits first."""
    with trio.fail_after(START_BOUND):
        while True:
            assert process.popen.poll() is None, f"exited before listening: {process.describe()}"
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def echo(
    url: str, *, draft: Draft = Draft.RFC6455, ssl_context: ssl.SSLContext | None = None
) -> str:
    """What the server at ``url`` answers to one message (as text)."""
    with trio.fail_after(ECHO_BOUND):
        async with connect(url, draft=draft, origin=ORIGIN, ssl_context=ssl_context) as ws:
            await ws.send(MESSAGE)
            return str(await ws.receive())


async def relayed(
    url: str, *, draft: Draft = Draft.RFC6455, ssl_context: ssl.SSLContext | None = None
) -> list[str]:
    """What a gateway at ``url`` passes on after one message, up to the message that
    carries it back: a backend may greet its client first (up to ``GREETINGS`` times).
    What came within ``ECHO_BOUND`` seconds, when the echo did not."""
    replies: list[str] = []
    with trio.move_on_after(ECHO_BOUND):
        async with connect(url, draft=draft, origin=ORIGIN, ssl_context=ssl_context) as ws:
            await ws.send(MESSAGE)
            while len(replies) <= GREETINGS and not (replies and MESSAGE in replies[-1]):
                replies.append(str(await ws.receive()))
    return replies


async def streamed(
    url: str, *, draft: Draft = Draft.RFC6455, ssl_context: ssl.SSLContext | None = None
) -> bytes:
    """What a gateway at ``url`` gives back from a byte-stream backend for the bytes of
    ``MESSAGE``: sent and received in binary messages, or by a hixie client (which has
    no binary) as base64 text with the ``base64`` subprotocol, as websockify's clients
    do. The stream's chunks are gathered until they are as long as what was sent, or
    for ``ECHO_BOUND`` seconds."""
    sent = MESSAGE.encode()
    hixie = draft in (Draft.HIXIE75, Draft.HIXIE76)
    received = b""
    with trio.move_on_after(ECHO_BOUND):
        async with connect(url, draft=draft, origin=ORIGIN, ssl_context=ssl_context,
                           subprotocols=("base64",) if hixie else ()) as ws:
            await ws.send(base64.b64encode(sent).decode() if hixie else sent)
            while len(received) < len(sent):
                message = await ws.receive()
                if hixie:
                    assert isinstance(message, str), f"binary to a hixie client: {message!r}"
                    received += base64.b64decode(message, validate=True)
                else:
                    assert isinstance(message, bytes), f"text for a stream's bytes: {message!r}"
                    received += message
    return received


def node_executable() -> str:
    """The ``node`` command, after checking that the packages its programs may require
    are installed (``npm install`` in tests/peers/node, as the test command runs it)."""
    found = shutil.which("node")
    assert found is not None, "no node command on PATH: install Node.js"
    missing = [name for name in node_dependencies() if not (NODE_MODULES / name).is_dir()]
    assert not missing, f"{missing} not installed: run npm install in {NODE_PEERS}"
    return found


def node_dependencies() -> set[str]:
    """The packages tests/peers/node/package.json installs."""
    package = json.loads((NODE_PEERS / "package.json").read_text(encoding="utf-8"))
    return set(package.get("dependencies", {}))


@dataclass
class Certificates:
    """A test CA, and the client context that trusts it."""

    ca: trustme.CA
    client: ssl.SSLContext

    def write(self, certfile: Path, keyfile: Path | None) -> None:
        """A certificate for 127.0.0.1 and localhost, with its key in ``keyfile`` or,
        without one, after the chain in ``certfile`` (as ``--certfile`` alone takes it)."""
        issued = self.ca.issue_cert("127.0.0.1", "localhost")
        if keyfile is None:
            issued.private_key_and_cert_chain_pem.write_to_path(str(certfile))
            return
        certfile.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(keyfile))

    def write_ca(self, path: Path) -> None:
        """The CA's certificate, as ``--upstream-cafile`` or ``SSL_CERT_FILE`` takes it."""
        self.ca.cert_pem.write_to_path(str(path))


def certificates() -> Certificates:
    ca = trustme.CA()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Certificates(ca, client)
