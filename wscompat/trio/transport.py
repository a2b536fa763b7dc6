"""The byte stream under a connection, with a synchronous path where the OS gives one.

A plain TCP connection (a non-blocking socket from the server's accept loop, or a
``trio.SocketStream``) is read and written with non-blocking ``os.read`` and
``os.write`` on its descriptor, and waits with ``trio.lowlevel.wait_readable`` /
``wait_writable`` only when the kernel has nothing to give or no room to take: a read
or write that can complete at once costs no trip through the scheduler, which is what
lets a connection answer a burst of messages with one write. Any other stream (TLS,
the recorder's wrapper, memory streams in tests) goes through trio's ``Stream`` API,
and ``try_send`` / ``try_receive`` simply report that they cannot help. A bare socket
gets its ``trio.SocketStream`` only when something asks for :attr:`Transport.stream`
(TLS and the recorder do); a plain connection never pays for one. A
:class:`DirectStream` (an HTTP/2 stream, whose session takes bytes into its buffer
without a wait) offers the same synchronous path, and the transport hands it
``try_send``, ``wait_writable`` and ``wait_readable``.

All closing goes through :meth:`Transport.aclose`, which forgets the descriptor first:
a descriptor number is reused by the kernel as soon as it is closed, so nothing may
touch it afterwards.
"""

from __future__ import annotations

import abc
import contextlib
import os
import socket
from collections.abc import Awaitable

import trio

__all__ = ["DirectStream", "Transport", "keepalive_timers"]

IOV_MAX = 1024
"""Buffers per ``writev`` (POSIX guarantees at least 16; Linux allows 1024)."""


