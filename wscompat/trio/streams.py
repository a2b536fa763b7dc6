"""Stream and socket helpers for the trio layer: listeners, peer addresses, prefixes."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable

import trio

__all__ = [
    "PrefixedStream", "accept_loop", "bind_listeners", "fmt_remote", "open_listeners",
    "remote_of",
]

logger = logging.getLogger("wscompat.server")

BACKLOG = 0xFFFF
"""Listen backlog asked for; the kernel caps it at ``net.core.somaxconn``."""
ACCEPT_BATCH = 64
"""Connections accepted per wake-up before other tasks get a turn."""
ACCEPT_BACKOFF = 0.1
"""Seconds to pause accepting when the process or system is out of descriptors."""
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_CLIENT_GONE = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


class PrefixedStream(trio.abc.Stream):
    """A stream that first gives back bytes already read from it.

    The sniffer has to read a TLS ClientHello's first bytes to recognise it; the TLS
    layer then needs to see them again, so they are put in front of the stream.
    """

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return chunk
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def serve_side_port(
    handle: Callable[[trio.SocketStream], Awaitable[None]],
    listeners: list[trio.SocketListener],
    what: str,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a small port beside the WebSocket one (the policy file, the metrics): each
    connection is handled, then closed whatever happened; a peer that breaks the
    connection is no error. Logs where it listens as "``what`` on HOST port PORT"."""

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    for listener in listeners:
        address = listener.socket.getsockname()
        logger.info("%s on %s port %s", what, address[0], address[1])
    await trio.serve_listeners(guarded, listeners, task_status=task_status)


async def open_listeners(
    host: str | None, port: int, *, reuse_port: bool = False
) -> list[trio.SocketListener]:
    """trio listeners on every address of ``host``, all on one port (see
    :func:`bind_listeners`)."""
    return [
        trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        for sock in await bind_listeners(host, port, reuse_port=reuse_port)
    ]


async def bind_listeners(
    host: str | None, port: int, *, reuse_port: bool = False, listen: bool = True
) -> list[socket.socket]:
    """Non-blocking listening sockets on every address of ``host`` (``None``: all
    interfaces), all on one port even when ``port`` is 0, where each address family
    would otherwise get a free port of its own.

    ``reuse_port`` sets SO_REUSEPORT, so that several processes (of the same user) each
    listen on the port and the kernel spreads connections over them; ``listen=False``
    only binds, which reserves the port for such processes without taking connections.
    """
    for _ in range(5):
        socks = await _bind_all(host, port, reuse_port=reuse_port, listen=listen)
        if port != 0 or len({sock.getsockname()[1] for sock in socks}) == 1:
            return socks
        chosen = socks[0].getsockname()[1]
        for sock in socks:
            sock.close()
        try:
            return await _bind_all(host, chosen, reuse_port=reuse_port, listen=listen)
        except OSError:
            continue  # taken in between by someone else: pick again
    raise OSError("could not find one free port for every address family")


async def _bind_all(
    host: str | None, port: int, *, reuse_port: bool, listen: bool
) -> list[socket.socket]:
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    socks: list[socket.socket] = []
    unsupported: list[OSError] = []
    try:
        for family, kind, proto, _, address in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno != errno.EAFNOSUPPORT:
                    raise
                unsupported.append(exc)  # e.g. IPv6 disabled in this kernel
                continue
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            if listen:
                sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    if not socks:
        raise OSError(f"no address family of {host!r} is supported here: {unsupported}")
    return socks


async def accept_loop(
    listener: socket.socket, spawn: Callable[[socket.socket, tuple[str, int] | None], None]
) -> None:
    """Accept connections forever, handing each non-blocking socket with its peer's
    address to ``spawn``.

    Up to ``ACCEPT_BATCH`` connections are taken per wake-up with no scheduler trip
    between them. Out of descriptors (EMFILE and the like), it logs, pauses
    ``ACCEPT_BACKOFF`` seconds and tries again: the clients wait in the kernel's
    backlog meanwhile, and the server lives on.
    """
    while True:
        await trio.lowlevel.wait_readable(listener)
        for _ in range(ACCEPT_BATCH):
            failure: OSError | None = None
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _CLIENT_GONE:
                    continue
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                failure = exc
            if failure is not None:
                logger.error("accept failed: %s (%s); retrying in %.1f s",
                             errno.errorcode.get(failure.errno or 0, "?"), failure,
                             ACCEPT_BACKOFF)
                await trio.sleep(ACCEPT_BACKOFF)
                break
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                sock.close()  # reset before we could set it up: nothing to serve
                continue
            spawn(sock, _address(address))


def _address(address: object) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None


def remote_of(stream: trio.abc.Stream) -> tuple[str, int] | None:
    sock = getattr(stream, "socket", None)
    try:
        peer = sock.getpeername() if sock is not None else None
    except OSError:
        return None
    return (str(peer[0]), int(peer[1])) if peer else None


def fmt_remote(remote: tuple[str, int] | None) -> str:
    if remote is None:
        return "-"
    host, port = remote
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
