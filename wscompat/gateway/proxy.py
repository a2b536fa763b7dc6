"""The gateway as a wscompat application: a ``process_request`` and a handler.

``process_request`` runs at the decision point of every client's handshake: it finds
the route, opens the backend leg (:mod:`~wscompat.gateway.upstream`) with the client's
path, origin, subprotocols and forwarded fields (:mod:`~wscompat.gateway.headers`), and
answers the server with an Acceptance carrying the backend's subprotocol choice and the
leg, or a Rejection with the status the backend's failure maps to. The client thus gets
its 101 only once the backend has accepted. The handler then bridges the two
(:mod:`~wscompat.gateway.bridge`). Any wscompat server runs it::

    gateway = Gateway(GatewayConfig(RouteTable.of("ws://127.0.0.1:9000/")))
    await wscompat.serve(gateway.handler, "0.0.0.0", 8080, options=gateway.options)
"""

from __future__ import annotations

import dataclasses
import math
import ssl
from dataclasses import dataclass, field
from typing import Any

import trio

from wscompat.gateway.bridge import BridgeSettings, bridge
from wscompat.gateway.headers import HeaderPolicy, backend_headers
from wscompat.gateway.routes import RouteTable
from wscompat.gateway.translate import FAILURE_CODES, HixieBinary, stream_mode
from wscompat.gateway.upstream import (
    LegSettings,
    StreamLeg,
    UpstreamError,
    WebSocketLeg,
    open_stream_leg,
    open_websocket_leg,
)
from wscompat.options import Acceptance, Rejection, ServerOptions
from wscompat.protocol.connection import ConnectionSettings, UpgradeRequest
from wscompat.trio.connection import Connection, IOSettings
from wscompat.trio.server import Server, serve

__all__ = ["Gateway", "GatewayConfig", "serve_gateway"]

DEADLINE_MARGIN = 0.5
"""Seconds kept, at most, between the backend's deadline and the client's handshake
timeout, so that a slow backend is answered 504 rather than the client cut off."""


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway does beyond a server's options (``wscompat proxy``'s own flags)."""

    routes: RouteTable
    headers: HeaderPolicy = field(default_factory=HeaderPolicy)
    connect_timeout: float = 5.0
    """Seconds to reach the backend and complete its handshake (504 after)."""
    upstream_ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    """Checks wss:// backends' certificates; None: the system's CAs."""
    upstream_compression: bool = False
    """Offer permessage-deflate to WebSocket backends (each leg negotiates its own)."""
    hixie_binary: HixieBinary = "error"
    """A binary message from the backend to a text-only hixie client: close both
    (``error``, the backend gets 1003), send it as base64 text, or ``drop`` it."""
    failure_code: int = 1011
    """Close code for an RFC 6455 client whose backend failed: 1011 or 1014."""

    def __post_init__(self) -> None:
        if self.hixie_binary not in ("error", "base64", "drop"):
            raise ValueError(f"hixie_binary must be error, base64 or drop, not "
                             f"{self.hixie_binary!r}")
        if self.failure_code not in FAILURE_CODES:
            raise ValueError(f"failure_code must be 1011 or 1014, not {self.failure_code!r}")
        if not self.connect_timeout > 0 or math.isinf(self.connect_timeout):
            raise ValueError(f"connect_timeout must be a number of seconds above 0, not "
                             f"{self.connect_timeout!r}")


