"""Serving one HTTP/2 connection (RFC 8441): its read loop, and each stream as a byte
stream under an ordinary :class:`~wscompat.trio.connection.Connection`.

Theory of operation: one task reads the socket and feeds the sans-I/O
:class:`~wscompat.protocol.http2.H2ServerSession`; every WebSocket request starts a
task of its own, which decides on it exactly as the HTTP/1.1 server does
(``_decide``: shutdown, ``max_connections``, ``process_request``, subprotocol) and then
runs the handler over a :class:`Connection` whose transport is the stream
(:class:`StreamIO`). That Connection neither knows nor cares that its bytes travel in
DATA frames: the framer, the queues, keepalive, close and every limit are the ones
every other generation uses.

Writes go out in bursts, as over HTTP/1.1. A stream's transport is synchronous
(:class:`StreamIO` is a :class:`~wscompat.trio.transport.DirectStream`): its
``try_send`` queues bytes into the session at once, as a socket's kernel buffer would
take them, and wakes the connection's writer (:class:`_Writer`), which runs at the next
scheduler pass and writes everything the session holds in one write. Every send of a
burst thus lands in the session's buffer, and the burst leaves as one write, not a
syscall per message. The writer is the connection's :class:`Flusher` too, so a burst
of replies is handed to the session as one DATA frame. ``try_send`` takes bytes only
while the stream's share is under ``write_limit``: its bytes held back by flow control
(its window alone: a stream whose window is closed holds back only itself) plus the
connection's bytes not yet written (a client that stops reading TCP stops every
writer). Past that, a sender waits in ``wait_writable``, as it would for a socket.
Whichever task has bytes for the wire writes everything the session has queued; a
task that finds a write in progress leaves its bytes to it.

Shutdown: the read loop runs shielded, because the streams' closing handshakes need it
to read the answers. When the server is cancelled it sends a graceful GOAWAY, and the
loop ends once the last stream's task is done or ``close_timeout`` has passed.

End: however the session ends, its last GOAWAY is written (after a write in progress,
waited for ``FLUSH_TIMEOUT`` at most), a GOAWAY for an error is followed by a brief
drain (``REJECT_LINGER``), and TCP is closed before the stream tasks are waited for, so
a task blocked writing to a client that stopped reading is freed rather than kept.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time

import trio
from h2.errors import ErrorCodes

from wscompat.protocol.connection import Phase
from wscompat.protocol.http2 import (
    DataArrived,
    H2Event,
    H2ServerSession,
    H2ServerStream,
    RequestReceived,
    SessionEnded,
    StreamEnded,
    StreamReset,
)
from wscompat.protocol.http2_session import error_code_name
from wscompat.trio.connection import Flusher
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
from wscompat.trio.streams import fmt_remote
from wscompat.trio.transport import DirectStream, Transport

__all__ = ["StreamIO", "serve_http2"]

logger = logging.getLogger("wscompat.server")
FLUSH_TIMEOUT = 1.0
"""Seconds a last write (a reset, a GOAWAY) may take when the peer does not read."""


class StreamIO(DirectStream):
    """One HTTP/2 stream as a trio byte stream: what the session received for it, and
    DATA frames for what is sent; with a synchronous path into the session."""

    def __init__(self, mux: _Mux, stream: H2ServerStream) -> None:
        self._mux = mux
        self._stream = stream
        self.secure = stream.secure
        """The HTTP/2 connection runs over TLS (what ``Transport.secure`` reports)."""
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()
        self._closed = False
        mux.ios[stream.stream_id] = self

    def wake(self) -> None:
        self._readable.unpark_all()
        self._writable.unpark_all()
        self._mux.room.unpark_all()

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue what the stream's share of ``write_limit`` has room for into the
        session, for the writer's next pass; 0 when there is none."""
        stream, mux = self._stream, self._mux
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        if not stream.alive or stream.end_queued:
            raise _reset_error(stream)
        session = mux.session
        held = session.pending(stream)
        room = mux.write_limit - held - mux.unwritten()
        if room <= 0 or not data:
            return 0
        if len(data) > room:
            data = memoryview(data)[:room]
        taken = len(data)
        session.send(stream, data)
        # What flow control let through is in the session's buffer now, to be written.
        mux.buffered += taken - (session.pending(stream) - held)
        mux.writer.want()
        return taken

    async def wait_writable(self) -> None:
        stream, mux = self._stream, self._mux
        while (not self._closed and stream.alive and not stream.end_queued
               and mux.write_limit - mux.session.pending(stream) - mux.unwritten() <= 0):
            await mux.room.park()

    async def wait_readable(self) -> None:
        stream, session = self._stream, self._mux.session
        while not (self._closed or stream.inbox or stream.ended
                   or stream.reset_code is not None or session.ended):
            await self._readable.park()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        stream, session = self._stream, self._mux.session
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            if stream.inbox:
                data = session.take(stream, max_bytes or self._mux.read_size)
                self._mux.flush_soon()  # the window handed back
                await trio.lowlevel.checkpoint()
                return data
            if stream.ended:
                await trio.lowlevel.checkpoint()
                return b""
            if stream.reset_code is not None or session.ended:
                raise _reset_error(stream)
            await self._readable.park()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        stream, session, mux = self._stream, self._mux.session, self._mux
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        if not stream.alive:
            raise _reset_error(stream)
        session.send(stream, data)
        await mux.flush()
        while session.pending(stream) or mux.writing:
            if not stream.alive:
                raise _reset_error(stream)
            if session.pending(stream):
                await self._writable.park()
            else:
                await mux.wait_written()

    async def wait_send_all_might_not_block(self) -> None:
        while self._mux.session.pending(self._stream) and self._stream.alive:
            await self._writable.park()

    async def send_eof(self) -> None:
        """END_STREAM after what was sent (the WebSocket's closing handshake is over)."""
        stream = self._stream
        if stream.alive and not stream.end_queued:
            self._mux.session.send(stream, end=True)
            await self._mux.flush()

    async def aclose(self) -> None:
        """Forget the stream. One closed both ways is just forgotten; one whose
        END_STREAM went out but the client's has not come (a shutdown does not wait for
        it) is reset with NO_ERROR, which asks the client to send no more and not to
        discard what it received (RFC 9113 §8.1); any other is reset with CANCEL."""
        if self._closed:
            return
        self._closed = True
        stream = self._stream
        if stream.end_sent and stream.ended:
            self._mux.session.reset(stream)  # forgets it
        elif stream.end_sent:
            self._mux.session.reset(stream, ErrorCodes.NO_ERROR)
        else:
            self._mux.session.reset(stream, ErrorCodes.CANCEL)
        self._mux.ios.pop(stream.stream_id, None)
        self.wake()
        await self._mux.flush_quietly()
        await trio.lowlevel.checkpoint()


