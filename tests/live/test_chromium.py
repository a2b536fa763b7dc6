"""A real headless Chromium against a wscompat server running in the test's process.

Chromium loads ``chromium_page.html`` from a file:// URL; the query string names the
server's port and the scenario. The page talks to the server, checks every echo byte for
byte, and ends by opening a second WebSocket to ``/report`` and sending a JSON summary of
what it saw. The server's handler records its own side of the same exchange, so each test
asserts on both ends. Chromium runs in its own process group, which is killed and reaped
when the test ends, whether it passed or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import trio

import wscompat

pytestmark = pytest.mark.live

Starter = Callable[..., Awaitable[wscompat.Server]]

CHROMIUM = "/usr/bin/chromium"
PAGE = Path(__file__).with_name("chromium_page.html")
TEST_TIMEOUT = 60.0
"""Everything a test does, Chromium's start-up included."""
REPORT_TIMEOUT = 45.0
"""How long to wait for the page's report (less than TEST_TIMEOUT, for a clearer failure)."""

# The page holds the same values (as JavaScript escapes); the server checks it got these.
TEXTS = ["Hello, wscompat! ~ ASCII 0123456789", "中文字符", "😀🎉"]
BINARY = bytes(i % 251 for i in range(65536))
CLOSE_CODE, CLOSE_REASON = 4000, "bye"
GREETING = "hello, superchat"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--enable-logging=stderr",
]


@dataclass
class Seen:
    """What the server's handler observed of one browser connection."""

    path: str
    draft: wscompat.Draft
    version: str | None
    origin: str | None
    offered_subprotocols: str | None
    offered_extensions: str | None
    subprotocol: str | None
    extensions: str | None
    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str = ""


class Peer:
    """The server side of a scenario: ``/`` echoes and closes 4000, ``/chat`` echoes one
    message and closes 1000, ``/report`` hands the page's summary to the test."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.finished = trio.Event()
        self.report_in, self.report_out = trio.open_memory_channel[str | bytes](1)

    async def handler(self, ws: wscompat.Connection) -> None:
        if ws.path == "/report":
            await self.report_in.send(await ws.receive())
            return
        seen = Seen(
            path=ws.path,
            draft=ws.draft,
            version=ws.headers.get("Sec-WebSocket-Version"),
            origin=ws.origin,
            offered_subprotocols=ws.headers.joined("Sec-WebSocket-Protocol"),
            offered_extensions=ws.headers.joined("Sec-WebSocket-Extensions"),
            subprotocol=ws.subprotocol,
            extensions=ws.extensions,
        )
        self.seen.append(seen)
        try:
            if ws.path == "/":
                for _ in range(len(TEXTS) + 1):
                    message = await ws.receive()
                    seen.messages.append(message)
                    await ws.send(message)
                await ws.close(CLOSE_CODE, CLOSE_REASON)
            else:
                message = await ws.receive()
                seen.messages.append(message)
                await ws.send(message)
                await ws.close(1000, "done")
        finally:
            seen.close_code, seen.close_reason = ws.close_code, ws.close_reason
            seen.closed_by = ws.stats.closed_by
            self.finished.set()


def chromium_path() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    pytest.fail(
        f"{CHROMIUM} is missing: these tests need Debian's chromium package "
        "(tests/run.sh installs it with apt-get install chromium)",
        pytrace=False,
    )


def tail(path: Path, lines: int = 40) -> str:
    """The end of Chromium's output, without its complaints about the missing D-Bus."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    kept = [line for line in text.splitlines() if "dbus" not in line.lower()]
    return "\n".join(kept[-lines:]) or "(nothing)"


async def stop(process: trio.Process) -> None:
    """Kill Chromium's whole process group (renderers included) and reap the browser."""
    with trio.CancelScope(shield=True):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with trio.move_on_after(10):
            await process.wait()


