"""WebSocket over HTTP/2 (RFC 8441), sans-I/O: one HTTP/2 connection, many streams.

Theory of operation: an :class:`H2ServerSession` owns one HTTP/2 connection, from the
client's connection preface on, through the ``h2`` library. It advertises
``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1``, so a browser opens its WebSockets to this
origin as extended CONNECT requests on this connection. Each request stream becomes an
:class:`H2ServerStream`, which takes the same decisions as the HTTP/1.1 handshake
(origin policy, version, subprotocols, compression, ``process_request``) through the
same methods as :class:`~wscompat.protocol.connection.ServerConnection`
(``upgrade_request``, ``accept``, ``reject``, ``respond``). Once accepted, a stream runs
the RFC 6455 framer over its DATA frames, and the I/O layer drives it exactly like an
HTTP/1.1 connection: :class:`H2ServerStream` offers ``receive_data``, ``events``,
``chunks_to_send`` and the close state of the other connection objects.

The session moves bytes between the streams and the wire: what a stream's framer
writes is queued on the stream (:meth:`H2ServerSession.send`) and leaves as DATA frames
as far as HTTP/2 flow control allows; what arrives waits in the stream's ``inbox``
until the I/O layer takes it (:meth:`H2ServerSession.take`), and only then is the
window handed back to the client. A WebSocket that its application does not read
therefore stops its own client after one window, without stopping the others.

Defences against HTTP/2's own floods (rapid reset, SETTINGS, PING, PRIORITY and empty
frames) are token buckets per connection; ``now`` is passed in by the I/O layer, so no
clock is read here. A CONTINUATION flood is bounded by ``h2`` itself (at most 64
CONTINUATION frames per header block) and by the HPACK decoder's header list limit.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

import h2.events as h2e
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame
from websockets.extensions import Extension

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.connection import (
    _FRAMER_PHASE,
    ConnectionSettings,
    Phase,
    UpgradeRequest,
    _Open,
    choose_subprotocol,
    make_framer,
)
from wscompat.protocol.extensions import negotiate
from wscompat.protocol.handshake import Accepted, HandshakeSettings
from wscompat.protocol.handshake.detect import mentions_websocket
from wscompat.protocol.handshake.hybi import offered_subprotocols
from wscompat.protocol.handshake.origin import check_origin, single_origin
from wscompat.protocol.handshake.server import PLAIN_PAGE
from wscompat.protocol.http import Headers, Request
from wscompat.protocol.http2_session import (
    DataArrived,
    EventSink,
    H2Session,
    H2Stream,
    SessionEnded,
    StreamEnded,
    StreamReset,
    WindowOpened,
    error_reason,
    field_text,
)
from wscompat.protocol.sniff import HTTP2_PREFACE, Kind

__all__ = [
    "PREFACE",
    "DataArrived",
    "H2Event",
    "H2ServerSession",
    "H2ServerStream",
    "H2Settings",
    "RequestReceived",
    "SessionEnded",
    "StreamEnded",
    "StreamReset",
    "WindowOpened",
]

PREFACE = HTTP2_PREFACE
"""The client connection preface (RFC 9113 §3.4)."""
HTTP_VERSION = "2"


@dataclass(frozen=True)
class H2Settings:
    """HTTP/2's own limits; each is a server option (``h2_*``)."""

    max_streams: int = 100
    """SETTINGS_MAX_CONCURRENT_STREAMS: streams the client may have open at once."""
    max_header_list: int = 16384
    """SETTINGS_MAX_HEADER_LIST_SIZE, enforced by the HPACK decoder (bytes, decoded)."""
    stream_window: int = 131072
    """The receive window of each stream: the most a client can send to a WebSocket
    that its application does not read (bytes)."""
    flood_limit: int = 100
    """Frames of each flood kind (RST_STREAM, SETTINGS, PING, PRIORITY, empty DATA) a
    client may send in a burst; the budget refills at a tenth of this per second. Past
    it the connection ends with GOAWAY ENHANCE_YOUR_CALM. (An empty HEADERS frame is a
    request without ``:method``: ``h2`` ends the connection at the first, with
    PROTOCOL_ERROR.)"""


