"""The sans-I/O connection object on its own: bytes in, exact bytes and events out.

``ServerConnection`` is driven here the way the trio server and the vector checker drive
it (feed bytes, decide in ``DECIDE``, drain :meth:`events` and :meth:`data_to_send`),
with no socket and no clock. Every scenario is fed whole and one byte at a time against
the same expectations; hypothesis cuts valid client streams anywhere and throws garbage
at the sniffer; the recorded vectors run through the same driver and are compared with
the vector checker's own matcher; ``ClientConnection`` talks to ``ServerConnection`` in
memory; and ``Established`` wraps bare framers.

Expected bytes are the drafts' official example values where they give them: the RFC
6455 key and accept, the §5.7 frames, the hixie-76 §1.2 challenge and the RFC 7692
§7.2.3.1 compressed "Hello".
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions import ClientExtensionFactory

from wscompat.drafts import Draft
from wscompat.errors import (
    HandshakeRejected,
    ProtocolViolation,
    UnsupportedByDraft,
    WebSocketError,
)
from wscompat.protocol.connection import (
    ClientConnection,
    ConnectionSettings,
    Established,
    Phase,
    ServerConnection,
    UpgradeRequest,
    make_framer,
)
from wscompat.protocol.extensions import (
    ClientDeflateFrameFactory,
    ClientPerMessageDeflateFactory,
    CompressionSettings,
)
from wscompat.protocol.framing import Closed, Event, HixieFramer, HybiFramer, Message, Pong, State
from wscompat.protocol.handshake import HandshakeSettings
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.protocol.http import HeadParser, Request
from wscompat.protocol.proxy_header import leading_header_size
from wscompat.protocol.sniff import Kind
from wscompat.vectors.format import EXPECTATIONS, Step, Vector, load_all, server_options

from ..framing_helpers import client_frame, split

# -- the drafts' example values -------------------------------------------------------------

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASKED_HELLO = bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")
"""RFC 6455 §5.7: a single-frame masked text message, "Hello"."""
HELLO = bytes.fromhex("81 05 48 65 6c 6c 6f")
"""RFC 6455 §5.7: the same message unmasked, as a server sends it."""
PONG_HELLO = bytes.fromhex("8a 05 48 65 6c 6c 6f")
BINARY_256_HEAD = bytes.fromhex("82 7e 01 00")
CLOSE_1000 = bytes.fromhex("88 02 03 e8")
DEFLATED_HELLO = bytes.fromhex("c1 07 f2 48 cd c9 c9 07 00")
"""RFC 7692 §7.2.3.1: "Hello" in one compressed frame."""


def hybi_request(version: int, origin_header: str = "Origin") -> bytes:
    """RFC 6455 §1.3's request (hybi-07/08: their version and ``Sec-WebSocket-Origin``)."""
    return (
        "GET /chat HTTP/1.1\r\n"
        "Host: server.example.com\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {RFC_KEY}\r\n"
        f"{origin_header}: http://example.com\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        f"Sec-WebSocket-Version: {version}\r\n\r\n"
    ).encode()


HYBI_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n\r\n"
)

HIXIE75_REQUEST = (
    b"GET /demo HTTP/1.1\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Host: example.com\r\n"
    b"Origin: http://example.com\r\n"
    b"WebSocket-Protocol: sample\r\n\r\n"
)
HIXIE75_PREFIX = (
    b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
)
HIXIE75_101 = (
    HIXIE75_PREFIX
    + b"WebSocket-Origin: http://example.com\r\n"
    + b"WebSocket-Location: ws://example.com/demo\r\n"
    + b"WebSocket-Protocol: sample\r\n\r\n"
)


