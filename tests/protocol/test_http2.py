"""The sans-I/O HTTP/2 session (RFC 8441) against the ``h2`` library as its client.

An ``H2Connection(client_side=True)`` and an :class:`H2ServerSession` pass bytes to each
other in memory; a WebSocket stream is driven the way the trio layer drives it (take
what arrived, feed the stream's framer, queue what it writes, END_STREAM when it asks
for EOF). The client side of each WebSocket is a client ``HybiFramer``, so every frame
is masked and checked as a real peer would. Where a scenario can be cut differently,
it is run with bytes fed whole and one byte at a time, against the same expectations.
Floods and malformed input are built with ``h2`` itself, or as raw frames with
``hyperframe`` (the frame layer ``h2`` uses) where ``h2`` would refuse to send them.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.events as h2e
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import FlowControlError, StreamClosedError
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    SettingsFrame,
)

from wscompat.drafts import Draft
from wscompat.protocol.connection import ConnectionSettings, Phase, UpgradeRequest
from wscompat.protocol.extensions import (
    ClientPerMessageDeflateFactory,
    CompressionSettings,
    accept_response,
)
from wscompat.protocol.framing import Closed, Event, HybiFramer, Message, Pong
from wscompat.protocol.handshake import HandshakeSettings
from wscompat.protocol.handshake.server import PLAIN_PAGE
from wscompat.protocol.http2 import (
    PREFACE,
    DataArrived,
    H2Event,
    H2ServerSession,
    H2ServerStream,
    H2Settings,
    RequestReceived,
    SessionEnded,
    StreamEnded,
    StreamReset,
)
from wscompat.protocol.sniff import Kind

REQUEST = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
           (":path", "/chat?room=1"), (":authority", "example.com"),
           ("sec-websocket-version", "13")]
"""An RFC 8441 §5 request, as a browser sends it."""
CALM = int(ErrorCodes.ENHANCE_YOUR_CALM)
CANCEL = int(ErrorCodes.CANCEL)
PROTOCOL_ERROR = int(ErrorCodes.PROTOCOL_ERROR)
MODES = ["whole", "bytewise"]


def with_headers(*extra: tuple[str, str], drop: Sequence[str] = ()) -> list[tuple[str, str]]:
    return [(n, v) for n, v in REQUEST if n not in drop] + list(extra)


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The frames in ``data``: (type, flags, stream id, raw bytes of the whole frame)."""
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        end = pos + 9 + length
        sid = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
        out.append((data[pos + 3], data[pos + 4], sid, data[pos:end]))
        pos = end
    return out


@dataclass
class Side:
    """What the client saw of one stream."""

    headers: list[tuple[str, str]] | None = None
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None


class Peer:
    """An ``h2`` client and a server session, with bytes moved between them in memory.

    ``bytewise`` feeds every byte in its own call, both ways. ``server_events`` and
    ``client_events`` keep everything either side reported, in order.
    """

    def __init__(self, settings: ConnectionSettings | None = None,
                 limits: H2Settings | None = None, *, secure: bool = False,
                 bytewise: bool = False) -> None:
        self.session = H2ServerSession(settings or ConnectionSettings(), limits, secure=secure)
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.client.initiate_connection()
        self.bytewise = bytewise
        self.now = 0.0
        self.server_events: list[H2Event] = []
        self.client_events: list[h2e.Event] = []
        self.sides: dict[int, Side] = {}
        self.goaway: h2e.ConnectionTerminated | None = None

    def _pieces(self, data: bytes) -> list[bytes]:
        return [data[i:i + 1] for i in range(len(data))] if self.bytewise else [data]

    def feed(self, data: bytes) -> list[H2Event]:
        events: list[H2Event] = []
        for piece in self._pieces(data):
            events += self.session.receive_data(piece, self.now)
        self.server_events += events
        return events

    def to_server(self) -> list[H2Event]:
        return self.feed(self.client.data_to_send())

    def to_client(self) -> list[h2e.Event]:
        events: list[h2e.Event] = []
        for piece in self._pieces(self.session.data_to_send()):
            events += self.client.receive_data(piece)
        for event in events:
            sid = getattr(event, "stream_id", None)
            side = self.sides.setdefault(sid, Side()) if sid else None
            if isinstance(event, h2e.ResponseReceived | h2e.InformationalResponseReceived):
                assert side is not None
                side.headers = list(event.headers or ())  # type: ignore[arg-type]
            elif isinstance(event, h2e.DataReceived):
                assert side is not None
                side.data += event.data or b""
                if event.flow_controlled_length and event.stream_id:
                    self.client.acknowledge_received_data(event.flow_controlled_length,
                                                          event.stream_id)
            elif isinstance(event, h2e.StreamEnded):
                assert side is not None
                side.ended = True
            elif isinstance(event, h2e.StreamReset):
                assert side is not None
                side.reset = int(event.error_code or 0)
            elif isinstance(event, h2e.ConnectionTerminated):
                self.goaway = event
        self.client_events += events
        return events

    def request(self, headers: list[tuple[str, str]], *, end: bool = False) -> H2ServerStream:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers, end_stream=end)
        events = self.to_server()
        requests = [e for e in events if isinstance(e, RequestReceived)]
        assert [e.stream.stream_id for e in requests] == [sid], events
        return requests[0].stream

    def websocket(self, headers: list[tuple[str, str]] | None = None,
                  subprotocol: str | None = None) -> Socket:
        stream = self.request(headers or REQUEST)
        assert stream.phase is Phase.DECIDE
        stream.accept(subprotocol)
        self.to_client()
        return Socket(self, stream)


