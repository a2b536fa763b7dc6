"""Real clients recorded by ``wscompat serve --record``: the corpus's captured vectors.

Each capture runs one real client against an in-process echo server whose options set
``record_dir``, and returns the vector the server wrote, renamed after the client. The
live tests use these to check that recordings of real clients pass the offline check
and replay; run as a program, it writes the captures into the corpus:

    python -m tests.live.capture vectors/

Clients: the ``websockets`` library, ``websocket-client``, headless Chromium, and Perl's
Protocol::WebSocket for each draft it speaks (hixie-75, hybi-00, hybi-10, hybi-17).
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import trio
import websocket
from websockets.sync.client import connect

import wscompat
from wscompat.cli import echo
from wscompat.vectors.format import load

from .legacy_helpers import PERL_DRAFTS, run_perl_client, short_name
from .test_chromium import CHROMIUM, Peer, run_page

CAPTURE_TIMEOUT = 60.0
PERL_MESSAGES = ["Hello from Perl", "中文 😀", ""]


@dataclass
class Capture:
    """One recorded connection and who made it."""

    client: str
    """File-name friendly client name, e.g. ``perl-hybi-10``."""
    vector: dict[str, Any]
    path: Path


class _RecordPeer(Peer):
    """Echo everything, except that ``/report`` hands the page's summary to the capture."""

    async def handler(self, ws: wscompat.Connection) -> None:
        if ws.path == "/report":
            await self.report_in.send(await ws.receive())
            return
        await echo(ws)


def _recorded(directory: Path, before: set[Path], path_prefix: str) -> Path:
    new = sorted(set(directory.rglob("recorded-*.json")) - before)
    for file in new:
        vector = json.loads(file.read_text(encoding="utf-8"))
        first = vector["steps"][0]["send"]
        head = first if isinstance(first, str) else first[0]
        if f" {path_prefix}" in head.split("\r\n", 1)[0]:
            return file
    raise AssertionError(f"no recording of {path_prefix} among {new}")


async def _wait_for_file(directory: Path, before: set[Path], path_prefix: str) -> Path:
    """The server writes the file when its side of the connection ends: wait for it."""
    with trio.fail_after(10):
        while True:
            try:
                return _recorded(directory, before, path_prefix)
            except AssertionError:
                await trio.sleep(0.05)


