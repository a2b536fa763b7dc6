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
from wscompat.errors import HandshakeRejected
from wscompat.protocol.framing import Framer, HixieFramer, HybiFramer
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.protocol.http import Headers, Request
from wscompat.trio.connection import Connection

__all__ = ["connect", "open_stream"]


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
        stream = await open_stream(host, port, secure=secure, ssl_context=ssl_context)
        try:
            request = handshake.request()
            await stream.send_all(request)
            result = None
            while result is None:
                data = await stream.receive_some(65536)
                if not data:
                    raise HandshakeRejected(0, "connection closed during the handshake")
                result = handshake.receive_data(bytes(data))
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    framer: Framer
    if draft in (Draft.HIXIE75, Draft.HIXIE76):
        framer = HixieFramer(draft, max_message_size=max_message_size)
    else:
        framer = HybiFramer(draft, max_message_size=max_message_size, client=True,
                            extensions=list(result.extensions))
    sent = Request("GET", resource, "1.1", Headers(_request_headers(request)))
    ws = Connection(
        stream, framer, sent, subprotocol=result.subprotocol, remote=(host, port),
        extensions=result.headers.joined("Sec-WebSocket-Extensions"),
        max_queue=max_queue, close_timeout=close_timeout,
    )
    if result.leftover:
        framer.receive_data(result.leftover)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.run_reader)
        try:
            yield ws
        finally:
            with trio.CancelScope(shield=True):
                await ws.close()
            await trio.aclose_forcefully(stream)


def _request_headers(request: bytes) -> list[tuple[str, str]]:
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
    ]
