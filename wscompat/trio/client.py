"""A trio client that speaks every draft: for tests, probes and replaying vectors.

``async with connect("ws://host:port/path", draft=Draft.HIXIE76) as ws:`` opens a
connection as a client of that generation would, and yields the same
:class:`~wscompat.trio.connection.Connection` the server hands to its handlers.
``connect(url, http2=True)`` opens an RFC 6455 WebSocket over an HTTP/2 stream (RFC
8441) instead: TLS with ALPN ``h2`` for ``wss://``, prior knowledge for ``ws://``; the
Connection is the same, with ``http_version == "2"``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import trio
from websockets.extensions import ClientExtensionFactory

from wscompat.drafts import Draft
from wscompat.protocol.connection import (
    ClientConnection,
    ConnectionSettings,
    Established,
    make_framer,
)
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.protocol.http import Headers, Request
from wscompat.protocol.urls import parse_ws_url
from wscompat.trio.connection import Connection, IOSettings
from wscompat.trio.http2_client import (
    H2Client,
    H2WebSocketStream,
    connect_h2,
    h2_session,
    open_h2_client,
)
from wscompat.trio.transport import Transport

__all__ = [
    "connect",
    "open_connection",
    "open_h2_connection",
    "open_h2_websocket_stream",
    "open_stream",
    "split_url",
]


def split_url(url: str) -> tuple[str, int, str, bool]:
    """Host, port, resource (path and query) and whether TLS is wanted, of a ws:// or
    wss:// URL; ValueError for any other (see :func:`parse_ws_url`)."""
    parsed = parse_ws_url(url)
    return parsed.host, parsed.port, parsed.resource, parsed.secure


async def open_stream(
    host: str, port: int, *, secure: bool = False, ssl_context: ssl.SSLContext | None = None,
    before_tls: bytes = b"",
) -> trio.abc.Stream:
    """TCP to the server, with TLS when ``secure``, for a WebSocket over HTTP/1.1.
    ALPN, a setting of the whole context, is set to ``http/1.1`` on the context: one
    that ``http2=True`` used offers ``h2`` otherwise, which an HTTP/2 server chooses.
    ``before_tls``: bytes sent in the clear first, as a TCP-mode proxy sends its PROXY
    protocol header before the client's TLS."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if before_tls:
        await stream.send_all(before_tls)
    if secure:
        context = ssl_context or ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        tls = trio.SSLStream(stream, context, server_hostname=host)
        await tls.do_handshake()
        stream = tls
    return stream


@asynccontextmanager
async def connect(
    url: str,
    *,
    draft: Draft = Draft.RFC6455,
    origin: str | None = "http://localhost",
    subprotocols: tuple[str, ...] = (),
    extra_headers: tuple[tuple[str, str], ...] = (),
    extensions: Sequence[ClientExtensionFactory] = (),
    max_message_size: int | None = 2**20,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    max_queue: int = 16,
    ssl_context: ssl.SSLContext | None = None,
    http2: bool = False,
) -> AsyncIterator[Connection]:
    """Connect as a client of ``draft``; the connection is closed on leaving the block.

    ``extensions`` are offered in order of preference on hybi drafts, e.g.
    ``[ClientDeflateFrameFactory()]`` to offer only x-webkit-deflate-frame as Safari 6-14
    did (see ``wscompat.protocol.extensions``); none by default.

    With ``http2`` the WebSocket is an extended CONNECT stream on a new HTTP/2
    connection (RFC 6455 only; ALPN ``h2`` is set on ``ssl_context``), closed with the
    WebSocket.

    Raises HandshakeRejected with the server's status (or 101 when the server's 101
    answer is one the draft's clients would fail; over HTTP/2, the 2xx status of an
    answer the client must fail, and 0 when the server does not speak HTTP/2 or RFC
    8441).
    """
    host, port, resource, secure = split_url(url)
    settings = ConnectionSettings(max_message_size=max_message_size)
    io = IOSettings(max_queue=max_queue, close_timeout=close_timeout)
    async with AsyncExitStack() as stack:
        if http2:
            if draft is not Draft.RFC6455:
                raise ValueError(f"HTTP/2 carries RFC 6455 only, not {draft}")
            deadline = trio.current_time() + open_timeout
            client = await stack.enter_async_context(open_h2_client(
                host, port, secure=secure, ssl_context=ssl_context, timeout=open_timeout))
            with trio.fail_at(deadline):
                ws = await open_h2_connection(
                    client, resource, origin=origin, subprotocols=subprotocols,
                    extra_headers=extra_headers, extensions=extensions, settings=settings,
                    io=io, remote=(host, port))
        else:
            handshake = ClientHandshake(
                draft, host, resource, port=port, secure=secure, origin=origin,
                subprotocols=subprotocols, extra_headers=extra_headers,
                extensions=extensions,
            )
            with trio.fail_after(open_timeout):
                transport = Transport(
                    await open_stream(host, port, secure=secure, ssl_context=ssl_context)
                )
                ws = await open_connection(transport, handshake, settings, io,
                                           remote=(host, port))
        async with _running(ws, close_timeout) as running:
            yield running


@asynccontextmanager
async def _running(ws: Connection, close_timeout: float) -> AsyncIterator[Connection]:
    """Run the connection's reader while the block runs; close it at the end."""
    failed: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.run_reader)
        try:
            yield ws
        except Exception as exc:
            # Raised again below, out of the nursery: the caller's own exception, not
            # an ExceptionGroup around it.
            failed = exc
        finally:
            with trio.CancelScope(shield=True):
                await ws.close()
                await ws.wait_reader(close_timeout)
            await ws._transport.aclose()
    if failed is not None:
        raise failed