class Socket:
    """One WebSocket over a stream: the client's framer, and the server's stream driven
    the way the trio layer drives it."""

    def __init__(self, peer: Peer, stream: H2ServerStream,
                 extensions: Sequence[Any] = ()) -> None:
        self.peer = peer
        self.stream = stream
        self.sid = stream.stream_id
        self.framer = HybiFramer(client=True, max_message_size=None,
                                 extensions=list(extensions))
        self.read = 0
        self._events: list[Event] = []
        self._eof = False

    def send(self, framer_call: Callable[[HybiFramer], None]) -> None:
        """Something the client writes, in DATA frames as far as its window lets it,
        with a turn of the server after each."""
        framer_call(self.framer)
        data = self.framer.data_to_send()
        client = self.peer.client
        pos = 0
        while pos < len(data):
            room = min(client.local_flow_control_window(self.sid), client.max_outbound_frame_size)
            assert room > 0, "the client is blocked"
            client.send_data(self.sid, data[pos:pos + room])
            pos += room
            self._turn()

    def _turn(self) -> None:
        """Bytes in, through the stream's framer, and its answers out."""
        peer, stream, session = self.peer, self.stream, self.peer.session
        peer.to_server()
        while stream.inbox:
            stream.receive_data(session.take(stream, 4096))
            self._events += stream.events()
        if stream.ended and not self._eof and stream.framer is not None:
            self._eof = True  # END_STREAM is the stream's EOF
            stream.receive_eof()
            self._events += stream.events()
        self.flush()

    def serve(self) -> list[Event]:
        """A turn of the server; what its stream reported since the last call."""
        self._turn()
        events, self._events = self._events, []
        return events

    def flush(self) -> None:
        stream, session = self.stream, self.peer.session
        if stream.alive and not stream.end_queued:
            out = stream.data_to_send()
            if out or stream.eof_wanted:
                session.send(stream, out, end=stream.eof_wanted)
        self.peer.to_client()

    def received(self) -> list[Event]:
        """What the client's framer made of the stream's DATA so far."""
        side = self.peer.sides.get(self.sid, Side())
        self.framer.receive_data(bytes(side.data[self.read:]))
        self.read = len(side.data)
        return self.framer.events()


def phase(stream: H2ServerStream) -> Phase:
    """The stream's phase now (a call, so that type checkers do not pin it)."""
    return stream.phase


def settled(peer: Peer) -> Peer:
    """The preface and both SETTINGS (with their ACKs) exchanged."""
    peer.to_server()
    peer.to_client()
    peer.to_server()
    return peer