def _reset_error(stream: H2ServerStream) -> trio.BrokenResourceError:
    return trio.BrokenResourceError(f"stream reset ({error_code_name(stream.reset_code)})")


class _Writer(Flusher):
    """The connection's writer: at each scheduler pass after something was queued, the
    streams' bursts are handed to the session (as the server's Flusher hands a plain
    connection's to its socket), then everything the session holds is written at once.
    Shielded, so that the streams' closing handshakes still go out while the server
    shuts down; it ends once every stream task has."""

    def __init__(self, mux: _Mux, nursery: trio.Nursery) -> None:
        super().__init__(nursery)
        self._mux = mux
        self.wanted = False
        self.scope = trio.CancelScope(shield=True)

    def want(self) -> None:
        """The session has bytes to write: write them at the next pass."""
        if not self.wanted:
            self.wanted = True
            self._parked.wake()

    async def run(self) -> None:
        mux = self._mux
        with self.scope:
            while True:
                if not self._dirty and not self.wanted:
                    await self._parked.wait()
                dirty, self._dirty = self._dirty, []
                self._flush_all(dirty)
                del dirty
                self.wanted = False
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await mux.flush()
                if mux.writing:
                    # Another task's write is under way and takes what is queued; wait
                    # for it rather than spin on ``wanted``.
                    await mux.wait_written()


