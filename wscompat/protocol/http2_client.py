"""WebSocket over HTTP/2 (RFC 8441), the client side, sans-I/O.

Theory of operation: an :class:`H2ClientSession` owns one HTTP/2 connection to a server,
through the ``h2`` library. Its first bytes out are the connection preface and the
client's SETTINGS. The server's first SETTINGS decides whether WebSockets can be opened
on the connection at all: RFC 8441 forbids ``:protocol`` before the server enabled
``SETTINGS_ENABLE_CONNECT_PROTOCOL``, so a server without it is refused once and for
all (:attr:`H2ClientSession.refusal`), as is a peer that answers the preface in HTTP/1.1.

:meth:`H2ClientSession.connect` opens one extended CONNECT stream, an
:class:`H2ClientStream`. The server's answer either opens it (any 2xx, a subprotocol
that was offered, extensions the client can accept), after which its DATA frames carry
RFC 6455 frames both ways, or refuses it: :meth:`H2ClientStream.refusal` is then the
:class:`~wscompat.errors.HandshakeRejected` to raise, with the status and the first
line of the body, which wscompat's server and most others fill with the reason.

Bytes move as on the server side: what the I/O layer sends is queued on the stream
(:meth:`H2ClientSession.send`) and leaves as DATA frames as far as flow control allows;
what arrives waits in the stream's ``inbox`` until it is taken
(:meth:`H2ClientSession.take`), and only then is the window handed back, so a
WebSocket that is not read holds back its own server, not the other streams.

A graceful GOAWAY (``NO_ERROR``) from the server, as wscompat sends when it shuts down,
refuses new streams but lets the open ones run to their end (their WebSockets get the
server's close, 1001): ``h2`` would end the whole connection on it, so the session picks
such frames out of the bytes before ``h2`` sees them (:class:`GoawayFilter`). Streams
the server says it never took (above its last stream id) are reset as refused. Any other
GOAWAY ends the connection and every stream on it.
"""

from __future__ import annotations

import contextlib
import enum
import http
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import h2.events as h2e
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, TooManyStreamsError
from h2.settings import SettingCodes, Settings
from websockets.exceptions import NegotiationError
from websockets.extensions import ClientExtensionFactory, Extension

from wscompat.errors import HandshakeRejected
from wscompat.protocol.extensions import accept_response, offer_header
from wscompat.protocol.http import Headers
from wscompat.protocol.http2_session import (
    DataArrived,
    EventSink,
    H2Session,
    H2Stream,
    SessionEnded,
    StreamEnded,
    StreamReset,
    WindowOpened,
    error_code_name,
    error_reason,
    field_text,
)

__all__ = [
    "DataArrived",
    "GoawayFilter",
    "GoingAway",
    "H2ClientEvent",
    "H2ClientSession",
    "H2ClientSettings",
    "H2ClientStream",
    "ResponseReceived",
    "SessionEnded",
    "SettingsReceived",
    "StreamEnded",
    "StreamReset",
    "WindowOpened",
]

BODY_LIMIT = 4096
"""Bytes of a refusal's body kept for its reason; the rest is not waited for."""


@dataclass(frozen=True)
class H2ClientSettings:
    """The client's own HTTP/2 limits."""

    stream_window: int = 131072
    """The receive window of each stream: what the server may send that was not read."""
    max_header_list: int = 16384
    """SETTINGS_MAX_HEADER_LIST_SIZE: the largest response head accepted (decoded)."""
    max_streams: int = 100
    """Streams whose windows the connection window covers, so that one stream not read
    never holds back another."""


# -- events for the I/O layer -----------------------------------------------------------


@dataclass(frozen=True)
class SettingsReceived:
    """The server's first SETTINGS arrived: streams may be opened, unless ``refusal``."""


@dataclass(frozen=True)
class ResponseReceived:
    """A stream's answer came: it is open, or ``refusal()`` says why not."""

    stream: H2ClientStream


# DataArrived, StreamEnded, StreamReset, WindowOpened and SessionEnded come from
# wscompat.protocol.http2_session, shared with the server.


@dataclass(frozen=True)
class GoingAway:
    """A graceful GOAWAY came: no new streams; those up to ``last_stream_id`` go on."""

    last_stream_id: int
    reason: str


