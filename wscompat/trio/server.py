"""The trio server: accept, drive the protocol connection through its handshake, then
run the handler beside a reader.

Each connection runs in one task, its handshake under ``handshake_timeout``; once
open, its reader runs as a second task in the same nursery (no nursery per
connection). A handler that raises closes only its own connection (1011) and is
logged; cancelling :func:`serve` closes every open connection with 1001 (or its
draft's equivalent) within ``close_timeout``. Each listening socket has an accept
loop (:func:`wscompat.trio.streams.accept_loop`) that takes a batch of connections per
wake-up and backs off instead of crashing when file descriptors run out; a connection
starts as a bare non-blocking socket and gets a trio stream only if TLS or the
recorder needs one.
"""

from __future__ import annotations

import logging
import socket
import time
from functools import partial
from typing import Any

import trio

from wscompat.metrics import Metrics
from wscompat.options import ServerOptions
from wscompat.protocol.connection import Phase, ServerConnection
from wscompat.trio.connection import Flusher, Keepalive
from wscompat.trio.http2 import serve_http2
from wscompat.trio.policy import serve_policy
from wscompat.trio.serving import (
    REJECT_LINGER,
    Handler,
    Server,
    State,
    answer_plain,
    decide,
    not_opened,
    refused,
    run_handler,
    start_connection,
)
from wscompat.trio.streams import (
    PrefixedStream,
    accept_loop,
    bind_listeners,
    fmt_remote,
    open_listeners,
)
from wscompat.trio.transport import Transport, keepalive_timers
from wscompat.vectors.recorder import recorder_for

__all__ = ["Handler", "Server", "State", "open_listeners", "serve", "serve_policy"]

logger = logging.getLogger("wscompat.server")

async def serve(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 8080,
    *,
    options: ServerOptions | None = None,
    metrics_store: Metrics | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **kwargs: Any,
) -> None:
    """Serve ``handler`` on ``host:port`` until cancelled or :meth:`Server.shutdown`.
    ``host=None`` listens on all interfaces, IPv4 and IPv6. Keyword arguments are
    :class:`ServerOptions` fields. ``metrics_store`` counts into a given
    :class:`Metrics` (served elsewhere, as :func:`serve_metrics` does); ``metrics=True``
    makes one if none is given and serves it at ``/metrics``. Cancelling closes every
    connection at once (each still within ``close_timeout``); :meth:`Server.shutdown`
    drains first."""
    if kwargs:
        unknown = set(kwargs) - ServerOptions.names()
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
        base = options or ServerOptions()
        options = ServerOptions(**{**_as_dict(base), **kwargs})
    options = options or ServerOptions()
    if options.ssl_context is not None:
        # Browsers open RFC 8441 WebSockets only on an HTTP/2 connection: offer it when
        # it is on. Set either way, so a context that served HTTP/2 elsewhere does not
        # go on offering h2 here, and a client is told plainly it gets HTTP/1.1.
        options.ssl_context.set_alpn_protocols(
            ["h2", "http/1.1"] if options.http2 else ["http/1.1"])
    socks = await bind_listeners(host, port, reuse_port=options.reuse_port)
    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]
    metrics = metrics_store
    if metrics is None and options.metrics:
        metrics = Metrics()
    server = Server(listeners, options, metrics=metrics)
    if options.tcp_keepalive is not None:
        server.keepalive_inherited = all(
            keepalive_timers(sock, options.tcp_keepalive) for sock in socks)
    for address in server.addresses:
        logger.info("listening on %s port %s", address[0], address[1])
    try:
        # Accept loops (and, while closing, the connections refused with 503) live in
        # ``outer``; open connections in ``connections``, which shutdown() cancels.
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as connections:
                server._scope = connections.cancel_scope
                flusher = Flusher(connections)
                connections.start_soon(flusher.run)
                if options.ping_interval is not None:
                    server.keepalive = Keepalive(connections, options.ping_interval,
                                                 options.ping_timeout)
                    connections.start_soon(server.keepalive.run)
                if metrics is not None:
                    connections.start_soon(server._sync_metrics_forever)
                serve_one = partial(_serve_connection, server, handler,
                                    nursery=connections, flusher=flusher)
                serve_late = partial(_serve_connection, server, handler, nursery=outer,
                                     flusher=flusher)

                def spawn(sock: socket.socket, remote: tuple[str, int] | None) -> None:
                    if server.state is State.CLOSING:
                        outer.start_soon(serve_late, sock, remote)
                    else:
                        connections.start_soon(serve_one, sock, remote)

                for sock in socks:
                    outer.start_soon(accept_loop, sock, spawn)
                task_status.started(server)
            outer.cancel_scope.cancel()
    finally:
        server.state = State.CLOSED
        server._closed.set()
        if metrics is not None:
            server.sync_metrics()
        for listener in listeners:
            trio.lowlevel.notify_closing(listener.socket)
            listener.socket.close()


def _as_dict(options: ServerOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in ServerOptions.names()}