def hixie76_request(key1: str, key2: str, *, protocol: bool = True) -> bytes:
    """The draft-hixie-76 §1.2 request head (shuffled header order included)."""
    lines = [
        "GET /demo HTTP/1.1",
        "Host: example.com",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key2: {key2}",
        *(["Sec-WebSocket-Protocol: sample"] if protocol else []),
        "Upgrade: WebSocket",
        f"Sec-WebSocket-Key1: {key1}",
        "Origin: http://example.com",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def hixie76_head(*, protocol: bool = True) -> bytes:
    return (
        b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Origin: http://example.com\r\n"
        b"Sec-WebSocket-Location: ws://example.com/demo\r\n"
        + (b"Sec-WebSocket-Protocol: sample\r\n" if protocol else b"")
        + b"\r\n"
    )


HIXIE76_REQUEST = hixie76_request("4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00")
KEY3 = b"^n:ds[4U"
ANSWER = b"8jKS'y:G*Co,Wxa-"
HIXIE76_101 = hixie76_head()

POLICY_REQUEST = bytes.fromhex("3c706f6c6963792d66696c652d726571756573742f3e00")
POLICY_ANSWER = (
    b'<?xml version="1.0"?>\n'
    b'<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">\n'
    b"<cross-domain-policy>\n"
    b'  <site-control permitted-cross-domain-policies="master-only"/>\n'
    b'  <allow-access-from domain="*" to-ports="*"/>\n'
    b"</cross-domain-policy>\n\x00"
)

PLAIN_PAGE = (
    "<!doctype html><title>wscompat</title>"
    "<p>This is a WebSocket endpoint served by wscompat. It speaks hixie-75, hixie-76 "
    "(hybi-00), hybi-07, hybi-08, RFC 6455 and RFC 8441 (over HTTP/2); connect with a "
    "WebSocket client.</p>"
)


def refusal(
    status: str, body: str, *headers: str, content_type: str = "text/plain; charset=utf-8"
) -> bytes:
    """An error response as the server writes it: the extra headers, then the body's."""
    text = body + "\n"
    lines = [
        f"HTTP/1.1 {status}",
        *headers,
        f"Content-Type: {content_type}",
        f"Content-Length: {len(text.encode())}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + text).encode()


SETTINGS = ConnectionSettings(subprotocols=frozenset({"chat", "sample"}))
"""The server's settings unless a test says otherwise: it speaks chat and sample."""

# -- driving a server connection as the I/O layer does --------------------------------------

Decide = Callable[[ServerConnection], None]
Chunker = Callable[[bytes], list[bytes]]


def accept_offer(conn: ServerConnection) -> None:
    """The trio server's decision without ``process_request``: the settings' choice."""
    conn.accept(conn.choose_subprotocol(conn.upgrade_request()))


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


CHUNKERS = pytest.mark.parametrize("chunker", [whole, bytewise], ids=["whole", "bytewise"])


class Driver:
    """One server connection and everything it said, pumped after every read."""

    def __init__(
        self, conn: ServerConnection, decide: Decide = accept_offer, *, echo: bool = False
    ) -> None:
        self.conn = conn
        self.decide = decide
        self.echo = echo
        """Answer each message with itself while open, as the vectors' echo server does."""
        self.out = bytearray()
        self.events: list[Event] = []
        self.echoed: list[str | bytes] = []
        self.phases: list[Phase] = []
        """The phases gone through, HANDSHAKE (more bytes needed) aside."""
        self.peer_eof = False
        self._read = 0
        self._seen = 0

    @property
    def done(self) -> bool:
        """Nothing more is read: refused, handed to TLS, the server closes, or the
        client did."""
        conn = self.conn
        return conn.phase in (Phase.REFUSED, Phase.TLS) or conn.eof_wanted or self.peer_eof

    def _note(self) -> None:
        phase = self.conn.phase
        if phase is not Phase.HANDSHAKE and (not self.phases or self.phases[-1] is not phase):
            self.phases.append(phase)

    def pump(self) -> None:
        conn = self.conn
        self._note()
        if conn.phase is Phase.DECIDE:
            self.decide(conn)
            self._note()
        elif conn.phase is Phase.PLAIN:  # the health check, as a serving server answers it
            conn.answer_health(serving=True)
            self._note()
        for event in conn.events():
            self.events.append(event)
            if self.echo and isinstance(event, Message) and conn.state is State.OPEN:
                if isinstance(event.data, str):
                    conn.send_text(event.data)
                else:
                    conn.send_binary(event.data)
                self.echoed.append(event.data)
        self.out += conn.data_to_send()
        self._note()

    def feed(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            if self.done:
                return
            self.conn.receive_data(chunk)
            self.pump()

    def eof(self) -> None:
        self.conn.receive_eof()
        self.peer_eof = True
        self.pump()

    def take(self) -> tuple[bytes, list[Event]]:
        """What the server said, and the events, since the previous call."""
        out, events = bytes(self.out[self._read :]), self.events[self._seen :]
        self._read, self._seen = len(self.out), len(self.events)
        return out, events

    @property
    def messages(self) -> list[str | bytes]:
        return [e.data for e in self.events if isinstance(e, Message)]


# -- scenarios: every draft, byte for byte ---------------------------------------------------


@dataclass(frozen=True)
class Send:
    """The client sends these bytes (whole, one byte at a time, or cut anywhere)."""

    data: bytes


@dataclass(frozen=True)
class Act:
    """The application does something with the open connection."""

    call: Callable[[ServerConnection], None]


@dataclass(frozen=True)
class Eof:
    """The client closes its side of TCP."""


@dataclass(frozen=True)
class Expect:
    """Exactly these bytes and events since the previous Expect, and where it is now."""

    out: bytes
    phase: Phase
    events: tuple[Event, ...] = ()
    eof_wanted: bool = False


ScenarioStep = Send | Act | Eof | Expect


@dataclass(frozen=True)
class Scenario:
    id: str
    steps: tuple[ScenarioStep, ...]
    phases: tuple[Phase, ...]
    draft: Draft | None = None
    kind: Kind | None = Kind.HTTP
    status: int | None = None
    """The refusal's HTTP status, if it was refused with one."""
    close: tuple[int, str, str] | None = None
    """close_code, close_reason, closed_by at the end."""
    subprotocol: str | None = None
    settings: ConnectionSettings = SETTINGS
    decide: Decide = accept_offer
    secure: bool = False


def send_text(text: str) -> Act:
    return Act(lambda conn: conn.send_text(text))


def send_binary(data: bytes) -> Act:
    return Act(lambda conn: conn.send_binary(data))


def send_close(code: int = 1000, reason: str = "") -> Act:
    return Act(lambda conn: conn.send_close(code, reason))


def send_ping(data: bytes) -> Act:
    return Act(lambda conn: conn.send_ping(data))


def reject_403(conn: ServerConnection) -> None:
    conn.reject(403, "not today")


OPENING = (Phase.DECIDE, Phase.OPEN)
CLOSED_BY_HANDSHAKE = (*OPENING, Phase.CLOSING, Phase.CLOSED)
REFUSED_AT_ONCE = (Phase.REFUSED,)
BINARY = bytes(range(256))


def hybi_session(version: int, origin_header: str, draft: Draft) -> Scenario:
    """Messages every way, a ping, and the client's closing handshake."""
    return Scenario(
        f"{draft}-messages-ping-and-client-close",
        (
            Send(hybi_request(version, origin_header)),
            Expect(HYBI_101, Phase.OPEN),
            Send(MASKED_HELLO),
            Expect(b"", Phase.OPEN, (Message("Hello"),)),
            Send(client_frame(0x1, b"Hel", fin=False) + client_frame(0x0, b"lo")),
            Expect(b"", Phase.OPEN, (Message("Hello"),)),
            Send(client_frame(0x2, BINARY, key=b"\x00\x00\x00\x00")),
            Expect(b"", Phase.OPEN, (Message(BINARY),)),
            send_text("Hello"),
            Expect(HELLO, Phase.OPEN),
            send_binary(BINARY),
            Expect(BINARY_256_HEAD + BINARY, Phase.OPEN),
            Send(client_frame(0x9, b"Hello")),
            Expect(PONG_HELLO, Phase.OPEN),
            Send(client_frame(0x8, b"\x03\xe8bye")),
            Expect(b"\x88\x05\x03\xe8bye", Phase.CLOSING, (Closed(1000, "bye", True),), True),
            Eof(),
            Expect(b"", Phase.CLOSED, eof_wanted=True),
        ),
        CLOSED_BY_HANDSHAKE,
        draft,
        close=(1000, "bye", "peer"),
        subprotocol="chat",
    )


SCENARIOS = [
    hybi_session(13, "Origin", Draft.RFC6455),
    hybi_session(8, "Sec-WebSocket-Origin", Draft.HYBI08),
    hybi_session(7, "Sec-WebSocket-Origin", Draft.HYBI07),
    Scenario(
        "rfc6455-server-closes",
        (
            Send(hybi_request(13)),
            Expect(HYBI_101, Phase.OPEN),
            send_close(1001, "going away"),
            Expect(b"\x88\x0c\x03\xe9going away", Phase.CLOSING),
            Send(client_frame(0x8, b"\x03\xe9")),
            Expect(b"", Phase.CLOSING, (Closed(1001, "going away", False),), True),
            Eof(),
            Expect(b"", Phase.CLOSED, eof_wanted=True),
        ),
        CLOSED_BY_HANDSHAKE,
        Draft.RFC6455,
        close=(1001, "going away", "local"),
        subprotocol="chat",
    ),
    Scenario(
        "rfc6455-empty-close-echoed",
        (
            Send(hybi_request(13)),
            Expect(HYBI_101, Phase.OPEN),
            Send(client_frame(0x8, b"")),
            Expect(b"\x88\x00", Phase.CLOSING, (Closed(1005, "", True),), True),
        ),
        (*OPENING, Phase.CLOSING),
        Draft.RFC6455,
        close=(1005, "", "peer"),
        subprotocol="chat",
    ),
    Scenario(
        "rfc6455-frame-in-the-head-segment",
        (
            Send(hybi_request(13) + MASKED_HELLO),
            Expect(HYBI_101, Phase.OPEN, (Message("Hello"),)),
            Send(client_frame(0x8, b"\x03\xe8")),
            Expect(CLOSE_1000, Phase.CLOSING, (Closed(1000, "", True),), True),
        ),
        (*OPENING, Phase.CLOSING),
        Draft.RFC6455,
        close=(1000, "", "peer"),
        subprotocol="chat",
    ),
    Scenario(
        "rfc6455-unmasked-frame-fails-1002",
        (
            Send(hybi_request(13)),
            Expect(HYBI_101, Phase.OPEN),
            Send(HELLO),
            Expect(b"\x88\x13\x03\xeaincorrect masking", Phase.CLOSING,
                   (Closed(1002, "incorrect masking", False),), True),
        ),
        (*OPENING, Phase.CLOSING),
        Draft.RFC6455,
        close=(1002, "incorrect masking", "local"),
        subprotocol="chat",
    ),
    Scenario(
        "rfc6455-pong-answers-its-ping-and-those-before",
        (
            Send(hybi_request(13)),
            Expect(HYBI_101, Phase.OPEN),
            send_ping(b"one"),
            send_ping(b"two"),
            send_ping(b"three"),
            Expect(b"\x89\x03one\x89\x03two\x89\x05three", Phase.OPEN),
            Send(client_frame(0xA, b"two")),
            Expect(b"", Phase.OPEN, (Pong(b"two", (b"one", b"two")),)),
            Send(client_frame(0xA, b"two") + client_frame(0xA, b"three")),
            Expect(b"", Phase.OPEN, (Pong(b"two", ()), Pong(b"three", (b"three",)))),
            Send(client_frame(0xA, b"Hello")),
            Expect(b"", Phase.OPEN, (Pong(b"Hello", ()),)),
        ),
        OPENING,
        Draft.RFC6455,
        subprotocol="chat",
    ),
    Scenario(
        "rfc6455-subprotocol-none-supported",
        (
            Send(hybi_request(13)),
            Expect(HYBI_101.replace(b"Sec-WebSocket-Protocol: chat\r\n", b""), Phase.OPEN),
        ),
        OPENING,
        Draft.RFC6455,
        settings=ConnectionSettings(),
    ),
    Scenario(
        "hixie-76-draft-example",
        (
            Send(HIXIE76_REQUEST + KEY3),
            Expect(HIXIE76_101 + ANSWER, Phase.OPEN),
            Send(b"\x00Hello\xff"),
            Expect(b"", Phase.OPEN, (Message("Hello"),)),
            send_text("Hello"),
            Expect(b"\x00Hello\xff", Phase.OPEN),
            Send(b"\xff\x00"),
            Expect(b"\xff\x00", Phase.CLOSED, (Closed(1000, "", True),), True),
        ),
        (*OPENING, Phase.CLOSED),
        Draft.HIXIE76,
        close=(1000, "", "peer"),
        subprotocol="sample",
    ),
    Scenario(
        "hixie-76-frames-with-key3",
        (
            Send(HIXIE76_REQUEST + KEY3 + b"\x00hi\xff\x81\x02ab\x00yo\xff"),
            Expect(HIXIE76_101 + ANSWER, Phase.OPEN, (Message("hi"), Message("yo"))),
        ),
        OPENING,
        Draft.HIXIE76,
        subprotocol="sample",
    ),
    Scenario(
        "hixie-76-key3-later-early-head",
        (
            Send(HIXIE76_REQUEST),
            Expect(HIXIE76_101, Phase.HANDSHAKE),
            Send(KEY3 + b"\x00hi\xff"),
            Expect(ANSWER, Phase.OPEN, (Message("hi"),)),
        ),
        OPENING,
        Draft.HIXIE76,
        subprotocol="sample",
    ),
    Scenario(
        "hixie-76-key3-later-no-early-head",
        (
            Send(HIXIE76_REQUEST),
            Expect(b"", Phase.HANDSHAKE),
            Send(KEY3),
            Expect(HIXIE76_101 + ANSWER, Phase.OPEN),
        ),
        OPENING,
        Draft.HIXIE76,
        subprotocol="sample",
        settings=ConnectionSettings(
            handshake=HandshakeSettings(hixie76_early_head=False),
            subprotocols=frozenset({"sample"}),
        ),
    ),
    Scenario(
        "hixie-76-official-keys-b",
        (
            Send(hixie76_request("18x 6]8vM;54 *(5:  {   U1]8  z [  8",
                                 "1_ tx7X d  <  nw  334J702) 7]o}` 0", protocol=False)
                 + b"Tm[K T2u"),
            Expect(hixie76_head(protocol=False) + b"fQJ,fN/4F4!~K~MH", Phase.OPEN),
        ),
        OPENING,
        Draft.HIXIE76,
    ),
    Scenario(
        "hixie-76-binary-key3",
        (
            Send(hixie76_request("30  ;- 5=5 u 4 1  7336", ":2 8 G(  07A 93Ql 3 *20 Ox0G'w",
                                 protocol=False) + bytes.fromhex("5d9fb0670fe4fa75")),
            Expect(hixie76_head(protocol=False)
                   + bytes.fromhex("b6bc2a9ea00c1cb90faddc97906017a8"), Phase.OPEN),
        ),
        OPENING,
        Draft.HIXIE76,
    ),
    Scenario(
        "hixie-76-server-closes",
        (
            Send(HIXIE76_REQUEST + KEY3),
            Expect(HIXIE76_101 + ANSWER, Phase.OPEN),
            send_close(),
            Expect(b"\xff\x00", Phase.CLOSING),
            Send(b"\x00late\xff\xff\x00"),
            Expect(b"", Phase.CLOSED, (Closed(1000, "", False),), True),
        ),
        CLOSED_BY_HANDSHAKE,
        Draft.HIXIE76,
        close=(1000, "", "local"),
        subprotocol="sample",
    ),
    Scenario(
        "hixie-75-draft-example",
        (
            Send(HIXIE75_REQUEST),
            Expect(HIXIE75_101, Phase.OPEN),
            Send(b"\x00Hello\xff\x81\x02ab\xff\x00\x00\xff"),
            Expect(b"", Phase.OPEN, (Message("Hello"), Message(""))),
            send_text("Hello"),
            Expect(b"\x00Hello\xff", Phase.OPEN),
            Eof(),
            Expect(b"", Phase.CLOSED, (Closed(1000, "", True),), True),
        ),
        (*OPENING, Phase.CLOSED),
        Draft.HIXIE75,
        close=(1000, "", "peer"),
        subprotocol="sample",
    ),
    Scenario(
        "hixie-75-server-closes-tcp",
        (
            Send(HIXIE75_REQUEST),
            Expect(HIXIE75_101, Phase.OPEN),
            send_close(1001, "bye"),
            Expect(b"", Phase.CLOSED, (Closed(1001, "bye", False),), True),
        ),
        (*OPENING, Phase.CLOSED),
        Draft.HIXIE75,
        close=(1001, "bye", "local"),
        subprotocol="sample",
    ),
    Scenario(
        "hixie-75-secure-location",
        (
            Send(HIXIE75_REQUEST),
            Expect(HIXIE75_101.replace(b"ws://", b"wss://"), Phase.OPEN),
        ),
        OPENING,
        Draft.HIXIE75,
        subprotocol="sample",
        secure=True,
    ),
    Scenario(
        "flash-policy",
        (Send(POLICY_REQUEST), Expect(POLICY_ANSWER, Phase.REFUSED, eof_wanted=True)),
        REFUSED_AT_ONCE,
        kind=Kind.POLICY,
    ),
    Scenario(
        "flash-policy-without-nul",
        (Send(b"<policy-file-request/>"), Expect(POLICY_ANSWER, Phase.REFUSED, eof_wanted=True)),
        REFUSED_AT_ONCE,
        kind=Kind.POLICY,
    ),
    Scenario(
        "garbage",
        (Send(b"\x01\x02\x03 garbage\r\n\r\n"), Expect(b"", Phase.REFUSED, eof_wanted=True)),
        REFUSED_AT_ONCE,
        kind=Kind.GARBAGE,
    ),
    Scenario(
        "tls-client-hello",
        (Send(bytes.fromhex("16 03 01 00 05 01 00 00 01 00")), Expect(b"", Phase.TLS)),
        (Phase.TLS,),
        kind=Kind.TLS,
    ),
    Scenario(
        "malformed-head-400",
        (
            Send(b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"),
            Expect(refusal("400 Bad Request", "malformed request head: a line folded onto "
                           "the one before at offset 24"), Phase.REFUSED, eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        status=400,
    ),
    Scenario(
        "version-25-426",
        (
            Send(hybi_request(25)),
            Expect(refusal("426 Upgrade Required", "unsupported Sec-WebSocket-Version 25",
                           "Upgrade: websocket", "Sec-WebSocket-Version: 13, 8, 7"),
                   Phase.REFUSED, eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        status=426,
    ),
    Scenario(
        "post-405",
        (
            Send(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            Expect(refusal("405 Method Not Allowed", "method POST not allowed", "Allow: GET"),
                   Phase.REFUSED, eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        status=405,
    ),
    Scenario(
        "plain-page-426",
        (
            Send(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            Expect(refusal("426 Upgrade Required", PLAIN_PAGE, "Upgrade: websocket",
                           "Sec-WebSocket-Version: 13, 8, 7",
                           content_type="text/html; charset=utf-8"),
                   Phase.REFUSED, eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        status=426,
    ),
    Scenario(
        "origin-refused-403",
        (
            Send(HIXIE75_REQUEST.replace(b"http://example.com", b"http://evil.example")),
            Expect(refusal("403 Forbidden", "origin http://evil.example not allowed"),
                   Phase.REFUSED, eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        Draft.HIXIE75,
        status=403,
        settings=ConnectionSettings(
            handshake=HandshakeSettings(origins=("http://example.com",)),
        ),
    ),
    Scenario(
        "head-too-large-431",
        (
            Send(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
            Expect(refusal("431 Request Header Fields Too Large", "request head too large"),
                   Phase.REFUSED, eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        status=431,
        settings=ConnectionSettings(handshake=HandshakeSettings(max_head_size=64)),
    ),
    Scenario(
        "hixie-76-disabled-426",
        (
            Send(HIXIE76_REQUEST + KEY3),
            Expect(refusal("426 Upgrade Required", "hixie-76 is not enabled on this server",
                           "Upgrade: websocket", "Sec-WebSocket-Version: 13"),
                   Phase.REFUSED, eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        status=426,
        settings=ConnectionSettings(
            handshake=HandshakeSettings(drafts=frozenset({Draft.RFC6455})),
        ),
    ),
    Scenario(
        "hixie-76-bad-key-400",
        (
            Send(hixie76_request("3e6b26341780", "12998 5 Y3 1  .P00") + KEY3),
            Expect(refusal("400 Bad Request", "hixie-76 key has no spaces"), Phase.REFUSED,
                   eof_wanted=True),
        ),
        REFUSED_AT_ONCE,
        Draft.HIXIE76,
        status=400,
    ),
    Scenario(
        "hixie-subprotocol-not-supported-400",
        (
            Send(HIXIE75_REQUEST),
            Expect(refusal("400 Bad Request", "subprotocol 'sample' is not supported"),
                   Phase.REFUSED, eof_wanted=True),
        ),
        (Phase.DECIDE, Phase.REFUSED),
        Draft.HIXIE75,
        status=400,
        settings=ConnectionSettings(),
    ),
    Scenario(
        "application-rejects-403",
        (
            Send(hybi_request(13) + MASKED_HELLO),
            Expect(refusal("403 Forbidden", "not today"), Phase.REFUSED, eof_wanted=True),
        ),
        (Phase.DECIDE, Phase.REFUSED),
        Draft.RFC6455,
        status=403,
        decide=reject_403,
    ),
    Scenario(
        "eof-during-the-head",
        (
            Send(b"GET /chat HTTP/1.1\r\nHost: x\r\n"),
            Expect(b"", Phase.HANDSHAKE),
            Eof(),
        ),
        (),
        close=(1006, "connection closed during the handshake", "peer"),
    ),
]


def play(scenario: Scenario, chunker: Chunker) -> Driver:
    """Run a scenario, asserting each expectation as it comes."""
    conn = ServerConnection(scenario.settings, secure=scenario.secure)
    assert conn.phase is Phase.HANDSHAKE
    assert conn.kind is None
    driver = Driver(conn, scenario.decide)
    for number, step in enumerate(scenario.steps, 1):
        if isinstance(step, Send):
            driver.feed(chunker(step.data))
        elif isinstance(step, Act):
            step.call(conn)
            driver.pump()
        elif isinstance(step, Eof):
            driver.eof()
        else:
            out, events = driver.take()
            assert (number, out) == (number, step.out)
            assert (number, events) == (number, list(step.events))
            assert (number, conn.phase) == (number, step.phase)
            assert (number, conn.eof_wanted) == (number, step.eof_wanted)
    assert driver.take() == (b"", [])
    assert tuple(driver.phases) == scenario.phases
    assert conn.draft is scenario.draft
    assert conn.kind is scenario.kind
    assert (conn.rejection.status if conn.rejection else None) == scenario.status
    if scenario.close is None:
        assert conn.close_code is None
    else:
        assert (conn.close_code, conn.close_reason, conn.closed_by) == scenario.close
    assert (conn.accepted.subprotocol if conn.accepted else None) == scenario.subprotocol
    return driver


@CHUNKERS
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(scenario: Scenario, chunker: Chunker) -> None:
    play(scenario, chunker)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_whole_and_bytewise_say_the_same(scenario: Scenario) -> None:
    one, many = play(scenario, whole), play(scenario, bytewise)
    assert bytes(one.out) == bytes(many.out)
    assert one.events == many.events
    assert one.phases == many.phases


def test_the_examples_are_what_the_drafts_print() -> None:
    """The constants above are the drafts' own bytes, not the code's."""
    assert client_frame(0x1, b"Hello") == MASKED_HELLO
    assert client_frame(0xA, b"Hello") == bytes.fromhex("8a 85 37 fa 21 3d 7f 9f 4d 51 58")
    assert base64.b64decode(RFC_KEY) == b"the sample nonce"
    digest = hashlib.sha1((RFC_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    assert digest.hex() == "b37a4f2cc0624f1690f64606cf385945b2bec4ea"
    assert base64.b64encode(digest).decode() == RFC_ACCEPT
    assert f"Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n".encode() in HYBI_101
    challenge = struct.pack(">II", 4146546015 // 5, 1299853100 // 5) + KEY3
    assert challenge.hex() == "316e41130f7ed63c5e6e3a64735b3455"
    assert hashlib.md5(challenge).digest() == ANSWER
    assert len(HIXIE75_PREFIX) == 85
    assert len(POLICY_REQUEST) == 23


# -- detection, subprotocols, decisions -----------------------------------------------------

DETECTION = [
    ("rfc6455", hybi_request(13), Draft.RFC6455),
    ("hybi-08", hybi_request(8, "Sec-WebSocket-Origin"), Draft.HYBI08),
    ("hybi-07", hybi_request(7, "Sec-WebSocket-Origin"), Draft.HYBI07),
    ("hixie-76", HIXIE76_REQUEST, Draft.HIXIE76),
    ("hixie-75", HIXIE75_REQUEST, Draft.HIXIE75),
    (
        "version-wins-over-hixie-keys",
        hybi_request(13).replace(
            b"\r\n\r\n", b"\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
            b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n"
        ),
        Draft.RFC6455,
    ),
]


@pytest.mark.parametrize(("request_bytes", "draft"), [d[1:] for d in DETECTION],
                         ids=[d[0] for d in DETECTION])
def test_draft_detection(request_bytes: bytes, draft: Draft) -> None:
    conn = ServerConnection(SETTINGS)
    conn.receive_data(request_bytes)
    assert conn.phase is Phase.DECIDE
    assert conn.kind is Kind.HTTP
    assert conn.draft is draft
    upgrade = conn.upgrade_request(("192.0.2.1", 4242))
    assert upgrade.draft is draft
    assert upgrade.remote == ("192.0.2.1", 4242)
    assert upgrade.origin == "http://example.com"  # Sec-WebSocket-Origin on hybi-07/08
    assert upgrade.request is conn.request
    assert upgrade.path == ("/chat" if draft.version else "/demo")


def test_kind_while_undecided() -> None:
    conn = ServerConnection(SETTINGS)
    conn.receive_data(b"GE")
    assert (conn.phase, conn.kind, conn.draft, conn.request) == (
        Phase.HANDSHAKE, Kind.NEED_MORE, None, None)
    conn.receive_data(b"T /chat HTTP/1.1\r\n")
    assert (conn.phase, conn.kind, conn.request) == (Phase.HANDSHAKE, Kind.HTTP, None)


def offer(protocols: str, *, settings: ConnectionSettings = SETTINGS) -> ServerConnection:
    conn = ServerConnection(settings)
    conn.receive_data(hybi_request(13).replace(b"chat, superchat", protocols.encode()))
    assert conn.phase is Phase.DECIDE
    return conn


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        ("chat, superchat", {"chat", "superchat"}, "chat"),
        ("superchat, chat", {"chat", "superchat"}, "superchat"),
        ("superchat, chat", {"chat"}, "chat"),
        ("superchat,  chat", {"mqtt"}, None),
    ],
)
def test_subprotocol_first_supported_in_client_order(
    offered: str, supported: set[str], chosen: str | None
) -> None:
    conn = offer(offered, settings=ConnectionSettings(subprotocols=frozenset(supported)))
    upgrade = conn.upgrade_request()
    assert upgrade.offered_subprotocols == tuple(p.strip() for p in offered.split(","))
    assert conn.choose_subprotocol(upgrade) == chosen


def test_subprotocol_callback_overrides_the_list() -> None:
    calls: list[tuple[str, ...]] = []

    def last(upgrade: UpgradeRequest, offered: Sequence[str]) -> str | None:
        calls.append(tuple(offered))
        assert upgrade.draft is Draft.RFC6455
        return offered[-1]

    settings = ConnectionSettings(subprotocols=frozenset({"chat"}), select_subprotocol=last)
    conn = offer("chat, superchat", settings=settings)
    assert conn.choose_subprotocol(conn.upgrade_request()) == "superchat"
    assert calls == [("chat", "superchat")]
    accept_offer(conn)
    assert conn.accepted is not None and conn.accepted.subprotocol == "superchat"
    assert b"Sec-WebSocket-Protocol: superchat\r\n" in conn.data_to_send()
    calls.clear()

    nothing = ServerConnection(settings)
    nothing.receive_data(hybi_request(13).replace(b"Sec-WebSocket-Protocol: chat, superchat\r\n",
                                                  b""))
    assert nothing.choose_subprotocol(nothing.upgrade_request()) is None
    assert calls == []  # not asked when nothing was offered


def test_subprotocol_callback_must_choose_an_offered_one() -> None:
    settings = ConnectionSettings(select_subprotocol=lambda _upgrade, _offered: "mqtt")
    conn = offer("chat", settings=settings)
    with pytest.raises(ValueError, match="'mqtt', which was not offered"):
        conn.choose_subprotocol(conn.upgrade_request())
    with pytest.raises(ValueError, match="not offered"):
        conn.accept("mqtt")
    assert conn.phase is Phase.DECIDE
    assert conn.data_to_send() == b""


def test_hixie_subprotocol_is_one_opaque_string() -> None:
    request = HIXIE76_REQUEST.replace(b"Protocol: sample", b"Protocol: sample, x y")
    conn = ServerConnection(ConnectionSettings(subprotocols=frozenset({"sample, x y"})))
    conn.receive_data(request + KEY3)
    assert conn.upgrade_request().offered_subprotocols == ("sample, x y",)
    accept_offer(conn)
    out = conn.data_to_send()
    assert b"\r\nSec-WebSocket-Protocol: sample, x y\r\n\r\n" in out
    assert conn.phase is Phase.OPEN


def test_bytes_arriving_while_deciding_reach_the_framer() -> None:
    conn = ServerConnection(SETTINGS)
    conn.receive_data(hybi_request(13))
    conn.receive_data(MASKED_HELLO[:5])
    conn.receive_data(MASKED_HELLO[5:])
    assert conn.phase is Phase.DECIDE
    assert conn.events() == []
    accept_offer(conn)
    assert conn.events() == [Message("Hello")]
    assert conn.data_to_send() == HYBI_101


def test_decisions_out_of_turn() -> None:
    conn = ServerConnection(SETTINGS)
    with pytest.raises(RuntimeError, match="no request"):
        conn.upgrade_request()
    with pytest.raises(ProtocolViolation, match="not open"):
        conn.send_text("early")
    with pytest.raises(RuntimeError, match="accept\\(\\) in phase sniff"):
        conn.accept()
    assert conn.events() == []
    conn.abort(1011, "nothing to abort")  # before the framer: nothing happens
    assert conn.close_code is None
    conn.receive_data(hybi_request(13))
    accept_offer(conn)
    with pytest.raises(RuntimeError, match="can no longer be rejected"):
        conn.reject(403, "too late")
    assert conn.data_to_send() == HYBI_101


def test_hixie76_early_head_cannot_be_taken_back() -> None:
    conn = ServerConnection(SETTINGS)
    conn.receive_data(HIXIE76_REQUEST + KEY3[:3])
    accept_offer(conn)
    assert conn.phase is Phase.HANDSHAKE
    assert conn.data_to_send() == HIXIE76_101
    with pytest.raises(RuntimeError, match="can no longer be rejected"):
        conn.reject(403, "too late")
    conn.receive_data(KEY3[3:] + b"\x00hi\xff")
    assert conn.data_to_send() == ANSWER
    assert conn.events() == [Message("hi")]


def test_nothing_is_read_once_refused() -> None:
    conn = ServerConnection(SETTINGS)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.phase is Phase.REFUSED
    assert conn.data_to_send().startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    conn.receive_data(hybi_request(13))
    assert (conn.phase, conn.data_to_send(), conn.events()) == (Phase.REFUSED, b"", [])
    with pytest.raises(RuntimeError, match="can no longer be rejected"):
        conn.reject(400, "twice")


def test_tls_keeps_what_it_read_for_the_tls_layer() -> None:
    hello = bytes.fromhex("16 03 01 02 00 01 00 01 fc 03 03") + bytes(32)
    conn = ServerConnection(SETTINGS)
    conn.receive_data(hello)
    assert (conn.phase, conn.kind, conn.buffered, conn.eof_wanted) == (
        Phase.TLS, Kind.TLS, hello, False)
    conn.receive_data(b"more")  # the TLS layer reads on, not the connection
    assert conn.buffered == hello
    assert conn.data_to_send() == b""


def test_wants_write_around_the_handshake() -> None:
    conn = ServerConnection(SETTINGS)
    conn.receive_data(hybi_request(13))
    accept_offer(conn)
    assert conn.wants_write  # the 101
    assert conn.data_to_send() == HYBI_101
    assert not conn.wants_write
    conn.send_text("Hello")
    assert conn.wants_write
    assert conn.data_to_send() == HELLO
    assert not conn.wants_write


# -- hypothesis: any split, any garbage -----------------------------------------------------

SPLITS = st.lists(st.integers(min_value=0, max_value=2**16), max_size=6)
PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def cut(cuts: list[int]) -> Chunker:
    return lambda data: [piece for piece in split(data, cuts) if piece]


@PROPERTY
@given(scenario=st.sampled_from(SCENARIOS), cuts=SPLITS)
def test_any_split_meets_the_same_expectations(scenario: Scenario, cuts: list[int]) -> None:
    play(scenario, cut(cuts))


def client_stream(draft: Draft, messages: list[str | bytes], mask: bytes, *,
                  close: bool) -> bytes:
    """What a client of ``draft`` sends: its request, the messages, its close."""
    if draft is Draft.HIXIE75:
        return HIXIE75_REQUEST + b"".join(b"\x00" + str(m).encode() + b"\xff" for m in messages)
    if draft is Draft.HIXIE76:
        frames = b"".join(b"\x00" + str(m).encode() + b"\xff" for m in messages)
        return HIXIE76_REQUEST + KEY3 + frames + (b"\xff\x00" if close else b"")
    assert draft.version is not None
    origin = "Origin" if draft is Draft.RFC6455 else "Sec-WebSocket-Origin"
    frames = b"".join(
        client_frame(0x1 if isinstance(m, str) else 0x2,
                     m.encode() if isinstance(m, str) else m, key=mask)
        for m in messages
    )
    ping = client_frame(0x9, b"p", key=mask)
    closing = client_frame(0x8, b"\x03\xe8", key=mask) if close else b""
    return hybi_request(draft.version, origin) + frames + ping + closing


def outcome(driver: Driver) -> tuple[bytes, list[Event], Phase, int | None, bool]:
    conn = driver.conn
    return bytes(driver.out), driver.events, conn.phase, conn.close_code, conn.eof_wanted


@PROPERTY
@given(
    draft=st.sampled_from(list(Draft)),
    messages=st.lists(st.one_of(st.text(max_size=30), st.binary(max_size=30)), max_size=4),
    mask=st.binary(min_size=4, max_size=4),
    close=st.booleans(),
    cuts=SPLITS,
)
def test_any_split_of_a_client_stream_gives_the_same_answer(
    draft: Draft, messages: list[str | bytes], mask: bytes, close: bool, cuts: list[int]
) -> None:
    sent = [m for m in messages if draft.caps.binary or isinstance(m, str)]
    stream = client_stream(draft, sent, mask, close=close)
    one = Driver(ServerConnection(SETTINGS))
    one.feed([stream])
    many = Driver(ServerConnection(SETTINGS))
    many.feed(cut(cuts)(stream))
    assert outcome(many) == outcome(one)
    assert one.messages == sent
    assert one.conn.draft is draft
    closes = draft is not Draft.HIXIE75 and close
    assert one.conn.close_code == (1000 if closes else None)
    if draft.caps.ping:
        assert PONG_HELLO[:1] + b"\x01p" in one.out  # the ping's pong, payload "p"


GARBAGE_PREFIXES = [
    b"",
    b"GET / HTTP/1.1\r\n",
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"<policy-file-request",
    b"<policy-file-request/>",
    b"\x16\x03\x01",
    hybi_request(13),
    HIXIE76_REQUEST,
    HIXIE75_REQUEST,
]
VALID_HEADS = [hybi_request(13), hybi_request(8, "Sec-WebSocket-Origin"), HIXIE76_REQUEST + KEY3,
               HIXIE75_REQUEST]


def mutated(head: bytes, edits: list[tuple[int, int]]) -> bytes:
    """A valid head with some bytes replaced: mostly 400s, some 405s and 426s."""
    data = bytearray(head)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=200),
    st.tuples(st.sampled_from(GARBAGE_PREFIXES), st.binary(min_size=1, max_size=120)).map(
        lambda parts: parts[0] + parts[1]
    ),
    st.builds(mutated, st.sampled_from(VALID_HEADS),
              st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1,
                       max_size=3)),
    st.lists(st.sampled_from(list(b"GET /HTP1.\r\n:Hosxa")), min_size=1, max_size=80).map(bytes),
)
OWN_STATUSES = {400, 405, 426, 431}
"""The statuses the server refuses a request with on its own (no origin list is set)."""


def serve(chunks: Iterable[bytes]) -> tuple[Driver, int]:
    """The I/O layer's handshake loop; how many bytes it read before it stopped."""
    driver = Driver(ServerConnection(SETTINGS))
    read = 0
    for chunk in chunks:
        if driver.done:
            break
        driver.feed([chunk])
        read += len(chunk)
    return driver, read


@PROPERTY
@given(data=GARBAGE, cuts=SPLITS)
def test_garbage_is_refused_or_waited_on_never_raised(data: bytes, cuts: list[int]) -> None:
    driver, _ = serve([data])
    conn, out = driver.conn, bytes(driver.out)
    phase = conn.phase
    if phase is Phase.REFUSED:
        assert conn.eof_wanted
        if conn.rejection is not None:
            assert conn.rejection.status in OWN_STATUSES
            assert out.startswith(b"HTTP/1.1 %d " % conn.rejection.status)
        elif conn.kind is Kind.POLICY:
            assert out == POLICY_ANSWER
        else:
            assert (conn.kind, out) == (Kind.GARBAGE, b"")
    elif phase is Phase.TLS:
        assert (conn.kind, out, conn.buffered) == (Kind.TLS, b"", data)
    elif phase is Phase.HANDSHAKE:
        assert conn.rejection is None
        assert out in (b"", HIXIE76_101)  # hixie-76's early head while key3 is short
    else:  # a valid head came first: the rest was the framer's to judge
        assert conn.framer is not None
        assert out.startswith(b"HTTP/1.1 101 ")
    split_driver, split_read = serve(cut(cuts)(data))
    assert outcome(split_driver) == outcome(driver)
    assert split_driver.conn.kind is conn.kind
    assert (split_driver.conn.rejection.status if split_driver.conn.rejection else None) == (
        conn.rejection.status if conn.rejection else None)
    if phase is Phase.TLS:  # what the TLS layer reads: the buffer, then the stream
        assert split_driver.conn.buffered + data[split_read:] == data


# -- the recorded vectors, through ServerConnection -----------------------------------------

VECTORS = sorted((v for v in load_all([Path(__file__).resolve().parents[2] / "vectors"])
                  if not v.http2), key=lambda v: v.id)  # HTTP/2 ones: tests/vectors


def pieces(step: Step) -> list[bytes]:
    """A send step's bytes in the chunks the vector gives."""
    out, pos = [], 0
    for size in step.chunks:
        out.append(step.data[pos : pos + size])
        pos += size
    if pos < len(step.data):
        out.append(step.data[pos:])
    return out


def play_vector(vector: Vector, chunker: Chunker) -> Driver:
    """The vector's client bytes into an echo server, its expectations checked by the
    vector checker's matcher, as ``wscompat vectors check`` does."""
    driver = Driver(ServerConnection(server_options(vector).settings), echo=True)
    read = 0
    for number, step in enumerate(vector.steps, 1):
        if step.kind == "send":
            for piece in pieces(step):
                driver.feed(chunker(piece))
        elif step.kind == "send_eof":
            if driver.conn.framer is not None and not driver.done:
                driver.eof()
            driver.peer_eof = True
        elif step.kind in EXPECTATIONS:
            pending = bytes(driver.out[read:])
            found = step.match(pending, eof=driver.done)
            assert found.done, f"step {number}: the server sent {pending!r} and waited"
            assert not found.problem, f"step {number}: {found.problem}: {pending[:200]!r}"
            read += found.consumed
    if vector.steps[-1].kind != "expect_eof":
        assert bytes(driver.out[read:]) == b"", "bytes after the last expectation"
    if vector.events is not None:
        assert driver.messages == list(vector.events)
    end = vector.end
    conn = driver.conn
    if "status" in end:
        assert (conn.rejection.status if conn.rejection else None) == end["status"]
    if "close_code" in end:
        if conn.close_code is None and conn.framer is not None and not driver.done:
            driver.eof()
        assert conn.close_code == end["close_code"]
    if "eof" in end:
        assert driver.done is end["eof"]
    return driver


@pytest.mark.parametrize("chunker", [whole, bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_vector(vector: Vector, chunker: Chunker) -> None:
    driver = play_vector(vector, chunker)
    assert driver.conn.draft in (vector.draft, None)
    if driver.conn.accepted is not None:
        assert driver.conn.accepted.draft is vector.draft


def test_the_vectors_cover_every_draft() -> None:
    assert {v.draft for v in VECTORS} == set(Draft)
    assert len(VECTORS) > 100


# -- ClientConnection on the vectors' client side -------------------------------------------


class FixedNonce(random.Random):
    """A random source whose 16 random bytes are a recorded Sec-WebSocket-Key's."""

    def __init__(self, nonce: bytes) -> None:
        super().__init__(0)
        self.nonce = nonce

    def randbytes(self, n: int) -> bytes:
        assert n == len(self.nonce)
        return self.nonce


def answer_head(vector: Vector) -> bytes:
    """The server head the vector expects first, if it expects one."""
    step = next(s for s in vector.steps if s.kind in EXPECTATIONS)
    return step.data if step.kind in ("expect", "expect_head") else b""


CLIENT_VECTORS = [
    v for v in VECTORS
    if answer_head(v).startswith(b"HTTP/1.1 101 ")
    and b"Sec-WebSocket-Extensions" not in answer_head(v)
    and v.draft is not Draft.HIXIE76  # its keys and key3 come from the client's own rng
]


def recorded_request(vector: Vector) -> Request:
    """The request head the vector's client sends (after the PROXY protocol header,
    when the vector's server expects one)."""
    data = b"".join(s.data for s in vector.steps if s.kind == "send")
    if vector.options.get("proxy_protocol"):
        data = data[leading_header_size(data) :]
    request = HeadParser().feed(data)
    assert request is not None
    return request


def client_like(vector: Vector, request: Request) -> ClientHandshake:
    """A ClientHandshake that the vector's server answer is right for."""
    host_header = request.headers.get("Host")
    assert host_header is not None
    if host_header.startswith("["):
        name, _, rest = host_header[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        name, _, port_text = host_header.partition(":")
    key = request.headers.get("Sec-WebSocket-Key")
    nonce = base64.b64decode(key) if key and vector.draft.version else b""
    if vector.draft is Draft.HIXIE75:
        protocols = tuple(request.headers.get_all("WebSocket-Protocol"))
    else:  # the list as offered, case kept
        protocols = tuple(item.strip()
                          for value in request.headers.get_all("Sec-WebSocket-Protocol")
                          for item in value.split(",") if item.strip())
    return ClientHandshake(
        vector.draft, name, request.target, port=int(port_text) if port_text else None,
        secure=bool(vector.options.get("secure")), origin=request.origin,
        subprotocols=protocols, rng=FixedNonce(nonce),
    )


@pytest.mark.parametrize("vector", CLIENT_VECTORS, ids=[v.id for v in CLIENT_VECTORS])
def test_client_connection_takes_the_vector_answers(vector: Vector) -> None:
    """ClientConnection plays the vector's client: it checks the server's 101 as that
    client would and reads the echoed frames back, whole and byte by byte."""
    server = play_vector(vector, whole)
    request = recorded_request(vector)
    assert server.conn.accepted is not None
    results = []
    for chunker in (whole, bytewise):
        client = ClientConnection(client_like(vector, request), ConnectionSettings())
        client.request()
        for piece in chunker(bytes(server.out)):
            client.receive_data(piece)
        if server.conn.eof_wanted:
            client.receive_eof()
        assert client.phase is not Phase.HANDSHAKE
        assert client.result is not None
        assert client.result.subprotocol == server.conn.accepted.subprotocol
        events = client.events()
        assert [e.data for e in events if isinstance(e, Message)] == server.echoed
        if vector.draft.caps.close_codes and server.conn.eof_wanted:
            assert client.close_code == server.conn.close_code
        results.append((events, client.close_code))
    assert results[0] == results[1]


def test_the_client_side_covers_hixie75_and_hybi() -> None:
    assert {v.draft for v in CLIENT_VECTORS} == set(Draft) - {Draft.HIXIE76}


# -- ClientConnection against ServerConnection, in memory -----------------------------------


def exchange(client: ClientConnection, server: ServerConnection, chunker: Chunker) -> None:
    """Carry bytes both ways until neither side has anything more to say."""
    while True:
        if server.phase is Phase.DECIDE:
            accept_offer(server)
        to_server, to_client = client.data_to_send(), server.data_to_send()
        for piece in chunker(to_server):
            server.receive_data(piece)
        for piece in chunker(to_client):
            client.receive_data(piece)
        if not to_server and not to_client and server.phase is not Phase.DECIDE:
            return


def hang_up(client: ClientConnection, server: ServerConnection) -> None:
    """TCP closes: each side whose peer asked for it sees the end of the stream."""
    if client.eof_wanted:
        server.receive_eof()
    if server.eof_wanted:
        client.receive_eof()
    server.receive_eof()  # the client closes its side once it has seen the server's


def connect(draft: Draft, chunker: Chunker, *, settings: ConnectionSettings = SETTINGS,
            extensions: Sequence[ClientExtensionFactory] = ()) -> tuple[ClientConnection,
                                                                         ServerConnection]:
    client = ClientConnection(
        ClientHandshake(draft, "example.com", "/chat?room=1", port=8080, subprotocols=("chat",),
                        extensions=extensions, rng=random.Random(draft.value)),
        ConnectionSettings(),
    )
    server = ServerConnection(settings)
    for piece in chunker(client.request()):
        server.receive_data(piece)
    exchange(client, server, chunker)
    return client, server


CLOSES = {
    # (draft family, who closes): (server's close state, client's close state)
    ("hixie-75", "client"): ((1000, "", "peer"), (1000, "done", "local")),
    ("hixie-75", "server"): ((1001, "bye", "local"), (1000, "", "peer")),
    ("hixie-76", "client"): ((1000, "", "peer"), (1000, "done", "local")),
    ("hixie-76", "server"): ((1001, "bye", "local"), (1000, "", "peer")),
    ("hybi", "client"): ((1000, "done", "peer"), (1000, "done", "local")),
    ("hybi", "server"): ((1001, "bye", "local"), (1001, "bye", "peer")),
}


def messages_both_ways(client: ClientConnection, server: ServerConnection,
                       chunker: Chunker) -> None:
    client.send_text("héllo ☃")
    server.send_text("wörld")
    exchange(client, server, chunker)
    assert server.events() == [Message("héllo ☃")]
    assert client.events() == [Message("wörld")]
    if client.handshake.draft.caps.binary:
        client.send_binary(BINARY)
        server.send_binary(b"\x00\xff")
        exchange(client, server, chunker)
        assert server.events() == [Message(BINARY)]
        assert client.events() == [Message(b"\x00\xff")]
    else:
        with pytest.raises(UnsupportedByDraft):
            client.send_binary(b"\x00")
        with pytest.raises(UnsupportedByDraft):
            server.send_binary(b"\x00")


def pings_both_ways(client: ClientConnection, server: ServerConnection,
                    chunker: Chunker) -> None:
    if not client.handshake.draft.caps.ping:
        with pytest.raises(UnsupportedByDraft):
            client.send_ping(b"c1")
        assert not client.ping_pending(b"c1")
        return
    client.send_ping(b"c1")
    client.send_ping(b"c2")
    server.send_ping(b"s1")
    assert client.ping_pending(b"c1") and server.ping_pending(b"s1")
    exchange(client, server, chunker)
    assert client.events() == [Pong(b"c1", (b"c1",)), Pong(b"c2", (b"c2",))]
    assert server.events() == [Pong(b"s1", (b"s1",))]
    assert not client.ping_pending(b"c2") and not server.ping_pending(b"s1")


@CHUNKERS
@pytest.mark.parametrize("closer", ["client", "server"])
@pytest.mark.parametrize("draft", list(Draft), ids=[d.value for d in Draft])
def test_client_and_server_in_memory(draft: Draft, closer: str, chunker: Chunker) -> None:
    client, server = connect(draft, chunker)
    assert (client.phase, server.phase) == (Phase.OPEN, Phase.OPEN)
    assert server.draft is client.draft is draft
    assert client.result is not None and server.accepted is not None
    assert client.result.subprotocol == server.accepted.subprotocol == "chat"
    assert server.upgrade_request().path == "/chat?room=1"
    if not draft.version:  # the location the client compares, port and query included
        name = "Sec-WebSocket-Location" if draft is Draft.HIXIE76 else "WebSocket-Location"
        assert client.result.headers.get(name) == "ws://example.com:8080/chat?room=1"

    messages_both_ways(client, server, chunker)
    pings_both_ways(client, server, chunker)

    if closer == "client":
        client.send_close(1000, "done")
    else:
        server.send_close(1001, "bye")
    exchange(client, server, chunker)
    hang_up(client, server)
    client.events()
    server.events()
    family = draft.value if draft in (Draft.HIXIE75, Draft.HIXIE76) else "hybi"
    server_close, client_close = CLOSES[family, closer]
    assert (server.close_code, server.close_reason, server.closed_by) == server_close
    assert (client.close_code, client.close_reason, client.closed_by) == client_close
    assert (client.phase, server.phase) == (Phase.CLOSED, Phase.CLOSED)
    assert client.data_to_send() == server.data_to_send() == b""


@pytest.mark.parametrize(
    ("draft", "factory", "header"),
    [
        (Draft.RFC6455, ClientPerMessageDeflateFactory(), "permessage-deflate"),
        (Draft.HYBI08, ClientDeflateFrameFactory(), "x-webkit-deflate-frame"),
    ],
    ids=["permessage-deflate", "deflate-frame"],
)
def test_client_and_server_compress(
    draft: Draft, factory: ClientExtensionFactory, header: str
) -> None:
    settings = ConnectionSettings(handshake=HandshakeSettings(compression=CompressionSettings()))
    client, server = connect(draft, whole, settings=settings, extensions=[factory])
    assert server.accepted is not None and server.accepted.extensions == header
    assert client.result is not None and len(client.result.extensions) == 1
    server.send_text("Hello")
    assert server.data_to_send() == DEFLATED_HELLO
    client.receive_data(DEFLATED_HELLO)
    assert client.events() == [Message("Hello")]
    client.send_text("Hello " * 20)
    wire = client.data_to_send()
    assert wire[0] == 0xC1 and len(wire) < 6 * 20
    server.receive_data(wire)
    assert server.events() == [Message("Hello " * 20)]


def test_client_refused() -> None:
    client = ClientConnection(ClientHandshake(Draft.RFC6455, "example.com", "/chat",
                                              origin="http://evil.example"),
                              ConnectionSettings())
    server = ServerConnection(ConnectionSettings(
        handshake=HandshakeSettings(origins=("http://example.com",))))
    server.receive_data(client.request())
    assert server.phase is Phase.REFUSED
    with pytest.raises(HandshakeRejected) as refused:
        client.receive_data(server.data_to_send())
    assert refused.value.status == 403
    assert client.phase is Phase.HANDSHAKE and client.framer is None


def test_client_fails_a_wrong_answer() -> None:
    client = ClientConnection(ClientHandshake(Draft.RFC6455, "example.com", "/chat",
                                              rng=random.Random(1)), ConnectionSettings())
    client.request()
    with pytest.raises(HandshakeRejected, match="Sec-WebSocket-Accept") as wrong:
        client.receive_data(HYBI_101.replace(b"Sec-WebSocket-Protocol: chat\r\n", b""))
    assert wrong.value.status == 101
    assert client.phase is Phase.HANDSHAKE


def test_client_accepts_the_rfc_example_and_early_frames() -> None:
    client = ClientConnection(
        ClientHandshake(Draft.RFC6455, "server.example.com", "/chat",
                        subprotocols=("chat", "superchat"),
                        rng=FixedNonce(b"the sample nonce")),
        ConnectionSettings(),
    )
    assert f"Sec-WebSocket-Key: {RFC_KEY}\r\n".encode() in client.request()
    client.receive_data(HYBI_101 + HELLO + CLOSE_1000)
    assert client.result is not None and client.result.subprotocol == "chat"
    assert client.result.leftover == HELLO + CLOSE_1000
    assert client.events() == [Message("Hello")]
    assert client.phase is Phase.CLOSING
    reply = client.data_to_send()
    assert reply[:2] == b"\x88\x82"  # the masked echo of 1000
    client.receive_eof()
    assert client.events() == [Closed(1000, "", True)]
    assert (client.phase, client.close_code, client.closed_by) == (Phase.CLOSED, 1000, "peer")


def test_client_eof_during_the_handshake() -> None:
    client = ClientConnection(ClientHandshake(Draft.HIXIE76, "example.com", "/"),
                              ConnectionSettings())
    client.request()
    client.receive_data(hixie76_head())
    with pytest.raises(HandshakeRejected, match="closed during the handshake") as closed:
        client.receive_eof()
    assert closed.value.status == 0
    assert (client.data_to_send(), client.wants_write, client.eof_wanted) == (b"", False, False)


# -- Established: a framer with the same close state and ping bookkeeping -------------------


def established_pair(draft: Draft) -> tuple[Established, Established]:
    settings = ConnectionSettings()
    return (Established(make_framer(draft, settings)),
            Established(make_framer(draft, settings, client=True)))


def carry(sender: Established, receiver: Established) -> None:
    receiver.receive_data(sender.data_to_send())


def test_make_framer_picks_the_draft_family() -> None:
    settings = ConnectionSettings(hixie_binary="base64", max_message_size=10)
    hixie = make_framer(Draft.HIXIE75, settings)
    assert isinstance(hixie, HixieFramer) and hixie.draft is Draft.HIXIE75
    hixie.send_binary(b"\x00\xff")
    assert hixie.data_to_send() == b"\x00AP8=\xff"
    client = make_framer(Draft.HYBI07, settings, client=True)
    assert isinstance(client, HybiFramer) and client.draft is Draft.HYBI07
    client.send_text("x")
    wire = client.data_to_send()
    assert wire[:2] == b"\x81\x81"  # masked, as a client must
    server = make_framer(Draft.RFC6455, settings)
    server.receive_data(client_frame(0x1, b"x" * 11))
    [closed] = server.events()
    assert isinstance(closed, Closed) and (closed.code, closed.by_peer) == (1009, False)


@pytest.mark.parametrize("draft", [Draft.HYBI07, Draft.HYBI08, Draft.RFC6455],
                         ids=lambda d: d.value)
def test_established_hybi_pair(draft: Draft) -> None:
    server, client = established_pair(draft)
    assert (server.phase, server.draft, server.state) == (Phase.OPEN, draft, State.OPEN)
    client.send_text("Hello")
    wire = client.data_to_send()
    assert wire[:2] == b"\x81\x85"
    server.receive_data(wire)
    assert server.events() == [Message("Hello")]
    server.send_text("Hello")
    assert server.wants_write
    assert server.data_to_send() == HELLO

    for payload in (b"a", b"b", b"c"):
        server.send_ping(payload)
    assert server.data_to_send() == b"\x89\x01a\x89\x01b\x89\x01c"
    assert [server.ping_pending(p) for p in (b"a", b"b", b"c")] == [True, True, True]
    with pytest.raises(ValueError, match="already waiting"):
        server.send_ping(b"b")
    with pytest.raises(ValueError, match="at most 125"):
        server.send_ping(bytes(126))
    server.receive_data(client_frame(0xA, b"b"))
    assert server.events() == [Pong(b"b", (b"a", b"b"))]
    assert [server.ping_pending(p) for p in (b"a", b"b", b"c")] == [False, False, True]
    server.send_ping(b"a")  # answered, so it may be sent again
    assert server.ping_pending(b"a")

    client.send_close(1000, "done")
    carry(client, server)
    assert server.events() == [Closed(1000, "done", True)]
    assert (server.close_code, server.closed_by) == (1000, "peer")
    assert not server.ping_pending(b"c") and not server.ping_pending(b"a")  # cleared by the close
    assert server.phase is Phase.CLOSING and server.eof_wanted
    carry(server, client)
    client.receive_eof()
    assert client.events() == [Closed(1000, "done", False)]
    server.receive_eof()
    assert (server.phase, client.phase) == (Phase.CLOSED, Phase.CLOSED)
    assert server.events() == []


def test_established_close_state_is_recorded_once() -> None:
    server, client = established_pair(Draft.RFC6455)
    assert server.finish(1001, "idle", "timeout") is True
    assert server.finish(1000, "later", "peer") is False
    client.send_close(1000, "done")
    carry(client, server)
    assert server.events() == [Closed(1000, "done", True)]
    assert (server.close_code, server.close_reason, server.closed_by) == (1001, "idle", "timeout")


def test_established_abort() -> None:
    server, _client = established_pair(Draft.RFC6455)
    server.send_ping(b"x")
    server.data_to_send()
    server.abort(1011, "internal error")
    assert server.data_to_send() == b"\x88\x10\x03\xf3internal error"
    assert server.events() == [Closed(1011, "internal error", False)]
    assert (server.close_code, server.closed_by, server.eof_wanted) == (1011, "local", True)
    assert not server.ping_pending(b"x")
    server.abort(1002, "again")  # once failed, stays failed
    assert (server.data_to_send(), server.events(), server.close_code) == (b"", [], 1011)


@pytest.mark.parametrize("draft", [Draft.HIXIE75, Draft.HIXIE76], ids=lambda d: d.value)
def test_established_hixie_pair(draft: Draft) -> None:
    server, client = established_pair(draft)
    client.send_text("Hello")
    carry(client, server)
    assert server.events() == [Message("Hello")]
    with pytest.raises(UnsupportedByDraft, match="no ping"):
        server.send_ping(b"p")
    assert not server.ping_pending(b"p")
    with pytest.raises(UnsupportedByDraft, match="carries only text"):
        server.send_binary(b"\x00")
    server.send_close(1001, "bye")
    if draft is Draft.HIXIE75:  # no closing handshake: TCP closes
        assert (server.phase, server.eof_wanted, server.data_to_send()) == (
            Phase.CLOSED, True, b"")
        client.receive_eof()
    else:
        assert (server.phase, server.eof_wanted) == (Phase.CLOSING, False)
        carry(server, client)
        carry(client, server)
    assert server.events() == [Closed(1001, "bye", False)]
    assert client.events() == [Closed(1000, "", True)]
    assert (server.phase, client.phase) == (Phase.CLOSED, Phase.CLOSED)
    with pytest.raises(ProtocolViolation, match="closed"):
        server.send_text("late")


@pytest.mark.parametrize("draft", list(Draft), ids=[d.value for d in Draft])
def test_no_ping_goes_out_after_the_close(draft: Draft) -> None:
    """Once the close is recorded and TCP is to be closed, nothing more is written and
    no ping is left waiting for a pong that cannot come (the close cleared the others)."""
    client, server = connect(draft, whole)
    client.send_close(1000, "done")
    exchange(client, server, whole)
    if draft is Draft.HIXIE75:
        server.receive_eof()
    server.events()
    assert (server.close_code, server.eof_wanted, server.data_to_send()) == (1000, True, b"")
    with contextlib.suppress(WebSocketError):  # refusing it is as good as ignoring it
        server.send_ping(b"late")
    assert (server.data_to_send(), server.ping_pending(b"late")) == (b"", False)


# -- behind a proxy that sends the PROXY protocol header -----------------------------------

PROXIED = ConnectionSettings(subprotocols=frozenset({"chat"}), proxy_protocol=True)
PROXY_V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 80\r\n"


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_the_proxy_header_comes_first_and_gives_the_address(bytewise: bool) -> None:
    conn = ServerConnection(PROXIED)
    data = PROXY_V1 + hybi_request(13)
    for piece in ([data[i : i + 1] for i in range(len(data))] if bytewise else [data]):
        conn.receive_data(piece)
    assert conn.proxied == ("192.0.2.7", 56324)
    assert conn.phase is Phase.DECIDE
    conn.accept("chat")
    assert conn.data_to_send() == HYBI_101
    conn.receive_data(MASKED_HELLO)
    assert [e for e in conn.events() if isinstance(e, Message)] == [Message("Hello")]


def test_without_the_proxy_header_the_connection_closes_unanswered() -> None:
    conn = ServerConnection(PROXIED)
    conn.receive_data(hybi_request(13))
    assert conn.phase is Phase.REFUSED and conn.eof_wanted
    assert conn.data_to_send() == b""
    assert conn.proxy_error == "no PROXY protocol header"
    assert conn.proxied is None and conn.rejection is None
    conn.receive_data(b"more")  # what follows is not read
    assert conn.data_to_send() == b""


def test_the_proxy_header_is_read_once_not_inside_tls() -> None:
    """A connection that came over TLS had its header read before the TLS began; a
    header that names no client (a proxy's own check) keeps the socket's address."""
    inner = ServerConnection(PROXIED, secure=True)
    inner.receive_data(hybi_request(13))
    assert inner.phase is Phase.DECIDE and inner.proxied is None
    local = ServerConnection(PROXIED)
    local.receive_data(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00" + hybi_request(13))
    assert local.phase is Phase.DECIDE and local.proxied is None