def describe(events: Sequence[H2Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, RequestReceived | DataArrived | StreamEnded):
            out.append((type(e).__name__, e.stream.stream_id))
        elif isinstance(e, StreamReset):
            out.append(("StreamReset", e.stream.stream_id, e.code))
        elif isinstance(e, SessionEnded):
            out.append(("SessionEnded", e.code, e.reason))
        else:
            out.append((type(e).__name__,))
    return out


# -- preface and SETTINGS ----------------------------------------------------------------


def test_server_settings_advertise_extended_connect_and_the_limits() -> None:
    limits = H2Settings(max_streams=7, max_header_list=8000, stream_window=50000)
    peer = Peer(limits=limits)
    first = frames(peer.session.data_to_send())
    assert first[0][:3] == (0x4, 0, 0)  # the server's preface is a SETTINGS frame
    settings = SettingsFrame(0)
    settings.parse_body(memoryview(first[0][3][9:]))
    assert settings.settings == {
        SettingCodes.ENABLE_CONNECT_PROTOCOL: 1, SettingCodes.MAX_CONCURRENT_STREAMS: 7,
        SettingCodes.MAX_HEADER_LIST_SIZE: 8000, SettingCodes.INITIAL_WINDOW_SIZE: 50000,
        # h2's defaults, sent along: no server push, the default table and frame sizes.
        SettingCodes.ENABLE_PUSH: 0, SettingCodes.HEADER_TABLE_SIZE: 4096,
        SettingCodes.MAX_FRAME_SIZE: 16384,
    }
    peer.session._out = b"".join(f[3] for f in first)
    settled(peer)
    remote = peer.client.remote_settings
    assert remote.enable_connect_protocol == 1
    assert remote.max_concurrent_streams == 7
    assert remote.max_header_list_size == 8000
    assert remote.initial_window_size == 50000
    # The connection window holds every stream's window at once.
    assert peer.client.outbound_flow_control_window == 65535 + 7 * 50000


def test_a_partial_preface_waits_and_a_wrong_one_ends_with_protocol_error() -> None:
    """A wrong preface is a connection error; RFC 9113 §3.4 lets the GOAWAY be omitted
    (the peer may not speak HTTP/2 at all), and ``h2`` omits it."""
    session = H2ServerSession(ConnectionSettings())
    assert session.receive_data(PREFACE[:10], 0.0) == []
    assert not session.ended
    session = H2ServerSession(ConnectionSettings())
    events = session.receive_data(PREFACE[:-4] + b"XX\r\n" + SettingsFrame(0).serialize(), 0.0)
    assert describe(events) == [("SessionEnded", PROTOCOL_ERROR, "Invalid HTTP/2 preamble.")]
    # Its SETTINGS and connection WINDOW_UPDATE, no GOAWAY.
    assert [f[0] for f in frames(session.data_to_send())] == [0x4, 0x8]
    assert session.receive_data(PREFACE, 1.0) == []


# -- extended CONNECT accepted -------------------------------------------------------------


def echo_exchange(bytewise: bool) -> tuple[list[Any], Peer]:
    """An accepted WebSocket with a subprotocol: text, a message larger than both
    windows, a ping, then the client's close; what each side saw."""
    settings = ConnectionSettings(subprotocols=frozenset({"chat"}))
    peer = settled(Peer(settings, bytewise=bytewise))
    stream = peer.request(with_headers(("sec-websocket-protocol", "superchat, chat"),
                                       ("origin", "https://example.com")))
    seen: list[Any] = [("phase", stream.phase)]
    upgrade = stream.upgrade_request(("127.0.0.1", 5))
    seen.append(("upgrade", upgrade.draft, upgrade.offered_subprotocols, upgrade.path,
                 upgrade.request.headers.get("host"), upgrade.origin, upgrade.secure))
    choice = stream.choose_subprotocol(upgrade)
    stream.accept(choice)
    peer.to_client()
    ws = Socket(peer, stream)
    seen.append(("response", peer.sides[ws.sid].headers, stream.phase, stream.http_version,
                 stream.draft, stream.kind))
    big = bytes(range(256)) * 1200  # 300 KiB: more than the stream's and the client's window
    ws.send(lambda f: f.send_text("héllo 世界 🎉"))
    ws.send(lambda f: f.send_binary(big))
    ws.send(lambda f: f.send_ping(b"p1"))
    events = ws.serve()
    seen.append(("server got", events))
    for event in events:  # echo, as an application would
        if isinstance(event, Message):
            if isinstance(event.data, str):
                stream.send_text(event.data)
            else:
                stream.send_binary(event.data)
    ws.flush()
    for _ in range(50):  # the 300 KiB echo needs the client's window updates
        if not peer.session.pending(stream):
            break
        ws.serve()
    seen.append(("client got", ws.received(), peer.session.pending(stream)))
    ws.send(lambda f: f.send_close(1000, "bye"))
    events = ws.serve()
    seen.append(("close", events, stream.close_code, stream.phase, stream.eof_wanted))
    seen.append(("client", ws.received(), peer.sides[ws.sid].ended))
    ws.framer.receive_eof()  # END_STREAM is the client's EOF
    seen.append(("client eof", ws.framer.events()))
    peer.client.end_stream(ws.sid)
    before = len(peer.server_events)
    events = ws.serve()
    seen.append(("end", describe(peer.server_events[before:]), events, stream.phase,
                 peer.session.open_streams))
    return seen, peer


@pytest.mark.parametrize("mode", MODES)
def test_extended_connect_accepted_and_echoed(mode: str) -> None:
    seen, peer = echo_exchange(mode == "bytewise")
    big = bytes(range(256)) * 1200
    assert seen == [
        ("phase", Phase.DECIDE),
        ("upgrade", Draft.RFC6455, ("superchat", "chat"), "/chat?room=1", "example.com",
         "https://example.com", False),
        ("response", [(":status", "200"), ("sec-websocket-protocol", "chat")], Phase.OPEN,
         "2", Draft.RFC6455, Kind.HTTP2),
        ("server got", [Message("héllo 世界 🎉"), Message(big)]),
        ("client got", [Pong(b"p1"), Message("héllo 世界 🎉"), Message(big)], 0),
        ("close", [Closed(1000, "bye", True)], 1000, Phase.CLOSING, True),
        ("client", [], True),
        ("client eof", [Closed(1000, "bye", False)]),
        ("end", [("StreamEnded", 1)], [], Phase.CLOSED, 0),
    ]
    assert peer.goaway is None and not peer.session.ended


def test_whole_and_bytewise_give_the_same_events() -> None:
    """The same events either way, but for WindowOpened: a hint that writers may go
    on, given once per read that let bytes go, so how often depends on the reads."""
    whole, whole_peer = echo_exchange(False)
    bytewise, bytewise_peer = echo_exchange(True)
    assert whole == bytewise

    def told(peer: Peer) -> list[tuple[Any, ...]]:
        return [e for e in describe(peer.server_events) if e != ("WindowOpened",)]

    assert told(whole_peer) == told(bytewise_peer)
    assert whole_peer.sides == bytewise_peer.sides


def test_the_pong_reaches_the_client() -> None:
    peer = settled(Peer())
    ws = peer.websocket()
    ws.send(lambda f: f.send_ping(b"are you there"))
    ws.serve()
    assert ws.received() == [Pong(b"are you there")]


def test_the_server_closes_and_the_stream_ends_both_ways() -> None:
    peer = settled(Peer())
    ws = peer.websocket()
    ws.stream.send_close(1001, "going away")
    ws.flush()
    assert ws.received() == []  # a client reports the close once the server ends
    assert not peer.sides[ws.sid].ended  # END_STREAM only once the close is answered
    ws.send(lambda f: None)  # the client's framer answered the close already
    assert ws.serve() == [Closed(1001, "going away", False)]
    assert ws.stream.eof_wanted and ws.stream.phase is Phase.CLOSING
    assert peer.sides[ws.sid].ended
    ws.framer.receive_eof()  # END_STREAM is the client's EOF
    assert ws.framer.events() == [Closed(1001, "going away", True)]
    peer.client.end_stream(ws.sid)
    assert ws.serve() == []
    assert describe(peer.server_events[-1:]) == [("StreamEnded", ws.sid)]
    assert phase(ws.stream) is Phase.CLOSED and peer.session.open_streams == 0
    with pytest.raises(StreamClosedError):
        peer.session.send(ws.stream, b"late")


@pytest.mark.parametrize(
    ("settings", "offered", "chosen"),
    [
        (ConnectionSettings(subprotocols=frozenset({"chat", "superchat"})),
         "superchat, chat", "superchat"),
        (ConnectionSettings(subprotocols=frozenset({"mqtt"})), "superchat, chat", None),
        (ConnectionSettings(), "superchat, chat", None),
        (ConnectionSettings(select_subprotocol=lambda _up, offered: offered[-1]),
         "a, b, c", "c"),
        (ConnectionSettings(select_subprotocol=lambda up, _o: "v2" if up.secure else "v1"),
         "v1, v2", "v1"),
    ],
    ids=["listed", "none-listed", "no-setting", "callback", "callback-sees-request"],
)
def test_subprotocol_choice(settings: ConnectionSettings, offered: str,
                            chosen: str | None) -> None:
    peer = settled(Peer(settings))
    stream = peer.request(with_headers(("sec-websocket-protocol", offered)))
    choice = stream.choose_subprotocol(stream.upgrade_request())
    assert choice == chosen
    stream.accept(choice)
    peer.to_client()
    expected = [(":status", "200")]
    if chosen:
        expected.append(("sec-websocket-protocol", chosen))
    assert peer.sides[stream.stream_id].headers == expected
    assert stream.accepted is not None and stream.accepted.subprotocol == chosen


def test_accept_refuses_a_subprotocol_not_offered() -> None:
    peer = settled(Peer())
    stream = peer.request(with_headers(("sec-websocket-protocol", "chat")))
    with pytest.raises(ValueError, match="not offered"):
        stream.accept("superchat")
    assert stream.phase is Phase.DECIDE  # nothing was sent; it can still be decided


@pytest.mark.parametrize(
    ("compression", "header"),
    [(CompressionSettings(), "permessage-deflate"),
     (CompressionSettings(mode="permessage-deflate"), "permessage-deflate"),
     (CompressionSettings(mode="off"), None),
     (None, None)],
    ids=["default", "pmd-only", "off", "none"],
)
def test_permessage_deflate_over_h2(compression: CompressionSettings | None,
                                    header: str | None) -> None:
    settings = ConnectionSettings(handshake=HandshakeSettings(compression=compression))
    peer = settled(Peer(settings))
    factory = ClientPerMessageDeflateFactory()
    stream = peer.request(with_headers(("sec-websocket-extensions",
                                        "permessage-deflate; client_max_window_bits")))
    stream.accept()
    peer.to_client()
    answer = dict(peer.sides[stream.stream_id].headers or [])
    assert answer.get("sec-websocket-extensions") == header
    extensions = accept_response([header] if header else [], [factory])
    assert len(extensions) == (1 if header else 0)
    ws = Socket(peer, stream, extensions)
    ws.send(lambda f: f.send_text("Hello " * 50))
    assert ws.serve() == [Message("Hello " * 50)]
    stream.send_text("Hello " * 50)
    ws.flush()
    wire = peer.sides[ws.sid].data
    assert (wire[0] == 0xC1) == bool(header)  # RSV1: compressed
    assert (len(wire) < 100) == bool(header)
    assert ws.received() == [Message("Hello " * 50)]


# -- refusals: the statuses of HTTP/1.1 ----------------------------------------------------

STRICT = ConnectionSettings(handshake=HandshakeSettings(origins=("https://example.com",)))
NO_MISSING = ConnectionSettings(handshake=HandshakeSettings(allow_missing_origin=False))
TLS_ONLY = ConnectionSettings(handshake=HandshakeSettings(require_tls=True),
                              handshake_secure=HandshakeSettings(secure=True, require_tls=False))


@pytest.mark.parametrize(
    ("settings", "headers", "status", "extra"),
    [
        (None, with_headers(drop=["sec-websocket-version"]), 400,
         [("sec-websocket-version", "13")]),
        (None, with_headers(("sec-websocket-version", "8"), drop=["sec-websocket-version"]),
         400, [("sec-websocket-version", "13")]),
        (None, with_headers(("sec-websocket-version", "13"), ("sec-websocket-version", "8"),
                            drop=["sec-websocket-version"]), 400,
         [("sec-websocket-version", "13")]),
        (STRICT, with_headers(("origin", "https://evil.example")), 403, []),
        (NO_MISSING, with_headers(), 403, []),
        (None, with_headers(("sec-websocket-protocol", "chat/1")), 400, []),
        (None, [(":method", "CONNECT"), (":authority", "example.com:443")], 405,
         [("allow", "GET, HEAD, CONNECT")]),
        (None, [(n, "connect-udp" if n == ":protocol" else v) for n, v in REQUEST], 501, []),
        (None, [(":method", "POST"), (":scheme", "https"), (":path", "/chat"),
                (":authority", "example.com")], 405, [("allow", "GET, HEAD, CONNECT")]),
        (TLS_ONLY, with_headers(), 403, []),
        (STRICT, with_headers(("origin", "https://example.com"),
                              ("origin", "https://evil.example")), 400, []),
    ],
    ids=["no-version", "version-8", "two-versions", "bad-origin", "no-origin-strict",
         "subprotocol-not-token", "connect-no-protocol", "unknown-protocol", "post",
         "require-tls", "two-origins"],
)
@pytest.mark.parametrize("mode", MODES)
def test_refusals(settings: ConnectionSettings | None, headers: list[tuple[str, str]],
                  status: int, extra: list[tuple[str, str]], mode: str) -> None:
    peer = settled(Peer(settings, bytewise=mode == "bytewise"))
    stream = peer.request(headers)
    assert stream.phase is Phase.REFUSED
    assert stream.rejection is not None and stream.rejection.status == status
    peer.to_client()
    side = peer.sides[stream.stream_id]
    assert side.headers is not None
    assert side.headers[0] == (":status", str(status))
    for pair in extra:
        assert pair in side.headers
    body = (stream.rejection.reason + "\n").encode()
    assert ("content-length", str(len(body))) in side.headers
    assert side.data == body and side.ended and side.reset is None
    with pytest.raises(RuntimeError):
        stream.accept()
    assert not peer.session.ended


def test_require_tls_accepts_a_secure_session() -> None:
    peer = settled(Peer(TLS_ONLY, secure=True))
    stream = peer.request(REQUEST)
    assert stream.phase is Phase.DECIDE and stream.secure
    assert stream.upgrade_request().secure


def test_a_bad_origin_from_a_crowd_is_refused_alone() -> None:
    """A refused stream leaves the connection and its other streams alone."""
    peer = settled(Peer(STRICT))
    good = peer.websocket(with_headers(("origin", "https://example.com")))
    bad = peer.request(with_headers(("origin", "https://evil.example")))
    assert bad.phase is Phase.REFUSED and good.stream.phase is Phase.OPEN
    good.send(lambda f: f.send_text("still here"))
    assert good.serve() == [Message("still here")]


def test_draining_refuses_new_streams_with_503_and_serves_open_ones() -> None:
    """After ``goaway()`` the streams already open carry on both ways; a request that
    crossed the GOAWAY gets 503 with Retry-After, like HTTP/1.1 during a shutdown."""
    peer = settled(Peer())
    ws = peer.websocket()
    peer.session.goaway(ErrorCodes.NO_ERROR, "shutting down")
    out = frames(peer.session.data_to_send())
    goaway = [f for f in out if f[0] == 0x7]
    assert len(goaway) == 1
    parsed = GoAwayFrame(0)
    parsed.parse_body(memoryview(goaway[0][3][9:]))
    assert (parsed.last_stream_id, parsed.error_code, parsed.additional_data) == (
        ws.sid, 0, b"shutting down")
    # The client has not read the GOAWAY yet (h2's client would refuse to go on).
    late = peer.request(REQUEST)
    assert late.phase is Phase.REFUSED
    assert late.rejection is not None and late.rejection.status == 503
    ws.send(lambda f: f.send_text("after the goaway"))
    assert ws.serve() == [Message("after the goaway")]
    ws.stream.send_text("answered")
    ws.flush()
    assert ws.received() == [Message("answered")]
    assert peer.sides[late.stream_id].headers is not None
    assert (":status", "503") in (peer.sides[late.stream_id].headers or [])
    assert ("retry-after", "5") in (peer.sides[late.stream_id].headers or [])
    assert not peer.session.ended and peer.session.draining


# -- plain requests --------------------------------------------------------------------------

HEALTH = ConnectionSettings(handshake=HandshakeSettings(plain_paths=frozenset({"/healthz"})))
GET = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com")]


@pytest.mark.parametrize(("serving", "status", "body", "extra"),
                         [(True, "200", b"ok\n", None),
                          (False, "503", b"shutting down\n", ("retry-after", "5"))])
def test_health_check_over_h2(serving: bool, status: str, body: bytes,
                              extra: tuple[str, str] | None) -> None:
    peer = settled(Peer(HEALTH))
    stream = peer.request([*GET, (":path", "/healthz?probe=1")], end=True)
    assert stream.phase is Phase.PLAIN
    with pytest.raises(RuntimeError):
        stream.accept()
    stream.answer_health(serving=serving)
    assert phase(stream) is Phase.REFUSED
    peer.to_client()
    side = peer.sides[stream.stream_id]
    assert side.headers is not None and side.headers[0] == (":status", status)
    assert ("content-type", "text/plain; charset=utf-8") in side.headers
    assert ("content-length", str(len(body))) in side.headers
    if extra:
        assert extra in side.headers
    assert side.data == body and side.ended
    assert peer.session.open_streams == 0


def test_head_gets_the_headers_alone() -> None:
    peer = settled(Peer(HEALTH))
    stream = peer.request([(":method", "HEAD"), *GET[1:], (":path", "/healthz")], end=True)
    assert stream.phase is Phase.PLAIN
    stream.respond(200, b"ok\n", "text/plain; charset=utf-8")
    out = frames(peer.session.data_to_send())
    assert [(t, flags & 0x1) for t, flags, sid, _ in out if sid == stream.stream_id] == [
        (0x1, 0x1)]  # one HEADERS frame with END_STREAM, no DATA
    peer.session._out = b"".join(f[3] for f in out)
    peer.to_client()
    side = peer.sides[stream.stream_id]
    assert side.headers is not None and ("content-length", "3") in side.headers
    assert side.data == b"" and side.ended


def test_get_of_another_path_gets_the_426_page() -> None:
    peer = settled(Peer(HEALTH))
    stream = peer.request([*GET, (":path", "/")], end=True)
    assert stream.phase is Phase.REFUSED
    assert stream.rejection is not None and stream.rejection.status == 426
    with pytest.raises(RuntimeError):
        stream.respond(200, b"", "text/plain")
    peer.to_client()
    side = peer.sides[stream.stream_id]
    assert side.headers is not None and side.headers[0] == (":status", "426")
    assert ("content-type", "text/html; charset=utf-8") in side.headers
    assert side.data == PLAIN_PAGE.encode() and side.ended


def test_a_health_path_that_mentions_websocket_is_judged_as_an_upgrade() -> None:
    peer = settled(Peer(HEALTH))
    stream = peer.request([*GET, (":path", "/healthz"), ("sec-websocket-version", "13")],
                          end=True)
    assert stream.phase is Phase.REFUSED
    assert stream.rejection is not None and stream.rejection.status == 426


# -- flow control ------------------------------------------------------------------------------


def fill(peer: Peer, sid: int) -> int:
    """Send on the stream until the client's own h2 says the window is shut."""
    sent = 0
    while room := min(peer.client.local_flow_control_window(sid),
                      peer.client.max_outbound_frame_size):
        peer.client.send_data(sid, b"x" * room)
        sent += room
        peer.to_server()
        peer.to_client()
    return sent


def test_a_stream_not_read_holds_its_client_to_one_window() -> None:
    """Bytes nobody takes stay within ``stream_window``; ``take()`` hands the window back.
    Four streams fill their windows at once: 4 x 40,000 bytes is more than HTTP/2's
    initial connection window, which the server enlarged."""
    limits = H2Settings(max_streams=4, stream_window=40000)
    peer = settled(Peer(limits=limits))
    sockets = [peer.websocket() for _ in range(4)]
    for ws in sockets:
        assert fill(peer, ws.sid) == 40000
        assert len(ws.stream.inbox) == 40000
    with pytest.raises(FlowControlError):
        peer.client.send_data(sockets[0].sid, b"x")
    first = sockets[0]
    assert len(peer.session.take(first.stream, 30000)) == 30000
    peer.to_client()
    assert peer.client.local_flow_control_window(first.sid) == 30000
    for ws in sockets[1:]:
        assert peer.client.local_flow_control_window(ws.sid) == 0
    assert fill(peer, first.sid) == 30000
    assert len(first.stream.inbox) == 40000


def test_a_stream_not_read_does_not_stop_another() -> None:
    limits = H2Settings(stream_window=16384)
    peer = settled(Peer(limits=limits))
    stuck, busy = peer.websocket(), peer.websocket()
    fill(peer, stuck.sid)
    message = bytes(range(256)) * 1024  # 256 KiB through a 16 KiB window
    busy.send(lambda f: f.send_binary(message))
    events = busy.serve()
    assert events == [Message(message)]
    assert len(stuck.stream.inbox) == 16384


def test_padding_is_handed_back_at_once() -> None:
    """Padding counts against the window but nobody reads it: the session acknowledges
    it on arrival, so a client can pad far past the window with nothing taken."""
    limits = H2Settings(stream_window=2000)
    peer = settled(Peer(limits=limits))
    ws = peer.websocket()
    for _ in range(40):  # 40 x 257 flow-controlled bytes: five windows
        peer.client.send_data(ws.sid, b"x", pad_length=255)
        peer.to_server()
        peer.to_client()
    assert bytes(ws.stream.inbox) == b"x" * 40
    assert peer.client.local_flow_control_window(ws.sid) > 0


def test_data_for_a_refused_stream_is_handed_back_at_once() -> None:
    limits = H2Settings(stream_window=4000)
    peer = settled(Peer(STRICT, limits=limits))
    bad = peer.request(with_headers(("origin", "https://evil.example")))
    peer.to_client()
    for _ in range(10):  # ten windows' worth, never read
        peer.client.send_data(bad.stream_id, b"x" * 4000)
        peer.to_server()
        peer.to_client()
    assert bad.inbox == b""
    assert peer.client.local_flow_control_window(bad.stream_id) > 0


def test_data_before_the_answer_resets_the_stream() -> None:
    """RFC 8441 data flows after the 2xx; DATA on a stream still being decided is a
    stream error, and the other streams go on."""
    peer = settled(Peer())
    ws = peer.websocket()
    early = peer.request(REQUEST)
    peer.client.send_data(early.stream_id, b"\x81\x80abcd")
    assert describe(peer.to_server()) == [("StreamReset", early.stream_id, PROTOCOL_ERROR)]
    peer.to_client()
    assert peer.sides[early.stream_id].reset == PROTOCOL_ERROR
    ws.send(lambda f: f.send_text("fine"))
    assert ws.serve() == [Message("fine")]


def test_trailers_reset_the_stream() -> None:
    peer = settled(Peer())
    ws = peer.websocket()
    peer.client.send_headers(ws.sid, [("x-trailer", "1")], end_stream=True)
    assert describe(peer.to_server()) == [("StreamReset", ws.sid, PROTOCOL_ERROR)]
    assert not ws.stream.alive


# -- floods ------------------------------------------------------------------------------------

LIMIT = 10


def flood_settings(peer: Peer, _sid: int) -> None:
    peer.client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 4096})


