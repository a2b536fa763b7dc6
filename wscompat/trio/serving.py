"""What the servers of every generation share: the server's state, the decision on a
handshake, starting an open connection, running its handler, and logging and counting.

The HTTP/1.1 server (:mod:`wscompat.trio.server`) and the HTTP/2 one
(:mod:`wscompat.trio.http2`) both call these, so a WebSocket is decided, started,
closed, logged and counted the same way whichever HTTP carried its handshake.
"""

from __future__ import annotations

import enum
import inspect
import logging
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
from wscompat.protocol.connection import ServerConnection
from wscompat.protocol.http2 import H2ServerStream
from wscompat.protocol.sniff import Kind
from wscompat.trio.connection import Connection, Flusher, IOSettings, Keepalive
from wscompat.trio.streams import fmt_remote
from wscompat.trio.transport import Transport
from wscompat.vectors.recorder import ConnectionRecorder

__all__ = [
    "BUSY_RETRY", "REJECT_LINGER", "Handler", "Server", "State", "answer_plain", "decide",
    "ended", "not_opened", "refused", "run_handler", "start_connection",
]

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
    keepalive_inherited: bool = False
    """The listening sockets carry ``tcp_keepalive``'s timers: accepted connections
    inherit them and need only the switch turned on."""
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


async def run_handler(
    server: Server, ws: Connection, handler: Handler, *,
    watchers: list[trio.CancelScope] | None, started: float,
    recorder: ConnectionRecorder | None,
) -> None:
    """Run the handler; then close the connection (1000, 1011 if the handler failed,
    1001 on shutdown), wait for its reader, and log and count it."""
    options = server.options
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
        ended(server, ws, started, recorder)


def start_connection(
    server: Server, transport: Transport, proto: ServerConnection | H2ServerStream, *,
    remote: tuple[str, int] | None, nursery: trio.Nursery, flusher: Flusher | None,
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
        server.metrics.opened(ws.generation, transport.secure)
    if server.options.log_open:
        _log_open(ws, query=server.options.log_query)
    if server.options.tcp_keepalive is not None and not ws.caps.ping:
        transport.keep_alive(server.options.tcp_keepalive,  # hixie: no ping to tell
                             timers=not server.keepalive_inherited)
    ws.start_reading(nursery)
    return ws, _start_watchers(ws, server, nursery, sync=transport.sync)


def ended(
    server: Server, ws: Connection, started: float, recorder: ConnectionRecorder | None
) -> None:
    server.connections.discard(ws)
    if server.metrics is not None:
        server.metrics.closed(ws, ws.stats, ws.close_code, ws.stats.closed_by, ws.secure)
    _log_connection(ws, started, query=server.options.log_query)
    if recorder is not None:
        recorder.closed(ws.close_code)


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


async def decide(
    proto: ServerConnection | H2ServerStream, server: Server, remote: tuple[str, int] | None,
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


async def not_opened(
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


def answer_plain(proto: ServerConnection | H2ServerStream, server: Server) -> None:
    """The health check, or the metrics: plain requests the server answers itself."""
    assert proto.request is not None
    path = proto.request.target.partition("?")[0]
    if path == METRICS_PATH and server.metrics is not None and server.options.metrics:
        server.sync_metrics()
        proto.respond(200, server.metrics.exposition(), METRICS_CONTENT_TYPE)
    else:
        proto.answer_health(serving=server.state is State.SERVING)


def refused(
    proto: ServerConnection | H2ServerStream, server: Server,
    remote: tuple[str, int] | None, *, secure: bool,
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


def _log_refusal(
    proto: ServerConnection | H2ServerStream, remote: tuple[str, int] | None, *, query: bool
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
        "draft": ws.generation,
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

