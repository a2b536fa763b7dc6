"""Shared pieces of the legacy-client tests: the Perl client, a recording echo handler,
and the hixie-76 arithmetic (protocol reference §3.3) to check answers independently.

``perl_client.pl`` drives one conversation with Perl's Protocol::WebSocket and prints
JSON lines; :func:`run_perl_client` runs it under a deadline, kills it if the deadline
passes, and returns its events. :class:`Recorder` is a server handler that echoes every
message and remembers what the server side saw, so a test can assert on both ends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

import wscompat
from wscompat import Draft

PERL_CLIENT = Path(__file__).with_name("perl_client.pl")
PERL_TIMEOUT = 20
"""Seconds the Perl script allows itself (its own alarm)."""
PERL_GRACE = 10.0
"""Extra seconds the test waits for the script before killing it."""

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE_CODE, CLOSE_REASON = 1000, "bye from perl"
"""What perl_client.pl sends in its close frame on hybi drafts."""

# Perl's version names, the draft wscompat must detect for each, and the test id.
PERL_DRAFTS: dict[str, Draft] = {
    "draft-hixie-75": Draft.HIXIE75,
    "draft-ietf-hybi-00": Draft.HIXIE76,
    "draft-ietf-hybi-10": Draft.HYBI08,
    "draft-ietf-hybi-17": Draft.RFC6455,
}


def short_name(perl_draft: str) -> str:
    """``draft-ietf-hybi-10`` -> ``hybi-10``, ``draft-hixie-75`` -> ``hixie-75``."""
    return perl_draft.removeprefix("draft-").removeprefix("ietf-")


def _big_text() -> str:
    """About 70 KiB of UTF-8 mixing 1-, 2-, 3- and 4-byte characters, so frame and read
    boundaries fall inside multi-byte sequences."""
    unit = "ASCII 0123456789 ~ é ü ß 中文字符 日本語 😀🎉 "
    text = unit * (70 * 1024 // len(unit.encode()) + 1)
    assert len(text.encode()) >= 70 * 1024
    return text


MESSAGES: list[str] = [
    "Hello, wscompat! ASCII ~ 0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
    "中文字符 日本語のテキスト 한국어 텍스트",
    "emoji 😀🎉🚀👍🏽 and a flag 🇫🇷",
    "",
    _big_text(),
]


# -- the Perl client -------------------------------------------------------------------


async def require_perl_websocket() -> None:
    """Fail (never skip) when perl or Protocol::WebSocket is missing."""
    perl = shutil.which("perl")
    if perl is None:
        pytest.fail("perl is not installed; install the Debian package "
                    "libprotocol-websocket-perl (tests/run.sh does)", pytrace=False)
    with trio.fail_after(30):
        probe = await trio.run_process(
            [perl, "-MProtocol::WebSocket", "-MJSON::PP", "-e", "1"],
            capture_stdout=True, capture_stderr=True, check=False,
        )
    if probe.returncode != 0:
        pytest.fail(
            "Perl's Protocol::WebSocket is not installed; install the Debian package "
            f"libprotocol-websocket-perl (tests/run.sh does): {probe.stderr.decode()[:300]}",
            pytrace=False,
        )


async def _kill(process: trio.Process) -> None:
    process.kill()


@dataclass
class PerlRun:
    """What one run of ``perl_client.pl`` printed."""

    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str

    def all(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def one(self, event: str) -> dict[str, Any]:
        found = self.all(event)
        assert len(found) == 1, f"expected one {event!r} event, got {len(found)}:\n{self}"
        return found[0]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.all("error")

    def __str__(self) -> str:
        return (f"perl exited {self.returncode}\n--- stdout ---\n{self.stdout[:4000]}"
                f"\n--- stderr ---\n{self.stderr[:2000]}")


async def run_perl_client(
    port: int,
    draft: str,
    messages: list[str],
    *,
    path: str = "/",
    timeout: int = PERL_TIMEOUT,
) -> PerlRun:
    """Run one conversation; the process is killed if it outlives ``timeout`` + grace."""
    command = [
        "perl", str(PERL_CLIENT), "--host", "127.0.0.1", "--port", str(port),
        "--draft", draft, "--path", path, "--timeout", str(timeout),
    ]
    stdin = json.dumps({"messages": messages}).encode()
    with trio.fail_after(timeout + PERL_GRACE):
        done = await trio.run_process(
            command, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
            deliver_cancel=_kill,
        )
    stdout = done.stdout.decode("utf-8", "replace")
    events = []
    for line in stdout.splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                events.append({"event": "unparsable", "line": line})
    return PerlRun(done.returncode, events, stdout, done.stderr.decode("utf-8", "replace"))


# -- the server side -------------------------------------------------------------------


@dataclass
class Seen:
    """One connection as the server's handler saw it."""

    draft: Draft
    path: str
    headers: list[tuple[str, str]]
    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str = ""
    finished: trio.Event = field(default_factory=trio.Event)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class Recorder:
    """An echo handler that records each connection's draft, messages and close."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    async def handler(self, ws: wscompat.Connection) -> None:
        seen = Seen(ws.draft, ws.path, list(ws.headers))
        self.seen.append(seen)
        try:
            async for message in ws:
                seen.messages.append(message)
                await ws.send(message)
        finally:
            seen.close_code, seen.close_reason = ws.close_code, ws.close_reason
            seen.closed_by = ws.stats.closed_by
            seen.finished.set()

    async def only(self, timeout: float = 10.0) -> Seen:
        """The single connection, once its handler has finished."""
        assert len(self.seen) == 1, f"expected one connection, server saw {len(self.seen)}"
        with trio.fail_after(timeout):
            await self.seen[0].finished.wait()
        return self.seen[0]


# -- checks on the Perl client's report ---------------------------------------------

STATUS_LINES = {
    Draft.HIXIE75: "HTTP/1.1 101 Web Socket Protocol Handshake",
    Draft.HIXIE76: "HTTP/1.1 101 WebSocket Protocol Handshake",
    Draft.HYBI08: "HTTP/1.1 101 Switching Protocols",
    Draft.RFC6455: "HTTP/1.1 101 Switching Protocols",
}


def check_handshake(run: PerlRun, draft: Draft, port: int, path: str) -> None:
    """The response answers this request correctly, recomputed independently of both ends."""
    request = run.one("request")
    _, request_fields = parse_head(request["head"])
    response = run.one("handshake")
    status, fields = parse_head(response["head"])
    assert status == STATUS_LINES[draft], response["head"]

    if draft in (Draft.HIXIE75, Draft.HIXIE76):
        prefix = "WebSocket-" if draft is Draft.HIXIE75 else "Sec-WebSocket-"
        assert header(fields, prefix + "Location") == f"ws://127.0.0.1:{port}{path}"
        assert header(fields, prefix + "Origin") == header(request_fields, "Origin")
        assert header(fields, "Upgrade") == "WebSocket"
    else:
        key = header(request_fields, "Sec-WebSocket-Key")
        assert key is not None
        assert header(fields, "Sec-WebSocket-Accept") == accept_value(key)
        assert header(fields, "Upgrade") == "websocket"

    if draft is Draft.HIXIE76:
        key1 = header(request_fields, "Sec-WebSocket-Key1")
        key2 = header(request_fields, "Sec-WebSocket-Key2")
        assert key1 is not None
        assert key2 is not None
        key3 = bytes.fromhex(request["after_head"])
        assert len(key3) == 8, "key3 is written with the head"
        assert bytes.fromhex(response["answer_hex"]) == hixie76_answer(key1, key2, key3)
        assert response["library_checked_answer"] is True
    else:
        assert response["answer_hex"] == ""


def check_echoes(run: PerlRun) -> None:
    echoes = run.all("echo")
    assert [e["index"] for e in echoes] == list(range(len(MESSAGES))), run
    for echo, text in zip(echoes, MESSAGES, strict=True):
        expected = text.encode()
        assert echo["opcode"] == 1
        assert echo["sent_bytes"] == echo["received_bytes"] == len(expected)
        assert echo["sent_md5"] == echo["received_md5"] == hashlib.md5(expected).hexdigest()
        assert echo["equal"] is True


def check_close(run: PerlRun, draft: Draft) -> None:
    close = run.one("close")
    assert close["eof"] is True, "the server closes TCP after the closing handshake"
    if draft is Draft.HIXIE75:
        assert close["kind"] == "tcp"
        assert close["received_hex"] == "", "hixie-75 has no closing handshake to answer"
    elif draft is Draft.HIXIE76:
        assert close["kind"] == "hixie76"
        assert close["received_hex"] == "ff00", "the server answers 0xFF 0x00 and nothing else"
    else:
        assert close["kind"] == "frame"
        assert close["sent_code"] == CLOSE_CODE
        assert close["reply_opcode"] == 8
        assert close["reply_code"] == CLOSE_CODE
        assert close["reply_reason"] == CLOSE_REASON
        payload = struct.pack(">H", CLOSE_CODE) + CLOSE_REASON.encode()
        echo = bytes([0x88, len(payload)]) + payload  # unmasked, and nothing after it
        assert close["received_hex"] == echo.hex()


# -- wire-level helpers ----------------------------------------------------------------


def parse_head(head: str) -> tuple[str, list[tuple[str, str]]]:
    """Start line and header fields of an HTTP head (names as sent)."""
    lines = head.split("\r\n")
    fields = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields.append((name, value.strip()))
    return lines[0], fields


def header(fields: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in fields if k.lower() == name.lower()), None)


def hixie76_key_number(key: str) -> int:
    digits = re.sub(r"[^0-9]", "", key)
    spaces = key.count(" ")
    assert digits, f"hixie-76 key {key!r} has no digits"
    assert spaces, f"hixie-76 key {key!r} has no spaces"
    number, remainder = divmod(int(digits), spaces)
    assert remainder == 0, f"hixie-76 key {key!r} is not a multiple of its spaces"
    return number


def hixie76_answer(key1: str, key2: str, key3: bytes) -> bytes:
    """MD5 of the two key numbers (32-bit big-endian) and key3: the 16-byte answer."""
    challenge = struct.pack(">II", hixie76_key_number(key1), hixie76_key_number(key2)) + key3
    return hashlib.md5(challenge).digest()


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def free_port() -> int:
    """A loopback port that was free a moment ago (callers retry if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- raw clients shared by the proxy tests -------------------------------------------------

KEY1, KEY2, KEY3 = "4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", b"^n:ds[4U"
"""The hixie-76 draft's own example keys (its section 1.2), answered by 8jKS'y:G*Co,Wxa-."""


def hixie_request(port: int, path: str, draft: Draft, *extra: str) -> bytes:
    """A browser-style hixie request head (no Content-Length); key3 is not included."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Upgrade: WebSocket",
        "Connection: Upgrade",
        f"Host: 127.0.0.1:{port}",
        "Origin: http://example.com",
    ]
    if draft is Draft.HIXIE76:
        lines += [f"Sec-WebSocket-Key1: {KEY1}", f"Sec-WebSocket-Key2: {KEY2}"]
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_until(
    stream: trio.SocketStream, done: Callable[[bytes], bool], timeout: float
) -> tuple[bytes, bool]:
    """Bytes read until ``done(data)``, EOF or ``timeout``; and whether EOF was seen."""
    data = b""
    with trio.move_on_after(timeout):
        while not done(data):
            chunk = await stream.receive_some(65536)
            if not chunk:
                return data, True
            data += chunk
    return data, False


async def accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port yet (a proxy that is starting)."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True