def flood_ping(peer: Peer, _sid: int) -> None:
    peer.client.ping(b"12345678")


def flood_priority(peer: Peer, sid: int) -> None:
    peer.client.prioritize(sid, weight=16)


def flood_empty(peer: Peer, sid: int) -> None:
    peer.client.send_data(sid, b"")


def flood_reset(peer: Peer, _sid: int) -> None:
    sid = peer.client.get_next_available_stream_id()
    peer.client.send_headers(sid, REQUEST)
    peer.client.reset_stream(sid, ErrorCodes.CANCEL)


FLOODS = {"settings": (flood_settings, "SETTINGS flood"), "ping": (flood_ping, "PING flood"),
          "priority": (flood_priority, "PRIORITY flood"),
          "empty": (flood_empty, "empty DATA flood"),
          "reset": (flood_reset, "RST_STREAM (rapid reset) flood")}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_floods_end_with_enhance_your_calm(kind: str) -> None:
    send, reason = FLOODS[kind]
    peer = settled(Peer(limits=H2Settings(flood_limit=LIMIT)))
    ws = peer.websocket()
    # The client's first SETTINGS spent one token of its bucket.
    budget = LIMIT - 1 if kind == "settings" else LIMIT
    for n in range(1, 4 * LIMIT):  # noqa: B007
        send(peer, ws.sid)
        events = peer.to_server()
        if peer.session.ended:
            break
        peer.to_client()
    assert n == budget + 1
    assert ("StreamReset", ws.sid, CANCEL) in describe(events)
    assert describe(events)[-1] == ("SessionEnded", CALM, reason)
    assert not ws.stream.alive and ws.stream.reset_code == CANCEL
    peer.to_client()
    assert peer.goaway is not None and peer.goaway.error_code == CALM
    assert peer.goaway.additional_data == reason.encode()
    assert peer.session.receive_data(b"\x00" * 100, peer.now) == []
    with pytest.raises(StreamClosedError):
        peer.session.send(ws.stream, b"x")


