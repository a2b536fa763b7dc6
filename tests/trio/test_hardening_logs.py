"""What reaches the log, over real sockets: hostile heads get their HTTP answer and one
escaped, bounded line each; payloads and query strings stay out unless asked for; no
third-party logger writes a line."""

from __future__ import annotations

import logging
import re
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import trio
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from wscompat import logfields
from wscompat.drafts import Draft
from wscompat.logfields import MAX_FIELD
from wscompat.trio.client import connect

from ..conftest import Starter
from ..framing_helpers import client_frame
from ..protocol.handshake.test_hostile_heads import HUGE_KEY, request
from ..rawclient import read_to_eof, read_until
from .test_hostile_drafts import ECHO_BOUND, HOST, arena, chorus

LINE_BOUND = 3 * (MAX_FIELD + len("…(99999 chars)…")) + 150
"""The longest line the server may write: at most three request-derived fields (path,
origin, extensions; or path and reason), each cut to MAX_FIELD, around fixed text."""
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 controls (ESC among them), DEL and C1 controls: never in a log line."""
SECRET = "my password is hunter2"
LONG_PATH = "/" + "p" * 16 * 1024


@dataclass
class Captured:
    """Every record of the test, as (logger name, level, message, has a traceback)."""

    wscompat: list[tuple[str, int, str, bool]] = field(default_factory=list)
    others: list[tuple[str, int, str, bool]] = field(default_factory=list)

    @property
    def everything(self) -> list[tuple[str, int, str, bool]]:
        return self.wscompat + self.others

    def lines_of(self, port: int) -> list[str]:
        """The server's lines about the client connected from local ``port``."""
        prefix = f"{HOST}:{port} "
        return [m for _, _, m, _ in self.wscompat if m.startswith(prefix)]