GOAWAY_TYPE = 0x7
FRAME_HEADER = struct.Struct(">HBBBL")
"""An HTTP/2 frame header: a 24-bit length (16 + 8 bits), type, flags, stream id."""
GOAWAY_LIMIT = 16384
"""Longest GOAWAY the filter takes out (the default SETTINGS_MAX_FRAME_SIZE); a longer
one goes to ``h2``, which refuses it as too large."""


class GoawayFilter:
    """Splits the server's bytes into frames and takes out the GOAWAYs (on stream 0, of
    a sane length), which the session handles itself; every other byte goes on to
    ``h2`` unchanged. Only frame headers are looked at, and a chunk without a GOAWAY or
    a split frame header goes on as it came."""

    def __init__(self) -> None:
        self._head = bytearray()
        """The start of a frame header that the last chunk ended in, held back."""
        self._skip = 0
        """Payload bytes of the current frame still to pass on."""
        self._goaway: bytearray | None = None
        """The payload of a GOAWAY being taken out."""
        self._goaway_left = 0

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        """``data`` without the GOAWAYs, and each one taken out, as (last stream id,
        error code, debug data)."""
        kept: list[bytes | memoryview] = []
        found: list[tuple[int, int, bytes]] = []
        view = memoryview(data)
        pos = start = 0
        """``data[start:pos]`` is kept, not yet added to ``kept``."""
        size = len(data)
        changed = False
        while pos < size:
            if self._goaway is not None:
                take = min(self._goaway_left, size - pos)
                self._goaway += view[pos:pos + take]
                self._goaway_left -= take
                pos = start = pos + take
                changed = True
                if self._goaway_left == 0:
                    found.append(self._goaway_done())
                continue
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            need = 9 - len(self._head)
            if size - pos < need:  # a header split between chunks: held back
                kept.append(view[start:pos])
                self._head += view[pos:size]
                pos = start = size
                changed = True
                break
            held = bytes(self._head)
            self._head.clear()
            high, low, kind, _flags, stream_id = FRAME_HEADER.unpack(
                held + bytes(view[pos:pos + need]))
            length = (high << 8) | low
            if kind == GOAWAY_TYPE and stream_id == 0 and 8 <= length <= GOAWAY_LIMIT:
                kept.append(view[start:pos])
                pos = start = pos + need
                self._goaway, self._goaway_left = bytearray(), length
                changed = True
                continue
            if held:  # the header's start, held back from the last chunk, goes first
                kept.append(held)
                changed = True
            pos += need
            self._skip = length
        if not changed:
            return data, found
        kept.append(view[start:size])
        return b"".join(kept), found

    def _goaway_done(self) -> tuple[int, int, bytes]:
        payload = bytes(self._goaway or b"")
        self._goaway = None
        last, code = struct.unpack(">LL", payload[:8])
        return last & 0x7FFFFFFF, code, payload[8:]


class Stage(enum.Enum):
    WAITING = "waiting"
    """The CONNECT went out; no answer yet."""
    OPEN = "open"
    """Accepted: a WebSocket runs on the stream."""
    REFUSED = "refused"
    """Answered with an error status, or with a 2xx the client must fail."""


class H2ClientStream(H2Stream):
    """One extended CONNECT stream: the request, the answer, then the WebSocket's bytes."""

    def __init__(self, stream_id: int, request: list[tuple[str, str]],
                 subprotocols: tuple[str, ...],
                 extensions: tuple[ClientExtensionFactory, ...], *, check: bool = True) -> None:
        super().__init__(stream_id)
        self.check = check
        """A 2xx answer's subprotocol and extensions are checked against the offer (a
        conformance client that checks them itself turns this off)."""
        self.request_headers = request
        """The header list sent, pseudo-headers first."""
        self.subprotocols = subprotocols
        self.offered_extensions = extensions
        self.stage = Stage.WAITING
        self.status: int | None = None
        self.response_headers = Headers()
        """The answer's header fields, without ``:status``."""
        self.subprotocol: str | None = None
        self.extensions: tuple[Extension, ...] = ()
        """The extensions the server agreed to, ready for the framer."""
        self.problem: str | None = None
        """Why a 2xx answer is one the client must fail."""
        self.body = bytearray()
        """The start of a refusal's body."""
        self.answered = False
        """The answer is complete: open, or refused with all of its body that is kept."""

    @property
    def extensions_header(self) -> str | None:
        return self.response_headers.joined("Sec-WebSocket-Extensions")

    def refusal(self) -> HandshakeRejected:
        """The answer as a HandshakeRejected: the status, and the first line of the body
        (the status's phrase when there is none), or why a 2xx cannot be accepted."""
        status = self.status or 0
        if self.problem is not None:
            return HandshakeRejected(status, self.problem)
        text = bytes(self.body).decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
        if not text or text.startswith("<"):  # an HTML page says nothing in one line
            try:
                text = http.HTTPStatus(status).phrase
            except ValueError:
                text = "refused"
        if self.status is None:
            text = (f"stream reset ({error_code_name(self.reset_code)}) before an answer"
                    if self.reset_code is not None else "no answer")
        extra = tuple((name, value) for name, value in self.response_headers
                      if name.lower() in ("sec-websocket-version", "allow", "retry-after"))
        return HandshakeRejected(status, text, extra)

    def __repr__(self) -> str:
        return f"<H2ClientStream {self.stream_id} {self.stage.value}>"