@pytest.mark.parametrize("kind", ["ping", "reset"])
def test_the_flood_budget_refills_with_time(kind: str) -> None:
    """The bucket holds ``flood_limit`` and refills at a tenth of it per second: a burst,
    a pause of ten seconds, and the same burst again is no flood; one more frame than
    the time has refilled is."""
    send, _ = FLOODS[kind]
    peer = settled(Peer(limits=H2Settings(flood_limit=LIMIT)))
    ws = peer.websocket()
    for now in (0.0, 10.0, 20.0):
        peer.now = now
        for _ in range(LIMIT):
            send(peer, ws.sid)
            peer.to_server()
            peer.to_client()
    assert not peer.session.ended
    peer.now = 21.0  # one second: one token
    send(peer, ws.sid)
    peer.to_server()
    assert not peer.session.ended
    peer.now = 21.5  # half a token
    send(peer, ws.sid)
    peer.to_server()
    assert peer.session.ended and peer.session.end_code == CALM


def raw_client(limits: H2Settings | None = None) -> tuple[H2ServerSession, Encoder]:
    """A session past a raw client preface and SETTINGS, and an HPACK encoder."""
    session = H2ServerSession(ConnectionSettings(), limits)
    assert session.receive_data(PREFACE + SettingsFrame(0).serialize(), 0.0) == []
    session.data_to_send()
    return session, Encoder()


