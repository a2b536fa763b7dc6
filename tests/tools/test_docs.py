"""docs/tools.md shows what the tools really print.

The page's ``text`` blocks marked "checked by tests/tools/test_docs.py" are output:
``$ wscompat ...`` lines, each followed by what it prints (standard output and error,
as a terminal shows them). Each command is run against a wscompat echo server with TLS
on the same port (the page's port 8080 standing for the server's), and must print
exactly those lines, but for the handshake's random keys, key3 and answer, which only
have to be where the page shows them. The block of rows recorded against the
``websockets`` server must be the rows of a probe of that server, and the JSON sample
the hixie-76 answer of a probe of wscompat (its time aside).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ENV, ROOT, RUN_BOUND, TOOL, Server

PAGE = ROOT / "docs" / "tools.md"
PAGE_PORT = "8080"
CHECKED = "checked by tests/tools/test_docs.py"
RANDOM = re.compile(r"^(> Sec-WebSocket-Key[12]: |> \[8 bytes\] |< \[16 bytes\] )")
"""Lines whose rest is random on every run: the hixie-76 keys, key3 and its answer."""
BLOCK = re.compile(r"<!-- not run: (?P<reason>.*?) -->\s*```(?P<kind>\w+)\n(?P<code>.*?)```",
                   re.S)


@dataclass(frozen=True)
class Run:
    command: str
    output: list[str]


def blocks(marker: str) -> list[str]:
    """The page's marked blocks whose reason contains ``marker``."""
    found = [m["code"] for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))
             if marker in m["reason"]]
    assert found, f"docs/tools.md has no block marked {marker!r}"
    return found


def runs() -> list[Run]:
    found: list[Run] = []
    for code in blocks(CHECKED):
        if not code.startswith("$ "):
            continue
        for line in code.splitlines():
            if line.startswith("$ "):
                found.append(Run(line[2:], []))
            else:
                found[-1].output.append(line)
    return found


def run(command: str, port: int) -> list[str]:
    argv = shlex.split(command.replace(PAGE_PORT, str(port)))
    assert argv[0] == "wscompat" and argv[1] in ("client", "probe"), argv
    done = subprocess.run([*TOOL, *argv[1:]], cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8",
                          timeout=RUN_BOUND, check=False)
    return done.stdout.replace(str(port), PAGE_PORT).splitlines()


def same(shown: str, printed: str) -> bool:
    random = RANDOM.match(shown)
    if random is None:
        return shown == printed
    return printed.startswith(random[1]) and len(printed) > len(random[1])


@pytest.mark.parametrize("example", runs(), ids=lambda r: r.command)
def test_the_output_shown_is_printed(example: Run, wscompat_server: Server) -> None:
    printed = run(example.command, wscompat_server.port)
    assert len(printed) == len(example.output), "\n".join(printed)
    for shown, line in zip(example.output, printed, strict=True):
        assert same(shown, line), f"shown: {shown!r}\nprinted: {line!r}"


def test_the_websockets_rows(websockets_server: Server) -> None:
    (shown,) = blocks("tests/tools/websockets_echo.py")
    printed = run(f"wscompat probe {websockets_server.url}", websockets_server.port)
    rows = printed[printed.index(shown.splitlines()[0]):]
    assert rows[: len(shown.splitlines())] == shown.splitlines()


def test_the_json_sample(wscompat_server: Server) -> None:
    page = PAGE.read_text(encoding="utf-8")
    sample = json.loads(re.findall(r"```json\n(.*?)```", page, re.S)[0])
    printed = run(f"wscompat probe ws://127.0.0.1:{PAGE_PORT}/ --json", wscompat_server.port)
    answer = json.loads("\n".join(printed))["drafts"]["hixie-76"]
    sample.pop("seconds")
    answer.pop("seconds")
    assert answer == sample


def test_the_page_is_linked() -> None:
    assert "(tools.md)" in Path(ROOT / "docs" / "index.md").read_text(encoding="utf-8")