H2ClientEvent = (SettingsReceived | ResponseReceived | DataArrived[H2ClientStream]
                 | StreamEnded[H2ClientStream] | StreamReset[H2ClientStream] | WindowOpened
                 | GoingAway | SessionEnded)


class H2ClientSession(H2Session[H2ClientStream, H2ClientEvent]):
    """The client side of one HTTP/2 connection (see the module's docstring)."""

    def __init__(self, settings: H2ClientSettings | None = None) -> None:
        self.settings = limits = settings or H2ClientSettings()
        super().__init__(client_side=True, local_settings=Settings(client=True, initial_values={
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list,
        }), max_streams=limits.max_streams, stream_window=limits.stream_window)
        self.ready = False
        """The server's first SETTINGS arrived."""
        self.refusal: HandshakeRejected | None = None
        """Why no WebSocket can be opened on this connection (no RFC 8441, not HTTP/2,
        the connection ended)."""
        self.remote_settings: dict[str, int] = {}
        """The server's SETTINGS as received, by name (``ENABLE_CONNECT_PROTOCOL``...)."""
        self.last_request: list[tuple[str, str]] = []
        """The header list of the last request sent (shown by ``client -v``)."""
        self.going_away: int | None = None
        """The last stream id of the server's graceful GOAWAY, once it came."""
        self._filter = GoawayFilter()
        self._first = True

    # -- opening a WebSocket ------------------------------------------------------------

    def connect(self, resource: str, authority: str, *, secure: bool = False,
                origin: str | None = None, subprotocols: Sequence[str] = (),
                extensions: Sequence[ClientExtensionFactory] = (),
                extra_headers: Sequence[tuple[str, str]] = (),
                check: bool = True) -> H2ClientStream:
        """Open an extended CONNECT stream for ``resource`` (path and query). Raises the
        session's refusal when the server cannot take WebSockets, RuntimeError before
        its SETTINGS came. Without ``check`` any 2xx opens the stream, whatever
        subprotocol and extensions it names."""
        if self.refusal is not None:
            raise self.refusal
        if self.ended:
            raise HandshakeRejected(0, "the HTTP/2 connection has ended")
        if not self.ready:
            raise RuntimeError("the server's SETTINGS have not arrived yet")
        headers = [(":method", "CONNECT"), (":protocol", "websocket"),
                   (":scheme", "https" if secure else "http"), (":path", resource),
                   (":authority", authority), ("sec-websocket-version", "13")]
        if origin is not None:
            headers.append(("origin", origin))
        if subprotocols:
            headers.append(("sec-websocket-protocol", ", ".join(subprotocols)))
        offer = offer_header(extensions)
        if offer:
            headers.append(("sec-websocket-extensions", offer))
        headers += [(name.lower(), value) for name, value in extra_headers]
        return self.request(headers, subprotocols=subprotocols, extensions=extensions,
                            check=check)

    def request(self, headers: Sequence[tuple[str, str]], *, end_stream: bool = False,
                subprotocols: Sequence[str] = (),
                extensions: Sequence[ClientExtensionFactory] = (),
                check: bool = True) -> H2ClientStream:
        """Send any request head as given (a probe's refusals: a CONNECT without
        ``:protocol``, a GET); its answer is checked as :meth:`connect`'s is."""
        if self.ended:
            raise HandshakeRejected(0, "the HTTP/2 connection has ended")
        if self.going_away is not None and self.refusal is not None:
            raise self.refusal
        sid = self._conn.get_next_available_stream_id()
        try:
            self._conn.send_headers(sid, list(headers), end_stream=end_stream)
        except TooManyStreamsError:
            limit = self._conn.remote_settings.max_concurrent_streams
            raise HandshakeRejected(
                0, f"the server takes {limit} streams at once on a connection "
                "(SETTINGS_MAX_CONCURRENT_STREAMS), and that many are open") from None
        self.last_request = list(headers)
        stream = H2ClientStream(sid, self.last_request, tuple(subprotocols), tuple(extensions),
                                check=check)
        stream.end_queued = stream.end_sent = end_stream
        self.streams[sid] = stream
        return stream

    # -- bytes in -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[H2ClientEvent]:
        """Feed bytes from the wire; the events they caused."""
        if self.ended:
            return []
        if self._first and data:
            self._first = False
            if data.startswith(b"HTTP/"):
                line = data.split(b"\r\n", 1)[0].decode("latin-1")[:80]
                return self._refuse(f"the server answered in HTTP/1.1 ({line!r}): it does "
                                    "not speak HTTP/2 with prior knowledge")
        data, goaways = self._filter.feed(data)
        try:
            h2_events = self._conn.receive_data(data) if data else []
        except ProtocolError as exc:
            if not self.ready:
                return self._refuse(f"not an HTTP/2 server: {error_reason(exc)}")
            return self._ended(int(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)),
                               error_reason(exc))
        events: list[H2ClientEvent] = []
        for event in h2_events:
            self._on_event(event, events)
            if self.ended:
                break
        for last, code, debug in goaways:
            if not self.ended:
                self._on_goaway(last, code, debug, events)
        self._pump(events)
        return events

    def _on_goaway(self, last: int, code: int, debug: bytes,
                   events: list[H2ClientEvent]) -> None:
        """A GOAWAY: graceful (NO_ERROR), new streams are refused and those the server
        took go on; else the connection is over."""
        reason = debug.decode("utf-8", "replace")
        text = f"the server sent GOAWAY {error_code_name(code)}" + (f": {reason}" if reason else "")
        if not self.ready:
            events.extend(self._refuse(f"{text}, before its SETTINGS"))
            return
        if code != ErrorCodes.NO_ERROR:
            self._end(code, text, events)
            return
        if self.going_away is None or last < self.going_away:
            self.going_away = last
        if self.refusal is None:
            self.refusal = HandshakeRejected(0, f"{text}: it takes no new streams")
        for sid in [sid for sid in self.streams if sid > last]:
            self._reset(sid, ErrorCodes.REFUSED_STREAM, events)
        events.append(GoingAway(last, reason))

    def receive_eof(self) -> list[H2ClientEvent]:
        """The server closed the connection."""
        if not self.ready and self.refusal is None:
            return self._refuse("the server closed the connection before its HTTP/2 "
                                "SETTINGS: it does not speak HTTP/2 here")
        return self._ended(int(ErrorCodes.NO_ERROR), "the server closed the connection")

    def _on_event(self, event: h2e.Event, events: list[H2ClientEvent]) -> None:
        if isinstance(event, h2e.DataReceived):
            self._on_data(event, events)
        elif isinstance(event, h2e.ResponseReceived):
            self._on_response(event, events)
        elif isinstance(event, h2e.StreamEnded):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.ended = True
                if not stream.answered and stream.status is not None:
                    stream.answered = True
                    events.append(ResponseReceived(stream))
                self._peer_ended(stream, events)
        elif isinstance(event, h2e.StreamReset):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                self._drop(stream, int(event.error_code or 0), events)
        elif isinstance(event, h2e.WindowUpdated):
            events.append(WindowOpened())
        elif isinstance(event, h2e.RemoteSettingsChanged):
            self._on_settings(events)
        elif isinstance(event, h2e.ConnectionTerminated):
            code = int(event.error_code or 0)
            reason = (event.additional_data or b"").decode("utf-8", "replace")
            self._end(code, f"the server sent GOAWAY {error_code_name(code)}"
                      + (f": {reason}" if reason else ""), events)
        elif isinstance(event, h2e.TrailersReceived):
            self._reset(event.stream_id or 0, ErrorCodes.PROTOCOL_ERROR, events)

    def _on_settings(self, events: list[H2ClientEvent]) -> None:
        remote = self._conn.remote_settings
        self.remote_settings = {_setting_name(code): value for code, value in remote.items()}
        if self.ready:
            events.append(WindowOpened())  # INITIAL_WINDOW_SIZE may have grown
            return
        self.ready = True
        if remote.enable_connect_protocol != 1:
            self.refusal = HandshakeRejected(
                0, "the server does not support WebSocket over HTTP/2 (RFC 8441): its "
                "SETTINGS do not enable the extended CONNECT")
        events.append(SettingsReceived())

    def _on_response(self, event: h2e.ResponseReceived, events: list[H2ClientEvent]) -> None:
        stream = self.streams.get(event.stream_id or 0)
        if stream is None:
            return
        fields: list[tuple[str, str]] = []
        status = 0
        for name, value in event.headers or ():
            name_s, value_s = field_text(name), field_text(value)
            if name_s == ":status":
                status = int(value_s) if value_s.isdigit() else 0
            elif not name_s.startswith(":"):
                fields.append((name_s, value_s))
        stream.status = status
        stream.response_headers = Headers(fields)
        if 200 <= status < 300:
            stream.problem = self._check_answer(stream) if stream.check else None
            if stream.problem is None:
                stream.stage = Stage.OPEN
            else:
                stream.stage = Stage.REFUSED
                self._reset(stream.stream_id, ErrorCodes.CANCEL, events)
            stream.answered = True
            events.append(ResponseReceived(stream))
            return
        stream.stage = Stage.REFUSED  # answered once its body has come (StreamEnded)

    def _check_answer(self, stream: H2ClientStream) -> str | None:
        """Why an accepting answer must be failed, as an HTTP/1.1 client checks its 101."""
        headers = stream.response_headers
        protocol = headers.get("Sec-WebSocket-Protocol")
        if protocol is not None and protocol not in stream.subprotocols:
            return f"server chose subprotocol {protocol!r}, which was not offered"
        stream.subprotocol = protocol
        try:
            stream.extensions = accept_response(headers.get_all("Sec-WebSocket-Extensions"),
                                                stream.offered_extensions)
        except NegotiationError as exc:
            return f"Sec-WebSocket-Extensions: {exc}"
        return None

    def _on_data(self, event: h2e.DataReceived, events: list[H2ClientEvent]) -> None:
        sid = event.stream_id or 0
        data = event.data or b""
        flow = event.flow_controlled_length or 0
        stream = self.streams.get(sid)
        if stream is None or stream.stage is not Stage.OPEN:
            if flow:  # nobody reads it: the window goes back at once
                self._acknowledge(flow, sid)
            if stream is not None and stream.stage is Stage.REFUSED and not stream.answered:
                stream.body += data[:BODY_LIMIT - len(stream.body)]
                if len(stream.body) >= BODY_LIMIT:
                    stream.answered = True
                    events.append(ResponseReceived(stream))
                    self._reset(sid, ErrorCodes.CANCEL, events)
            elif stream is not None and stream.stage is Stage.WAITING and data:
                self._reset(sid, ErrorCodes.PROTOCOL_ERROR, events)  # data before the answer
            return
        self._arrived(stream, data, flow, events)

    def _refuse(self, reason: str) -> list[H2ClientEvent]:
        self.refusal = HandshakeRejected(0, reason)
        return self._ended(int(ErrorCodes.PROTOCOL_ERROR), reason)

    def _ended(self, code: int, reason: str) -> list[H2ClientEvent]:
        events: list[H2ClientEvent] = []
        self._end(code, reason, events)
        return events

    # -- the connection -----------------------------------------------------------------

    def close(self, code: int = ErrorCodes.NO_ERROR, reason: str = "") -> None:
        """End the connection with GOAWAY."""
        if not self.ended:
            with contextlib.suppress(ProtocolError):
                self._conn.close_connection(code, reason.encode() or None)
            self._ended(int(code), reason or "closed by the client")

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

    def _dropping(self, stream: H2ClientStream,
                  events: EventSink[H2ClientStream, H2ClientEvent]) -> None:
        """A stream dropped before its answer was complete is answered as it stands."""
        if not stream.answered:
            stream.answered = True
            if stream.status is None:
                stream.stage = Stage.REFUSED
            events.append(ResponseReceived(stream))


def _setting_name(code: int) -> str:
    try:
        return SettingCodes(code).name
    except ValueError:
        return str(code)