@pytest.mark.parametrize("size", [0, 16384])
def test_continuation_flood_ends_with_goaway_and_bounded_memory(size: int) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames without end (CVE-2024-27316):
    ``h2`` buffers at most 64 of them per header block, then ends the connection with
    PROTOCOL_ERROR. Each frame is fed on its own and the memory the session holds is
    measured while a thousand frames' worth arrive."""
    session, encoder = raw_client()
    block = encoder.encode(REQUEST)
    assert session.receive_data(HeadersFrame(1, block[:5]).serialize(), 0.0) == []
    tracemalloc.start()
    try:
        fed = 0
        for fed in range(1, 1001):  # noqa: B007
            frame = ContinuationFrame(1, b"\x00" * size).serialize()
            events = session.receive_data(frame, 0.0)
            if events:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fed == 64
    assert describe(events) == [("SessionEnded", PROTOCOL_ERROR,
                                 "Too many continuation frames received.")]
    assert peak < 65 * size + 512 * 1024
    goaway = [f for f in frames(session.data_to_send()) if f[0] == 0x7]
    assert len(goaway) == 1 and goaway[0][3][13:17] == PROTOCOL_ERROR.to_bytes(4, "big")
    assert session.receive_data(ContinuationFrame(1, b"").serialize(), 1.0) == []


