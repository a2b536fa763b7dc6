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

import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from wscompat import logfields
from wscompat.errors import ConnectionClosed
from wscompat.options import Rejection, ServerOptions
from wscompat.protocol.connection import Phase, ServerConnection
from wscompat.protocol.http import error_response
from wscompat.trio.connection import Connection, Flusher, IOSettings, Keepalive
from wscompat.trio.policy import serve_policy
from wscompat.trio.streams import (
    PrefixedStream,
    accept_loop,
    bind_listeners,
    fmt_remote,
    open_listeners,
)
from wscompat.trio.transport import Transport
from wscompat.vectors.recorder import ConnectionRecorder, recorder_for

__all__ = ["Handler", "Server", "open_listeners", "serve", "serve_policy"]

logger = logging.getLogger("wscompat.server")

Handler = Callable[[Connection], Awaitable[None]]
REJECT_LINGER = 1.0
"""Seconds to drain input after an error response, so the kernel does not reset it."""


@dataclass
class Server:
    """A running server, as given to ``nursery.start(serve, ...)``."""

    listeners: list[trio.SocketListener]
    options: ServerOptions
    connections: set[Connection] = field(default_factory=set)
    keepalive: Keepalive | None = None
    """The server's keepalive pinger, when ``ping_interval`` is set."""
    active: int = 0
    """Connections being served, handshakes included (``max_connections`` bounds it)."""

    def __post_init__(self) -> None:
        options = self.options
        self.io = IOSettings(
            max_queue=options.max_queue,
            max_queue_bytes=options.max_queue_bytes,
            close_timeout=options.close_timeout,
            read_size=options.read_size,
            write_limit=options.write_limit,
            log_payloads=options.log_payloads,
        )

    @property
    def port(self) -> int:
        return int(self.listeners[0].socket.getsockname()[1])

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        return [tuple(listener.socket.getsockname()) for listener in self.listeners]


async def serve(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 8080,
    *,
    options: ServerOptions | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **kwargs: Any,
) -> None:
    """Serve ``handler`` on ``host:port`` until cancelled. ``host=None`` listens on all
    interfaces, IPv4 and IPv6. Keyword arguments are :class:`ServerOptions` fields."""
    if kwargs:
        unknown = set(kwargs) - ServerOptions.names()
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
        base = options or ServerOptions()
        options = ServerOptions(**{**_as_dict(base), **kwargs})
    options = options or ServerOptions()
    socks = await bind_listeners(host, port)
    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]
    server = Server(listeners, options)
    for address in server.addresses:
        logger.info("listening on %s port %s", address[0], address[1])
    try:
        async with trio.open_nursery() as connections:
            flusher = Flusher(connections)
            connections.start_soon(flusher.run)
            if options.ping_interval is not None:
                server.keepalive = Keepalive(connections, options.ping_interval,
                                             options.ping_timeout)
                connections.start_soon(server.keepalive.run)
            serve_one = partial(_serve_connection, server, handler, nursery=connections,
                                flusher=flusher)

            def spawn(sock: socket.socket, remote: tuple[str, int] | None) -> None:
                connections.start_soon(serve_one, sock, remote)

            for sock in socks:
                connections.start_soon(accept_loop, sock, spawn)
            task_status.started(server)
    finally:
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
    try:
        if options.max_connections is not None and server.active > options.max_connections:
            logger.warning("%s refused: %d connections already", fmt_remote(remote),
                           options.max_connections)
            await _send_and_linger(transport, BUSY, options.read_size)
            return
        with trio.move_on_after(options.handshake_timeout) as deadline:
            proto, transport = await _open(transport, options, remote)
        if deadline.cancelled_caught:
            logger.info("%s handshake timed out", fmt_remote(remote))
            return
        if proto is None:
            return
        ws, watchers = _start(server, transport, proto, remote=remote, nursery=nursery,
                               flusher=flusher, recorder=recorder)
        code, reason = 1000, ""
        try:
            await handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("%s handler failed on %s", fmt_remote(ws.remote),
                             logfields.path(ws.path, query=options.log_query))
            code, reason = 1011, "internal error"
        except BaseException:
            code, reason = 1001, "server shutting down"
            raise
        finally:
            for watcher in watchers or ():
                watcher.cancel()
            # Shielded so a shutdown still closes cleanly; both steps bound their own time.
            await ws.close(code, reason, shield=True)
            await ws.wait_reader(options.close_timeout, shield=True)
            _ended(server, ws, started, recorder)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        logger.info("%s connection lost: %s", fmt_remote(remote), exc.__cause__ or exc)
    except Exception:
        logger.exception("%s connection failed", fmt_remote(remote))
    finally:
        server.active -= 1
        await transport.aclose()
        if recorder is not None:
            await recorder.save()


def _start(
    server: Server, transport: Transport, proto: ServerConnection, *,
    remote: tuple[str, int] | None, nursery: trio.Nursery, flusher: Flusher,
    recorder: ConnectionRecorder | None,
) -> tuple[Connection, list[trio.CancelScope] | None]:
    """The open connection, its reader started and its watchers, if any."""
    accepted = proto.accepted
    assert accepted is not None
    if recorder is not None:
        recorder.opened(accepted.draft, accepted.leftover)
    ws = Connection(
        transport,
        proto,
        accepted.request,
        subprotocol=accepted.subprotocol,
        extensions=accepted.extensions,
        remote=remote,
        settings=server.io,
        flusher=flusher if transport.sync else None,
    )
    server.connections.add(ws)
    if server.options.tcp_keepalive is not None and not ws.caps.ping:
        transport.keep_alive(server.options.tcp_keepalive)  # hixie: no ping to tell
    nursery.start_soon(ws.run_reader)
    return ws, _start_watchers(ws, server, nursery, sync=transport.sync)


