"""The backend leg: one connection to the upstream per client, opened while the client's
handshake waits.

:func:`open_websocket_leg` and :func:`open_stream_leg` connect (TCP, TLS or a Unix
socket); the first then runs the RFC 6455 handshake with the fields that
:mod:`~wscompat.gateway.headers` builds.
Whatever goes wrong becomes an :class:`UpstreamError` carrying the HTTP status the
client is refused with: the backend's own status when it refused (4xx, 5xx), 502 when
it cannot be reached, refuses TCP, fails TLS or answers something that is not a valid
101, and 504 when it does not answer by the deadline.

Nothing here enters a nursery or a cancel scope that outlives the call: the leg is
plain objects over a stream (a :class:`~wscompat.trio.connection.Connection` whose
reader is not yet started, or the stream itself), so the handshake's cancel scope can
end and the handler, in the same task, take the leg over. The bridge
(:mod:`~wscompat.gateway.bridge`) then runs it.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.gateway.routes import Upstream
from wscompat.gateway.translate import StreamMode
from wscompat.protocol.connection import ConnectionSettings
from wscompat.protocol.extensions import ClientPerMessageDeflateFactory
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.trio.client import open_connection
from wscompat.trio.connection import Connection, IOSettings
from wscompat.trio.transport import Transport

__all__ = [
    "LegSettings", "StreamLeg", "UpstreamError", "WebSocketLeg", "open_stream_leg",
    "open_websocket_leg",
]

logger = logging.getLogger("wscompat.gateway")

UNUSED_CLOSE = 0.5
"""Seconds a leg whose client never opened is given to close cleanly."""
REASON_MAX = 200


class UpstreamError(Exception):
    """The backend leg could not be opened; ``status`` is what the client is refused with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class LegSettings:
    """How backend legs are opened and run, built once per gateway."""

    connect_timeout: float = 5.0
    """Seconds to connect and complete the backend's handshake (504 after)."""
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    """Checks wss:// backends; None: the system's CAs, host name checked."""
    compression: bool = False
    """Offer permessage-deflate to WebSocket backends."""
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    io: IOSettings = field(default_factory=IOSettings)


class WebSocketLeg:
    """An open RFC 6455 connection to the backend, reader not started."""

    def __init__(self, ws: Connection, transport: Transport, upstream: Upstream) -> None:
        self.ws = ws
        self.transport = transport
        self.upstream = upstream

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    async def aclose(self) -> None:
        """Close a leg whose client never got to its handler (the server calls this when
        the client's handshake fails after the decision): 1001, briefly, then TCP."""
        try:
            with trio.move_on_after(UNUSED_CLOSE):
                await self.ws.close(1001, "client left")
        finally:
            await self.transport.aclose()


class StreamLeg:
    """An open byte stream to a tcp:// or unix: backend."""

    def __init__(self, stream: trio.abc.Stream, mode: StreamMode, upstream: Upstream) -> None:
        self.stream = stream
        self.mode = mode
        self.upstream = upstream

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def open_websocket_leg(
    upstream: Upstream,
    resource: str,
    settings: LegSettings,
    *,
    deadline: float,
    origin: str | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
) -> WebSocketLeg:
    """Connect to a WebSocket ``upstream`` and complete its handshake for ``resource`` by
    ``deadline`` (trio time); raises UpstreamError."""
    with trio.move_on_at(deadline):
        return await _websocket(upstream, resource, settings, origin=origin,
                                subprotocols=subprotocols, headers=headers)
    raise _late(upstream)


async def open_stream_leg(
    upstream: Upstream, settings: LegSettings, mode: StreamMode, *, deadline: float
) -> StreamLeg:
    """Connect to a byte-stream ``upstream`` by ``deadline``; raises UpstreamError."""
    with trio.move_on_at(deadline):
        return StreamLeg(await _connect(upstream, settings), mode, upstream)
    raise _late(upstream)


def _late(upstream: Upstream) -> UpstreamError:
    return UpstreamError(504, f"backend {upstream.url} did not answer in time")


async def _connect(upstream: Upstream, settings: LegSettings) -> trio.abc.Stream:
    """The stream to the backend, TLS done for wss://."""
    where = upstream.url
    stream: trio.abc.Stream
    try:
        if upstream.kind in ("unix", "ws+unix"):
            stream = await trio.open_unix_socket(upstream.socket_path)
        else:
            stream = await trio.open_tcp_stream(upstream.host, upstream.port)
    except socket.gaierror as exc:
        raise UpstreamError(502, f"backend {where}: cannot resolve it: {exc.strerror}") from None
    except OSError as exc:
        raise UpstreamError(502, f"backend {where}: {_os_reason(exc)}") from None
    if not upstream.secure:
        return stream
    context = settings.ssl_context or ssl.create_default_context()
    tls = trio.SSLStream(stream, context, server_hostname=upstream.host)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tls)
        cause = exc.__cause__
        why = _ssl_reason(cause) if isinstance(cause, ssl.SSLError) else str(cause or exc)
        raise UpstreamError(502, f"backend {where}: TLS handshake failed: {why}") from None
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


async def _websocket(
    upstream: Upstream, resource: str, settings: LegSettings, *, origin: str | None,
    subprotocols: Sequence[str], headers: Sequence[tuple[str, str]],
) -> WebSocketLeg:
    stream = await _connect(upstream, settings)
    host = upstream.host or "localhost"  # a Unix socket has no host to name
    handshake = ClientHandshake(
        Draft.RFC6455, host, resource, port=upstream.port or None, secure=upstream.secure,
        origin=origin, subprotocols=tuple(subprotocols), extra_headers=tuple(headers),
        extensions=[ClientPerMessageDeflateFactory()] if settings.compression else (),
    )
    transport = Transport(stream)
    remote = (upstream.host or upstream.socket_path, upstream.port)
    try:
        ws = await open_connection(transport, handshake, settings.connection, settings.io,
                                   remote=remote)
    except HandshakeRejected as exc:
        raise _refusal(upstream, exc) from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise UpstreamError(502, f"backend {upstream.url}: connection lost during the "
                            f"handshake: {exc.__cause__ or exc}") from None
    return WebSocketLeg(ws, transport, upstream)


def _refusal(upstream: Upstream, exc: HandshakeRejected) -> UpstreamError:
    """The backend's refusal as the client's: 4xx and 5xx pass through; a 101 that is
    not a valid answer, or any other status, is a bad gateway (502)."""
    reason = exc.reason[:REASON_MAX]
    if 400 <= exc.status <= 599:
        return UpstreamError(exc.status, f"backend refused: {reason}")
    if exc.status == 101:
        return UpstreamError(502, f"backend {upstream.url} answered a wrong 101: {reason}")
    if exc.status == 0:
        return UpstreamError(502, f"backend {upstream.url}: {reason}")
    return UpstreamError(502, f"backend {upstream.url} answered {exc.status} {reason}")


def _os_reason(exc: OSError) -> str:
    """An OSError in a few words; trio's multi-address failures carry one per address."""
    if exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc).partition(": ")[0] or type(exc).__name__


def _ssl_reason(exc: ssl.SSLError) -> str:
    return exc.reason or exc.strerror or str(exc)
