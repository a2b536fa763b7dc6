"""Every ``python`` block of the README and docs/ runs, as a reader would run it.

Each block is a standalone script: it is written to a file in a temporary directory
(with the page's other ``# NAME.py`` files beside it) and run by a fresh interpreter,
with nothing added to it. A block with top-level ``await`` or ``async with`` is not a
script (Python refuses it), so it fails: the pages wrap such code in a function given
to ``trio.run``.

- A block that calls ``wscompat.run(`` serves until it is interrupted: it is started on
  a free port in place of the one shown, must answer a WebSocket echo on RFC 6455 and
  hixie-76, and must then exit with status 0 and no traceback on SIGINT (Ctrl-C).
- A block that runs another server (``trio.run(wscompat.serve, ...)``, or a websockets
  server's ``serve_forever()`` in the comparisons) is checked the same way (websockets
  only on RFC 6455), and must end within a bound on SIGINT; how it ends is Python's
  (``KeyboardInterrupt``). A script that runs such a server in a thread of its own and
  talks to it is a script like any other.
- Any other block must exit 0 within a bound. The ports it names (8080, 8765, 9002) are
  replaced by the port of a wscompat echo server that runs for it, so a client example
  has a server to talk to.

The echo checks connect to the path ``/live`` with the origin ``https://app.example``,
which the guide's ``process_request`` example admits.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

import wscompat.cli
from wscompat import Draft

from ..conftest import Starter
from .blocks import Block, each, of_kind, write_page_files
from .processes import MESSAGE, echo, free_port, listening, started

KINDS = ("python",)
BLOCKS = of_kind(*KINDS)
PORTS = re.compile(r"\b(8080|8765|9002)\b")
SCRIPT_BOUND = 20.0
"""Seconds a script that is not a server may run."""


def role(code: str) -> str:
    if "wscompat.run(" in code:
        return "run"
    # serve_forever() called, not a thread's target: the script itself serves.
    if "serve_forever()" in code or re.search(r"trio\.run\((partial\()?wscompat\.serve\b", code):
        return "server"
    return "script"


def prepare(block: Block, directory: Path, port: int) -> Path:
    """The block as a file in ``directory``, its ports replaced by ``port``."""
    try:
        compile(block.code, block.where, "exec")
    except SyntaxError as exc:
        pytest.fail(f"{block.where} is not a standalone script: {exc}")
    write_page_files(block.page, directory)
    script = directory / (block.file_name or "example.py")
    script.write_text(PORTS.sub(str(port), block.code), encoding="utf-8")
    return script


@each(*KINDS)
async def test_the_example_runs(block: Block, tmp_path: Path, start_server: Starter) -> None:
    what = role(block.code)
    if what == "script":
        server = await start_server(wscompat.cli.echo)
        script = prepare(block, tmp_path, server.port)
        async with started([sys.executable, script.name], tmp_path, tmp_path / "out") as run:
            status = await run.wait(SCRIPT_BOUND)
            assert status == 0, f"{block.where}: {run.describe()}"
        return
    port = free_port()
    script = prepare(block, tmp_path, port)
    async with started([sys.executable, script.name], tmp_path, tmp_path / "out") as process:
        await listening(process, port)
        # A peer's server (websockets) speaks RFC 6455 only; wscompat every draft.
        drafts = [Draft.RFC6455] if "websockets" in block.code else [Draft.RFC6455, Draft.HIXIE76]
        for draft in drafts:
            reply = await echo(f"ws://127.0.0.1:{port}/live", draft=draft)
            assert MESSAGE in reply, (block.where, draft, reply)
        status = await process.stop(signal.SIGINT)
        if what == "run":
            assert status == 0, f"{block.where}: {process.describe()}"
            assert "Traceback" not in process.output(), process.describe()


def test_the_guide_and_readme_have_python() -> None:
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/guide.md"}
