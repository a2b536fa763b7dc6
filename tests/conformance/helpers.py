"""What the command tests share: servers in subprocesses, the command itself, and a
headless Chromium that screenshots and dumps a report page.

Every process gets its own process group and is killed with it, whatever the test did.
Chromium is Debian's (``tests/run.sh`` installs it); its output goes to a file, its DOM
dump to a pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
START_BOUND = 20.0
"""Seconds a server may take to listen."""
RUN_BOUND = 120.0
"""Seconds one ``conform`` run may take (a few cases: seconds)."""
BROWSER_BOUND = 60.0
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    """The checkout first on the path, as the tests import it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@dataclass
class Server:
    """A server in a subprocess, on ``port``."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def server(name: str, argv: list[str], port: int, log: Path) -> Iterator[Server]:
    """Start ``argv``, wait until ``port`` accepts TCP, kill its group on leaving."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=environment(), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    running = Server(name, port, process, log)
    try:
        deadline = time.monotonic() + START_BOUND
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited before listening:\n{running.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=1):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{name} is not listening after {START_BOUND} s:\n"
                            f"{running.output()}")
            time.sleep(0.05)
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def wscompat_server(tmp: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    return server("wscompat serve", [sys.executable, "-m", "wscompat", "serve", "--port",
                                     str(port), "--max-message-size", "16MiB"],
                  port, tmp / "wscompat.log")


def websockets_server(tmp: Path) -> contextlib.AbstractContextManager[Server]:
    """The benchmarks' echo server on the ``websockets`` asyncio implementation."""
    port = free_port()
    script = ROOT / "benchmarks" / "servers" / "websockets_asyncio_echo.py"
    return server("the websockets echo server",
                  [sys.executable, str(script), "--port", str(port), "--max-size",
                   str(2**25)], port, tmp / "websockets.log")


@dataclass
class Run:
    status: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.out)
        return document


async def conform(*args: str) -> Run:
    """``python -m wscompat.conformance ARGS`` (``wscompat conform ARGS`` until the
    command is registered in wscompat/cli.py), in a subprocess."""
    with trio.fail_after(RUN_BOUND):
        done = await trio.run_process(
            [sys.executable, "-m", "wscompat.conformance", *args], cwd=ROOT,
            env=environment(), capture_stdout=True, capture_stderr=True, check=False)
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


# -- the browser -------------------------------------------------------------------------


def chromium_path() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    pytest.fail(f"{CHROMIUM} is missing: these tests need Debian's chromium package "
                "(tests/run.sh installs it with apt-get install chromium)", pytrace=False)


async def chromium(page: Path, work: Path, *flags: str) -> str:
    """Open ``page`` in a fresh headless Chromium with ``flags``; its standard output
    (the DOM with ``--dump-dom``). Its whole process group is killed at the end."""
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        env.pop(name, None)
    command = [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={work / 'profile'}",
               *flags, page.as_uri()]
    out, log = work / "stdout.txt", work / "chromium.log"
    status: int | None = None
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env,
            start_new_session=True)
        try:
            with trio.move_on_after(BROWSER_BOUND):
                status = await process.wait()
        finally:
            with trio.CancelScope(shield=True):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with trio.move_on_after(10):
                    await process.wait()
    errors = log.read_text(errors="replace")[-2000:]
    if status is None:
        pytest.fail(f"Chromium took over {BROWSER_BOUND} s on {page}:\n{errors}",
                    pytrace=False)
    assert status == 0, f"Chromium exited with {status} on {page}:\n{errors}"
    return out.read_text(errors="replace")


def png_summary(path: Path) -> tuple[int, int, int]:
    """Width, height and the count of distinct octets in the decoded image rows: a
    blank page has two or three, a page of tables and text far more."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


class Tables(HTMLParser):
    """The tables of a page by id: each a list of rows, each a list of cell texts."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.elements: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(tag)
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