# -- events for the I/O layer -----------------------------------------------------------


@dataclass(frozen=True)
class RequestReceived:
    """A request head arrived: decide on it (phase DECIDE), answer it (PLAIN), or log
    it (REFUSED: the session answered it already)."""

    stream: H2ServerStream


# DataArrived, StreamEnded, StreamReset, WindowOpened and SessionEnded come from
# wscompat.protocol.http2_session, shared with the client; H2Event follows H2ServerStream.


class _Bucket:
    """A token bucket: ``limit`` at once, refilled at a tenth of that per second."""

    __slots__ = ("_last", "_limit", "_tokens")

    def __init__(self, limit: int) -> None:
        self._limit = float(limit)
        self._tokens = float(limit)
        self._last: float | None = None

    def take(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self._limit, self._tokens + (now - self._last) * self._limit / 10)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class StreamState(enum.Enum):
    HEAD = "head"
    """Decide or answer the request."""
    OPEN = "open"
    """A WebSocket runs on the stream."""
    DONE = "done"
    """Answered (a refusal or a plain response) or reset: nothing more to do."""


class H2ServerStream(_Open, H2Stream):
    """One request stream: its handshake, then a WebSocket over its DATA frames.

    Offers the decision methods of :class:`ServerConnection` and, once open, the byte
    and event methods of an established connection, so the I/O layer drives it the
    same way.
    """

    draft = Draft.RFC6455
    http_version = HTTP_VERSION
    kind = Kind.HTTP2
    secure: bool

    def __init__(self, session: H2ServerSession, stream_id: int, request: Request,
                 protocol: str | None) -> None:
        self._init_open()
        super().__init__(stream_id)
        self.session = session
        self.request: Request = request
        self.protocol = protocol
        """The ``:protocol`` pseudo-header (``websocket`` for RFC 8441)."""
        self.secure = session.secure
        self.settings = session.settings
        self.stage = StreamState.HEAD
        self.rejection: HandshakeRejected | None = None
        self.accepted: Accepted | None = None
        self.plain = False
        """A plain GET or HEAD for one of the settings' ``plain_paths``."""

    # -- what the I/O layer asks --------------------------------------------------------

    @property
    def phase(self) -> Phase:
        framer = self.framer
        if framer is not None:
            return _FRAMER_PHASE[framer.state]
        if self.stage is StreamState.HEAD:
            return Phase.PLAIN if self.plain else Phase.DECIDE
        return Phase.REFUSED

    @property
    def eof_wanted(self) -> bool:
        return self.framer is not None and self.framer.eof_wanted

    @property
    def wants_write(self) -> bool:
        return self.framer is not None and self.framer.wants_write

    @property
    def alive(self) -> bool:
        """The stream can still carry bytes to the client."""
        return self.reset_code is None and not self.end_sent and not self.session.ended

    def receive_data(self, data: bytes | bytearray) -> None:
        self._framer().receive_data(data)

    def receive_eof(self) -> None:
        if self.framer is not None:
            self.framer.receive_eof()
        elif self.close_code is None:
            self.finish(1006, "stream ended during the handshake", "peer")

    def data_to_send(self) -> bytes:
        return self._framer().data_to_send()

    def chunks_to_send(self) -> list[bytes]:
        return self._framer().chunks_to_send()

    # -- decisions ----------------------------------------------------------------------

    def upgrade_request(self, remote: tuple[str, int] | None = None) -> UpgradeRequest:
        return UpgradeRequest(self.request, Draft.RFC6455, remote,
                              tuple(offered_subprotocols(self.request)), self.secure)

    def choose_subprotocol(self, upgrade: UpgradeRequest) -> str | None:
        return choose_subprotocol(self.settings, upgrade)

    def accept(self, subprotocol: str | None = None) -> None:
        """Answer ``:status 200`` with the choices, and open the WebSocket. A stream
        reset while it was being decided (by the client, or with the connection) stays
        unopened: the I/O layer sees a phase other than OPEN, as for a lost connection."""
        if self.reset_code is not None:
            return
        if self.stage is not StreamState.HEAD or self.plain:
            raise RuntimeError("accept() on a stream that is not deciding")
        offered = offered_subprotocols(self.request)
        if subprotocol is not None and subprotocol not in offered:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered")
        extensions: str | None = None
        negotiated: tuple[Extension, ...] = ()
        compression = self.session.handshake.compression
        if compression is not None:
            agreement = negotiate(self.request.headers.get_all("Sec-WebSocket-Extensions"),
                                  compression)
            extensions, negotiated = agreement.header, agreement.extensions
        headers = [(":status", "200")]
        if subprotocol:
            headers.append(("sec-websocket-protocol", subprotocol))
        if extensions:
            headers.append(("sec-websocket-extensions", extensions))
        if not self.session._send_headers(self, headers):
            return  # the stream is gone: it stays unopened
        self.accepted = Accepted(Draft.RFC6455, self.request, subprotocol, extensions,
                                 negotiated=negotiated)
        self.stage = StreamState.OPEN
        self.request.headers.compact()
        self._open_framer(make_framer(Draft.RFC6455, self.settings, negotiated), b"")

    def reject(self, status: int, reason: str,
               headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer with an error status; nothing to answer on a stream already reset."""
        if self.reset_code is not None:
            return
        if self.stage is not StreamState.HEAD:
            raise RuntimeError("the request can no longer be rejected")
        self.rejection = HandshakeRejected(status, reason, headers)
        self._answer(status, (reason + "\n").encode("utf-8", "replace"),
                     "text/plain; charset=utf-8", headers)

    def respond(self, status: int, body: bytes, content_type: str,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer a plain request (a HEAD gets the head alone); nothing to answer on a
        stream already reset."""
        if self.reset_code is not None:
            return
        if self.stage is not StreamState.HEAD or not self.plain:
            raise RuntimeError("respond() on a stream that is not a plain request")
        self._answer(status, body, content_type, headers)

    def answer_health(self, *, serving: bool) -> None:
        if serving:
            self.respond(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self.respond(503, b"shutting down\n", "text/plain; charset=utf-8",
                         (("Retry-After", "5"),))

    def _answer(self, status: int, body: bytes, content_type: str,
                headers: Iterable[tuple[str, str]]) -> None:
        fields = [(":status", str(status)),
                  *((name.lower(), value) for name, value in headers),
                  ("content-type", content_type), ("content-length", str(len(body))),
                  ("cache-control", "no-store")]
        self.stage = StreamState.DONE
        head_only = self.request.method == "HEAD"
        sent = self.session._send_headers(self, fields, end_stream=head_only or not body)
        if sent and body and not head_only:
            self.session.send(self, body, end=True)

    def __repr__(self) -> str:
        return f"<H2ServerStream {self.stream_id} {self.request.method} {self.stage.value}>"


H2Event = (RequestReceived | DataArrived[H2ServerStream] | StreamEnded[H2ServerStream]
           | StreamReset[H2ServerStream] | WindowOpened | SessionEnded)


class _FrameWatch:
    """Reads the length of each frame header as it passes, because ``h2`` checks a
    frame's length only once the whole frame has arrived: a header announcing 16 MiB
    would otherwise be buffered to the last byte before being refused."""

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._skip = len(PREFACE)
        """Bytes before the next frame header."""
        self._head = bytearray()

    def oversized(self, data: bytes, limit: int) -> int | None:
        """The announced length of the first frame in ``data`` longer than ``limit``."""
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = 9 - len(self._head)
            self._head += data[pos:pos + take]
            pos += take
            if len(self._head) < 9:
                break
            length = int.from_bytes(self._head[:3], "big")
            self._head.clear()
            if length > limit:
                return length
            self._skip = length
        return None


@dataclass
class _Counters:
    """Flood budgets, one per kind of frame that costs the server and gives nothing."""

    limit: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, kind: str, now: float) -> bool:
        bucket = self.buckets.get(kind)
        if bucket is None:
            bucket = self.buckets[kind] = _Bucket(self.limit)
        return bucket.take(now)


class H2ServerSession(H2Session[H2ServerStream, H2Event]):
    """The server side of one HTTP/2 connection (see the module's docstring)."""

    def __init__(self, settings: ConnectionSettings, h2_settings: H2Settings | None = None,
                 *, secure: bool = False) -> None:
        self.settings = settings
        self.h2_settings = limits = h2_settings or H2Settings()
        self.secure = secure
        self.handshake: HandshakeSettings = (
            settings.handshake_secure if secure else settings.handshake
        )
        super().__init__(client_side=False, local_settings=_local_settings(limits),
                         max_streams=limits.max_streams, stream_window=limits.stream_window)
        self.draining = False
        """A graceful GOAWAY went out: streams already open run to their end."""
        self.ping_acked: bytes | None = None
        """The payload of the last PING acknowledgement received (see :meth:`ping`)."""
        self._floods = _Counters(limits.flood_limit)
        self._frames = _FrameWatch()
        self._out = self._conn.data_to_send()
        """Bytes taken from h2 or written here (the server's preface, a graceful
        GOAWAY), sent before what h2 holds."""
        # The server's preface (SETTINGS, then that WINDOW_UPDATE) is taken out of h2
        # now: a flood found in the client's first bytes clears what h2 holds, and the
        # GOAWAY must still follow the SETTINGS, the first frame a server sends.

    # -- bytes in -----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[H2Event]:
        """Feed bytes from the wire; the events they caused. ``now`` is any monotonic
        clock in seconds, for the flood budgets."""
        if self.ended:
            return []
        length = self._frames.oversized(data, self._conn.max_inbound_frame_size)
        if length is not None:
            return self.terminate(int(ErrorCodes.FRAME_SIZE_ERROR),
                                  f"a frame of {length} bytes is over the limit")
        try:
            h2_events = self._conn.receive_data(data)
        except ProtocolError as exc:  # h2 has queued its GOAWAY
            code = int(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR))
            return self._ended(code, error_reason(exc))
        events: list[H2Event] = []
        for event in h2_events:
            self._on_event(event, now, events)
            if self.ended:
                break
        self._pump(events)
        return events

    def _on_event(self, event: h2e.Event, now: float, events: list[H2Event]) -> None:
        t = type(event)
        if t is h2e.DataReceived:
            self._on_data(event, now, events)  # type: ignore[arg-type]
        elif t is h2e.RequestReceived:
            self._on_request(event, events)  # type: ignore[arg-type]
        elif t is h2e.StreamEnded:
            stream = self.streams.get(event.stream_id)  # type: ignore[attr-defined]
            if stream is not None:
                self._peer_ended(stream, events)
        elif t is h2e.StreamReset:
            self._on_reset(event, now, events)  # type: ignore[arg-type]
        elif t is h2e.WindowUpdated:
            events.append(WindowOpened())
        elif t is h2e.RemoteSettingsChanged:
            if not self._floods.take("settings", now):
                self._flood("SETTINGS", events)
            elif SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:  # type: ignore[attr-defined]
                events.append(WindowOpened())
        elif t is h2e.PingAckReceived:
            self.ping_acked = event.ping_data  # type: ignore[attr-defined]
        elif t is h2e.PingReceived:
            if not self._floods.take("ping", now):
                self._flood("PING", events)
        elif t is h2e.PriorityUpdated:
            if not self._floods.take("priority", now):
                self._flood("PRIORITY", events)
        elif t is h2e.ConnectionTerminated:
            code = int(event.error_code or 0)  # type: ignore[attr-defined]
            self._end(code, "client sent GOAWAY", events)
        elif t is h2e.TrailersReceived:
            self._reset(event.stream_id, ErrorCodes.PROTOCOL_ERROR, events)  # type: ignore[attr-defined]

    def _on_request(self, event: h2e.RequestReceived, events: list[H2Event]) -> None:
        sid = event.stream_id
        assert sid is not None
        pseudo: dict[str, str] = {}
        regular: list[tuple[str, str]] = []
        for name, value in event.headers or ():
            # Latin-1, as HTTP/1.1 heads are read: any bytes decode, none are lost.
            name_s, value_s = field_text(name), field_text(value)
            if name_s.startswith(":"):
                pseudo[name_s] = value_s
            else:
                regular.append((name_s, value_s))
        authority = pseudo.get(":authority")
        if authority is not None and not any(n == "host" for n, _ in regular):
            regular.insert(0, ("host", authority))
        method = pseudo.get(":method", "")
        target = pseudo.get(":path", authority or "")
        request = Request(method, target, "HTTP/2", Headers(regular))
        stream = H2ServerStream(self, sid, request, pseudo.get(":protocol"))
        self.streams[sid] = stream
        if self.draining:
            stream.reject(503, "server shutting down, try again later", (("retry-after", "5"),))
        else:
            try:
                self._check_request(stream)
            except HandshakeRejected as exc:
                stream.reject(exc.status, exc.reason, exc.headers)
        events.append(RequestReceived(stream))

    def _check_request(self, stream: H2ServerStream) -> None:
        """What the HTTP/1.1 handshake checks, for an extended CONNECT; plain requests
        get the health check, the page or 405."""
        request = stream.request
        hs = self.handshake
        if hs.require_tls and not self.secure:
            raise HandshakeRejected(403, "TLS required: connect with wss://")
        if request.method != "CONNECT":
            path = request.target.partition("?")[0]
            if request.method in ("GET", "HEAD"):
                if path in hs.plain_paths and not mentions_websocket(request):
                    stream.plain = True
                    return
                stream.plain = True  # the page: answered here, like HTTP/1.1's 426
                stream._answer(426, PLAIN_PAGE.encode(), "text/html; charset=utf-8", ())
                stream.rejection = HandshakeRejected(426, "not a WebSocket request")
                stream.plain = False
                return
            raise HandshakeRejected(405, f"method {request.method} not allowed",
                                    (("allow", "GET, HEAD, CONNECT"),))
        if stream.protocol is None:
            raise HandshakeRejected(405, "CONNECT without :protocol: not a proxy",
                                    (("allow", "GET, HEAD, CONNECT"),))
        if stream.protocol.lower() != "websocket":
            raise HandshakeRejected(501, f"protocol {stream.protocol!r} is not supported")
        versions = request.headers.get_all("Sec-WebSocket-Version")
        if [v.strip() for v in versions] != ["13"]:
            raise HandshakeRejected(400, "Sec-WebSocket-Version must be 13",
                                    (("sec-websocket-version", "13"),))
        offered_subprotocols(request)  # each one a token, or 400
        check_origin(single_origin(request), hs)

    def _on_data(self, event: h2e.DataReceived, now: float, events: list[H2Event]) -> None:
        sid = event.stream_id
        assert sid is not None
        data = event.data or b""
        flow = event.flow_controlled_length or 0
        stream = self.streams.get(sid)
        if not data and not event.stream_ended and not self._floods.take("empty", now):
            self._flood("empty DATA", events)
            return
        if (stream is None or stream.stage is not StreamState.OPEN
                or stream.reset_code is not None):
            # Nobody reads it: hand the window back at once.
            if flow:
                self._acknowledge(flow, sid)
            if stream is not None and stream.stage is StreamState.HEAD and data:
                self._reset(sid, ErrorCodes.PROTOCOL_ERROR, events)  # data before the 200
            return
        self._arrived(stream, data, flow, events)

    def _on_reset(self, event: h2e.StreamReset, now: float, events: list[H2Event]) -> None:
        sid = event.stream_id
        assert sid is not None
        if event.remote_reset and not self._floods.take("reset", now):
            self._flood("RST_STREAM (rapid reset)", events)
            return
        stream = self.streams.get(sid)
        if stream is not None:
            self._drop(stream, int(event.error_code or 0), events)

    def _flood(self, what: str, events: list[H2Event]) -> None:
        # What h2 queued for this read (an acknowledgement of every PING or SETTINGS
        # in it, up to a read's worth) is not sent: the GOAWAY is the whole answer.
        self._conn.clear_outbound_data_buffer()
        self._conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM,
                                    f"{what} flood".encode())
        self._end(int(ErrorCodes.ENHANCE_YOUR_CALM), f"{what} flood", events)

    def _ended(self, code: int, reason: str) -> list[H2Event]:
        events: list[H2Event] = []
        self._end(code, reason, events)
        return events

    # -- the connection -----------------------------------------------------------------

    def goaway(self, code: int = ErrorCodes.NO_ERROR, reason: str = "") -> None:
        """A graceful GOAWAY: streams already open go on, new ones are refused."""
        if self.ended or self.draining:
            return
        self.draining = True
        # h2's close_connection() would move its state machine to CLOSED, where it
        # refuses every later frame either way, the open streams' included: the GOAWAY
        # is written here instead, after what h2 has queued, and h2 goes on serving.
        frame = GoAwayFrame(0, last_stream_id=self._conn.highest_inbound_stream_id,
                            error_code=int(code), additional_data=reason.encode())
        self._out += self._conn.data_to_send() + frame.serialize()

    def ping(self, payload: bytes) -> None:
        """Send a PING of 8 bytes (a keepalive); its ACK sets ``ping_acked``."""
        if not self.ended:
            self._conn.ping(payload)

    def terminate(self, code: int, reason: str) -> list[H2Event]:
        """End the connection now with GOAWAY ``code``; every stream is dropped."""
        if not self.ended:
            self._conn.close_connection(code, reason.encode() or None)
        return self._ended(code, reason)

    def data_to_send(self) -> bytes:
        out = self._conn.data_to_send()
        if self._out:
            out, self._out = self._out + out, b""
        return out

    @property
    def open_streams(self) -> int:
        return len(self.streams)

    def _send_headers(self, stream: H2ServerStream, headers: list[tuple[str, str]],
                      *, end_stream: bool = False) -> bool:
        """Send the stream's answer; False if the stream is gone.

        ``h2`` reports a read's events only once it has processed all of its frames, so
        a request may be answered after a later frame of the same read made ``h2``
        close its stream (a HEADERS frame on it once it was half closed) or the whole
        connection (a GOAWAY): ``h2`` then refuses, and the stream is dropped.
        """
        if not stream.alive:
            return False
        try:
            self._conn.send_headers(stream.stream_id, headers, end_stream=end_stream)
        except ProtocolError:
            self._drop(stream, int(ErrorCodes.STREAM_CLOSED), [])
            return False
        if end_stream:
            stream.end_sent = True
            self._maybe_forget(stream)
        return True

    def _dropping(self, stream: H2ServerStream, events: EventSink[H2ServerStream, H2Event]) -> None:
        if stream.framer is None:
            stream.stage = StreamState.DONE


def _local_settings(limits: H2Settings) -> Settings:
    return Settings(client=False, initial_values={
        SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_streams,
        SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list,
        SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
        SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
    })