async def open_connection(
    transport: Transport,
    handshake: ClientHandshake,
    settings: ConnectionSettings | None = None,
    io: IOSettings | None = None,
    *,
    remote: tuple[str, int] | None = None,
) -> Connection:
    """Run ``handshake`` over ``transport``; the open connection, its reader not started.

    No nursery or cancel scope is entered, so the connection may outlive the caller's
    scope: a gateway opens its backend this way while its own client's handshake is
    held, and hands the connection to the handler. The caller runs ``ws.run_reader``
    beside its use of ``ws`` and closes it (``ws.close()``, then the transport). On
    any failure the transport is closed first; a refused or wrong answer raises
    HandshakeRejected (status 101 for a 101 the draft's clients would fail).
    """
    proto = ClientConnection(handshake, settings or ConnectionSettings())
    try:
        request = proto.request()
        await transport.send_all(request)
        while proto.framer is None:
            data = await transport.receive(65536)
            if not data:
                proto.receive_eof()  # raises HandshakeRejected
            proto.receive_data(data)
    except BaseException:
        await transport.aclose()
        raise
    result = proto.result
    assert result is not None
    sent = Request("GET", handshake.resource, "1.1", Headers(_request_headers(request)))
    return Connection(
        transport, proto, sent, subprotocol=result.subprotocol, remote=remote,
        extensions=result.headers.joined("Sec-WebSocket-Extensions"),
        settings=io or IOSettings(),
    )


def _request_headers(request: bytes) -> list[tuple[str, str]]:
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
    ]


async def open_h2_connection(
    client: H2Client,
    resource: str = "/",
    *,
    origin: str | None = "http://localhost",
    subprotocols: Sequence[str] = (),
    extra_headers: Sequence[tuple[str, str]] = (),
    extensions: Sequence[ClientExtensionFactory] = (),
    settings: ConnectionSettings | None = None,
    io: IOSettings | None = None,
    remote: tuple[str, int] | None = None,
) -> Connection:
    """Open a WebSocket on an HTTP/2 connection (RFC 8441); the open connection, its
    reader not started, as :func:`open_connection` gives. Closing it ends only its
    stream; the HTTP/2 connection stays the caller's."""
    stream = await client.open_websocket(
        resource, origin=origin, subprotocols=subprotocols, extensions=extensions,
        extra_headers=extra_headers)
    proto = Established(make_framer(Draft.RFC6455, settings or ConnectionSettings(),
                                    stream.extensions, client=True))
    fields = [(name, value) for name, value in stream.request_headers
              if not name.startswith(":")]
    fields.insert(0, ("host", dict(stream.request_headers)[":authority"]))
    sent = Request("CONNECT", resource, "2", Headers(fields))
    ws = Connection(Transport(stream), proto, sent, subprotocol=stream.subprotocol,
                    remote=remote, extensions=stream.extensions_header,
                    settings=io or IOSettings())
    ws.http_version = "2"
    return ws


@asynccontextmanager
async def open_h2_websocket_stream(
    url: str, *, origin: str | None = "http://localhost", subprotocols: Sequence[str] = (),
    extensions: Sequence[ClientExtensionFactory] = (),
    extra_headers: Sequence[tuple[str, str]] = (), ssl_context: ssl.SSLContext | None = None,
    open_timeout: float = 10.0,
) -> AsyncIterator[tuple[H2WebSocketStream, Headers]]:
    """One WebSocket over a new HTTP/2 connection to ``url`` (``ws://``: prior
    knowledge, ``wss://``: TLS with ALPN ``h2``): the stream of its bytes and the
    answer's header fields. Nothing is framed here: the bytes are RFC 6455 frames, which
    the caller writes (masked, as a client must) and reads; the agreed subprotocol and
    extensions are on the stream. Leaving the block resets a stream not closed both
    ways, then ends the connection with GOAWAY."""
    host, port, resource, secure = split_url(url)
    with trio.fail_after(open_timeout):
        tcp = await connect_h2(host, port, secure=secure, ssl_context=ssl_context)
    async with h2_session(tcp, host=host, port=port, timeout=open_timeout) as client:
        with trio.fail_after(open_timeout):
            stream = await client.open_websocket(
                resource, origin=origin, subprotocols=subprotocols, extensions=extensions,
                extra_headers=extra_headers)
        try:
            yield stream, stream.response_headers
        finally:
            await stream.aclose()
