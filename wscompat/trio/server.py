"""The trio server: accept, sniff and handshake, then run the handler beside a reader.

Each connection runs in its own task, its handshake under ``handshake_timeout``. A
handler that raises closes only its own connection (1011) and is logged; cancelling
:func:`serve` closes every open connection with 1001 (or its draft's equivalent) within
``close_timeout``. Listening sockets use trio's accept loop, which backs off instead of
crashing when file descriptors run out.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from wscompat.errors import ConnectionClosed
from wscompat.options import (
    Rejection,
    ServerOptions,
    UpgradeRequest,
    choose_subprotocol,
    make_framer,
)
from wscompat.protocol.handshake import Accepted, Phase, ServerHandshake
from wscompat.protocol.http import error_response
from wscompat.protocol.policy import DEFAULT_POLICY, policy_response
from wscompat.protocol.sniff import Kind, sniff
from wscompat.trio.connection import Connection
from wscompat.trio.streams import PrefixedStream
from wscompat.vectors.recorder import recorder_for

__all__ = ["Handler", "Server", "serve", "serve_policy"]

logger = logging.getLogger("wscompat.trio.server")

Handler = Callable[[Connection], Awaitable[None]]
REJECT_LINGER = 1.0
"""Seconds to drain input after an error response, so the kernel does not reset it."""
POLICY_TIMEOUT = 5.0
"""Seconds a client of the policy port has to send its request."""


@dataclass
class Server:
    """A running server, as given to ``nursery.start(serve, ...)``."""

    listeners: list[trio.SocketListener]
    options: ServerOptions
    connections: set[Connection] = field(default_factory=set)
    active: int = 0
    """Connections being served, handshakes included (``max_connections`` bounds it)."""

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
    listeners = await _open_listeners(host, port)
    server = Server(listeners, options)
    for address in server.addresses:
        logger.info("listening on %s port %s", address[0], address[1])
    async with trio.open_nursery() as connections:
        await connections.start(
            partial(trio.serve_listeners, partial(_serve_one, server, handler), listeners,
                    handler_nursery=connections)
        )
        task_status.started(server)


async def serve_policy(
    host: str | None = "127.0.0.1",
    port: int = 843,
    policy: str = DEFAULT_POLICY,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer Flash socket policy requests on a port of their own (843 is where Flash
    asks first); anything else is closed unanswered."""
    listeners = await _open_listeners(host, port)
    answer = policy_response(policy)

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        try:
            with trio.move_on_after(POLICY_TIMEOUT):
                while sniff(data) is Kind.NEED_MORE:
                    chunk = await stream.receive_some(64)
                    if not chunk:
                        return
                    data += chunk
                if sniff(data) is Kind.POLICY:
                    await stream.send_all(answer)
                    logger.debug("%s policy file sent", _fmt(_remote(stream)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    for listener in listeners:
        address = listener.socket.getsockname()
        logger.info("policy file on %s port %s", address[0], address[1])
    await trio.serve_listeners(handle, listeners, task_status=task_status)


async def _open_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """Listeners on every address of ``host``, all on one port even when ``port`` is 0
    (trio would otherwise pick a different free port per address family)."""
    for _ in range(5):
        listeners = await trio.open_tcp_listeners(port, host=host)
        ports = {listener.socket.getsockname()[1] for listener in listeners}
        if port != 0 or len(ports) == 1:
            return listeners
        chosen = listeners[0].socket.getsockname()[1]
        for listener in listeners:
            await listener.aclose()
        try:
            return await trio.open_tcp_listeners(chosen, host=host)
        except OSError:
            continue  # taken in between by someone else: pick again
    raise OSError("could not find one free port for every address family")


def _as_dict(options: ServerOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in ServerOptions.names()}


def _remote(stream: trio.abc.Stream) -> tuple[str, int] | None:
    sock = getattr(stream, "socket", None)
    try:
        peer = sock.getpeername() if sock is not None else None
    except OSError:
        return None
    return (str(peer[0]), int(peer[1])) if peer else None


async def _serve_one(server: Server, handler: Handler, stream: trio.abc.Stream) -> None:
    """One connection, whatever happens to it: nothing it raises reaches the accept loop,
    whose nursery every other connection shares."""
    try:
        await _serve_connection(server, handler, stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        logger.info("%s connection lost: %s", _fmt(_remote(stream)), exc.__cause__ or exc)
    except Exception:
        logger.exception("%s connection failed", _fmt(_remote(stream)))


async def _serve_connection(server: Server, handler: Handler, stream: trio.abc.Stream) -> None:
    options = server.options
    remote = _remote(stream)
    started = time.monotonic()
    recorder = recorder_for(options)
    if recorder is not None:
        stream = recorder.wrap(stream)
    server.active += 1
    try:
        if options.max_connections is not None and server.active > options.max_connections:
            logger.warning("%s refused: %d connections already", _fmt(remote),
                           options.max_connections)
            await _send_and_linger(stream, BUSY, options.read_size)
            return
        with trio.move_on_after(options.handshake_timeout) as deadline:
            accepted, stream = await _open(stream, options, remote)
        if deadline.cancelled_caught:
            logger.info("%s handshake timed out", _fmt(remote))
            return
        if accepted is None:
            return
        if recorder is not None:
            recorder.opened(accepted.draft, accepted.leftover)
        ws = Connection(
            stream,
            make_framer(accepted.draft, options, accepted.negotiated),
            accepted.request,
            subprotocol=accepted.subprotocol,
            extensions=accepted.extensions,
            remote=remote,
            max_queue=options.max_queue,
            close_timeout=options.close_timeout,
            read_size=options.read_size,
            leftover=accepted.leftover,
            log_payloads=options.log_payloads,
        )
        server.connections.add(ws)
        try:
            await _run(ws, handler, options)
        finally:
            server.connections.discard(ws)
            _log_connection(ws, started)
            if recorder is not None:
                recorder.closed(ws.close_code)
    finally:
        server.active -= 1
        await trio.aclose_forcefully(stream)
        if recorder is not None:
            recorder.save()


BUSY = error_response(503, "too many connections, try again later", (("Retry-After", "5"),))


async def _open(
    stream: trio.abc.Stream, options: ServerOptions, remote: tuple[str, int] | None
) -> tuple[Accepted | None, trio.abc.Stream]:
    """The WebSocket handshake, behind a TLS handshake when the client starts with one.

    Returns the stream the connection continues on: the TLS stream for wss clients.
    """
    accepted, tls_prefix = await _handshake(stream, options, remote, secure=False)
    if tls_prefix is None:
        return accepted, stream
    if options.ssl_context is None:
        logger.info("%s TLS client on a plain port: closed", _fmt(remote))
        return None, stream
    tls = trio.SSLStream(PrefixedStream(stream, tls_prefix), options.ssl_context,
                         server_side=True)
    try:
        with trio.fail_after(options.tls_handshake_timeout):
            await tls.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError) as exc:
        logger.info("%s TLS handshake failed: %s", _fmt(remote), exc.__cause__ or exc)
        return None, stream
    accepted, again = await _handshake(tls, options, remote, secure=True)
    return (None if again is not None else accepted), tls


async def _run(ws: Connection, handler: Handler, options: ServerOptions) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.run_reader)
        watchers = trio.CancelScope()
        if options.ping_interval is not None and ws.caps.ping:
            nursery.start_soon(_in_scope, watchers, partial(
                ws.keepalive, options.ping_interval, options.ping_timeout))
        if options.idle_timeout is not None:
            nursery.start_soon(_in_scope, watchers, partial(
                ws.close_when_idle, options.idle_timeout))
        code, reason = 1000, ""
        try:
            await handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("%s handler failed on %s", _fmt(ws.remote), ws.path)
            code, reason = 1011, "internal error"
        except BaseException:
            code, reason = 1001, "server shutting down"
            raise
        finally:
            watchers.cancel()
            # Shielded so a shutdown still closes cleanly; close() bounds its own time.
            with trio.CancelScope(shield=True):
                await ws.close(code, reason)


async def _in_scope(scope: trio.CancelScope, task: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await task()


async def _handshake(
    stream: trio.abc.Stream, options: ServerOptions, remote: tuple[str, int] | None,
    *, secure: bool,
) -> tuple[Accepted | None, bytes | None]:
    """Run the sans-I/O handshake on a stream: (accepted or None, the bytes already read
    when the client turned out to start a TLS handshake)."""
    hs = ServerHandshake(options.handshake_settings(secure=secure))
    while True:
        if hs.phase is Phase.DECIDE:
            if options.require_tls and not secure:
                hs.reject(403, "TLS required: connect with wss://")
            else:
                await _decide(hs, options, remote)
        out = hs.data_to_send()
        if out:
            await stream.send_all(out)
        if hs.phase is Phase.OPEN:
            return hs.accepted, None
        if hs.phase is Phase.TLS:
            return None, hs.buffered
        if hs.phase is Phase.CLOSE:
            _log_refusal(hs, remote)
            await _linger(stream, options.read_size)
            return None, None
        if hs.phase is Phase.DECIDE:
            continue
        data = await stream.receive_some(options.read_size)
        if not data:
            return None, None
        hs.receive_data(bytes(data))


async def _decide(
    hs: ServerHandshake, options: ServerOptions, remote: tuple[str, int] | None
) -> None:
    assert hs.request is not None and hs.draft is not None
    offered = tuple(hs.offered_subprotocols)
    upgrade = UpgradeRequest(hs.request, hs.draft, remote, offered)
    if options.process_request is not None:
        verdict = options.process_request(upgrade)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if isinstance(verdict, Rejection):
            hs.reject(verdict.status, verdict.reason)
            return
    hs.accept(choose_subprotocol(upgrade, options))


async def _send_and_linger(stream: trio.abc.Stream, data: bytes, read_size: int) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    await _linger(stream, read_size)


async def _linger(stream: trio.abc.Stream, read_size: int) -> None:
    """Half-close and drain briefly, so a response is not destroyed by a reset."""
    with trio.move_on_after(REJECT_LINGER):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            while await stream.receive_some(read_size):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _fmt(remote: tuple[str, int] | None) -> str:
    if remote is None:
        return "-"
    host, port = remote
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _log_refusal(hs: ServerHandshake, remote: tuple[str, int] | None) -> None:
    target = hs.request.target if hs.request else "-"
    if hs.rejection is not None:
        logger.info(
            "%s %s rejected %d %s", _fmt(remote), target, hs.rejection.status,
            hs.rejection.reason,
        )
    else:
        logger.info("%s %s closed after %s", _fmt(remote), target, hs.kind.value if hs.kind
                    else "no data")


def _log_connection(ws: Connection, started: float) -> None:
    logger.info(
        "%s %s %s origin=%s %.3fs in=%d out=%d close=%s by=%s ext=%s",
        _fmt(ws.remote), ws.path, ws.draft, ws.origin or "-", time.monotonic() - started,
        ws.stats.bytes_in, ws.stats.bytes_out, ws.close_code, ws.stats.closed_by or "-",
        (ws.extensions or "-").replace(" ", ""),
    )
