"""A trio client that speaks every draft: for tests, probes and replaying vectors.

``async with connect("ws://host:port/path", draft=Draft.HIXIE76) as ws:`` opens a
connection as a client of that generation would, and yields the same
:class:`~wscompat.trio.connection.Connection` the server hands to its handlers.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
from websockets.extensions import ClientExtensionFactory

from wscompat.drafts import Draft
from wscompat.protocol.connection import ClientConnection, ConnectionSettings
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.protocol.http import Headers, Request
from wscompat.trio.connection import Connection, IOSettings
from wscompat.trio.transport import Transport

__all__ = ["connect", "open_connection", "open_stream"]


def _split(url: str) -> tuple[str, int, str, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, resource, secure


async def open_stream(
    host: str, port: int, *, secure: bool = False, ssl_context: ssl.SSLContext | None = None
) -> trio.abc.Stream:
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if secure:
        context = ssl_context or ssl.create_default_context()
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
) -> AsyncIterator[Connection]:
    """Connect as a client of ``draft``; the connection is closed on leaving the block.

    ``extensions`` are offered in order of preference on hybi drafts, e.g.
    ``[ClientDeflateFrameFactory()]`` to offer only x-webkit-deflate-frame as Safari 6-14
    did (see ``wscompat.protocol.extensions``); none by default.

    Raises HandshakeRejected with the server's status (or 101 when the server's 101
    answer is one the draft's clients would fail).
    """
    host, port, resource, secure = _split(url)
    handshake = ClientHandshake(
        draft, host, resource, port=port, secure=secure, origin=origin,
        subprotocols=subprotocols, extra_headers=extra_headers, extensions=extensions,
    )
    with trio.fail_after(open_timeout):
        transport = Transport(
            await open_stream(host, port, secure=secure, ssl_context=ssl_context)
        )
        ws = await open_connection(
            transport, handshake, ConnectionSettings(max_message_size=max_message_size),
            IOSettings(max_queue=max_queue, close_timeout=close_timeout), remote=(host, port),
        )
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
            await transport.aclose()
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