def test_an_oversized_frame_is_refused_at_its_header() -> None:
    """A frame header announcing more than the 16,384 bytes the server allows ends the
    connection with FRAME_SIZE_ERROR as soon as the header is read; ``h2`` alone would
    buffer the whole announced frame (up to 16 MiB) before checking its length."""
    session, _ = raw_client()
    header = (16385).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    tracemalloc.start()
    try:
        events = session.receive_data(header[:5], 0.0)
        assert events == []
        events = session.receive_data(header[5:], 0.0)
        for _ in range(64):  # 1 MiB more of the frame's body
            assert session.receive_data(b"\x00" * 16384, 0.0) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert describe(events) == [("SessionEnded", int(ErrorCodes.FRAME_SIZE_ERROR),
                                 "a frame of 16385 bytes is over the limit")]
    assert peak < 256 * 1024
    goaway = [f for f in frames(session.data_to_send()) if f[0] == 0x7]
    assert len(goaway) == 1
    assert goaway[0][3][13:17] == int(ErrorCodes.FRAME_SIZE_ERROR).to_bytes(4, "big")


def test_frames_of_the_largest_size_pass() -> None:
    peer = settled(Peer())
    ws = peer.websocket()
    big = HybiFramer(client=True)
    big.send_binary(b"z" * 40000)
    wire = big.data_to_send()
    peer.client.send_data(ws.sid, wire[:16384])
    peer.client.send_data(ws.sid, wire[16384:32768])
    peer.client.send_data(ws.sid, wire[32768:])
    data = peer.client.data_to_send()
    assert sorted(f[3][:3] for f in frames(data))[-1] == (16384).to_bytes(3, "big")
    for piece in (data[:7], data[7:20000], data[20000:]):  # headers cut anywhere
        peer.feed(piece)
    assert not peer.session.ended
    assert ws.serve() == [Message(b"z" * 40000)]


def big_header_list(limit: int, over: int) -> list[tuple[str, str]]:
    """A request whose HPACK header list size (RFC 7541 §4.1: name + value + 32 per
    field) is ``limit + over``."""
    base = sum(len(n) + len(v) + 32 for n, v in REQUEST) + len("x-big") + 32
    return with_headers(("x-big", "a" * (limit + over - base)))


@pytest.mark.parametrize("first_flight", [False, True])
def test_a_header_list_above_the_limit_ends_the_connection(first_flight: bool) -> None:
    """A header list over ``h2_max_header_list`` ends the whole connection with GOAWAY
    ENHANCE_YOUR_CALM, not a 431 on its stream: ``h2``'s HPACK decoder counts the list
    as it decodes it (so a bomb never inflates past the limit) and raises, and ``h2``
    treats that as a denial of service. The limit holds from the client's first flight,
    before it has acknowledged the server's SETTINGS; a list of exactly the limit is
    accepted."""
    limits = H2Settings(max_header_list=4096)
    peer = Peer(limits=limits)
    if not first_flight:
        settled(peer)
    assert peer.request(big_header_list(4096, 0)).phase is Phase.DECIDE
    peer.client.send_headers(peer.client.get_next_available_stream_id(),
                             big_header_list(4096, 1))
    events = peer.to_server()
    assert describe(events)[-1][:2] == ("SessionEnded", CALM)
    assert "larger than 4096" in peer.session.end_reason
    peer.to_client()
    assert peer.goaway is not None and peer.goaway.error_code == CALM


def test_an_hpack_bomb_ends_the_connection() -> None:
    """Forty references to one 3,000-byte dynamic table entry: a header block of a few
    hundred bytes that would decode to 120 KB."""
    peer = settled(Peer())
    sid = peer.client.get_next_available_stream_id()
    peer.client.send_headers(sid, with_headers(*[("x-bomb", "b" * 3000)] * 40))
    wire = peer.client.data_to_send()
    assert len(wire) < 4000
    events = peer.feed(wire)
    assert describe(events) == [("SessionEnded", CALM,
                                 "Oversized header block: A header list larger than 16384 "
                                 "has been received")]


def test_more_streams_than_allowed_end_with_protocol_error() -> None:
    """``h2`` enforces MAX_CONCURRENT_STREAMS from the start with a connection error
    (PROTOCOL_ERROR), not a REFUSED_STREAM reset; the client here opens its fourth
    stream before it has read the server's limit of three."""
    peer = Peer(limits=H2Settings(max_streams=3))
    streams = [peer.request(REQUEST) for _ in range(3)]
    for stream in streams:
        stream.accept()
    peer.client.send_headers(peer.client.get_next_available_stream_id(), REQUEST)
    events = peer.to_server()
    assert describe(events) == [*(("StreamReset", s.stream_id, CANCEL) for s in streams),
                                ("SessionEnded", PROTOCOL_ERROR,
                                 "Max inbound streams is 3, 3 open")]
    peer.to_client()
    assert peer.goaway is not None and peer.goaway.error_code == PROTOCOL_ERROR


@pytest.mark.parametrize("loss", ["reset", "client-goaway", "flood"])
@pytest.mark.parametrize("answer", ["accept", "reject", "health"])
def test_a_stream_lost_while_being_decided_takes_no_answer(loss: str, answer: str) -> None:
    """The I/O layer decides in a task of its own (``process_request`` may await); when
    the stream or the connection is lost meanwhile, its answer is a no-op and the
    stream stays unopened, so the loss reads as one, not as an error."""
    peer = settled(Peer(HEALTH, H2Settings(flood_limit=1)))
    if answer == "health":
        stream = peer.request([*GET, (":path", "/healthz")], end=True)
    else:
        stream = peer.request(REQUEST)
    if loss == "reset":
        peer.client.reset_stream(stream.stream_id, ErrorCodes.CANCEL)
    elif loss == "client-goaway":
        peer.client.close_connection()
    else:
        peer.client.ping(b"12345678")
        peer.client.ping(b"12345678")
    assert ("StreamReset", stream.stream_id, CANCEL) in describe(peer.to_server())
    peer.session.data_to_send()
    if answer == "accept":
        stream.accept()
    elif answer == "reject":
        stream.reject(403, "no")
    else:
        stream.answer_health(serving=True)
    assert stream.phase is Phase.REFUSED and stream.framer is None
    assert stream.rejection is None
    assert peer.session.data_to_send() == b""