async def _serve_connection(
    server: Server, handler: Handler, sock: socket.socket, remote: tuple[str, int] | None,
    *, nursery: trio.Nursery, flusher: Flusher,
) -> None:
    """One connection, whatever happens to it: nothing it raises reaches the accept loop,
    whose nursery every other connection shares. (One function, not a chain of them:
    each level would be a coroutine frame held for as long as the connection lives.)"""
    options = server.options
    started = time.monotonic()
    recorder = recorder_for(options)
    transport = Transport(sock)
    if recorder is not None:
        transport = Transport(recorder.wrap(transport.stream))
    server.active += 1
    contexts: list[object] = []
    try:
        proto: ServerConnection | None = None
        with trio.move_on_after(options.handshake_timeout) as deadline:
            proto, transport, remote = await _open(transport, server, remote, contexts)
        if deadline.cancelled_caught or proto is None:
            await not_opened(server, remote, transport, contexts,
                              timed_out=deadline.cancelled_caught)
            return
        if proto.phase is Phase.HTTP2:
            await serve_http2(server, transport, remote, proto.buffered, handler,
                              secure=transport.secure)
            return
        ws, watchers = start_connection(server, transport, proto, remote=remote, nursery=nursery,
                               flusher=flusher, recorder=recorder)
        if contexts:
            ws.context = contexts[-1]
        await run_handler(server, ws, handler, watchers=watchers, started=started,
                          recorder=recorder)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        logger.info("%s connection lost: %s", fmt_remote(remote), exc.__cause__ or exc)
        server.count_error("connection_lost")
    except Exception:
        logger.exception("%s connection failed", fmt_remote(remote))
        server.count_error("internal")
    finally:
        server.active -= 1
        await transport.aclose()
        if recorder is not None:
            await recorder.save()


async def _open(
    transport: Transport, server: Server, remote: tuple[str, int] | None,
    contexts: list[object],
) -> tuple[ServerConnection | None, Transport, tuple[str, int] | None]:
    """The WebSocket handshake, behind a TLS handshake when the client starts with one.

    Returns the open protocol connection (None when there is none), the transport the
    connection continues on (a TLS one for wss clients) and the client's address (the
    one a PROXY protocol header gave, with ``proxy_protocol``).
    """
    options = server.options
    proto = await _handshake(transport, server, remote, contexts, secure=False)
    if proto is not None and proto.proxied is not None:
        remote = proto.proxied
    if proto is None or proto.phase is not Phase.TLS:
        return proto, transport, remote
    if options.ssl_context is None:
        logger.info("%s TLS client on a plain port: closed", fmt_remote(remote))
        return None, transport, remote
    tls = trio.SSLStream(PrefixedStream(transport.stream, proto.buffered),
                         options.ssl_context, server_side=True)
    try:
        with trio.fail_after(options.tls_handshake_timeout):
            await tls.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError) as exc:
        logger.info("%s TLS handshake failed: %s", fmt_remote(remote), exc.__cause__ or exc)
        server.count_error("tls_handshake")
        return None, transport, remote
    secure = Transport(tls)
    if tls.selected_alpn_protocol() == "h2" and options.http2:
        proto = ServerConnection(options.settings, secure=True)
        proto.http2_negotiated()
        return proto, secure, remote
    proto = await _handshake(secure, server, remote, contexts, secure=True)
    if proto is not None and proto.phase is Phase.TLS:
        proto = None  # TLS inside TLS
    return proto, secure, remote


async def _handshake(
    transport: Transport, server: Server, remote: tuple[str, int] | None,
    contexts: list[object], *, secure: bool,
) -> ServerConnection | None:
    """Drive a protocol connection through its handshake: the open connection, one in
    phase TLS (its ``buffered`` bytes are the ClientHello's start), or None."""
    options = server.options
    proto = ServerConnection(options.settings, secure=secure)
    while True:
        if proto.proxied is not None:
            remote = proto.proxied
        if proto.phase is Phase.DECIDE:
            await decide(proto, server, remote, contexts)
        elif proto.phase is Phase.PLAIN:
            answer_plain(proto, server)
        out = proto.data_to_send()
        if out:
            await transport.send_all(out)
        phase = proto.phase
        if phase is Phase.OPEN or phase is Phase.CLOSING or phase is Phase.CLOSED:
            return proto
        if phase is Phase.TLS or phase is Phase.HTTP2:
            return proto
        if phase is Phase.REFUSED:
            if proto.proxy_error is not None:  # nothing to answer, nothing to drain
                logger.info("%s %s: closed", fmt_remote(remote), proto.proxy_error)
                server.count_error("proxy_header")
                return None
            refused(proto, server, remote, secure=secure)
            await _linger(transport, options.read_size)
            return None
        if phase is Phase.DECIDE or phase is Phase.PLAIN:
            continue
        data = await transport.receive(options.read_size)
        if not data:
            return None
        proto.receive_data(data)


async def _linger(transport: Transport, read_size: int) -> None:
    """Half-close and drain briefly, so a response is not destroyed by a reset."""
    with trio.move_on_after(REJECT_LINGER):
        try:
            await transport.send_eof()
            while await transport.receive(read_size):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