class DirectStream(trio.abc.HalfCloseableStream):
    """A stream with a synchronous write path of its own, as a socket has: bytes are
    taken at once as far as there is room, and a writer waits for room only when
    there is none."""

    @abc.abstractmethod
    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Take what there is room for now; the count taken (0: wait_writable first).
        BrokenResourceError once the stream can carry nothing more."""

    @abc.abstractmethod
    def wait_writable(self) -> Awaitable[None]:
        """Wait until :meth:`try_send` may take something (or would raise)."""

    @abc.abstractmethod
    def wait_readable(self) -> Awaitable[None]:
        """Wait until ``receive_some`` would not wait."""


class Transport:
    __slots__ = ("_closed", "_direct", "_fd", "_sock", "_stream")

    def __init__(self, stream: trio.abc.Stream | socket.socket) -> None:
        self._sock: socket.socket | None = None
        self._stream: trio.abc.Stream | None = None
        self._direct: DirectStream | None = None
        if isinstance(stream, socket.socket):
            self._sock = stream
            self._fd = stream.fileno()
        else:
            self._stream = stream
            self._fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
            if isinstance(stream, DirectStream):
                self._direct = stream
        self._closed = False

    @property
    def stream(self) -> trio.abc.Stream:
        """The connection as a trio stream, made on first use for a bare socket."""
        if self._stream is None:
            assert self._sock is not None
            self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(self._sock))
        return self._stream

    @property
    def sync(self) -> bool:
        """Reads and writes that need no wait can be done without awaiting."""
        return self._fd >= 0 or self._direct is not None

    @property
    def has_socket(self) -> bool:
        """Reads go straight to a socket of its own (no TLS, no HTTP/2 stream, no
        recorder in between): what :meth:`try_receive_into` needs."""
        return self._fd >= 0

    @property
    def secure(self) -> bool:
        """TLS, here or under an HTTP/2 stream (whose ``secure`` says so)."""
        stream = self._stream
        return isinstance(stream, trio.SSLStream) or getattr(stream, "secure", False) is True

    def _check(self) -> int:
        if self._closed:
            raise trio.ClosedResourceError("the connection's transport is closed")
        return self._fd

    # -- receiving ----------------------------------------------------------------------

    def try_receive(self, max_bytes: int) -> bytes | None:
        """Bytes the kernel has now (``b""`` at EOF), or None when a read would block or
        this stream has no synchronous path."""
        fd = self._check()
        if fd < 0:
            return None
        try:
            return os.read(fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(f"read failed: {exc}") from exc

    def try_receive_into(self, buffer: bytearray) -> int | None:
        """Read what the kernel has now into ``buffer``: the count (0 at EOF), or None
        when a read would block or this stream has no synchronous path. No bytes object
        is made for the read: large reads cost no allocation (see Connection._read)."""
        fd = self._check()
        if fd < 0:
            return None
        try:
            return os.readv(fd, (buffer,))
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(f"read failed: {exc}") from exc

    def wait_readable(self) -> Awaitable[None]:
        """Wait until a read would not block (sync transports only). A plain function
        returning trio's awaitable: a parked reader holds no frame of ours for it."""
        fd = self._check()
        if fd < 0 and self._direct is not None:
            return self._direct.wait_readable()
        return trio.lowlevel.wait_readable(fd)

    async def receive(self, max_bytes: int) -> bytes:
        """The next bytes, ``b""`` at EOF."""
        fd = self._check()
        if fd < 0:
            return bytes(await self.stream.receive_some(max_bytes))
        while True:
            data = self.try_receive(max_bytes)
            if data is not None:
                return data
            await trio.lowlevel.wait_readable(self._check())

    # -- sending ------------------------------------------------------------------------

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write what the kernel takes now; the count written (0 without a sync path)."""
        fd = self._check()
        if fd < 0:
            return 0 if self._direct is None else self._direct.try_send(data)
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"write failed: {exc}") from exc

    def try_sendv(self, chunks: list[bytes]) -> int:
        """Like :meth:`try_send` for several buffers, written with one ``writev`` and no
        join (at most ``IOV_MAX`` of them per call)."""
        fd = self._check()
        if fd < 0:
            return 0 if self._direct is None else self._direct_sendv(chunks)
        try:
            return os.writev(fd, chunks if len(chunks) <= IOV_MAX else chunks[:IOV_MAX])
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"write failed: {exc}") from exc

    def _direct_sendv(self, chunks: list[bytes]) -> int:
        assert self._direct is not None
        written = 0
        for chunk in chunks:
            taken = self._direct.try_send(chunk)
            written += taken
            if taken < len(chunk):
                break
        return written

    def wait_writable(self) -> Awaitable[None]:
        """Wait until a write would not block (sync transports only)."""
        fd = self._check()
        if fd < 0 and self._direct is not None:
            return self._direct.wait_writable()
        return trio.lowlevel.wait_writable(fd)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        fd = self._check()
        if fd < 0:
            await self.stream.send_all(data)
            return
        view = memoryview(data)
        while view:
            written = self.try_send(view)
            view = view[written:]
            if view:
                await trio.lowlevel.wait_writable(self._check())

    def shutdown_write(self) -> bool:
        """Half-close at once where the socket allows it; False when only the async
        :meth:`send_eof` can (TLS and other streams)."""
        if self._closed:
            return True
        if self._fd < 0:
            return False
        with contextlib.suppress(OSError):  # the peer is gone already: nothing to end
            self._socket().shutdown(socket.SHUT_WR)
        return True

    def keep_alive(self, idle: float, *, timers: bool = True) -> bool:
        """Turn on TCP keepalive: probes after ``idle`` seconds of silence, then every
        third of that, three unanswered probes dropping the connection. ``timers=False``
        when the listening socket has them already (see :func:`keepalive_timers`): a
        connection accepted from it inherits them, and only the switch is set. False
        when this transport has no socket of its own (TLS, tests' memory streams) or
        the system refuses."""
        if self._closed or self._fd < 0:
            return False
        sock = self._socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            return False
        return not timers or keepalive_timers(sock, idle)

    def _socket(self) -> socket.socket | trio.socket.SocketType:
        if self._sock is not None:
            return self._sock
        assert isinstance(self._stream, trio.SocketStream)
        return self._stream.socket

    async def send_eof(self) -> None:
        """Half-close; a stream that cannot (TLS) is closed outright."""
        if self.shutdown_write():
            return
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()
        else:
            await self.aclose()

    def close(self) -> bool:
        """Close at once where the socket allows it (no checkpoint, no cancel scope);
        False when the stream needs the async :meth:`aclose`."""
        if self._closed:
            return True
        if self._fd < 0:
            return False
        self._closed = True
        self._fd = -1
        if self._stream is None:
            assert self._sock is not None
            trio.lowlevel.notify_closing(self._sock)  # wakes any task waiting on it
            self._sock.close()
        else:
            assert isinstance(self._stream, trio.SocketStream)
            self._stream.socket.close()  # tells trio, which wakes any task waiting on it
        return True

    async def aclose(self) -> None:
        if self.close():
            return
        self._closed = True
        await trio.aclose_forcefully(self.stream)


def keepalive_timers(sock: socket.socket | trio.socket.SocketType, idle: float) -> bool:
    """Set TCP keepalive's timers on ``sock`` (Linux; other systems keep their own):
    the first probe after ``idle`` seconds of silence, then one every third of that,
    three unanswered ones dropping the connection. Set on a listening socket, they are
    inherited by every connection it accepts, which then needs only ``SO_KEEPALIVE``
    (three system calls fewer per connection). False if the system refuses."""
    if not hasattr(socket, "TCP_KEEPIDLE"):
        return True
    seconds = max(1, round(idle))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, seconds // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except OSError:
        return False
    return True
