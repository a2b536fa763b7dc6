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

import enum
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
from wscompat.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from wscompat.metrics import Metrics
from wscompat.options import METRICS_PATH, Acceptance, Rejection, ServerOptions
from wscompat.protocol.connection import Phase, ServerConnection
from wscompat.protocol.sniff import Kind
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

__all__ = ["Handler", "Server", "State", "open_listeners", "serve", "serve_policy"]

logger = logging.getLogger("wscompat.server")

Handler = Callable[[Connection], Awaitable[None]]
REJECT_LINGER = 1.0
"""Seconds to drain input after an error response, so the kernel does not reset it."""
METRICS_SYNC = 5.0
"""Seconds between two additions of open connections' traffic to the metrics."""
BUSY_RETRY = (("Retry-After", "5"),)


class State(enum.Enum):
    """Where a server is in its life; the health check answers 200 only while SERVING."""

    SERVING = "serving"
    DRAINING = "draining"
    """Shutting down, ``drain_time`` not over: all is served, the health check says 503."""
    CLOSING = "closing"
    """Connections are being closed; a new one is answered 503."""
    CLOSED = "closed"


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
    metrics: Metrics | None = None
    """Where events are counted, when metrics are on."""
    state: State = State.SERVING
    _scope: trio.CancelScope | None = field(default=None, repr=False)
    _closed: trio.Event = field(default_factory=trio.Event, repr=False)

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

    async def shutdown(self) -> None:
        """Stop gracefully and return once every connection is gone.

        For ``drain_time`` seconds the health check answers 503 while everything is still
        served, so a load balancer takes the server out first; then each connection is
        closed the way its draft closes (1001, ``0xFF 0x00`` or a TCP close) within
        ``close_timeout``, while new connections get 503 and the health check still
        answers (503) until the last one is gone. Calling it again just waits.
        """
        if self.state is State.SERVING:
            self.state = State.DRAINING
            drain = self.options.drain_time
            logger.info("shutting down: %d connections open%s", len(self.connections),
                        f", draining for {drain:g}s" if drain else "")
            if drain:
                await trio.sleep(drain)
            self.state = State.CLOSING
            if self._scope is not None:
                self._scope.cancel()
        await self._closed.wait()

    def count_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(kind).inc()

    def sync_metrics(self) -> None:
        """Add what open connections did since the last sync to the metrics."""
        if self.metrics is not None:
            self.metrics.sync((ws, ws.stats) for ws in self.connections)

    async def _sync_metrics_forever(self) -> None:
        while True:
            await trio.sleep(METRICS_SYNC)
            self.sync_metrics()


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
    socks = await bind_listeners(host, port, reuse_port=options.reuse_port)
    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]
    metrics = metrics_store
    if metrics is None and options.metrics:
        metrics = Metrics()
    server = Server(listeners, options, metrics=metrics)
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
        with trio.move_on_after(options.handshake_timeout) as deadline:
            proto, transport = await _open(transport, server, remote, contexts)
        if deadline.cancelled_caught or proto is None:
            await _not_opened(server, remote, transport, contexts,
                              timed_out=deadline.cancelled_caught)
            return
        ws, watchers = _start(server, transport, proto, remote=remote, nursery=nursery,
                               flusher=flusher, recorder=recorder)
        if contexts:
            ws.context = contexts[-1]
        code, reason = 1000, ""
        try:
            await handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("%s handler failed on %s", fmt_remote(ws.remote),
                             logfields.path(ws.path, query=options.log_query))
            server.count_error("handler")
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
        server.count_error("connection_lost")
    except Exception:
        logger.exception("%s connection failed", fmt_remote(remote))
        server.count_error("internal")
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
    if server.metrics is not None:
        server.metrics.opened(str(ws.draft), transport.secure)
    if server.options.log_open:
        _log_open(ws, query=server.options.log_query)
    if server.options.tcp_keepalive is not None and not ws.caps.ping:
        transport.keep_alive(server.options.tcp_keepalive)  # hixie: no ping to tell
    nursery.start_soon(ws.run_reader)
    return ws, _start_watchers(ws, server, nursery, sync=transport.sync)