def _ended(
    server: Server, ws: Connection, started: float, recorder: ConnectionRecorder | None
) -> None:
    server.connections.discard(ws)
    _log_connection(ws, started, query=server.options.log_query)
    if recorder is not None:
        recorder.closed(ws.close_code)


BUSY = error_response(503, "too many connections, try again later", (("Retry-After", "5"),))


async def _open(
    transport: Transport, options: ServerOptions, remote: tuple[str, int] | None
) -> tuple[ServerConnection | None, Transport]:
    """The WebSocket handshake, behind a TLS handshake when the client starts with one.

    Returns the open protocol connection (None when there is none) and the transport
    the connection continues on: a TLS one for wss clients.
    """
    proto = await _handshake(transport, options, remote, secure=False)
    if proto is None or proto.phase is not Phase.TLS:
        return proto, transport
    if options.ssl_context is None:
        logger.info("%s TLS client on a plain port: closed", fmt_remote(remote))
        return None, transport
    tls = trio.SSLStream(PrefixedStream(transport.stream, proto.buffered),
                         options.ssl_context, server_side=True)
    try:
        with trio.fail_after(options.tls_handshake_timeout):
            await tls.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError) as exc:
        logger.info("%s TLS handshake failed: %s", fmt_remote(remote), exc.__cause__ or exc)
        return None, transport
    secure = Transport(tls)
    proto = await _handshake(secure, options, remote, secure=True)
    if proto is not None and proto.phase is Phase.TLS:
        proto = None  # TLS inside TLS
    return proto, secure


def _start_watchers(
    ws: Connection, server: Server, nursery: trio.Nursery, *, sync: bool
) -> list[trio.CancelScope] | None:
    """Keepalive pings and the idle timeout, when configured. A plain connection is
    pinged by the server's one :class:`Keepalive` task; the others (TLS) and the idle
    timeout get a task of their own, each with its own cancel scope (a scope serves one
    ``with`` block only)."""
    options = server.options
    tasks: list[Callable[[], Awaitable[None]]] = []
    if options.ping_interval is not None and ws.caps.ping:
        if sync and server.keepalive is not None:
            server.keepalive.add(ws)
        else:
            tasks.append(partial(ws.keepalive, options.ping_interval, options.ping_timeout))
    if options.idle_timeout is not None:
        tasks.append(partial(ws.close_when_idle, options.idle_timeout))
    if not tasks:
        return None
    scopes = []
    for task in tasks:
        scope = trio.CancelScope()
        nursery.start_soon(_in_scope, scope, task)
        scopes.append(scope)
    return scopes


async def _in_scope(scope: trio.CancelScope, task: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await task()


async def _handshake(
    transport: Transport, options: ServerOptions, remote: tuple[str, int] | None,
    *, secure: bool,
) -> ServerConnection | None:
    """Drive a protocol connection through its handshake: the open connection, one in
    phase TLS (its ``buffered`` bytes are the ClientHello's start), or None."""
    proto = ServerConnection(options.settings, secure=secure)
    while True:
        if proto.phase is Phase.DECIDE:
            await _decide(proto, options, remote)
        out = proto.data_to_send()
        if out:
            await transport.send_all(out)
        phase = proto.phase
        if phase is Phase.OPEN or phase is Phase.CLOSING or phase is Phase.CLOSED:
            return proto
        if phase is Phase.TLS:
            return proto
        if phase is Phase.REFUSED:
            _log_refusal(proto, remote, query=options.log_query)
            await _linger(transport, options.read_size)
            return None
        if phase is Phase.DECIDE:
            continue
        data = await transport.receive(options.read_size)
        if not data:
            return None
        proto.receive_data(data)


async def _decide(
    proto: ServerConnection, options: ServerOptions, remote: tuple[str, int] | None
) -> None:
    upgrade = proto.upgrade_request(remote)
    if options.process_request is not None:
        verdict = options.process_request(upgrade)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if isinstance(verdict, Rejection):
            proto.reject(verdict.status, verdict.reason)
            return
    proto.accept(proto.choose_subprotocol(upgrade))


async def _send_and_linger(transport: Transport, data: bytes, read_size: int) -> None:
    try:
        await transport.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    await _linger(transport, read_size)


async def _linger(transport: Transport, read_size: int) -> None:
    """Half-close and drain briefly, so a response is not destroyed by a reset."""
    with trio.move_on_after(REJECT_LINGER):
        try:
            await transport.send_eof()
            while await transport.receive(read_size):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _log_refusal(
    proto: ServerConnection, remote: tuple[str, int] | None, *, query: bool
) -> None:
    """One line per refused connection; what the peer sent is escaped and cut."""
    target = logfields.path(proto.request.target if proto.request else None, query=query)
    if proto.rejection is not None:
        logger.info(
            "%s %s rejected %d %s", fmt_remote(remote), target, proto.rejection.status,
            logfields.field(proto.rejection.reason),
        )
    else:
        logger.info("%s %s closed after %s", fmt_remote(remote), target,
                    proto.kind.value if proto.kind else "no data")


def _log_connection(ws: Connection, started: float, *, query: bool) -> None:
    """One line per connection that opened; what the peer sent is escaped and cut."""
    if not logger.isEnabledFor(logging.INFO):
        return  # its arguments alone cost a few microseconds per connection
    logger.info(
        "%s %s %s origin=%s %.3fs in=%d out=%d close=%s by=%s ext=%s",
        fmt_remote(ws.remote), logfields.path(ws.path, query=query), ws.draft,
        logfields.field(ws.origin or None), time.monotonic() - started, ws.stats.bytes_in,
        ws.stats.bytes_out, ws.close_code, ws.stats.closed_by or "-",
        logfields.field((ws.extensions or "-").replace(" ", "")),
    )
