"""WebSocket over HTTP/2 (RFC 8441), the client side over trio.

Theory of operation: an :class:`H2Client` is one HTTP/2 connection to a server, the
sans-I/O :class:`~wscompat.protocol.http2_client.H2ClientSession` over a transport,
with two tasks in the caller's nursery: a reader, which feeds the session and wakes the
streams its events concern, and a writer, which writes whatever the session has queued.
:meth:`H2Client.open_websocket` sends an extended CONNECT and waits for its answer; the
:class:`H2WebSocketStream` it returns is a trio ``HalfCloseableStream`` of the
WebSocket's bytes, so the ordinary :class:`~wscompat.trio.connection.Connection`, and
the conformance runner that writes raw frames, run over it unchanged. ``send_eof`` is
END_STREAM (a TCP half-close's counterpart), and closing a stream that is not closed
both ways resets it with CANCEL (a TCP reset's counterpart).

A stream's ``send_all`` returns once its bytes have left as DATA frames, flow control
allowing, and the bytes not yet written to the transport are fewer than
:data:`WRITE_HIGH` (else once they are): a burst of small messages goes out in few
writes, and a server that stops reading stops its writers rather than filling memory.
Reading hands the window back only as bytes are taken, so a WebSocket nobody reads holds
back its own server and no other stream.

Cleartext is HTTP/2 with prior knowledge (the preface at once); over TLS the client
offers ALPN ``h2`` alone, and a server that chose anything else is refused with
:class:`~wscompat.errors.HandshakeRejected` (status 0), as is one that answers the
preface in HTTP/1.1 or does not enable the extended CONNECT in its SETTINGS.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from h2.errors import ErrorCodes
from websockets.extensions import ClientExtensionFactory, Extension

from wscompat.errors import HandshakeRejected
from wscompat.protocol.http import Headers
from wscompat.protocol.http2_client import (
    DataArrived,
    H2ClientEvent,
    H2ClientSession,
    H2ClientSettings,
    H2ClientStream,
    ResponseReceived,
    SessionEnded,
    SettingsReceived,
    Stage,
    StreamEnded,
    StreamReset,
)
from wscompat.protocol.http2_session import error_code_name
from wscompat.trio.transport import Transport

__all__ = [
    "ALPN",
    "H2Client",
    "H2WebSocketStream",
    "alpn_context",
    "authority_for",
    "connect_h2",
    "h2_session",
    "open_h2_client",
]

ALPN = "h2"
READ_SIZE = 65536
WRITE_HIGH = 65536
"""Bytes queued for the transport past which a stream's ``send_all`` waits for the
writer (backpressure from the socket)."""
CLOSE_BOUND = 1.0
"""Seconds the GOAWAY at the end may take to leave when the server does not read."""


def alpn_context(context: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """``context`` (or the system's default) offering ALPN ``h2`` alone. ALPN is a
    setting of the whole context: a context passed in is changed."""
    context = context or ssl.create_default_context()
    context.set_alpn_protocols([ALPN])
    return context


def authority_for(host: str, port: int, *, secure: bool) -> str:
    """``:authority`` as a browser sends it: the port only when it is not the default."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return name if port == (443 if secure else 80) else f"{name}:{port}"


async def connect_h2(host: str, port: int, *, secure: bool = False,
                     ssl_context: ssl.SSLContext | None = None) -> trio.abc.Stream:
    """TCP to the server, with TLS offering ALPN ``h2`` when ``secure``."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if not secure:
        return stream
    tls = trio.SSLStream(stream, alpn_context(ssl_context), server_hostname=host)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls


class H2WebSocketStream(trio.abc.HalfCloseableStream):
    """One accepted extended CONNECT stream as a trio byte stream: what the server sends
    on it, and DATA frames for what is sent."""

    def __init__(self, client: H2Client, stream: H2ClientStream) -> None:
        self._client = client
        self._stream = stream
        self.secure = client.secure
        """The HTTP/2 connection runs over TLS (what ``Transport.secure`` reports)."""
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()
        self._closed = False
        client._ios[stream.stream_id] = self

    # -- what the handshake agreed ------------------------------------------------------

    @property
    def stream_id(self) -> int:
        return self._stream.stream_id

    @property
    def status(self) -> int:
        return self._stream.status or 0

    @property
    def request_headers(self) -> list[tuple[str, str]]:
        return self._stream.request_headers

    @property
    def response_headers(self) -> Headers:
        return self._stream.response_headers

    @property
    def subprotocol(self) -> str | None:
        return self._stream.subprotocol

    @property
    def extensions(self) -> tuple[Extension, ...]:
        """The extensions the server agreed to, for the client's framer."""
        return self._stream.extensions

    @property
    def extensions_header(self) -> str | None:
        return self._stream.extensions_header

    # -- the byte stream ----------------------------------------------------------------

    def _wake(self) -> None:
        self._readable.unpark_all()
        self._writable.unpark_all()

    def _broken(self) -> trio.BrokenResourceError:
        client = self._client
        code = self._stream.reset_code
        if client.session.ended and client.session.end_reason:
            return trio.BrokenResourceError(f"HTTP/2 connection ended: "
                                            f"{client.session.end_reason}")
        return trio.BrokenResourceError(f"stream reset ({error_code_name(code)})")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        stream, client = self._stream, self._client
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            if stream.inbox:
                data = client.session.take(stream, max_bytes or READ_SIZE)
                client._kick()  # the window handed back
                await trio.lowlevel.checkpoint()
                return data
            if stream.ended:
                await trio.lowlevel.checkpoint()
                return b""
            if stream.reset_code is not None or client.session.ended:
                raise self._broken()
            await self._readable.park()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        stream, client = self._stream, self._client
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        if stream.end_queued and stream.reset_code is None:
            raise trio.ClosedResourceError("the stream was half-closed (send_eof)")
        if not stream.alive or client.session.ended:
            raise self._broken()
        client.session.send(stream, data)
        client._unwritten += len(data)
        if not client.session.pending(stream) and client._unwritten <= WRITE_HIGH:
            client._kick()  # the writer takes it; nothing to wait for
            await trio.lowlevel.checkpoint()
            return
        await self._sent()

    async def _sent(self) -> None:
        """Wait until what is queued on the stream has gone to the transport."""
        stream, client = self._stream, self._client
        kick = client._kick()  # what flow control let go already
        while client.session.pending(stream):
            if not stream.alive or client.session.ended:
                raise self._broken()
            await self._writable.park()
            kick = client._kick()
        await client._written(kick)

    async def wait_send_all_might_not_block(self) -> None:
        while self._client.session.pending(self._stream) and self._stream.alive:
            await self._writable.park()

    async def send_eof(self) -> None:
        """END_STREAM after what was sent."""
        stream, client = self._stream, self._client
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        if stream.alive and not stream.end_queued and not client.session.ended:
            client.session.send(stream, end=True)
            with contextlib.suppress(trio.BrokenResourceError):
                await self._sent()
        else:
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Forget the stream. As a TCP close does, one the server has ended, with
        nothing left unread, gets END_STREAM; any other not closed both ways is reset
        (CANCEL)."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        stream, session = self._stream, self._client.session
        if stream.ended and not stream.inbox and stream.alive and not stream.end_queued and (
                not session.ended):
            session.send(stream, end=True)
        else:
            session.reset(stream, ErrorCodes.CANCEL)
        self._client._ios.pop(self._stream.stream_id, None)
        self._client._kick()
        self._wake()
        await trio.lowlevel.checkpoint()


class H2Client:
    """One HTTP/2 connection to a server; made by :func:`h2_session`."""

    def __init__(self, transport: Transport, session: H2ClientSession, *,
                 secure: bool, host: str = "", port: int = 0) -> None:
        self.transport = transport
        self.session = session
        self.secure = secure
        self.host, self.port = host, port
        self._ios: dict[int, H2WebSocketStream] = {}
        self._waiting: dict[int, trio.Event] = {}
        """Streams whose answer someone waits for."""
        self._ready = trio.Event()
        self._outgoing = trio.lowlevel.ParkingLot()
        self._written_lot = trio.lowlevel.ParkingLot()
        self._queued = 0
        """Kicks given to the writer; ``_done`` is the last one whose bytes are written."""
        self._done = 0
        self._unwritten = 0
        """Bytes streams sent that the writer has not written yet (an estimate from
        above: HTTP/2 framing aside, and counted when queued, before flow control)."""
        self.lost: BaseException | None = None
        """Why the transport failed, if it did."""

    # -- opening WebSockets -------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Wait for the server's SETTINGS; HandshakeRejected if none came (the server
        does not speak HTTP/2). Whether they enable the extended CONNECT is checked when
        a WebSocket is opened."""
        await self._ready.wait()
        if not self.session.ready and self.session.refusal is not None:
            raise self.session.refusal

    @property
    def extended_connect(self) -> bool:
        """The server's SETTINGS enable the extended CONNECT (RFC 8441)."""
        return self.session.remote_settings.get("ENABLE_CONNECT_PROTOCOL") == 1

    async def ask(self, headers: Sequence[tuple[str, str]], *,
                  end_stream: bool = True) -> H2ClientStream:
        """Send any request head and wait for its answer (status, header fields, the
        start of a refusal's body); the stream is then reset unless it is over. For
        probes: a CONNECT without ``:protocol``, a GET."""
        await self.wait_ready()
        stream = self.session.request(headers, end_stream=end_stream)
        await self._answer(stream)
        self.session.reset(stream, ErrorCodes.CANCEL)
        self._kick()
        return stream

    async def _answer(self, stream: H2ClientStream) -> None:
        answered = self._waiting[stream.stream_id] = trio.Event()
        try:
            self._kick()
            if not stream.answered:
                await answered.wait()
        except BaseException:
            self.session.reset(stream, ErrorCodes.CANCEL)
            self._kick()
            raise
        finally:
            del self._waiting[stream.stream_id]

    async def open_websocket(
        self, resource: str = "/", *, authority: str | None = None,
        origin: str | None = None, subprotocols: Sequence[str] = (),
        extensions: Sequence[ClientExtensionFactory] = (),
        extra_headers: Sequence[tuple[str, str]] = (), check: bool = True,
    ) -> H2WebSocketStream:
        """Send an extended CONNECT for ``resource`` and wait for the answer: the open
        stream, or HandshakeRejected with the status (and the reason the body gives).
        Without ``check`` any 2xx opens the stream (the caller checks the answer)."""
        await self.wait_ready()
        if authority is None:
            authority = authority_for(self.host, self.port, secure=self.secure)
        stream = self.session.connect(resource, authority, secure=self.secure, origin=origin,
                                      subprotocols=subprotocols, extensions=extensions,
                                      extra_headers=extra_headers, check=check)
        await self._answer(stream)
        if stream.stage is not Stage.OPEN:
            self.session.reset(stream, ErrorCodes.CANCEL)
            self._kick()
            if stream.status is None and self.session.refusal is not None:
                raise self.session.refusal
            raise stream.refusal()
        io = H2WebSocketStream(self, stream)
        if stream.inbox or stream.ended or stream.reset_code is not None:
            io._wake()
        return io

    # -- the two tasks ------------------------------------------------------------------

    def _kick(self) -> int:
        """Have the writer write what is queued; the number to wait for."""
        self._queued += 1
        self._outgoing.unpark_all()
        return self._queued

    async def _written(self, kick: int) -> None:
        """Wait until the bytes queued by ``kick`` are written."""
        while self._done < kick:
            if self.lost is not None:
                raise trio.BrokenResourceError("the HTTP/2 connection broke") from self.lost
            await self._written_lot.park()

    async def write_loop(self) -> None:
        session = self.session
        try:
            while True:
                kick, unwritten = self._queued, self._unwritten
                out = session.data_to_send()
                if out:
                    await self.transport.send_all(out)
                self._unwritten -= unwritten
                self._done = kick
                self._written_lot.unpark_all()
                if self._queued == kick:
                    await self._outgoing.park()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lose(exc)

    async def read_loop(self) -> None:
        session = self.session
        try:
            while not session.ended:
                try:
                    data = await self.transport.receive(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.lost = self.lost or exc
                    data = b""
                self._dispatch(session.receive_data(data) if data else session.receive_eof())
                self._kick()
        finally:
            self._ready.set()
            self._wake_all()

    def _lose(self, exc: BaseException) -> None:
        self.lost = exc
        self._dispatch(self.session.receive_eof())
        self._written_lot.unpark_all()

    def _wake_all(self) -> None:
        for io in list(self._ios.values()):
            io._wake()
        for event in self._waiting.values():
            event.set()
        self._written_lot.unpark_all()

    def _dispatch(self, events: list[H2ClientEvent]) -> None:
        for event in events:
            if type(event) is DataArrived or type(event) is StreamEnded:
                io = self._ios.get(event.stream.stream_id)
                if io is not None:
                    io._readable.unpark_all()
            elif type(event) is ResponseReceived:
                waiter = self._waiting.get(event.stream.stream_id)
                if waiter is not None:
                    waiter.set()
            elif type(event) is StreamReset:
                io = self._ios.get(event.stream.stream_id)
                if io is not None:
                    io._wake()
                waiter = self._waiting.get(event.stream.stream_id)
                if waiter is not None:
                    waiter.set()
            elif type(event) is SettingsReceived:
                self._ready.set()
            elif type(event) is SessionEnded:
                self._ready.set()
                self._wake_all()
            else:  # WindowOpened
                for io in self._ios.values():
                    io._writable.unpark_all()

    async def goaway(self) -> None:
        """End the connection with GOAWAY NO_ERROR, written within ``CLOSE_BOUND`` even
        in a cancelled scope; every stream still open is then broken."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + CLOSE_BOUND
            if not self.session.ended and self.lost is None:
                self.session.close()
                with contextlib.suppress(trio.BrokenResourceError):
                    await self._written(self._kick())
        self._wake_all()


@asynccontextmanager
async def h2_session(stream: trio.abc.Stream, *, settings: H2ClientSettings | None = None,
                     host: str = "", port: int = 0,
                     timeout: float = math.inf) -> AsyncIterator[H2Client]:
    """Run an HTTP/2 client connection over ``stream`` (TCP for prior knowledge, or TLS
    that negotiated ALPN ``h2``) until the block ends, then GOAWAY and close the stream.
    Entering waits for the server's SETTINGS (``timeout`` at most: trio.TooSlowError);
    HandshakeRejected (status 0) when the server does not speak HTTP/2 or does not
    enable the extended CONNECT. ``host`` and ``port`` make the default ``:authority``."""
    secure = isinstance(stream, trio.SSLStream)
    transport = Transport(stream)
    if secure:
        assert isinstance(stream, trio.SSLStream)
        chosen = stream.selected_alpn_protocol()
        if chosen != ALPN:
            await transport.aclose()
            raise HandshakeRejected(0, "the server did not choose HTTP/2 in TLS's ALPN ("
                                    + (f"it chose {chosen}" if chosen else "it chose none")
                                    + "): it does not speak HTTP/2 on this port")
    client = H2Client(transport, H2ClientSession(settings), secure=secure, host=host,
                      port=port)
    failed: Exception | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.write_loop)
            nursery.start_soon(client.read_loop)
            client._kick()  # the preface and SETTINGS
            try:
                with trio.fail_after(timeout):
                    await client.wait_ready()
                yield client
            except Exception as exc:
                # Raised again below, out of the nursery: the caller's own exception,
                # not an ExceptionGroup around it.
                failed = exc
            finally:
                await client.goaway()
                nursery.cancel_scope.cancel()
    finally:
        await transport.aclose()
    if failed is not None:
        raise failed


@asynccontextmanager
async def open_h2_client(host: str, port: int, *, secure: bool = False,
                         ssl_context: ssl.SSLContext | None = None,
                         settings: H2ClientSettings | None = None,
                         timeout: float = math.inf) -> AsyncIterator[H2Client]:
    """Connect to ``host``/``port`` (TLS with ALPN ``h2`` when ``secure``, else prior
    knowledge) and run an HTTP/2 client connection there until the block ends; the
    connection and the server's SETTINGS within ``timeout`` in all."""
    deadline = trio.current_time() + timeout
    with trio.fail_at(deadline):
        stream = await connect_h2(host, port, secure=secure, ssl_context=ssl_context)
    async with h2_session(stream, settings=settings, host=host, port=port,
                          timeout=max(deadline - trio.current_time(), 0)) as client:
        yield client