# -- resets, GOAWAY, garbage ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_reset_mid_message_ends_that_stream_alone(mode: str) -> None:
    peer = settled(Peer(bytewise=mode == "bytewise"))
    cut, other = peer.websocket(), peer.websocket()
    half = HybiFramer(client=True)
    half.send_binary(b"y" * 5000)
    peer.client.send_data(cut.sid, half.data_to_send()[:3000])  # part of one frame
    cut.serve()
    peer.client.reset_stream(cut.sid, ErrorCodes.CANCEL)
    assert describe(peer.to_server()) == [("StreamReset", cut.sid, CANCEL)]
    stream = cut.stream
    assert not stream.alive and stream.reset_code == CANCEL
    assert stream.stream_id not in peer.session.streams
    with pytest.raises(StreamClosedError):
        peer.session.send(stream, b"x")
    stream.receive_eof()  # what the I/O layer does with a lost transport
    assert stream.events() == [Closed(1006, "connection lost", True)]
    other.send(lambda f: f.send_text("unaffected"))
    assert other.serve() == [Message("unaffected")]
    other.stream.send_text("still echoing")
    other.flush()
    assert other.received() == [Message("still echoing")]


def test_client_goaway_ends_the_session() -> None:
    peer = settled(Peer())
    ws = peer.websocket()
    peer.client.close_connection(ErrorCodes.NO_ERROR)
    events = peer.to_server()
    assert describe(events) == [("StreamReset", ws.sid, CANCEL),
                                ("SessionEnded", 0, "client sent GOAWAY")]
    assert peer.session.ended and peer.session.receive_data(b"anything", 1.0) == []


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (b"\x00" * 9, ErrorCodes.PROTOCOL_ERROR),  # DATA on stream 0
        (DataFrame(1, b"x").serialize(), ErrorCodes.PROTOCOL_ERROR),  # an idle stream
        (HeadersFrame(2, b"\x82", flags=["END_HEADERS"]).serialize(),
         ErrorCodes.PROTOCOL_ERROR),  # an even stream id
        (HeadersFrame(1, b"\xff\xff\xff\xff", flags=["END_HEADERS"]).serialize(),
         ErrorCodes.PROTOCOL_ERROR),  # h2's code; RFC 9113 §4.3 asks for COMPRESSION_ERROR
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCodes.FRAME_SIZE_ERROR),
        (b"\x00\x00\x03\x07\x00\x00\x00\x00\x00" + b"\x00" * 3,
         ErrorCodes.FRAME_SIZE_ERROR),  # a GOAWAY of 3 bytes
        (b"\x00\x00\x01\x04\x00\x00\x00\x00\x00\x00", ErrorCodes.FRAME_SIZE_ERROR),
        (SettingsFrame(0, {SettingCodes.INITIAL_WINDOW_SIZE: 2**31}).serialize(),
         ErrorCodes.FLOW_CONTROL_ERROR),
        (SettingsFrame(0, {SettingCodes.ENABLE_PUSH: 2}).serialize(),
         ErrorCodes.PROTOCOL_ERROR),
    ],
    ids=["data-stream-0", "data-idle", "even-stream", "bad-hpack", "http1", "short-goaway",
         "short-settings", "window-too-large", "enable-push-2"],
)
def test_garbage_after_the_preface_ends_with_goaway(garbage: bytes, code: int) -> None:
    """Each a connection error (RFC 9113): GOAWAY with its code, no exception out of
    ``receive_data``, and nothing more read."""
    session, _ = raw_client()
    events = session.receive_data(garbage, 0.0)
    assert len(events) == 1 and isinstance(events[0], SessionEnded)
    assert events[0].code == code
    goaway = [f for f in frames(session.data_to_send()) if f[0] == 0x7]
    assert len(goaway) == 1 and goaway[0][3][13:17] == int(code).to_bytes(4, "big")
    assert session.receive_data(garbage, 1.0) == []


def test_header_bytes_that_are_not_utf8_do_not_escape() -> None:
    """Header values are read as Latin-1, like HTTP/1.1 heads: bytes that are not UTF-8
    reach the checks (here the origin policy's 403) instead of raising."""
    strict = ConnectionSettings(handshake=HandshakeSettings(origins=("https://a.example",)))
    session = H2ServerSession(strict)
    encoder = Encoder()
    block = encoder.encode([(k.encode(), v.encode()) for k, v in REQUEST]
                           + [(b"origin", b"https://\xff\xfe.example")])
    events = session.receive_data(PREFACE + SettingsFrame(0).serialize()
                                  + HeadersFrame(1, block, flags=["END_HEADERS"]).serialize(),
                                  0.0)
    requests = [e for e in events if isinstance(e, RequestReceived)]
    assert len(requests) == 1
    stream = requests[0].stream
    assert stream.request.origin == "https://\xff\xfe.example"
    assert stream.rejection is not None and stream.rejection.status == 403


def test_upgrade_request_is_the_application_view() -> None:
    peer = settled(Peer(secure=True))
    stream = peer.request(with_headers(("sec-websocket-protocol", "a, b"),
                                       ("origin", "https://example.com"),
                                       ("x-custom", "1")))
    upgrade = stream.upgrade_request(("10.0.0.1", 4242))
    assert isinstance(upgrade, UpgradeRequest)
    assert (upgrade.draft, upgrade.remote, upgrade.offered_subprotocols, upgrade.secure) == (
        Draft.RFC6455, ("10.0.0.1", 4242), ("a", "b"), True)
    assert upgrade.request.method == "CONNECT" and upgrade.request.http_version == "HTTP/2"
    assert upgrade.request.headers.get("x-custom") == "1"
    assert stream.protocol == "websocket"

