"""A small HTTP/2 client for tests: the ``h2`` library over a trio stream, with TLS and
ALPN ``h2`` or cleartext prior knowledge.

:class:`H2Client` keeps one reader task that feeds ``h2`` and records, per stream, the
response head, the DATA received, END_STREAM and RST_STREAM; tests wait on predicates
over that record. :class:`H2WebSocket` is an RFC 8441 WebSocket on one stream, framed
by wscompat's client framer (masked frames, server frames checked as a real peer
would).

GOAWAY frames are taken out of the bytes before ``h2`` sees them and recorded as
:class:`GoAway`: on receiving one, ``h2`` closes its whole state machine and refuses
every later frame (python-hyper/h2 issue 1181), whereas RFC 9113 §6.8 lets the streams
up to the last stream id run to their end, which is how wscompat shuts down. For peers
that break the rules, :func:`raw_frame` builds any frame and
:func:`read_frames` parses what a server sends until it closes.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h2.events as h2e
import trio
import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, SettingsFrame

import wscompat
from wscompat.protocol.framing import Closed, Event, HybiFramer, Message, Pong, State

from ..rawclient import read_to_eof

HOST = "127.0.0.1"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WAIT = 20.0
"""Seconds any single wait may take: generous, for a loaded two-core machine."""
BIG_WINDOW = 2**31 - 1


GOAWAY = 0x7


@dataclass(frozen=True)
class GoAway:
    """A GOAWAY frame the server sent (RFC 9113 §6.8)."""

    error_code: int
    last_stream_id: int
    additional_data: bytes


class H2Gone(Exception):
    """The connection ended while a test waited for something that can no longer come."""


@dataclass
class Side:
    """What the client saw of one stream."""

    sid: int
    headers: list[tuple[str, str]] | None = None
    data: bytearray = field(default_factory=bytearray, repr=False)
    """DATA received and not yet taken by a reader."""
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int | None:
        for name, value in self.headers or ():
            if name == ":status":
                return int(value)
        return None

    def header(self, name: str) -> str | None:
        for key, value in self.headers or ():
            if key == name:
                return value
        return None


class H2Client:
    """One client HTTP/2 connection; see the module's docstring."""

    def __init__(self, stream: trio.abc.Stream, *, window: int | None = None) -> None:
        self.stream = stream
        self.conn = conn = H2Connection(H2Configuration(client_side=True,
                                                        header_encoding="utf-8"))
        conn.initiate_connection()
        if window is not None:
            conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
            conn.increment_flow_control_window(window - 65535)
        self.sides: dict[int, Side] = {}
        self.goaways: list[GoAway] = []
        """Every GOAWAY received, in order."""
        self.error: ProtocolError | None = None
        """What ``h2`` refused in the server's bytes (the reader then only drains)."""
        self.eof = False
        """The server closed TCP (or the connection broke)."""
        self.settings_seen = False
        self.ping_acks = 0
        self.bytes_in = 0
        self.auto_ack = True
        """Hand the window back for DATA as soon as it arrives."""
        self._changed = trio.lowlevel.ParkingLot()
        self._lock = trio.Lock()
        self._reading = trio.Event()
        self._reading.set()
        self._tail = bytearray()
        """The start of a frame whose end has not arrived."""

    # -- the reader -----------------------------------------------------------------------

    async def run_reader(self) -> None:
        try:
            while True:
                await self._reading.wait()
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                self.bytes_in += len(data)
                if self.error is not None:
                    continue
                try:
                    events = self.conn.receive_data(self._without_goaway(data))
                except ProtocolError as exc:
                    self.error = exc
                    events = []
                for event in events:
                    self._on_event(event)
                self._changed.unpark_all()
                await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.eof = True
            self._changed.unpark_all()

    @property
    def goaway(self) -> GoAway | None:
        """The first GOAWAY received."""
        return self.goaways[0] if self.goaways else None

    def _without_goaway(self, data: bytes | bytearray) -> bytes:
        """``data``'s whole frames but the GOAWAY frames, which are recorded; an
        incomplete last frame waits for the next read."""
        buf = self._tail
        buf += data
        out = bytearray()
        pos = 0
        while pos + 9 <= len(buf):
            end = pos + 9 + int.from_bytes(buf[pos:pos + 3], "big")
            if end > len(buf):
                break
            if buf[pos + 3] == GOAWAY and end - pos >= 17:
                body = bytes(buf[pos + 9:end])
                self.goaways.append(GoAway(
                    int.from_bytes(body[4:8], "big"),
                    int.from_bytes(body[:4], "big") & 0x7FFFFFFF, body[8:]))
            else:
                out += buf[pos:end]
            pos = end
        del buf[:pos]
        return bytes(out)

    def pause_reading(self) -> None:
        """Stop reading the socket (after the read in progress): TCP backs up."""
        self._reading = trio.Event()

    def resume_reading(self) -> None:
        self._reading.set()

    def _on_event(self, event: h2e.Event) -> None:
        sid = getattr(event, "stream_id", None)
        side = self.sides.get(sid) if sid else None
        if isinstance(event, h2e.ResponseReceived):
            if side is not None:
                side.headers = [(str(n), str(v)) for n, v in event.headers or ()]
        elif isinstance(event, h2e.DataReceived):
            if side is not None:
                side.data += event.data or b""
            if self.auto_ack and event.flow_controlled_length and event.stream_id:
                # A stream closed meanwhile has nothing to hand back.
                with contextlib.suppress(ProtocolError):
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
        elif isinstance(event, h2e.StreamEnded):
            if side is not None:
                side.ended = True
        elif isinstance(event, h2e.StreamReset):
            if side is not None:
                side.reset = int(event.error_code or 0)
        elif isinstance(event, h2e.RemoteSettingsChanged):
            self.settings_seen = True
        elif isinstance(event, h2e.PingAckReceived):
            self.ping_acks += 1

    # -- waiting and writing --------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Until ``predicate()`` holds; H2Gone if the connection ends first."""
        with trio.fail_after(timeout):
            while not predicate():
                if self.eof:
                    raise H2Gone("the connection ended")
                await self._changed.park()

    async def flush(self) -> None:
        async with self._lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are, after what ``h2`` has queued."""
        async with self._lock:
            await self.stream.send_all(self.conn.data_to_send() + data)

    async def send_data(self, sid: int, data: bytes, *, end: bool = False) -> None:
        """DATA on ``sid`` as fast as flow control lets it go."""
        conn, pos = self.conn, 0
        while True:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if room <= 0 and pos < len(data):
                await self._changed.park()
                continue
            chunk = data[pos:pos + room]
            pos += len(chunk)
            conn.send_data(sid, chunk, end_stream=end and pos >= len(data))
            await self.flush()
            if pos >= len(data):
                return

    # -- requests -------------------------------------------------------------------------

    async def request(self, headers: Sequence[tuple[str, str]], *, end: bool = False) -> Side:
        sid = self.conn.get_next_available_stream_id()
        side = self.sides[sid] = Side(sid)
        self.conn.send_headers(sid, list(headers), end_stream=end)
        await self.flush()
        return side

    async def get(self, path: str) -> Side:
        """A plain GET; returns once the whole response arrived."""
        side = await self.request([(":method", "GET"), (":scheme", self.scheme),
                                   (":path", path), (":authority", HOST)], end=True)
        await self.wait_for(lambda: side.ended or side.reset is not None)
        return side

    @property
    def scheme(self) -> str:
        return "https" if isinstance(self.stream, trio.SSLStream) else "http"

    async def connect(self, path: str = "/", *, subprotocols: Sequence[str] = (),
                      origin: str | None = None,
                      extra: Sequence[tuple[str, str]] = ()) -> Side:
        """Send an extended CONNECT (RFC 8441 §4) and wait for the response head."""
        headers = [(":method", "CONNECT"), (":protocol", "websocket"),
                   (":scheme", self.scheme), (":path", path), (":authority", HOST),
                   ("sec-websocket-version", "13")]
        if subprotocols:
            headers.append(("sec-websocket-protocol", ", ".join(subprotocols)))
        if origin is not None:
            headers.append(("origin", origin))
        side = await self.request([*headers, *extra])
        await self.wait_for(lambda: side.headers is not None or side.reset is not None)
        return side

    async def websocket(self, path: str = "/", **kwargs: object) -> H2WebSocket:
        """An accepted WebSocket (``:status 200``), or AssertionError."""
        side = await self.connect(path, **kwargs)  # type: ignore[arg-type]
        assert side.status == 200, (side.headers, side.reset, bytes(side.data))
        return H2WebSocket(self, side)

    async def ping(self, data: bytes = b"12345678") -> None:
        self.conn.ping(data)
        await self.flush()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


@asynccontextmanager
async def open_h2(port: int, *, ssl_context: ssl.SSLContext | None = None,
                  window: int | None = None, rcvbuf: int | None = None,
                  settle: bool = True) -> AsyncIterator[H2Client]:
    """A connected client, its reader running; with ``settle`` the server's SETTINGS
    have arrived (a client may not send ``:protocol`` before it saw them)."""
    stream = await open_stream(port, ssl_context=ssl_context, rcvbuf=rcvbuf)
    if isinstance(stream, trio.SSLStream):
        assert stream.selected_alpn_protocol() == "h2", stream.selected_alpn_protocol()
    client = H2Client(stream, window=window)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run_reader)
            try:
                await client.flush()
                if settle:
                    await client.wait_for(lambda: client.settings_seen)
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await client.aclose()


async def open_stalled(port: int, path: str) -> trio.abc.Stream:
    """A raw client that opens an RFC 8441 WebSocket on ``path`` with every window wide
    open (2**31 - 1) and then reads nothing at all; its receive buffer is small, so the
    server's writes to it back up in the kernel and then in the server."""
    stream = await open_stream(port, rcvbuf=4096)
    window = 2**31 - 1
    block = Encoder().encode([(":method", "CONNECT"), (":protocol", "websocket"),
                              (":scheme", "http"), (":path", path), (":authority", HOST),
                              ("sec-websocket-version", "13")])
    await stream.send_all(
        PREFACE
        + raw_frame(0x4, 0, 0, (4).to_bytes(2, "big") + window.to_bytes(4, "big"))
        + raw_frame(0x8, 0, 0, (window - 65535).to_bytes(4, "big"))
        + raw_frame(0x1, 0x4, 1, block))
    return stream