def _relabel(vector: dict[str, Any], client: str, detail: str) -> dict[str, Any]:
    """Name the client in the vector, in place of the User-Agent guess."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    vector["name"] = f"{client}: {vector['name'].split(': ', 1)[1]}"
    vector["source"] = f"recorded from {client} ({detail}) with wscompat serve --record, {today}"
    random = {
        "hixie-75": "",
        "hixie-76": " Sec-WebSocket-Key1, Key2 and key3 are the client's own random choices; "
                    "the server's 16-byte answer is computed from them.",
    }.get(vector["draft"], " Sec-WebSocket-Key and the masks are the client's own random "
                           "choices; the accept value is computed from the key.")
    vector["description"] = vector["description"] + random
    return vector


async def _capture(
    directory: Path,
    path_prefix: str,
    run: Callable[[], Awaitable[None]],
) -> tuple[dict[str, Any], Path]:
    before = set(directory.rglob("recorded-*.json"))
    await run()
    file = await _wait_for_file(directory, before, path_prefix)
    return json.loads(file.read_text(encoding="utf-8")), file


async def capture_perl(server: wscompat.Server, directory: Path, perl_draft: str) -> Capture:
    path = f"/record?client=perl&draft={perl_draft}"

    async def run() -> None:
        result = await run_perl_client(server.port, perl_draft, PERL_MESSAGES, path=path)
        assert result.returncode == 0 and not result.errors, result

    vector, file = await _capture(directory, path, run)
    perl_version = subprocess.run(
        ["perl", "-MProtocol::WebSocket", "-e", "print $Protocol::WebSocket::VERSION"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()
    client = f"Perl Protocol::WebSocket {perl_version}"
    vector = _relabel(vector, client, f"version => '{perl_draft}'")
    return Capture(f"perl-{short_name(perl_draft)}", vector, file)


def _websockets_run(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/record?client=websockets",
                 subprotocols=["chat"]) as ws:  # type: ignore[list-item]
        ws.send("Hello from websockets")
        assert ws.recv() == "Hello from websockets"
        ws.send(bytes(range(8)))
        assert ws.recv() == bytes(range(8))
        ws.ping(b"ping").wait(5)


async def capture_websockets(server: wscompat.Server, directory: Path) -> Capture:
    vector, file = await _capture(
        directory, "/record?client=websockets",
        partial(trio.to_thread.run_sync, _websockets_run, server.port),
    )
    detail = f"Python {platform.python_version()}, default options"
    return Capture("websockets", _relabel(vector, f"websockets {version('websockets')}",
                                          detail), file)


def _websocket_client_run(port: int) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/record?client=websocket-client",
                                     subprotocols=["chat"], timeout=10)
    try:
        ws.send("Hello from websocket-client")
        assert ws.recv() == "Hello from websocket-client"
        ws.send_binary(bytes(range(8)))
        assert ws.recv() == bytes(range(8))
    finally:
        ws.close()


async def capture_websocket_client(server: wscompat.Server, directory: Path) -> Capture:
    vector, file = await _capture(
        directory, "/record?client=websocket-client",
        partial(trio.to_thread.run_sync, _websocket_client_run, server.port),
    )
    client = f"websocket-client {version('websocket-client')}"
    return Capture("websocket-client", _relabel(vector, client, "create_connection"), file)


def chromium_version() -> str:
    done = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=True,
                          timeout=60)
    return done.stdout.split()[1] if done.stdout.split()[1:] else done.stdout.strip()


async def capture_chromium(
    server: wscompat.Server, peer: Peer, directory: Path, scratch: Path
) -> Capture:
    async def run() -> None:
        report = await run_page(scratch, server.port, "record", peer)
        assert report["errors"] == [] and report.get("opened") is True, report
        assert [e["ok"] for e in report["echoes"]] == [True, True], report

    vector, file = await _capture(directory, "/record?client=chromium", run)
    client = f"Chromium {chromium_version()}"
    return Capture("chromium", _relabel(vector, client, "headless, WebSocket API"), file)


CAPTURE_REDACT = (
    "Cookie", "Set-Cookie", "Authorization", "Proxy-Authorization", "X-Api-Key", "X-Auth-Token",
)
"""The recorder's default list without the subprotocol fields."""


async def start_recording_server(nursery: trio.Nursery, directory: Path) -> tuple[
        wscompat.Server, Peer]:
    """An echo server recording into ``directory`` (``/report`` goes to the peer)."""
    peer = _RecordPeer()

    def first_offered(_: wscompat.UpgradeRequest, offered: Any) -> str | None:
        return offered[0] if offered else None

    server: wscompat.Server = await nursery.start(partial(
        wscompat.serve, peer.handler, "127.0.0.1", 0, record_dir=str(directory),
        select_subprotocol=first_offered,
        # The captures are the clients' own requests, kept whole: their query says which
        # client and draft, and the subprotocols are test values, not credentials.
        record_redact_query=False, record_redact=CAPTURE_REDACT,
    ))
    return server, peer


async def capture_all(directory: Path, scratch: Path) -> list[Capture]:
    """Every client's capture, recorded into ``directory``."""
    captures: list[Capture] = []
    with trio.fail_after(CAPTURE_TIMEOUT * 2):
        async with trio.open_nursery() as nursery:
            server, peer = await start_recording_server(nursery, directory)
            captures.append(await capture_websockets(server, directory))
            captures.append(await capture_websocket_client(server, directory))
            captures.append(await capture_chromium(server, peer, directory, scratch))
            for perl_draft in PERL_DRAFTS:
                captures.append(await capture_perl(server, directory, perl_draft))
            nursery.cancel_scope.cancel()
    return captures


def main(argv: list[str]) -> int:
    """Write every capture as ``OUT/<draft>/recorded-<client>.json``."""
    if len(argv) != 1:
        print("usage: python -m tests.live.capture OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    with tempfile.TemporaryDirectory() as tmp:
        recorded, scratch = Path(tmp) / "recorded", Path(tmp) / "scratch"
        scratch.mkdir()
        captures = trio.run(capture_all, recorded, scratch)
        for capture in captures:
            target = out / capture.vector["draft"] / f"recorded-{capture.client}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(capture.vector, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
            load(target)  # still a valid vector
            print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