def _ended(
    server: Server, ws: Connection, started: float, recorder: ConnectionRecorder | None
) -> None:
    server.connections.discard(ws)
    if server.metrics is not None:
        server.metrics.closed(ws, ws.stats, ws.close_code, ws.stats.closed_by, ws.secure)
    _log_connection(ws, started, query=server.options.log_query)
    if recorder is not None:
        recorder.closed(ws.close_code)


async def _open(
    transport: Transport, server: Server, remote: tuple[str, int] | None,
    contexts: list[object],
) -> tuple[ServerConnection | None, Transport]:
    """The WebSocket handshake, behind a TLS handshake when the client starts with one.

    Returns the open protocol connection (None when there is none) and the transport
    the connection continues on: a TLS one for wss clients.
    """
    options = server.options
    proto = await _handshake(transport, server, remote, contexts, secure=False)
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
        server.count_error("tls_handshake")
        return None, transport
    secure = Transport(tls)
    proto = await _handshake(secure, server, remote, contexts, secure=True)
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
    transport: Transport, server: Server, remote: tuple[str, int] | None,
    contexts: list[object], *, secure: bool,
) -> ServerConnection | None:
    """Drive a protocol connection through its handshake: the open connection, one in
    phase TLS (its ``buffered`` bytes are the ClientHello's start), or None."""
    options = server.options
    proto = ServerConnection(options.settings, secure=secure)
    while True:
        if proto.phase is Phase.DECIDE:
            await _decide(proto, server, remote, contexts)
        elif proto.phase is Phase.PLAIN:
            _answer_plain(proto, server)
        out = proto.data_to_send()
        if out:
            await transport.send_all(out)
        phase = proto.phase
        if phase is Phase.OPEN or phase is Phase.CLOSING or phase is Phase.CLOSED:
            return proto
        if phase is Phase.TLS:
            return proto
        if phase is Phase.REFUSED:
            _refused(proto, server, remote, secure=secure)
            await _linger(transport, options.read_size)
            return None
        if phase is Phase.DECIDE or phase is Phase.PLAIN:
            continue
        data = await transport.receive(options.read_size)
        if not data:
            return None
        proto.receive_data(data)


async def _decide(
    proto: ServerConnection, server: Server, remote: tuple[str, int] | None,
    contexts: list[object],
) -> None:
    options = server.options
    if server.state is State.CLOSING:
        proto.reject(503, "server shutting down, try again later", BUSY_RETRY)
        return
    limit = options.max_connections
    if limit is not None and server.active > limit:
        # Refused only now that the request is read: a client sees the status, where a
        # 503 written before its request reads to it as a broken handshake.
        logger.warning("%s refused: %d connections already", fmt_remote(remote), limit)
        proto.reject(503, "too many connections, try again later", BUSY_RETRY)
        return
    upgrade = proto.upgrade_request(remote)
    if options.process_request is not None:
        verdict = options.process_request(upgrade)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if isinstance(verdict, Rejection):
            proto.reject(verdict.status, verdict.reason)
            return
        if isinstance(verdict, Acceptance):
            if verdict.context is not None:
                contexts.append(verdict.context)
            if verdict.subprotocol is not None:
                proto.accept(verdict.subprotocol)
                return
    proto.accept(proto.choose_subprotocol(upgrade))


async def _not_opened(
    server: Server, remote: tuple[str, int] | None, transport: Transport,
    contexts: list[object], *, timed_out: bool,
) -> None:
    """A connection whose handshake did not complete: say why, free what it left."""
    if timed_out:
        logger.info("%s handshake timed out", fmt_remote(remote))
        if server.metrics is not None:
            server.metrics.refused(None, "timeout", transport.secure)
    await _close_contexts(contexts)