async def run_page(
    tmp_path: Path, port: int, scenario: str, peer: Peer, *,
    source: Path = PAGE, extra_flags: Sequence[str] = (),
) -> dict[str, Any]:
    """Open the page in a fresh headless Chromium and return the report it sends."""
    chromium = chromium_path()
    page = tmp_path / source.name
    shutil.copyfile(source, page)
    url = page.as_uri() + "?" + urlencode({"port": port, "scenario": scenario})
    profile = tmp_path / "profile"
    profile.mkdir()
    home = tmp_path / "home"  # crash reports and dconf go under $HOME, not the profile
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        env.pop(name, None)
    log = tmp_path / "chromium.log"
    command = [chromium, *CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}", url]
    reports: list[str | bytes] = []
    exits: list[int] = []
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            with trio.move_on_after(REPORT_TIMEOUT):
                async with trio.open_nursery() as nursery:

                    async def report() -> None:
                        reports.append(await peer.report_out.receive())
                        nursery.cancel_scope.cancel()

                    async def exited() -> None:
                        exits.append(await process.wait())
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(report)
                    nursery.start_soon(exited)
        finally:
            await stop(process)
    if reports:
        result: dict[str, Any] = json.loads(reports[0])
        return result
    if exits:
        problem = f"Chromium exited with status {exits[0]} before the page reported"
    else:
        problem = f"the page sent no report within {REPORT_TIMEOUT:g} s"
    pytest.fail(f"{problem} ({url}); Chromium's output ends with:\n{tail(log)}", pytrace=False)


def assert_clean_report(report: dict[str, Any]) -> None:
    assert report["errors"] == [], report
    assert report.get("opened") is True, report


@pytest.mark.parametrize(
    "drafts",
    [None, frozenset({wscompat.Draft.RFC6455})],
    ids=["all-drafts", "rfc6455-only"],
)
async def test_chromium_echo_and_close(
    start_server: Starter, tmp_path: Path, drafts: frozenset[wscompat.Draft] | None
) -> None:
    peer = Peer()
    options: dict[str, Any] = {} if drafts is None else {"drafts": drafts}
    server = await start_server(peer.handler, **options)
    with trio.fail_after(TEST_TIMEOUT):
        report = await run_page(tmp_path, server.port, "echo", peer)
        await peer.finished.wait()

    # What the server saw.
    assert len(peer.seen) == 1, peer.seen
    seen = peer.seen[0]
    assert seen.path == "/"
    assert seen.draft is wscompat.Draft.RFC6455
    assert seen.version == "13"
    assert seen.origin == "null"  # the page's origin is file://, which is opaque
    assert seen.offered_subprotocols is None
    assert seen.subprotocol is None
    assert [type(m) for m in seen.messages] == [str, str, str, bytes]
    assert seen.messages == [*TEXTS, BINARY]
    assert (seen.close_code, seen.close_reason, seen.closed_by) == (
        CLOSE_CODE,
        CLOSE_REASON,
        "local",
    )

    # What the browser saw.
    assert_clean_report(report)
    assert report["protocol"] == ""
    assert report["extensions"] == (seen.extensions or "")
    echoes = report["echoes"]
    assert [e["ok"] for e in echoes] == [True] * 4, echoes
    assert [e["kind"] for e in echoes] == ["text", "text", "text", "binary"], echoes
    assert [e["text"] for e in echoes[:3]] == TEXTS
    assert [e["byteLength"] for e in echoes] == [
        *(len(t.encode()) for t in TEXTS),
        len(BINARY),
    ]
    assert echoes[2]["utf16Length"] == 4  # two emoji, each a surrogate pair
    assert report["close"] == {"code": CLOSE_CODE, "reason": CLOSE_REASON, "wasClean": True}


async def test_chromium_subprotocol(start_server: Starter, tmp_path: Path) -> None:
    peer = Peer()
    server = await start_server(peer.handler, subprotocols=["superchat"])
    with trio.fail_after(TEST_TIMEOUT):
        report = await run_page(tmp_path, server.port, "subprotocol", peer)
        await peer.finished.wait()

    assert len(peer.seen) == 1, peer.seen
    seen = peer.seen[0]
    assert seen.path == "/chat?room=1"
    assert seen.draft is wscompat.Draft.RFC6455
    assert seen.offered_subprotocols is not None
    assert [p.strip() for p in seen.offered_subprotocols.split(",")] == ["chat", "superchat"]
    assert seen.subprotocol == "superchat"
    assert seen.messages == [GREETING]
    assert (seen.close_code, seen.close_reason, seen.closed_by) == (1000, "done", "local")

    assert_clean_report(report)
    assert report["protocol"] == "superchat"
    assert report["echo"]["ok"] is True, report["echo"]
    assert report["echo"]["text"] == GREETING
    assert report["close"] == {"code": 1000, "reason": "done", "wasClean": True}