class _Keep(logging.Handler):
    def __init__(self, into: list[tuple[str, int, str, bool]]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append((record.name, record.levelno, record.getMessage(),
                          record.exc_info is not None))


@contextmanager
def captured(level: int = logging.DEBUG) -> Iterator[Captured]:
    """Every logger's records at ``level`` and above. wscompat's go to a handler of their
    own, not through the root, so pytest does not keep them (the memory check would
    count them); anything else that logs reaches the root's."""
    logs = Captured()
    root, ours = logging.getLogger(), logging.getLogger("wscompat")
    mine, theirs = _Keep(logs.wscompat), _Keep(logs.others)
    saved = root.level, ours.level, ours.propagate
    root.setLevel(level)
    ours.setLevel(level)
    ours.propagate = False
    root.addHandler(theirs)
    ours.addHandler(mine)
    try:
        yield logs
    finally:
        ours.removeHandler(mine)
        root.removeHandler(theirs)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
        ours.propagate = saved[2]


@pytest.fixture
def traced() -> Iterator[None]:
    """tracemalloc on, for the arena's memory check."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(1)
    try:
        yield
    finally:
        if started:
            tracemalloc.stop()


def upgrade13(path: str, *, key: bool = True) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13"]
    if key:
        lines.append("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def assert_clean(logs: Captured) -> None:
    for name, _, message, traceback in logs.everything:
        assert not UNSAFE.search(message), (name, message[:300])
        assert len(message) <= LINE_BOUND, (name, len(message), message[:300])
        assert not traceback, (name, message)
        assert not name.startswith("websockets"), (name, message)


async def answer_of(port: int, data: bytes) -> tuple[int, bytes]:
    """(the client's local port, everything the server sent until it closed)."""
    stream = await trio.open_tcp_stream(HOST, port)
    local = stream.socket.getsockname()[1]
    with trio.fail_after(5):
        await stream.send_all(data)
        answer = await read_to_eof(stream)
    await stream.aclose()
    return local, answer


async def wait_for_line(logs: Captured, port: int) -> None:
    with trio.fail_after(5):
        while not logs.lines_of(port):
            await trio.sleep(0.01)


HOSTILE = {
    "5000-digit key": (request(Draft.HIXIE76, key1=HUGE_KEY), 400),
    "hixie-75 origin": (request(Draft.HIXIE75, origin="http://x\x1b[2J\x9b31m\x7f"), 400),
    "hixie-76 origin": (request(Draft.HIXIE76, origin="http://x\x1b]0;owned\x07"), 400),
    "subprotocol": (request(Draft.RFC6455, protocol="a\x1b[2Jb"), 400),
    "host": (request(Draft.HIXIE76, host="a b@evil.example"), 400),
    "draft header": (request(Draft.HIXIE76, extra=[("Sec-WebSocket-Draft", "\x1b[2J\x9b")]),
                     400),
    "16 KB path refused": (upgrade13(LONG_PATH, key=False), 400),
}


async def test_hostile_heads_get_an_answer_and_one_clean_line(
    start_server: Starter, traced: None
) -> None:
    with captured() as logs:
        a = await arena(start_server, len(HOSTILE) + 1, max_head_size=32 * 1024)
        answers: dict[str, tuple[int, bytes]] = {}
        async with chorus(a.port) as c:
            for name, (data, _) in HOSTILE.items():
                answers[name] = await answer_of(a.port, data)
            # A 16 KB path the server accepts: echoed, then logged when it ends.
            stream = await trio.open_tcp_stream(HOST, a.port)
            accepted_port = stream.socket.getsockname()[1]
            with trio.fail_after(5):
                await stream.send_all(upgrade13(LONG_PATH))
                head = await read_until(stream, b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
                await stream.send_all(client_frame(1, b"hello"))
                assert (await read_until(stream, b"hello")).endswith(b"\x81\x05hello")
                await stream.send_all(client_frame(8, b"\x03\xe8"))
                await read_to_eof(stream)
            await stream.aclose()
            await wait_for_line(logs, accepted_port)
            await c.advance()
            assert c.slowest < ECHO_BOUND
        await a.released()
    for name, (_, status) in HOSTILE.items():
        port, answer = answers[name]
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (name, answer[:100])
        lines = logs.lines_of(port)
        assert len(lines) == 1, (name, lines)
        assert f" rejected {status} " in lines[0]
    (line,) = logs.lines_of(accepted_port)
    assert f" /{'p' * 100}" in line and "…(16385 chars)" in line and "close=1000" in line
    (refused,) = logs.lines_of(answers["16 KB path refused"][0])
    assert "…(16385 chars)" in refused
    (escaped,) = logs.lines_of(answers["draft header"][0])
    assert "Sec-WebSocket-Draft \\x1b[2J\\x9b" in escaped
    assert_clean(logs)


def _no_payload_in(logs: Captured, *texts: str) -> None:
    for name, _, message, _ in logs.everything:
        for text in texts:
            assert text not in message, (name, message)


async def send_secrets(port: int) -> None:
    """Every way a payload can travel: plain and compressed hybi messages (the compressed
    ones go through websockets' protocol on both sides), fragments, a ping, a close
    reason, and hixie text."""
    deflate = [ClientPerMessageDeflateFactory()]
    for draft in Draft:
        extensions = deflate if draft.version is not None else []
        async with connect(f"ws://{HOST}:{port}/secret", draft=draft,
                           extensions=extensions) as ws:
            assert (ws.extensions or "").startswith("permessage-deflate") == bool(extensions)
            await ws.send(SECRET)
            assert await ws.receive() == SECRET
            if draft.caps.binary:
                await ws.send(SECRET.encode())
                assert await ws.receive() == SECRET.encode()
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(upgrade13("/raw"))
    await read_until(stream, b"\r\n\r\n")
    half = len(SECRET) // 2
    await stream.send_all(client_frame(1, SECRET[:half].encode(), fin=False)
                          + client_frame(9, SECRET[:10].encode())
                          + client_frame(0, SECRET[half:].encode())
                          + client_frame(8, b"\x03\xe8" + SECRET[:20].encode()))
    await read_to_eof(stream)
    await stream.aclose()


async def test_no_payload_and_no_third_party_line_at_debug(start_server: Starter) -> None:
    with captured(logging.DEBUG) as logs:
        server = await start_server()
        async with chorus(server.port) as c:
            with trio.fail_after(20):
                await send_secrets(server.port)
            await c.advance()
    assert any(name == "wscompat.server" for name, *_ in logs.wscompat)  # it did log
    _no_payload_in(logs, SECRET, SECRET[:10], "round 1", b"hunter2".hex())
    assert_clean(logs)


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
async def test_log_payloads_writes_them_at_debug_in_wscompat_lines(
    start_server: Starter, level: int
) -> None:
    with captured(level) as logs:
        server = await start_server(log_payloads=True)
        with trio.fail_after(20):
            await send_secrets(server.port)
    payload_lines = [(name, lvl, m) for name, lvl, m, _ in logs.everything if SECRET[:20] in m]
    if level == logging.INFO:
        assert payload_lines == []
    else:
        assert {name for name, _, _ in payload_lines} == {"wscompat.connection"}
        assert {lvl for _, lvl, _ in payload_lines} == {logging.DEBUG}
        shown = {m.split(" ", 2)[1] for _, _, m in payload_lines}
        assert shown == {"<", ">"}  # received and sent
        assert all(m.startswith("/secret ") or m.startswith("/raw ") for _, _, m in payload_lines)
        assert any(SECRET.encode().hex() in m for _, _, m, _ in logs.wscompat)  # binary, hex
    assert_clean(logs)


@pytest.mark.parametrize("log_query", [False, True])
async def test_query_strings_are_logged_only_when_asked(
    start_server: Starter, log_query: bool
) -> None:
    with captured() as logs:
        server = await start_server(log_query=log_query, log_payloads=True)
        with trio.fail_after(10):
            async with connect(f"ws://{HOST}:{server.port}/chat?token=s3cr3t",
                               draft=Draft.HIXIE76) as ws:
                await ws.send("x")
                await ws.receive()
            refused, answer = await answer_of(
                server.port, upgrade13("/chat?token=s3cr3t", key=False))
        assert answer.startswith(b"HTTP/1.1 400 ")
        with trio.fail_after(5):
            while not [m for _, _, m, _ in logs.wscompat if " hixie-76 plain origin=" in m]:
                await trio.sleep(0.01)
    (opened,) = [m for _, _, m, _ in logs.wscompat if " hixie-76 plain origin=" in m]
    (rejected,) = logs.lines_of(refused)
    shown = "/chat?token=s3cr3t" if log_query else "/chat?…"
    assert f" {shown} " in opened and f" {shown} rejected 400 " in rejected
    if not log_query:
        _no_payload_in(logs, "s3cr3t")
    assert_clean(logs)


# -- the escaping itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        ("/chat", "/chat"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("\x9b\x7f\x00", "\\x9b\\x7f\\x00"),
        ("line\r\nforged", "line\\r\\nforged"),
        ("back\\slash", "back\\\\slash"),
        ("café \u202e 😀", "caf\\xe9 \\u202e \\U0001f600"),
    ],
)
def test_fields_are_escaped(value: str | None, shown: str) -> None:
    assert logfields.field(value) == shown


def test_fields_are_cut_without_splitting_an_escape() -> None:
    assert logfields.field("x" * MAX_FIELD) == "x" * MAX_FIELD
    assert logfields.field("x" * 16385) == "x" * MAX_FIELD + "…(16385 chars)"
    # 199 plain characters, then an escape that would not fit whole: it is left out.
    assert logfields.field("x" * 199 + "\x1b") == "x" * 199 + "…(200 chars)"
    assert logfields.field("\x1b" * 60) == "\\x1b" * 50 + "…(60 chars)"


def test_paths_lose_their_query_unless_asked() -> None:
    assert logfields.path("/chat?token=s3cr3t") == "/chat?…"
    assert logfields.path("/chat?token=s3cr3t", query=True) == "/chat?token=s3cr3t"
    assert logfields.path("/chat") == "/chat"
    assert logfields.path(None) == "-"
    assert logfields.path("/\x1b?x") == "/\\x1b?…"