class _Mux:
    """The shared state of one HTTP/2 connection's tasks."""

    def __init__(self, server: Server, transport: Transport, session: H2ServerSession, *,
                 remote: tuple[str, int] | None, handler: Handler) -> None:
        self.server = server
        self.transport = transport
        self.session = session
        self.remote = remote
        self.handler = handler
        self.read_size = server.options.read_size
        self.write_limit = server.io.write_limit
        self.buffered = 0
        """Bytes the streams queued that flow control let into the session's buffer
        since the last write took it (frame headers not counted)."""
        self.in_flight = 0
        """Bytes of the write in progress."""
        self.room = trio.lowlevel.ParkingLot()
        """Senders waiting for room: woken after each write, as windows open, and as
        streams end."""
        self.writer: _Writer
        """Made with the connection's nursery, in :func:`serve_http2`."""
        self.ios: dict[int, StreamIO] = {}
        self.tasks = 0
        """Stream tasks still running."""
        self.writing = False
        self._written = trio.lowlevel.ParkingLot()
        self.nursery: trio.Nursery | None = None
        self.read_scope: trio.CancelScope | None = None
        self.stopping = False
        self._received = trio.lowlevel.ParkingLot()
        """Woken after every read the session took."""
        self.keepalive_scope = trio.CancelScope()

    async def flush(self) -> None:
        """Write what the session has queued, unless a write is in progress (whose
        task takes it). A broken transport ends the session for every stream."""
        if self.writing:
            return
        self.writing = True
        try:
            while True:
                out = self.session.data_to_send()
                self.buffered = 0
                if not out:
                    break
                self.in_flight = len(out)
                await self.transport.send_all(out)
                self.in_flight = 0
                self.room.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._lost()
            raise
        finally:
            self.writing = False
            self.in_flight = 0
            self._written.unpark_all()
            self.room.unpark_all()

    def unwritten(self) -> int:
        """Bytes in the session's buffer or being written: what every stream waits
        behind."""
        return self.buffered + self.in_flight

    async def flush_quietly(self) -> None:
        """Flush even in a cancelled scope (bounded), ignoring a transport that broke."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + FLUSH_TIMEOUT
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.flush()

    def flush_soon(self) -> None:
        """Have what the session queued (window updates, a PING) written at the
        writer's next pass, without waiting here."""
        self.writer.want()

    async def wait_written(self) -> None:
        await self._written.park()

    def _lost(self) -> None:
        self.session.terminate(int(ErrorCodes.INTERNAL_ERROR), "connection lost")
        self.session.data_to_send()  # nobody can read it
        for io in list(self.ios.values()):
            io.wake()

    def dispatch(self, events: list[H2Event]) -> None:
        for event in events:
            if type(event) is RequestReceived:
                self._on_request(event.stream)
            elif type(event) is DataArrived or type(event) is StreamEnded:
                io = self.ios.get(event.stream.stream_id)
                if io is not None:
                    io._readable.unpark_all()
            elif type(event) is StreamReset:
                io = self.ios.get(event.stream.stream_id)
                if io is not None:
                    io.wake()
            elif type(event) is SessionEnded:
                for io in list(self.ios.values()):
                    io.wake()
            else:  # WindowOpened
                for io in self.ios.values():
                    io._writable.unpark_all()
                self.room.unpark_all()

    def _on_request(self, stream: H2ServerStream) -> None:
        server = self.server
        if self.read_scope is not None and not self.stopping:
            self.read_scope.deadline = math.inf  # a request came: no handshake timeout
        phase = stream.phase
        if phase is Phase.PLAIN:
            answer_plain(stream, server)
            refused(stream, server, self.remote, secure=stream.secure)
        elif phase is Phase.DECIDE:
            assert self.nursery is not None
            self.tasks += 1
            self.nursery.start_soon(self._serve_stream, stream)
        else:
            refused(stream, server, self.remote, secure=stream.secure)

    async def _serve_stream(self, stream: H2ServerStream) -> None:
        server = self.server
        assert self.nursery is not None
        options = server.options
        server.active += 1
        contexts: list[object] = []
        io = StreamIO(self, stream)
        transport = Transport(io)
        started = time.monotonic()  # the clock the connection log measures with
        try:
            with trio.move_on_after(options.handshake_timeout) as deadline:
                await decide(stream, server, self.remote, contexts)
                await self.flush()
            if deadline.cancelled_caught or stream.phase is not Phase.OPEN:
                if stream.rejection is not None:
                    refused(stream, server, self.remote, secure=stream.secure)
                await not_opened(server, self.remote, transport, contexts,
                                      timed_out=deadline.cancelled_caught)
                return
            ws, watchers = start_connection(server, transport, stream, remote=self.remote,
                                            nursery=self.nursery, flusher=self.writer,
                                            recorder=None)
            ws.http_version = "2"
            if contexts:
                ws.context = contexts[-1]
            await run_handler(server, ws, self.handler, watchers=watchers, started=started,
                              recorder=None)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.info("%s stream %d lost: %s", fmt_remote(self.remote), stream.stream_id,
                        exc.__cause__ or exc)
        except Exception:
            logger.exception("%s stream %d failed", fmt_remote(self.remote), stream.stream_id)
            server.count_error("internal")
        finally:
            server.active -= 1
            await transport.aclose()
            self.tasks -= 1
            if self.stopping and not self.tasks and self.read_scope is not None:
                self.read_scope.cancel()

    async def run(self, buffered: bytes) -> None:
        """Read until the client leaves, the session ends, or a shutdown is done."""
        session, transport = self.session, self.transport
        data = buffered
        while True:
            if data:
                events = session.receive_data(data, trio.current_time())
                self.dispatch(events)
                self._received.unpark_all()
            await self.flush()
            if session.ended:
                if session.end_code not in (None, 0) and session.end_reason:
                    logger.info("%s HTTP/2 connection ended: %s (%s)", fmt_remote(self.remote),
                                session.end_reason, error_code_name(session.end_code))
                return
            data = await transport.receive(self.read_size)
            if not data:
                return

    async def finish(self) -> None:
        """The session is over: write what it still holds (its GOAWAY) once a write in
        progress is done, then, after a GOAWAY for an error, drain the client briefly;
        each step bounded, and then TCP is closed, which also frees a stream task still
        blocked writing to a client that does not read."""
        with trio.CancelScope(shield=True):
            written = False
            with trio.move_on_after(FLUSH_TIMEOUT), contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError
            ):
                while self.writing:
                    await self.wait_written()
                await self.flush()
                written = True
            if written and self.session.end_code not in (None, 0):
                await self._linger()
            await self.transport.aclose()

    async def _linger(self) -> None:
        """Half-close and drain what the client still sends, briefly, as after an
        HTTP/1.1 error response: closed with unread input, the socket would be reset,
        and a reset discards what the kernel has not sent yet, the GOAWAY included
        when it waits behind data the client is slow to read."""
        transport = self.transport
        with trio.move_on_after(REJECT_LINGER), contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError
        ):
            transport.shutdown_write()  # TLS cannot half-close: it just drains
            while await transport.receive(self.read_size):
                pass

    async def keepalive(self, interval: float, timeout: float) -> None:
        """An HTTP/2 PING every ``interval`` seconds. A client that does not acknowledge
        one within ``timeout`` is gone, or reads nothing, and a stream task may be
        blocked writing to it: its WebSockets' own pings cannot tell, as their frames
        wait behind that write. The read loop is ended, and the connection with it."""
        session = self.session
        with self.keepalive_scope:
            for n in itertools.count(1):
                await trio.sleep(interval)
                payload = n.to_bytes(8, "big")
                session.ping(payload)
                self.flush_soon()
                with trio.move_on_after(timeout):
                    while session.ping_acked != payload and not session.ended:
                        await self._received.park()
                if session.ended:
                    return
                if session.ping_acked != payload:
                    logger.info("%s HTTP/2 keepalive ping timed out", fmt_remote(self.remote))
                    if self.read_scope is not None:
                        self.read_scope.cancel()
                    return

    async def watch_shutdown(self, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        """Sleep until the server is cancelled, then close gracefully: GOAWAY, and the
        read loop ends once the streams have closed (``close_timeout`` at most)."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await trio.sleep_forever()
            finally:
                if not scope.cancel_called:  # the server's cancellation, not ours
                    self.stop()

    def stop(self) -> None:
        server = self.server
        self.stopping = True
        self.session.goaway(ErrorCodes.NO_ERROR, "server shutting down")
        if self.read_scope is not None:
            if not self.tasks:
                self.read_scope.cancel()
            else:
                self.read_scope.deadline = (trio.current_time() + server.options.close_timeout
                                            + REJECT_LINGER)


async def serve_http2(server: Server, transport: Transport, remote: tuple[str, int] | None,
                      buffered: bytes, handler: Handler, *, secure: bool) -> None:
    """Serve one HTTP/2 connection until it ends; ``buffered`` is what was read of it
    already (the preface, in cleartext)."""
    options = server.options
    session = H2ServerSession(options.settings, options.h2_settings, secure=secure)
    mux = _Mux(server, transport, session, remote=remote, handler=handler)
    async with trio.open_nursery() as outer:
        # The writer outlives the streams' tasks, whose closing handshakes it writes.
        mux.writer = _Writer(mux, outer)
        outer.start_soon(mux.writer.run)
        try:
            async with trio.open_nursery() as nursery:
                mux.nursery = nursery
                watcher = await nursery.start(mux.watch_shutdown)
                if options.ping_interval is not None:
                    nursery.start_soon(mux.keepalive, options.ping_interval,
                                       options.ping_timeout)
                try:
                    with trio.CancelScope(shield=True) as mux.read_scope:
                        mux.read_scope.deadline = (trio.current_time()
                                                   + options.handshake_timeout)
                        if server.state is not State.SERVING:
                            mux.stop()
                        try:
                            await mux.run(buffered)
                        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                            logger.info("%s HTTP/2 connection lost: %s", fmt_remote(remote),
                                        exc.__cause__ or exc)
                finally:
                    watcher.cancel()
                    mux.keepalive_scope.cancel()
                    if not session.ended:
                        session.terminate(int(ErrorCodes.NO_ERROR), "")
                    mux.dispatch([SessionEnded(0, "")])
                    await mux.finish()
        finally:
            mux.writer.scope.cancel()