async def _close_contexts(contexts: list[object]) -> None:
    """Close what an Acceptance handed over when no handler will receive it."""
    for context in contexts:
        aclose = getattr(context, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(REJECT_LINGER):
                try:
                    await aclose()
                except Exception:
                    logger.exception("closing a context the handshake left behind")


def _answer_plain(proto: ServerConnection, server: Server) -> None:
    """The health check, or the metrics: plain requests the server answers itself."""
    assert proto.request is not None
    path = proto.request.target.partition("?")[0]
    if path == METRICS_PATH and server.metrics is not None and server.options.metrics:
        server.sync_metrics()
        proto.respond(200, server.metrics.exposition(), METRICS_CONTENT_TYPE)
    else:
        proto.answer_health(serving=server.state is State.SERVING)


def _refused(
    proto: ServerConnection, server: Server, remote: tuple[str, int] | None, *, secure: bool
) -> None:
    """Count and log a connection that ends without an upgrade."""
    metrics = server.metrics
    query = server.options.log_query
    request = proto.request
    if proto.rejection is None and request is not None:  # a health check or the metrics
        if metrics is not None:
            metrics.plain.labels(request.target.partition("?")[0]).inc()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s %s answered", fmt_remote(remote), request.method,
                         logfields.path(request.target, query=query))
        return
    if metrics is not None:
        if proto.kind is Kind.POLICY:
            metrics.policy.labels("websocket").inc()
        elif proto.rejection is not None:
            if proto.draft is None and proto.rejection.status == 426 and request:
                metrics.plain.labels("other").inc()
            else:
                metrics.refused(proto.draft and str(proto.draft),
                                str(proto.rejection.status), secure)
    _log_refusal(proto, remote, query=query)


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
    """One line per connection that opened; what the peer sent is escaped and cut. The
    same values go to the record's ``fields`` for ``--log-format json``."""
    if not logger.isEnabledFor(logging.INFO):
        return  # its arguments alone cost a few microseconds per connection
    fields = _connection_fields(ws, query=query)
    fields.update(
        duration=round(time.monotonic() - started, 3), bytes_in=ws.stats.bytes_in,
        bytes_out=ws.stats.bytes_out, messages_in=ws.stats.messages_in,
        messages_out=ws.stats.messages_out, close=ws.close_code,
        closed_by=ws.stats.closed_by or None,
    )
    logger.info(
        "%s %s %s %s origin=%s %.3fs in=%d out=%d close=%s by=%s ext=%s proto=%s ua=%s",
        fields["remote"], fields["path"], fields["draft"], fields["transport"],
        fields["origin"], fields["duration"], fields["bytes_in"], fields["bytes_out"],
        ws.close_code, ws.stats.closed_by or "-", fields["extensions"],
        fields["subprotocol"], _quoted(fields["user_agent"]),
        extra={"event": "closed", "fields": fields},
    )


def _log_open(ws: Connection, *, query: bool) -> None:
    """The optional line when a connection opens (``log_open``)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = _connection_fields(ws, query=query)
    logger.info(
        "%s %s %s %s opened origin=%s ext=%s proto=%s ua=%s",
        fields["remote"], fields["path"], fields["draft"], fields["transport"],
        fields["origin"], fields["extensions"], fields["subprotocol"],
        _quoted(fields["user_agent"]), extra={"event": "opened", "fields": fields},
    )


def _connection_fields(ws: Connection, *, query: bool) -> dict[str, Any]:
    return {
        "remote": fmt_remote(ws.remote),
        "path": logfields.path(ws.path, query=query),
        "draft": str(ws.draft),
        "transport": "tls" if ws.secure else "plain",
        "origin": logfields.field(ws.origin or None),
        "extensions": logfields.field((ws.extensions or "-").replace(" ", "")),
        "subprotocol": logfields.field(ws.subprotocol),
        "user_agent": logfields.field(ws.headers.get("User-Agent"), UA_MAX),
    }


UA_MAX = 120
"""Characters of the user agent kept in a log line."""


def _quoted(value: str) -> str:
    """A field that may hold spaces, in double quotes (a quote inside escaped); ``-``
    for none."""
    if value == "-":
        return value
    return '"' + value.replace('"', "\\x22") + '"'
