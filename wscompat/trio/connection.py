"""The draft-independent connection object the application talks to (trio I/O layer).

Theory of operation: one reader task owns the receiving side of the stream. It feeds
bytes to the connection's sans-I/O framer, writes whatever the framer wants written
(pongs, close replies), and puts complete messages on a bounded queue that
:meth:`Connection.receive` takes from. When the queue is full the reader stops reading,
so a slow application pushes back on its peer through TCP instead of buffering without
limit. Writes from the application and from the reader share one lock, so frames never
interleave. The reader stops at the framer's ``Closed`` event; :meth:`Connection.close`
starts the draft's closing handshake and waits a bounded time for it. If the reader is
gone (cancelled at shutdown), ``close`` reads the peer's answer itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from wscompat.drafts import Capabilities, Draft
from wscompat.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    UnsupportedByDraft,
    closed_error,
)
from wscompat.protocol.framing import Closed, Event, Framer, Message, Pong, State
from wscompat.protocol.http import Request, RequestView

__all__ = ["Connection", "ConnectionStats"]

logger = logging.getLogger("wscompat.trio.connection")

Data = str | bytes


@dataclass
class _Ping:
    event: trio.Event
    answered: bool = False


@dataclass
class ConnectionStats:
    bytes_in: int = 0
    bytes_out: int = 0
    closed_by: str = ""


class Connection(RequestView):
    """One open WebSocket connection, whatever its draft.

    ``draft`` and ``caps`` tell what the peer's draft can carry; everything else is the
    same on every draft. Operations a draft cannot express raise UnsupportedByDraft.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        framer: Framer,
        request: Request,
        *,
        subprotocol: str | None = None,
        extensions: str | None = None,
        remote: tuple[str, int] | None = None,
        max_queue: int = 16,
        close_timeout: float = 5.0,
        read_size: int = 65536,
        leftover: bytes = b"",
        log_payloads: bool = False,
    ) -> None:
        self._stream = stream
        self._framer = framer
        self.request = request
        self.subprotocol = subprotocol
        self.extensions = extensions
        self.remote = remote
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.stats = ConnectionStats()
        self._close_timeout = close_timeout
        self._read_size = read_size
        self._send_ch, self._recv_ch = trio.open_memory_channel[Data](max_queue)
        self._write_lock = trio.Lock()
        self._closed = trio.Event()
        self._reader_done = trio.Event()
        self._reader_started = False
        self._discard = False  # set by close(): the application wants no more messages
        self._eof_sent = False
        self._pings: dict[bytes, _Ping] = {}
        self._log_payloads = log_payloads
        self._last_received = trio.current_time()
        if leftover:  # bytes that came with the handshake belong to the framer
            framer.receive_data(leftover)

    # -- what the application sees ----------------------------------------------------

    @property
    def draft(self) -> Draft:
        return self._framer.draft

    @property
    def caps(self) -> Capabilities:
        return self._framer.draft.caps

    @property
    def secure(self) -> bool:
        """The connection runs over TLS (terminated here, not at a proxy)."""
        return isinstance(self._stream, trio.SSLStream)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __repr__(self) -> str:
        return f"<Connection {self.draft} {self.path} {self._framer.state.value}>"

    async def receive(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Messages that arrived before the connection closed are still delivered; after
        them, ConnectionClosed (OK or Error by close code) is raised.
        """
        try:
            return await self._recv_ch.receive()
        except trio.EndOfChannel:
            raise self._closed_exc() from None
        except trio.ClosedResourceError:
            # close() is under way in another task: report how it ends (it is bounded).
            await self._closed.wait()
            raise self._closed_exc() from None

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        """Messages until a normal close; an abnormal close raises ConnectionClosedError."""
        while True:
            try:
                yield await self.receive()
            except ConnectionClosedOK:
                return

    async def send(self, message: Data | bytearray | memoryview) -> None:
        """Send one message; returns once it is handed to the transport (backpressure)."""
        if self._framer.state is not State.OPEN:
            raise self._closed_exc()
        if self._log_payloads:
            logger.debug("%s > %s", self.path, _preview(message))
        if isinstance(message, str):
            self._framer.send_text(message)
        elif isinstance(message, bytes | bytearray | memoryview):
            self._framer.send_binary(bytes(message))
        else:
            raise TypeError(f"can only send str or bytes, not {type(message).__name__}")
        await self._flush()

    async def ping(self, data: bytes | None = None) -> None:
        """Send a ping and return when its pong arrives (UnsupportedByDraft on hixie)."""
        if not self.caps.ping:
            raise UnsupportedByDraft(f"{self.draft} has no ping frame")
        if self._framer.state is not State.OPEN:
            raise self._closed_exc()
        payload = os.urandom(4) if data is None else bytes(data)
        if len(payload) > 125:
            raise ValueError("a ping carries at most 125 bytes")
        if payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        waiter = self._pings[payload] = _Ping(trio.Event())
        try:
            self._framer.send_ping(payload)
            await self._flush()
            await waiter.event.wait()
        finally:
            self._pings.pop(payload, None)
        if not waiter.answered:
            raise self._closed_exc()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with the draft's closing handshake, waiting at most ``close_timeout``.

        On hixie drafts code and reason cannot be sent; they are kept for the log.
        Unread messages are discarded.
        """
        self._discard = True
        with trio.move_on_after(self._close_timeout):
            if self._framer.state is State.OPEN:
                self._framer.send_close(code, reason)
                await self._flush(quiet=True)
                await self._handle_events(self._framer.events())
            # Unblocks a reader waiting on a full queue: its send now fails at once.
            self._recv_ch.close()
            await _wait_any(self._closed, self._reader_done)
            if not self._closed.is_set():
                await self._read_until_closed()
        if not self._closed.is_set():
            # The peer never answered: the connection ended with the code we sent.
            self._finish(code, reason or "closing handshake timed out", by="timeout")
            await trio.aclose_forcefully(self._stream)
        elif not self._reader_started or self._reader_done.is_set():
            await trio.aclose_forcefully(self._stream)

    async def keepalive(self, interval: float, timeout: float) -> None:
        """Ping every ``interval`` seconds; close with 1011 when a pong is ``timeout`` late."""
        while not self.closed:
            await trio.sleep(interval)
            with trio.move_on_after(timeout) as late:
                try:
                    await self.ping()
                except ConnectionClosed:
                    return
            if late.cancelled_caught:
                logger.info("%s keepalive ping timed out", self.path)
                await self.close(1011, "keepalive ping timeout")
                return

    async def close_when_idle(self, timeout: float) -> None:
        """Close with 1001 once nothing at all was received for ``timeout`` seconds."""
        while not self.closed:
            quiet_until = self._last_received + timeout
            if trio.current_time() >= quiet_until:
                await self.close(1001, "idle timeout")
                return
            await trio.sleep_until(quiet_until)

    # -- the reader -----------------------------------------------------------------

    async def run_reader(self) -> None:
        """Read until the connection closes; run it beside the application handler."""
        self._reader_started = True
        try:
            # Frames that came with the handshake are in the framer already: deliver
            # them now rather than after the next read, which may never come.
            await self._flush(quiet=True)
            await self._handle_events(self._framer.events(), deliver=True)
            while not self._closed.is_set():
                if not await self._read_once(deliver=True):
                    break
            await self._linger()
        finally:
            # EOF and broken streams reach the framer, which reports them; a cancelled
            # reader leaves the connection open for close() to finish the handshake.
            self._reader_done.set()

    async def _read_once(self, *, deliver: bool) -> bool:
        try:
            data = await self._stream.receive_some(self._read_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self.stats.bytes_in += len(data)
        if data:
            self._last_received = trio.current_time()
            self._framer.receive_data(bytes(data))
        else:
            self._framer.receive_eof()
        # A peer that vanished while a pong or close reply was written ends only its own
        # connection: _flush records 1006 and the reader stops below.
        await self._flush(quiet=True)
        await self._handle_events(self._framer.events(), deliver=deliver)
        return bool(data)

    async def _read_until_closed(self) -> None:
        while not self._closed.is_set() and await self._read_once(deliver=False):
            pass

    async def _linger(self) -> None:
        """After the close, half-close and drain until the peer's FIN (bounded).

        Closing a socket with unread input makes the kernel send RST, which can destroy
        the close frame before the peer reads it.
        """
        with trio.move_on_after(self._close_timeout):
            async with self._write_lock:
                if not self._eof_sent:
                    self._eof_sent = True
                    await self._half_close()
            try:
                while await self._stream.receive_some(self._read_size):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _handle_events(self, events: list[Event], *, deliver: bool = True) -> None:
        for event in events:
            if isinstance(event, Message):
                if self._log_payloads:
                    logger.debug("%s < %s", self.path, _preview(event.data))
                # Messages that arrived before the peer's close are still delivered.
                if deliver and not self._discard:
                    await self._put(event.data)
            elif isinstance(event, Pong):
                self._on_pong(event.data)
            elif isinstance(event, Closed):
                by = "peer" if event.by_peer else "local"
                self._finish(event.code, event.reason, by=by)

    async def _put(self, data: Data) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send_ch.send(data)

    def _on_pong(self, data: bytes) -> None:
        """A pong answers its ping and every ping sent before it."""
        if data not in self._pings:
            return
        for payload in list(self._pings):
            waiter = self._pings.pop(payload)
            waiter.answered = True
            waiter.event.set()
            if payload == data:
                break

    def _finish(self, code: int, reason: str, *, by: str) -> None:
        if self._closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self.stats.closed_by = by
        self._closed.set()
        self._send_ch.close()
        for waiter in self._pings.values():
            waiter.event.set()
        self._pings.clear()

    # -- writing --------------------------------------------------------------------

    async def _flush(self, *, quiet: bool = False) -> None:
        """Write what the framer queued, then its EOF if it wants one.

        A dead transport ends the connection (1006); ``quiet`` callers (the reader,
        close()) carry on from there, application calls get ConnectionClosed.
        """
        framer = self._framer
        if not framer.wants_write and (self._eof_sent or not framer.eof_wanted):
            return
        async with self._write_lock:
            # Loop: while this task was sending, the reader may have queued more (a
            # close reply), which must go out before the EOF below.
            while data := framer.data_to_send():
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._finish(1006, "connection lost while writing", by="peer")
                    if quiet:
                        return
                    raise self._closed_exc() from None
                self.stats.bytes_out += len(data)
            if framer.eof_wanted and not self._eof_sent:
                # The draft's close is complete on our side: the server closes TCP first.
                self._eof_sent = True
                await self._half_close()

    async def _half_close(self) -> None:
        """Send EOF, keeping the read side open to drain; a stream that cannot half-close
        (TLS) is closed outright. Callers hold the write lock: an EOF must never race
        another task's send_all."""
        try:
            if isinstance(self._stream, trio.abc.HalfCloseableStream):
                await self._stream.send_eof()
            else:
                await self._stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _closed_exc(self) -> ConnectionClosed:
        if self.close_code is None:
            return ConnectionClosedError(1006, "connection is closing")
        return closed_error(self.close_code, self.close_reason or "")


async def _wait_any(*events: trio.Event) -> None:
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


def _preview(data: Data | bytearray | memoryview, limit: int = 64) -> str:
    """The start of a payload for a debug log line."""
    if isinstance(data, str):
        return repr(data[:limit]) + ("..." if len(data) > limit else "")
    raw = bytes(data[:limit])
    return f"<{len(data)} bytes> {raw.hex()}" + ("..." if len(data) > limit else "")