class Firehose:
    """The server's side of :func:`open_stalled`: a handler that sends 64 KiB messages on
    ``/firehose`` without end, until the connection is lost, and echoes on every other
    path."""

    def __init__(self) -> None:
        self.sent = 0
        """Bytes the firehose's sends took."""
        self.freed = trio.Event()
        """The firehose's handler returned."""

    async def handler(self, ws: wscompat.Connection) -> None:
        if ws.path != "/firehose":
            async for message in ws:
                await ws.send(message)
            return
        try:
            with contextlib.suppress(wscompat.ConnectionClosed):
                while True:
                    await ws.send(b"f" * 65536)
                    self.sent += 65536
        finally:
            self.freed.set()


async def open_stream(port: int, *, ssl_context: ssl.SSLContext | None = None,
                      rcvbuf: int | None = None) -> trio.abc.Stream:
    """TCP (with a small receive buffer if asked), under TLS when given a context (made
    by :func:`alpn_context`: the protocol it offers first must be the one chosen)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect((HOST, port))
    tcp = trio.SocketStream(sock)
    if ssl_context is None:
        return tcp
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=HOST)
    await tls.do_handshake()
    return tls


def alpn_context(ca: trustme.CA, *protocols: str) -> ssl.SSLContext:
    """A client context of its own (ALPN is a property of the context, so the shared
    fixtures' contexts are left alone) trusting ``ca`` and offering ``protocols``."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(list(protocols or ("h2",)))
    return context


class H2WebSocket:
    """An RFC 8441 WebSocket on one stream of an :class:`H2Client`."""

    def __init__(self, client: H2Client, side: Side) -> None:
        self.client = client
        self.side = side
        self.sid = side.sid
        self.framer = HybiFramer(client=True, max_message_size=None)
        self._eof_fed = False
        self._events: deque[Event] = deque()

    def _feed(self) -> None:
        side = self.side
        if side.data:
            self.framer.receive_data(bytes(side.data))
            side.data.clear()
        if (side.ended or side.reset is not None or self.client.eof) and not self._eof_fed:
            self._eof_fed = True
            self.framer.receive_eof()
        self._events.extend(self.framer.events())

    async def _write(self) -> None:
        out = self.framer.data_to_send()
        if out and self.side.reset is None and not self.client.eof:
            await self.client.send_data(self.sid, out)

    async def event(self, timeout: float = WAIT, *, answer: bool = True) -> Event:
        """The next Message, Pong or Closed; with ``answer`` what the framer writes in
        return (a pong, the close reply) is sent, as a client does."""
        with trio.fail_after(timeout):
            while True:
                self._feed()
                if answer:
                    await self._write()
                if self._events:
                    return self._events.popleft()
                await self.client._changed.park()

    async def receive(self, timeout: float = WAIT) -> str | bytes:
        while True:
            event = await self.event(timeout)
            if isinstance(event, Message):
                return event.data
            assert not isinstance(event, Closed), f"closed instead of a message: {event}"

    async def closed(self, timeout: float = WAIT, *, answer: bool = True) -> Closed:
        """Read until the WebSocket closes (messages are dropped)."""
        while True:
            event = await self.event(timeout, answer=answer)
            if isinstance(event, Closed):
                return event

    async def close_frame(self, timeout: float = WAIT) -> None:
        """Until the server's close frame arrived, without answering it (the framer
        reports Closed only at the end of the stream)."""
        with trio.fail_after(timeout):
            while True:
                self._feed()
                if self.framer.state is not State.OPEN:
                    return
                if self.client.eof:
                    raise H2Gone("the connection ended")
                await self.client._changed.park()

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.framer.send_text(message)
        else:
            self.framer.send_binary(message)
        await self._write()

    async def echo(self, message: str | bytes) -> None:
        await self.send(message)
        answer = await self.receive()
        assert answer == message, (len(answer), len(message))

    async def send_ping(self, data: bytes) -> Pong:
        self.framer.send_ping(data)
        await self._write()
        while True:
            event = await self.event()
            if isinstance(event, Pong):
                return event

    async def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.framer.send_close(code, reason)
        await self._write()

    async def close(self, code: int = 1000, reason: str = "") -> Closed:
        """The closing handshake, then END_STREAM both ways; the server's close."""
        await self.send_close(code, reason)
        closed = await self.closed()
        await self.client.wait_for(lambda: self.side.ended or self.side.reset is not None)
        await self.end()
        return closed

    async def end(self) -> None:
        """END_STREAM from the client (a half-close); nothing on a stream the server
        has reset already (NO_ERROR after its END_STREAM: send no more)."""
        if self.side.reset is not None:
            return
        self.client.conn.end_stream(self.sid)
        await self.client.flush()

    async def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        self.client.conn.reset_stream(self.sid, code)
        await self.client.flush()


# -- a raw client -------------------------------------------------------------------------


class RawH2:
    """A client that writes whatever frames it is given, in order, and records every
    frame the server sends; it acknowledges the server's SETTINGS and nothing else.
    Header blocks are encoded with an HPACK encoder of its own (:meth:`block`)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.encoder = Encoder()
        self.frames: list[Frame] = []
        """Every frame received, in order."""
        self.goaways: list[GoAway] = []
        self.eof = False
        """The server closed TCP (or reset it: ``broken``)."""
        self.broken = False
        """A read or write failed: the server reset the connection."""
        self.bytes_out = 0
        self._tail = bytearray()
        self._lock = trio.Lock()
        self._changed = trio.lowlevel.ParkingLot()

    @property
    def goaway(self) -> GoAway | None:
        return self.goaways[0] if self.goaways else None

    @property
    def gone(self) -> bool:
        """GOAWAY received or the connection ended: sending more is pointless."""
        return bool(self.goaways) or self.eof

    def block(self, headers: Sequence[tuple[str, str]]) -> bytes:
        return self.encoder.encode(list(headers))

    async def send(self, data: bytes) -> bool:
        """Write ``data`` whole; False if the connection is broken or closed."""
        if self.broken:
            return False
        async with self._lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.broken = True
                return False
        self.bytes_out += len(data)
        return True

    async def run_reader(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                self._tail += data
                for frame in self._parse():
                    self.frames.append(frame)
                    if isinstance(frame, GoAwayFrame):
                        self.goaways.append(GoAway(frame.error_code, frame.last_stream_id,
                                                   frame.additional_data))
                    elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        await self.send(raw_frame(0x4, 0x1, 0))
                self._changed.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.broken = True
        finally:
            self.eof = True
            self._changed.unpark_all()

    def _parse(self) -> list[Frame]:
        buf, out, pos = self._tail, [], 0
        while pos + 9 <= len(buf):
            frame, length = Frame.parse_frame_header(memoryview(bytes(buf[pos:pos + 9])))
            if pos + 9 + length > len(buf):
                break
            frame.parse_body(memoryview(bytes(buf[pos + 9:pos + 9 + length])))
            out.append(frame)
            pos += 9 + length
        del buf[:pos]
        return out

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Until ``predicate()`` holds (checked once more after the connection ends)."""
        with trio.fail_after(timeout):
            while not predicate():
                if self.eof:
                    assert predicate(), "the connection ended first"
                    return
                await self._changed.park()

    def headers_for(self, sid: int) -> list[HeadersFrame]:
        return [f for f in self.frames if isinstance(f, HeadersFrame) and f.stream_id == sid]


@asynccontextmanager
async def open_raw_h2(port: int) -> AsyncIterator[RawH2]:
    """A raw client past its preface and empty SETTINGS, the server's SETTINGS read and
    acknowledged, its reader running."""
    stream = await open_stream(port)
    client = RawH2(stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run_reader)
            try:
                await client.send(PREFACE + raw_frame(0x4, 0, 0))
                await client.wait_for(lambda: any(isinstance(f, SettingsFrame)
                                                  for f in client.frames))
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


# -- raw frames ---------------------------------------------------------------------------


def raw_frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """Any frame, as bytes: what ``h2`` and hyperframe would refuse to build too."""
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags])
            + sid.to_bytes(4, "big") + payload)


async def read_frames(stream: trio.abc.Stream, timeout: float = WAIT,
                      limit: int = 1 << 24) -> list[Frame]:
    """Every frame the server sends until it closes the connection (or resets it)."""
    with trio.fail_after(timeout):
        data = await read_to_eof(stream, limit)
    return parse_frames(data)


def parse_frames(data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    pos = 0
    while pos + 9 <= len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        body = data[pos + 9:pos + 9 + length]
        if len(body) < length:
            break  # cut off by the close
        frame.parse_body(memoryview(body))
        frames.append(frame)
        pos += 9 + length
    return frames