class Gateway:
    """A gateway for one server: run ``handler`` with ``options`` (the given server
    options with the gateway's ``process_request`` installed).

    The backend chooses the subprotocol: the server options' ``subprotocols``, if set,
    only narrow what is offered to it, and ``select_subprotocol`` is not used.
    """

    def __init__(self, config: GatewayConfig, options: ServerOptions | None = None) -> None:
        base = options or ServerOptions()
        self.config = config
        self.offerable = None if base.subprotocols is None else frozenset(base.subprotocols)
        self.options = dataclasses.replace(
            base, process_request=self.process_request, select_subprotocol=None,
            subprotocols=None,
        )
        self.legs = LegSettings(
            connect_timeout=config.connect_timeout,
            ssl_context=config.upstream_ssl_context,
            compression=config.upstream_compression,
            connection=ConnectionSettings(max_message_size=base.max_message_size,
                                          max_frame_size=base.max_frame_size),
            io=IOSettings(max_queue=base.max_queue, max_queue_bytes=base.max_queue_bytes,
                          close_timeout=base.close_timeout, read_size=base.read_size,
                          write_limit=base.write_limit, log_payloads=base.log_payloads),
        )
        self.bridge = BridgeSettings(
            hixie_binary=config.hixie_binary, failure_code=config.failure_code,
            ping_interval=base.ping_interval, ping_timeout=base.ping_timeout,
            close_timeout=base.close_timeout,
        )

    async def process_request(self, upgrade: UpgradeRequest) -> Rejection | Acceptance:
        """Open the backend leg while the client waits; its outcome is the client's."""
        config = self.config
        try:
            found = config.routes.match(upgrade.path)
        except ValueError as exc:
            return Rejection(400, str(exc))
        if found is None:
            return Rejection(404, "no route for this path")
        upstream, resource = found
        offered = upgrade.offered_subprotocols
        if self.offerable is not None:
            offered = tuple(p for p in offered if p in self.offerable)
        deadline = self._deadline()
        try:
            if upstream.stream:
                choice = stream_mode(upgrade.draft, offered)
                if choice is None:
                    return Rejection(400, "this path leads to a byte stream, which speaks "
                                     "the binary or base64 subprotocol")
                subprotocol, mode = choice
                leg = await open_stream_leg(upstream, self.legs, mode, deadline=deadline)
                return Acceptance(subprotocol=subprotocol, context=leg)
            ws_leg = await open_websocket_leg(
                upstream, resource, self.legs, deadline=deadline, origin=upgrade.origin,
                subprotocols=offered,
                headers=backend_headers(upgrade, config.headers, secure=self._secure(upgrade)),
            )
        except UpstreamError as exc:
            return Rejection(exc.status, exc.reason)
        return Acceptance(subprotocol=ws_leg.subprotocol, context=ws_leg)

    async def handler(self, ws: Connection) -> None:
        """Bridge the client to the leg its handshake opened."""
        leg = ws.context
        if not isinstance(leg, WebSocketLeg | StreamLeg):
            raise TypeError("the gateway's handler needs its own process_request: serve it "
                            "with gateway.options")
        ws.context = None  # the leg is closed by the bridge; nothing else may hold it
        await bridge(ws, leg, self.bridge)

    def _deadline(self) -> float:
        """When the backend must have answered: the connect timeout, or just before the
        client's own handshake timeout, whichever comes first."""
        now = trio.current_time()
        mine = now + self.config.connect_timeout
        outer = trio.current_effective_deadline()
        if not math.isinf(outer):
            mine = min(mine, outer - min(DEADLINE_MARGIN, (outer - now) / 10))
        return mine

    def _secure(self, upgrade: UpgradeRequest) -> bool:
        """Whether the client came over TLS, for X-Forwarded-Proto: it did, or the
        server is told its clients do (``secure``, behind a TLS-terminating proxy)."""
        return upgrade.secure or self.options.secure


async def serve_gateway(
    config: GatewayConfig,
    host: str | None = "127.0.0.1",
    port: int = 8080,
    *,
    options: ServerOptions | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **kwargs: Any,
) -> None:
    """:func:`wscompat.serve` running a gateway: until cancelled or shut down.
    ``kwargs`` are ServerOptions fields, on top of ``options``."""
    base = options or ServerOptions()
    if kwargs:
        base = dataclasses.replace(base, **kwargs)
    gateway = Gateway(config, base)
    await serve(gateway.handler, host, port, options=gateway.options, task_status=task_status)
