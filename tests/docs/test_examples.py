"""Every Python block of the README and docs/ runs, as a reader would run it.

A block that starts a server (``trio.run(wscompat.serve, ...)``, or a websockets server
in the peers' docs) runs in a subprocess on a free port in place of the one shown, and
a wscompat client of two drafts checks that it answers. A block that is a client
(top-level ``async with connect(...)``) runs against an echo server on a free port. Any
other block is executed for its definitions, with ``trio``, ``wscompat``, ``partial``
and a ``handler`` in scope, as the text around it supplies them.
"""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest
import trio

import wscompat
import wscompat.cli
from wscompat import Draft, connect

from ..conftest import Starter

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
PORTS = re.compile(r"\b(8080|8765|9002)\b")
START_BOUND = 20.0
"""Seconds a server example may take to listen."""


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for index, match in enumerate(BLOCK.finditer(page.read_text())):
            found.append((f"{page.relative_to(ROOT)}#{index + 1}", match.group(1)))
    return found


def kind(code: str) -> str:
    if "serve_forever" in code or re.search(r"trio\.run\((partial\()?wscompat\.serve", code):
        return "server"
    if re.search(r"^(async with|await) ", code, re.M):
        return "client"
    return "definitions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def answers(port: int, draft: Draft) -> str | bytes:
    with trio.fail_after(10):
        async with connect(f"ws://127.0.0.1:{port}/live", draft=draft,
                           origin="https://app.example") as ws:
            await ws.send("from the docs")
            return await ws.receive()


async def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    with trio.fail_after(START_BOUND):
        while True:
            assert process.poll() is None, process.communicate()[1].decode(errors="replace")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


PRELUDE = """
import trio, wscompat
from functools import partial
async def handler(ws):
    async for message in ws:
        await ws.send(message)
"""


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[w for w, _ in blocks()])
async def test_the_example_runs(where: str, code: str, start_server: Starter) -> None:
    what = kind(code)
    if what == "server":
        port = free_port()
        source = PORTS.sub(str(port), code)
        if "def handler" not in source and "websockets" not in source:
            source = PRELUDE + source
        process = subprocess.Popen([sys.executable, "-c", source], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            await wait_listening(port, process)
            # A peer's server (websockets) speaks RFC 6455 only; wscompat every draft.
            drafts = [Draft.RFC6455] if "websockets" in source else [Draft.RFC6455, Draft.HIXIE76]
            for draft in drafts:
                reply = await answers(port, draft)
                assert "from the docs" in str(reply), (where, draft, reply)
        finally:
            process.kill()
            process.communicate()
    elif what == "client":
        server = await start_server(wscompat.cli.echo)
        source = PORTS.sub(str(server.port), code).replace(
            "async with connect(url,", f'async with connect("ws://127.0.0.1:{server.port}/",')
        wrapped = PRELUDE + "async def example():\n" + textwrap.indent(source, "    ")
        printed: list[str] = []
        finished = False
        with trio.move_on_after(10) as scope:

            def show(*args: object) -> None:
                # An example ends with what it prints: a server in a nursery would
                # otherwise serve on until cancelled.
                printed.append(" ".join(map(str, args)))
                scope.cancel()

            namespace: dict[str, object] = {"print": show}
            exec(compile(wrapped, where, "exec"), namespace)
            await namespace["example"]()  # type: ignore[operator]
            finished = True
        assert finished or printed, "the example neither ended nor printed within 10 s"
    else:
        namespace = {"trio": trio, "wscompat": wscompat, "partial": partial}
        exec(compile(PRELUDE + code, where, "exec"), namespace)
        definitions = [n.name for n in ast.parse(code).body
                       if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        assert all(callable(namespace[name]) for name in definitions)


def test_every_page_with_python_is_covered() -> None:
    assert {where.split("#")[0] for where, _ in blocks()} >= {"README.md", "docs/guide.md"}
