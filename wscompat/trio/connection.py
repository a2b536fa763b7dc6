"""The draft-independent connection object the application talks to (trio I/O layer).

Theory of operation. A :class:`Connection` drives one sans-I/O protocol connection
(:mod:`wscompat.protocol.connection`) over one :class:`~.transport.Transport`. Two
tasks touch it: a reader, which owns the receiving side, and the application's task,
which reads itself while it waits in receive() (see *Who reads*).

*Receiving.* The reader reads, feeds the protocol, and appends the messages it yields
to a queue. :meth:`Connection.receive` takes from that queue **without yielding to the
scheduler** while it holds messages; only an empty queue parks the caller, and the
reader wakes it. Reading pauses while ``max_queue`` messages or ``max_queue_bytes``
bytes of them wait (one read's worth may come on top), so a slow application pushes
back through TCP.

*Who reads.* Having woken a task waiting in receive(), the reader parks rather than
wait on the socket; that task's next receive() with an empty queue then reads the
socket itself, so a request/response loop is woken by the socket directly, one task
step per message. Each time the application stops reading, the server's
:class:`Flusher` looks at the connection at its next pass and wakes the reader unless
the application reads again: the socket is never left unread for longer than a pass.
Only one task reads at a time (``_app_reads``, ``_idle_reader``). On a server's plain
socket the reader task is started only when first needed (start_reading()): a
connection whose handler only ever waits in receive() runs one task, not two.

*Sending.* :meth:`Connection.send` hands the message to the framer. When more received
messages are already waiting, the application is in a burst: the frame stays queued
and goes out with the others in one write, at the latest when the application next
waits for a message, or at the server's next scheduler pass (the :class:`Flusher`),
whichever comes first. Otherwise it is written at once, without a wait when the
kernel has room. A send that finds more than ``write_limit`` bytes still queued waits
until the peer has read them: backpressure by bytes, not a syscall per message.

*Fairness.* A connection that never has to wait would never let others run, so every
``FAIR_RUN`` calls of receive() and send() that did not wait include one checkpoint,
and the reader checkpoints after every read that filled its buffer. One connection
thus holds the event loop for at most ``FAIR_RUN`` application steps or one
``read_size`` read before others are served.

*Cancellation.* A caller that waits (an empty queue, a full write buffer, a ping)
waits at a trio checkpoint and is cancelled there at once; a call that need not wait
does not check, and the fairness checkpoint bounds how long a cancelled handler that
never waits keeps running.

*Closing.* :meth:`close` sends the draft's close and waits, within ``close_timeout``,
for the reader to see the peer's answer (or reads it itself when the reader is gone).
The reader then half-closes and drains until the peer's FIN, so that unread input
does not make the kernel reset the connection under the close frame.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import sys
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

import trio

from wscompat import logfields
from wscompat.drafts import Capabilities, Draft
from wscompat.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    UnsupportedByDraft,
    closed_error,
)
from wscompat.options import ServerOptions
from wscompat.protocol.connection import ClientConnection, Established, ServerConnection
from wscompat.protocol.framing import Closed, Event, Message, Pong, State
from wscompat.protocol.http import Request, RequestView
from wscompat.protocol.http2 import H2ServerStream
from wscompat.trio.transport import Transport

__all__ = ["FAIR_RUN", "Connection", "ConnectionStats", "Flusher", "IOSettings", "Keepalive"]

logger = logging.getLogger("wscompat.connection")

Data = str | bytes
_NO_MESSAGES: tuple[()] = ()
FAIR_RUN = 256
"""receive()/send() calls that need not wait between two checkpoints of a connection."""
KEEP_BY_REFERENCE = 16384
"""A frame's unwritten rest at least this long stays a view of the message rather than
a copy: a large message waiting for a slow peer is then held once, not twice."""
COALESCE_BELOW = 16384
"""Messages shorter than this, sent while more are queued, wait to leave in one write
with the others; a longer one is written at once (a write of its own costs little
beside its size, and gathering it would copy it)."""

SCRUB_READS = False
"""Overwrite a shared read buffer after each read (tests turn it on): a view of it kept
past its read would then show as corrupt data at once rather than as a rare, silent
change when the next read reuses the buffer."""
_READ_BUFFERS: dict[int, bytearray] = {}


def _read_buffer(size: int) -> bytearray:
    """The read buffer of ``size`` bytes shared by the connections that read that much
    at a time: one per size per process, for as long as the process lives."""
    buffer = _READ_BUFFERS.get(size)
    if buffer is None:
        buffer = _READ_BUFFERS[size] = bytearray(size)
    return buffer


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ServerOptions)}

@dataclass(frozen=True)
class IOSettings:
    """The I/O layer's share of the server options, built once per server; its defaults
    are ServerOptions' (the client's too)."""

    max_queue: int = _DEFAULTS["max_queue"]
    max_queue_bytes: int = _DEFAULTS["max_queue_bytes"]
    close_timeout: float = _DEFAULTS["close_timeout"]
    read_size: int = _DEFAULTS["read_size"]
    write_limit: int = _DEFAULTS["write_limit"]
    log_payloads: bool = _DEFAULTS["log_payloads"]


@dataclass
class ConnectionStats:
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    closed_by: str = ""


class _Parked:
    """Tasks waiting for one condition, woken all at once; no object per wait."""

    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: list[trio.lowlevel.Task] = []

    def wait(self) -> Awaitable[object]:
        """Park the current task until :meth:`wake` (a plain function returning trio's
        awaitable, so a parked connection holds one coroutine frame fewer)."""
        task = trio.lowlevel.current_task()
        self.tasks.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            self.tasks.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        return trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self) -> None:
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            trio.lowlevel.reschedule(task)


class Flusher:
    """Writes, at the next scheduler pass, what connections queued during a burst.

    One per server: a connection whose application sent while more messages were
    waiting registers here once; if the application then waits on anything but
    receive(), its frames still leave within one pass of the scheduler. A connection
    whose application stopped reading the socket in receive() registers too (watch()):
    at that pass its reader reads again, or starts, unless the application is back.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._dirty: list[Connection] = []
        self._watched: list[Connection] = []
        self._parked = _Parked()

    def schedule(self, conn: Connection) -> None:
        self._dirty.append(conn)
        self._parked.wake()

    def watch(self, conn: Connection) -> None:
        """At the next pass, give the socket back to ``conn``'s reader unless its
        application is reading it again (see :meth:`Connection.receive`)."""
        self._watched.append(conn)
        self._parked.wake()

    async def run(self) -> None:
        while True:
            if not self._dirty and not self._watched:
                await self._parked.wait()
            dirty, self._dirty = self._dirty, []
            self._flush_all(dirty)
            del dirty  # a parked task must not keep the last connections alive
            if self._watched:
                watched, self._watched = self._watched, []
                self._check_all(watched)
                del watched

    @staticmethod
    def _check_all(watched: list[Connection]) -> None:
        for conn in watched:
            conn._watched()

    def _flush_all(self, dirty: list[Connection]) -> None:
        for conn in dirty:
            conn._deferred_flush(self._nursery)


class Keepalive:
    """Keepalive pings for every plain connection of a server, from one task.

    A task per connection to sleep between pings cost about 3.5 KiB per idle connection,
    more than a third of everything else it holds. Here a connection is one entry in a
    heap: at its time it is sent a ping (written at once, or by the flusher), and
    ``timeout`` later the ping is checked; an unanswered one closes the connection
    with 1011 (the close, rare, gets a task of its own). Entries hold connections by
    weak reference, so a closed connection is freed at once, not at its next turn; the
    heap sheds such entries once they are half of it.
    """

    def __init__(self, nursery: trio.Nursery, interval: float, timeout: float) -> None:
        self._nursery = nursery
        self._interval = interval
        self._timeout = timeout
        self._due: list[tuple[float, int, weakref.ref[Connection], bytes]] = []
        self._order = 0
        self._gone = 0
        self._parked = _Parked()

    def add(self, conn: Connection) -> None:
        self._push(trio.current_time() + self._interval, weakref.ref(conn, self._forget), b"")

    def _forget(self, _: object) -> None:
        self._gone += 1

    def _push(self, when: float, ref: weakref.ref[Connection], payload: bytes) -> None:
        due = self._due
        if self._gone > len(due) // 2 + 16:
            due[:] = [entry for entry in due if entry[2]() is not None]
            heapq.heapify(due)
            self._gone = 0
        sooner = not due or when < due[0][0]
        self._order += 1
        heapq.heappush(due, (when, self._order, ref, payload))
        if sooner and self._parked.tasks:
            self._parked.wake()  # only when the task sleeps past this new entry

    async def run(self) -> None:
        due = self._due
        while True:
            if not due:
                await self._parked.wait()
                continue
            if due[0][0] > trio.current_time():
                with trio.move_on_at(due[0][0]):
                    await self._parked.wait()  # an earlier entry may come meanwhile
                continue
            _, _, ref, payload = heapq.heappop(due)
            self._turn(ref, payload)  # in a call of its own: no local outlives it

    def _turn(self, ref: weakref.ref[Connection], payload: bytes) -> None:
        """A connection's turn: its ping checked (``payload``) or a new one sent."""
        conn = ref()
        if conn is None or conn.closed or conn._proto.state is not State.OPEN:
            return
        now = trio.current_time()
        if payload:
            if conn._proto.ping_pending(payload):
                logger.info("%s keepalive ping timed out", logfields.path(conn.path))
                self._nursery.start_soon(conn.close, 1011, "keepalive ping timeout")
            else:  # answered: the next ping an interval after this one was sent
                self._push(now + max(0.0, self._interval - self._timeout), ref, b"")
            return
        payload = os.urandom(4)
        try:
            conn._proto.send_ping(payload)
        except (ValueError, ConnectionClosed):
            return
        conn._write_now()
        if conn._out or conn._head is not None:
            conn._schedule_flush()
        self._push(now + self._timeout, ref, payload)


class Connection(RequestView):
    """One open WebSocket connection, whatever its draft.

    ``draft`` and ``caps`` tell what the peer's draft can carry; everything else is the
    same on every draft. Operations a draft cannot express raise UnsupportedByDraft.
    """

    http_version = "1.1"
    """``2`` for a WebSocket over an HTTP/2 stream (RFC 8441), whose draft is RFC 6455."""
    context: object = None
    """What ``process_request`` handed over in its Acceptance (a gateway's backend)."""
    _close_reads = False
    """close() reads the peer's answer itself (no reader was running)."""
    _gave_up = False
    """The peer never ended the connection after the close: not waited for twice."""
    _sink: Callable[[Data], None] | None = None
    """Where the reader hands each message instead of queueing it (see relay())."""
    _relay_target: Connection | None = None
    """The connection the sink sends to: its backlog pauses this one's reader."""
    _feeder: Connection | None = None
    """The connection whose reader relays into this one: woken as this one drains."""
    _on_end: Callable[[], None] | None = None
    """Called once when a relaying connection closes (not when its reader is merely
    cancelled: whoever cancelled it closes it)."""
    _passes = False
    """Whole data frames go to the relay's target as they came (see relay())."""
    _shared: bytearray | None = None
    """The read buffer this connection shares with others (see ``_read``), if any."""
    _idle_reader: trio.lowlevel.Task | None = None
    """The reader, parked while the application reads the socket itself (see receive())."""
    _app_reads = False
    """The application's task is reading the socket, in receive()."""
    _handed = False
    """The reader woke a task waiting in receive() and that task has not run yet."""
    _watch_scheduled = False
    """The flusher is to see, at its next pass, whether the reader must read again."""
    _drained = True
    """The last read emptied the socket: the next one waits for it to be readable."""
    _spawner: trio.Nursery | None = None
    """Where the reader is started when first needed (see start_reading()); None when
    it is started with the connection."""

    def __init__(
        self,
        transport: Transport,
        protocol: ServerConnection | ClientConnection | Established | H2ServerStream,
        request: Request,
        *,
        subprotocol: str | None = None,
        extensions: str | None = None,
        remote: tuple[str, int] | None = None,
        settings: IOSettings = IOSettings(),
        flusher: Flusher | None = None,
    ) -> None:
        self._transport = transport
        self._proto = protocol
        assert protocol.framer is not None, "the handshake must be complete"
        self._draft: Draft = protocol.framer.draft
        self.request = request
        self.subprotocol = subprotocol
        self.extensions = extensions
        self.remote = remote
        self.stats = ConnectionStats()
        self.metrics_seen = (0, 0, 0, 0)
        """Messages and bytes each way already added to the server's metrics."""
        self._settings = settings
        self._flusher = flusher
        if transport.has_socket:
            self._shared = _read_buffer(settings.read_size)
        self._queue: deque[Data] | tuple[()] = _NO_MESSAGES
        self._queued = 0
        """Memory of the queued messages, in bytes (``sys.getsizeof``)."""
        """A deque while messages wait; an idle connection holds no deque block."""
        self._receivers = _Parked()
        self._reader_parked = _Parked()
        self._closers = _Parked()
        self._writers = _Parked()
        self._out = bytearray()
        self._head: memoryview | None = None
        """The unwritten rest of a large frame, kept by reference rather than copied
        into ``_out``; it always goes before ``_out``."""
        """Bytes taken from the framer that the transport has not taken yet."""
        self._writing = False
        self._in_flight = 0  # bytes a write in progress has yet to hand to the kernel
        self._flush_scheduled = False
        self._eof_sent = False
        self._discard = False  # set by close(): the application wants no more messages
        self._reader = 0  # 0 not started, 1 running, 2 done
        self._run = 0
        self._pings: dict[bytes, trio.Event] = {}
        self._last_received = trio.current_time()

    # -- what the application sees ----------------------------------------------------

    @property
    def draft(self) -> Draft:
        return self._draft

    @property
    def generation(self) -> str:
        """The draft's name, or ``rfc8441`` for RFC 6455 over HTTP/2 (logs, metrics)."""
        return "rfc8441" if self.http_version == "2" else self._draft.value

    @property
    def caps(self) -> Capabilities:
        return self._draft.caps

    @property
    def secure(self) -> bool:
        """The connection runs over TLS (terminated here, not at a proxy)."""
        return self._transport.secure

    @property
    def close_code(self) -> int | None:
        return self._proto.close_code

    @property
    def close_reason(self) -> str | None:
        return self._proto.close_reason

    @property
    def closed(self) -> bool:
        return self._proto.close_code is not None

    def __repr__(self) -> str:
        return f"<Connection {self.draft} {self.path} {self._proto.state.value}>"

    async def receive(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Messages that arrived before the connection closed are still delivered; after
        them, ConnectionClosed (OK or Error by close code) is raised.
        """
        if self._queue:
            if self._idle_reader is not None and not self._watch_scheduled:
                # This task read the socket, or was handed the message by a reader that
                # then parked: should it not come back, the reader takes over.
                self._watch()
            self._run += 1
            if self._run >= FAIR_RUN:
                # Before the message is taken: a cancellation here loses nothing.
                await self._fair_checkpoint()
            queue = self._queue
            if queue:
                data = queue.popleft()
                self._queued -= sys.getsizeof(data)
                if not queue:
                    self._queue = _NO_MESSAGES
                if self._reader_parked.tasks and (
                    len(queue) < self._settings.max_queue
                    and self._queued < self._settings.max_queue_bytes
                ):
                    self._reader_parked.wake()
                return data
        while not self._queue:
            # Whatever the burst left queued goes out before this task waits.
            if self._out or self._head is not None or self._proto.wants_write:
                await self._flush(quiet=True)
            if self._queue:
                break
            if self._proto.close_code is not None or self._reader == 2:
                raise self._closed_exc()
            self._run = 0
            if self._idle_reader is not None or self._starts_late:
                if not self._app_reads and self._reads_here():
                    await self._read_here()
                    continue
                self._wake_reader()
            await self._receivers.wait()
            self._handed = False  # nothing can interrupt this task between wake and here
            if self._idle_reader is not None and not self._watch_scheduled:
                self._watch()
        return await self.receive()

    def _reads_here(self) -> bool:
        """Whether receive() may read the socket in the application's task: the reader
        is parked or not started (it parks, or starts late, only where this holds) and
        nothing asks for more than reading: no close under way, no relay, no write
        backlog."""
        return (self._proto.state is State.OPEN and not self._discard
                and self._sink is None and self._reader != 2 and not self._backed_up())

    async def _read_here(self) -> None:
        """One read in the application's task, its messages queued: the task that
        waits for a message is woken by the socket itself, with no reader step
        before it. A checkpoint precedes every read, as in the reader."""
        self._app_reads = True
        size = self._settings.read_size
        try:
            if self._drained:
                await self._transport.wait_readable()
            else:
                await trio.lowlevel.checkpoint()
            count = await self._read(size)
            self._drained = count < size
        except Exception as exc:
            self._read_failed(exc)
        finally:
            self._app_reads = False
            if self._proto.state is not State.OPEN or self.closed:
                self._wake_reader()  # the closing handshake and the drain are its own
            elif not self._watch_scheduled:
                self._watch()  # whatever happens next, the socket is read within a pass

    def _read_failed(self, exc: Exception) -> None:
        """End the connection after a read raised (called in the except clause): 1006
        when the transport is gone; for a fault of this side, 1011, logged, and sent
        to the peer as the draft's close (as far as the kernel takes it at once)."""
        if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
            self._finish(1006, "connection lost", by="peer")
            return
        logger.exception("%s reader failed", logfields.path(self.path))
        if self._proto.state is State.OPEN and not self.closed:
            try:
                self._proto.send_close(1011, "internal error")
                self._write_now()
            except Exception:  # the framer is in no state to say it: the log does
                logger.debug("no close frame after the fault", exc_info=True)
        self._finish(1011, "internal error", by="local")

    def _park_reader(self) -> Awaitable[object]:
        """Park the reader while the application reads in receive()."""
        task = self._idle_reader = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            if self._idle_reader is task:
                self._idle_reader = None
            return trio.lowlevel.Abort.SUCCEEDED

        return trio.lowlevel.wait_task_rescheduled(abort)

    @property
    def _starts_late(self) -> bool:
        """The reader has not run and is started only when needed (start_reading())."""
        return self._reader == 0 and self._spawner is not None

    def _reads_lazily(self) -> bool:
        """Whether receive() may take over the reading: a plain socket, whose reads go
        into the shared buffer, and a flusher to give the socket back to the reader."""
        return (self._shared is not None and self._flusher is not None
                and self._transport.sync)

    def _wake_reader(self) -> None:
        """Have the reader read: wake it if parked, start it if it never ran (unless
        the connection is closed, where wait_reader() drains it instead). Nothing to
        do while the application reads: the reader would only park again."""
        if self._app_reads:
            return
        task = self._idle_reader
        if task is not None:
            self._idle_reader = None
            trio.lowlevel.reschedule(task)
        elif self._starts_late and not self.closed and not self._close_reads:
            assert self._spawner is not None
            self._reader = 1
            self._spawner.start_soon(self.run_reader)

    def start_reading(self, nursery: trio.Nursery) -> None:
        """Start the connection's reading, on a server: the reader task is started in
        ``nursery`` at once, or, on a plain socket with a flusher, only once something
        other than receive() needs the socket read (the application waits elsewhere,
        a relay, a closing handshake): a handler that waits in receive() reads the
        socket itself, and a connection that only ever does so has no reader task."""
        if not self._reads_lazily():
            nursery.start_soon(self.run_reader)
            return
        self._spawner = nursery
        proto = self._proto
        # Frames that came with the handshake are in the framer already: delivered now,
        # not after the next read, which may never come.
        self._dispatch(proto.events())
        if proto.wants_write or proto.eof_wanted or proto.state is not State.OPEN:
            self._wake_reader()  # a reply to write or a close under way: the reader's
        else:
            self._watch()  # the reader starts at the next pass unless receive() reads

    def _watch(self) -> None:
        assert self._flusher is not None  # the reader parks only when there is one
        self._watch_scheduled = True
        self._flusher.watch(self)

    def _watched(self) -> None:
        """The flusher's pass: the reader reads again unless the application is
        reading, or about to run with a message the reader handed it."""
        self._watch_scheduled = False
        if not self._handed:
            self._wake_reader()

    def __aiter__(self) -> Connection:
        """Messages until a normal close; an abnormal close raises ConnectionClosedError.

        The connection is its own iterator: an async generator would cost a finalizer
        task per connection when the loop ends.
        """
        return self

    async def __anext__(self) -> Data:
        try:
            return await self.receive()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    @property
    def pending(self) -> int:
        """Messages received and waiting for :meth:`receive` (taken without a wait)."""
        return len(self._queue)

    def share_flusher(self, other: Connection) -> None:
        """Coalesce this connection's bursts with ``other``'s flusher (a server's), when
        it has none of its own: a gateway's backend leg, opened as a client."""
        if self._flusher is None and self._transport.sync and other._transport.sync:
            self._flusher = other._flusher

    def can_relay(self, target: Connection) -> bool:
        """Whether :meth:`relay` to ``target`` is possible: both are plain sockets and
        ``target`` has a flusher to finish a write the kernel cannot take at once
        (never the reader's job)."""
        return (self._transport.sync and target._transport.sync
                and target._flusher is not None)

    def relay(self, sink: Callable[[Data], None], target: Connection,
              on_end: Callable[[], None], *, frames: bool = False) -> None:
        """Hand every message, as the reader parses it, to ``sink`` instead of the
        queue, for a gateway: ``sink`` sends it on ``target`` with :meth:`send_relayed`,
        and what one read brought leaves ``target`` in one write, with no task switch
        on the way. Reading pauses while ``target`` holds more than ``write_limit``
        unsent bytes, so backpressure crosses the pair as it does through receive()
        and send(). ``on_end`` is called once, when this connection closes;
        receive() is not to be used meanwhile. Only where
        :meth:`can_relay` says so; :meth:`end_relay` undoes it.

        With ``frames``, the whole data frames a read begins with skip ``sink`` where
        both sides' framers allow it (hybi or RFC 8441, no extension on either side):
        they leave ``target`` in one piece as they came, masked anew when ``target``
        is a client, and are counted as messages all the same. Only for a ``sink``
        that sends every message on as it is; the rest of the read is parsed and
        handed to ``sink``.
        """
        if not self.can_relay(target):
            raise RuntimeError("relay() needs plain sockets and a flusher on the target")
        self._sink, self._relay_target, self._on_end = sink, target, on_end
        self._passes = frames
        target._feeder = self
        queue, self._queue, self._queued = self._queue, _NO_MESSAGES, 0
        for data in queue:  # what came before the relay began, in order
            sink(data)
        if queue:
            target._write_relayed()
        if self._reader_parked.tasks:
            self._reader_parked.wake()  # it may have paused on a full queue
        self._wake_reader()  # parked for receive(), which a relay does not call
        if self.closed:
            self._ended()

    def end_relay(self) -> None:
        """Back to queueing messages; the pair no longer refers to each other."""
        target = self._relay_target
        if target is not None and target._feeder is self:
            del target._feeder
        for name in ("_sink", "_relay_target", "_on_end", "_passes"):
            self.__dict__.pop(name, None)

    def send_relayed(self, message: Data) -> None:
        """Frame one relayed message to leave with the rest of its read (see relay());
        ConnectionClosed once this connection is closing."""
        proto = self._proto
        if proto.close_code is not None or proto.state is not State.OPEN:
            raise self._closed_exc()
        if self._settings.log_payloads and logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s > %s", logfields.path(self.path), _preview(message))
        if isinstance(message, str):
            proto.send_text(message)
        else:
            proto.send_binary(message)
        self.stats.messages_out += 1

    def _write_relayed(self) -> None:
        """Write what a read relayed here; the flusher carries on with any rest."""
        self._write_now()
        if self._out or self._head is not None:
            self._schedule_flush()

    def _ended(self) -> None:
        on_end = self._on_end
        if on_end is not None:
            self._on_end = None
            on_end()

    async def send(self, message: Data | bytearray | memoryview, *, more: bool = False) -> None:
        """Send one message. Returns once it is queued within ``write_limit`` bytes;
        waits while more than that is waiting for the peer to read (backpressure).

        ``more`` says another message follows at once (a relay whose source has
        messages waiting): a short one is then queued to leave with the next, in one
        write, as the answers to a burst of received messages are."""
        proto = self._proto
        if proto.close_code is not None or proto.state is not State.OPEN:
            raise self._closed_exc()
        self._run += 1
        if self._run >= FAIR_RUN:
            # Before the message is queued: a send cancelled here has sent nothing.
            await self._fair_checkpoint()
            if proto.close_code is not None or proto.state is not State.OPEN:
                raise self._closed_exc()
        if self._settings.log_payloads and logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s > %s", logfields.path(self.path), _preview(message))
        if type(message) is str:
            proto.send_text(message)
        elif isinstance(message, bytes | bytearray | memoryview):
            proto.send_binary(bytes(message))
        else:
            raise TypeError(f"can only send str or bytes, not {type(message).__name__}")
        self.stats.messages_out += 1
        if (
            (self._queue or more)
            and self._flusher is not None
            and self._transport.sync
            and len(message) < COALESCE_BELOW
        ):
            # A burst: this frame leaves with the others in one write.
            for chunk in proto.chunks_to_send():
                self._out += chunk
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._flusher.schedule(self)
        else:
            self._write_now()
            if proto.close_code is not None:  # the write found the peer gone
                raise self._closed_exc()
        flusher = self._flusher
        waiting = len(self._out) + self._in_flight  # _unsent(), inline: once per message
        if self._head is not None:
            waiting += len(self._head)
        if waiting > self._settings.write_limit or (
            waiting and (flusher is None or not self._transport.sync)
        ):
            await self._flush()
        elif waiting and flusher is not None and not self._writing and not self._flush_scheduled:
            # The kernel took part of it: the flusher carries on with the rest, so it
            # leaves even if the application next waits on something else entirely.
            self._flush_scheduled = True
            flusher.schedule(self)

    async def ping(self, data: bytes | None = None) -> None:
        """Send a ping and return when its pong arrives (UnsupportedByDraft on hixie)."""
        if not self.caps.ping:
            raise UnsupportedByDraft(f"{self.draft} has no ping frame")
        if self._proto.state is not State.OPEN or self.closed:
            raise self._closed_exc()
        payload = os.urandom(4) if data is None else bytes(data)
        self._proto.send_ping(payload)
        answered = self._pings[payload] = trio.Event()
        try:
            await self._flush()
            await answered.wait()
        finally:
            self._pings.pop(payload, None)
        if self._proto.ping_pending(payload) or self.closed:
            raise self._closed_exc()

    async def close(self, code: int = 1000, reason: str = "", *, shield: bool = False) -> None:
        """Close with the draft's closing handshake, waiting at most ``close_timeout``.

        On hixie drafts code and reason cannot be sent; they are kept for the log.
        Unread messages are discarded. With ``shield`` the handshake runs even in a
        cancelled scope (still within ``close_timeout``): the server closes this way
        when it shuts down, so clients get a close frame rather than a reset.
        """
        self._discard = True
        self._queue = _NO_MESSAGES
        self._queued = 0
        self._reader_parked.wake()  # a reader paused on a full queue reads the answer
        self._wake_reader()  # a reader parked for receive() reads it too
        if not self.closed or self._out or self._head is not None or self._writing or (
                self._proto.eof_wanted and not self._eof_sent):
            # (Closed with nothing left to write, the usual end of a handler whose peer
            # closed first, needs no scope.)
            await self._closing_handshake(code, reason, shield=shield)
        if not self.closed:
            # The peer never answered: the connection ended with the code we sent.
            self._finish(code, reason or "closing handshake timed out", by="timeout")
            await self._transport.aclose()
        elif self._reader == 2 or (self._reader == 0 and not self._starts_late):
            await self._transport.aclose()

    async def _closing_handshake(self, code: int, reason: str, *, shield: bool) -> None:
        """close()'s part within ``close_timeout``: send the close, write what is
        queued, and see the peer's answer read."""
        deadline = trio.current_time() + self._settings.close_timeout
        with trio.CancelScope(deadline=deadline, shield=shield):
            if self._proto.state is State.OPEN and not self.closed:
                self._proto.send_close(code, reason)
                self._dispatch(self._proto.events())
            await self._flush(quiet=True)
            # The reader, while it runs, reads the answer: a second task reading the
            # same socket would fail both. Woken for anything else, wait again.
            while (self._reader == 1 or self._app_reads) and not self.closed:
                await self._closers.wait()
            if not self.closed:
                self._close_reads = True  # a reader started from now on leaves it to us
                await self._read_until_closed()

    async def wait_reader(self, timeout: float, *, shield: bool = False) -> None:
        """Wait, at most ``timeout``, for the reader to finish (its drain included);
        ``shield`` as for :meth:`close`. A reader that never started (see
        start_reading()) has its drain done here instead."""
        if self._starts_late and self.closed:
            self._reader = 2
            await self._linger(shield=shield)  # within close_timeout
            return
        if self._reader != 1:
            return
        with trio.CancelScope(deadline=trio.current_time() + timeout, shield=shield):
            while self._reader == 1:
                await self._closers.wait()

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
                logger.info("%s keepalive ping timed out", logfields.path(self.path))
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
        """Read until the connection closes; run it beside the application handler.

        One loop in one frame: an idle connection's reader is parked in trio's
        ``wait_readable`` directly, holding as few coroutine frames as it can.
        """
        self._reader = 1
        transport = self._transport
        size = self._settings.read_size
        try:
            if self._close_reads:
                return  # started after close() began reading the answer itself
            # Frames that came with the handshake are in the framer already: deliver
            # them now rather than after the next read, which may never come.
            self._dispatch(self._proto.events())
            await self._flush(quiet=True)
            proto = self._proto
            parks = self._reads_lazily()
            while not self.closed:
                if self._app_reads:
                    # The application reads in receive(); parked, the reader holds
                    # no wait on the socket.
                    await self._park_reader()
                    continue
                if proto.state is not State.OPEN:
                    await self._read_closing(size)
                    break
                if (self._queue_full() and not self._discard) or self._backed_up():
                    await self._reader_parked.wait()
                    continue
                target = self._relay_target
                if (target is not None and not self._discard and target._backed_up()
                        and not target.closed):
                    # Woken as the target drains, or closes; a close of this
                    # connection has it read on (and drop) until the peer's answer.
                    await self._reader_parked.wait()
                    continue
                if self._drained and transport.sync:
                    # The last read emptied the socket: wait before reading again.
                    await transport.wait_readable()
                self._handed = False
                count = await self._read(size)
                if not count:
                    break
                if count == size:
                    self._drained = False
                    await trio.lowlevel.checkpoint()  # more is waiting: let others run
                else:
                    self._drained = True
                    if self._handed and parks and self._reads_here():
                        # A task waiting in receive() has the message and has not run
                        # yet: its next receive() reads the socket itself.
                        await self._park_reader()
            await self._linger()
        except Exception as exc:
            self._read_failed(exc)
        finally:
            # A cancelled reader leaves the connection open for close() to finish it.
            self._reader = 2
            self._receivers.wake()
            self._closers.wake()

    async def _read(self, size: int) -> int:
        """One read fed to the protocol, its events handled: the bytes read, 0 at EOF.

        A connection on a plain socket reads into one buffer shared by every such
        connection of the size (``_shared``), which its framer parses where it lies
        (``receive_into``) and copies out what it keeps (payloads unmasked or decoded
        into objects of their own, an incomplete frame into its buffer), so no bytes
        object is made and freed per read, which for reads of 128 KiB and more is an
        allocation the size of the read each time.
        Nothing else runs between the read and the feeding, so the buffer is never
        shared by two reads at once. A relay passes frames on as they came, so its
        reads stay bytes of their own."""
        transport = self._transport
        proto = self._proto
        shared = self._shared
        count: int | None
        data: bytes | None = None
        try:
            # Mostly called once the socket is readable: read at once, with no
            # coroutine made for the wait that is not needed.
            if shared is not None and not self._passes:
                count = transport.try_receive_into(shared)
                while count is None:  # nothing there yet: wait, then read into it again
                    await transport.wait_readable()
                    count = transport.try_receive_into(shared)
                if count and self._passes:  # a relay began while this read waited
                    data = bytes(shared[:count])
            else:
                data = transport.try_receive(size)
                if data is None:
                    data = await transport.receive(size)
                count = len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            count, data = 0, b""
        if count:
            self.stats.bytes_in += count
            self._last_received = trio.current_time()
            if data is None:
                assert shared is not None and proto.framer is not None
                proto.framer.receive_into(shared, count)
                if SCRUB_READS:
                    shared[:count] = bytes([0xEE]) * count
            else:
                rest = self._pass_on(data) if self._passes else data
                if rest:
                    proto.receive_data(rest)
        else:
            proto.receive_eof()
        self._dispatch(proto.events())
        if proto.wants_write or proto.eof_wanted:
            # A peer that vanished while a pong or close reply was written ends only
            # its own connection: _flush records 1006.
            await self._flush(quiet=True)
        return count

    def _pass_on(self, data: bytes) -> bytes:
        """Send the whole data frames that begin ``data`` on to the relay's target as
        they came (see relay()); what is left, to be parsed as usual."""
        target = self._relay_target
        if (target is None or self._discard or target.closed
                or (self._settings.log_payloads and logger.isEnabledFor(logging.DEBUG))):
            return data
        end, count = self._proto.whole_frames(data)
        if not count:
            return data
        whole = end == len(data)
        if not target._proto.pass_frames(data if whole else data[:end]):
            return data
        self.stats.messages_in += count
        target.stats.messages_out += count
        target._write_relayed()
        return b"" if whole else data[end:]

    async def _read_closing(self, size: int) -> None:
        """The closing handshake is under way: read its end. When close() started it,
        close() bounds it; otherwise (the framer failed the connection, or answered the
        peer's close) for at most ``close_timeout``. A peer that has not ended the
        connection by then (a server that answered the close but keeps TCP open, where
        the client must wait for it to close first) is taken as having ended it: the
        connection closes with the code the handshake gave, and the reader leaves at
        once."""
        if self._discard:
            # close() is running: it bounds the handshake itself and decides how it
            # ended; a second timer here would race it.
            await self._read_until_closed()
            return
        with trio.move_on_after(self._settings.close_timeout):
            await self._read_until_closed()
        if not self.closed:
            self._gave_up = True
            self._proto.receive_eof()
            self._dispatch(self._proto.events())
            if not self.closed:
                self._finish(1006, "closing handshake timed out", by="timeout")

    async def _read_until_closed(self) -> None:
        while not self.closed and await self._read(self._settings.read_size):
            pass

    async def _linger(self, *, shield: bool = False) -> None:
        """After the close, half-close and drain until the peer's FIN, within
        ``close_timeout`` (``shield`` as for :meth:`close`). What is drained is read into
        the shared buffer where there is one, and dropped."""
        if self._gave_up:
            return  # the peer's FIN was waited for already
        transport, shared = self._transport, self._shared
        deadline = trio.current_time() + self._settings.close_timeout
        with trio.CancelScope(deadline=deadline, shield=shield):
            await self._flush(quiet=True)
            if not self._eof_sent and not self._writing:
                self._eof_sent = True
                await self._half_close()
            try:
                while True:
                    if shared is None:
                        if not await transport.receive(self._settings.read_size):
                            return
                        continue
                    count = transport.try_receive_into(shared)
                    if count is None:
                        await transport.wait_readable()
                    elif not count:
                        return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    def _dispatch(self, events: list[Event]) -> None:
        queue = self._queue
        sink, target = self._sink, self._relay_target
        relayed = False
        for event in events:
            if type(event) is Message:
                data = event.data
                if self._settings.log_payloads and logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s < %s", logfields.path(self.path), _preview(data))
                # Messages that arrived before the peer's close are still delivered.
                if not self._discard:
                    self.stats.messages_in += 1
                    if sink is not None:
                        sink(data)
                        relayed = True
                        continue
                    if not isinstance(queue, deque):
                        queue = self._queue = deque()
                    queue.append(data)
                    self._queued += sys.getsizeof(data)
            elif isinstance(event, Pong):
                for payload in event.acked:
                    waiter = self._pings.get(payload)
                    if waiter is not None:
                        waiter.set()
            elif isinstance(event, Closed):
                if relayed and target is not None:
                    # What came before the close leaves before the pair is told.
                    relayed = False
                    target._write_relayed()
                self._on_closed()
        if relayed and target is not None:
            target._write_relayed()
        if queue and self._receivers.tasks:
            self._handed = True
            self._receivers.wake()

    def _backed_up(self) -> bool:
        """More than ``write_limit`` bytes wait for the peer to read: a send is held
        back, and reading pauses too. A peer that sends without reading what comes
        back would otherwise have the server read, and hold, its next message while the
        last one's answer waits; with reading paused, one connection holds about one
        message in each direction, whatever the peer does."""
        waiting = len(self._out) + self._in_flight
        head = self._head
        if head is not None:
            waiting += len(head)
        return waiting > self._settings.write_limit

    def _queue_full(self) -> bool:
        queue = self._queue
        settings = self._settings
        return bool(queue) and (
            len(queue) >= settings.max_queue or self._queued >= settings.max_queue_bytes
        )

    def _finish(self, code: int, reason: str, *, by: str) -> None:
        if self._proto.finish(code, reason, by):
            self._on_closed()

    def _on_closed(self) -> None:
        self.stats.closed_by = self._proto.closed_by
        for waiter in self._pings.values():
            waiter.set()
        self._receivers.wake()
        self._closers.wake()
        self._writers.wake()
        feeder = self._feeder
        if feeder is not None and feeder._reader_parked.tasks:
            feeder._reader_parked.wake()  # paused on this one's backlog
        self._ended()

    # -- writing --------------------------------------------------------------------

    def _unsent(self) -> int:
        """Bytes handed to the connection and not yet taken by the kernel."""
        head = self._head
        return len(self._out) + self._in_flight + (0 if head is None else len(head))

    def _write_now(self) -> None:
        """Write the framer's output, behind any backlog, as far as the kernel takes
        it without waiting; the rest stays in ``_head`` and ``_out``."""
        chunks = self._proto.chunks_to_send()
        out = self._out
        if self._writing or self._head is not None:
            # Behind a write in progress or a large frame's rest: queued after them.
            for chunk in chunks:
                out += chunk
            if self._writing:  # the task in an async write takes everything queued
                return
            chunks = []
        try:
            written = 0
            if self._head is not None:
                written = self._transport.try_send(self._head)
                head = self._head[written:]
                self._head = head if head else None
                if self._head is not None:
                    return
            if out:
                for chunk in chunks:
                    out += chunk
                sent = self._transport.try_send(out)
                del out[:sent]
                written += sent
            elif chunks:
                # Header and payload in one writev: a large payload is never copied
                # into a joined frame first.
                transport = self._transport
                sent = transport.try_send(chunks[0]) if len(chunks) == 1 else (
                    transport.try_sendv(chunks))
                self._keep(chunks, sent)
                written += sent
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            out.clear()
            self._head = None
            self._finish(1006, "connection lost while writing", by="peer")
            return
        finally:
            self.stats.bytes_out += written
            if written:
                if self._reader_parked.tasks:
                    self._reader_parked.wake()  # it may have paused on a backed-up write
                feeder = self._feeder
                if feeder is not None and feeder._reader_parked.tasks:
                    feeder._reader_parked.wake()  # it relays here (see relay())

    def _keep(self, chunks: list[bytes], written: int) -> None:
        """Queue what a write of ``chunks`` (made with nothing else queued) left: the
        rest of a large chunk by reference, as ``_head``, and anything after it, or
        a short rest, in ``_out``."""
        for index, chunk in enumerate(chunks):
            if written >= len(chunk):
                written -= len(chunk)
                continue
            if len(chunk) - written >= KEEP_BY_REFERENCE:
                self._head = memoryview(chunk)[written:]
                _keep_unwritten(self._out, chunks[index + 1 :], 0)
            else:
                _keep_unwritten(self._out, chunks[index:], written)
            return

    def _schedule_flush(self) -> None:
        """Have the flusher write what is queued at its next pass."""
        if self._flusher is not None and not self._flush_scheduled and not self._writing:
            self._flush_scheduled = True
            self._flusher.schedule(self)

    def _deferred_flush(self, nursery: trio.Nursery) -> None:
        """The flusher's pass: write what a burst left; a write that cannot finish
        without waiting gets a task of its own."""
        self._flush_scheduled = False
        self._write_now()
        if (self._out or self._head is not None) and not self._writing and not self.closed:
            nursery.start_soon(self._flush_task)

    async def _flush_task(self) -> None:
        await self._flush(quiet=True)

    async def _flush(self, *, quiet: bool = False) -> None:
        """Write everything queued, then the EOF if the framer wants one.

        A dead transport ends the connection (1006); ``quiet`` callers (the reader,
        close()) carry on from there, application calls get ConnectionClosed.
        """
        self._write_now()
        while self._out or self._head is not None or self._writing:
            if self._writing:
                await self._writers.wait()
                continue
            if self.closed and not self._out and self._head is None:
                break
            data: bytearray | memoryview
            if self._head is not None:
                data, self._head = self._head, None
            else:
                data, self._out = self._out, bytearray()  # handed over whole, not copied
            self._writing = True
            try:
                await self._send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._finish(1006, "connection lost while writing", by="peer")
                if quiet:
                    return
                raise self._closed_exc() from None
            finally:
                self._writing = False
                self._writers.wake()
                if self._reader_parked.tasks:
                    self._reader_parked.wake()  # paused while this write was backed up
                feeder = self._feeder
                if feeder is not None and feeder._reader_parked.tasks:
                    feeder._reader_parked.wake()
            self._write_now()
        if self._proto.eof_wanted and not self._eof_sent and not self._writing:
            # The draft's close is complete on our side: the server closes TCP first.
            self._eof_sent = True
            await self._half_close()

    async def _send_all(self, data: bytearray | memoryview) -> None:
        """Write ``data`` whole. Cancelled part-way, the unwritten tail goes back to the
        front of the queue: a later close or flush then continues the frame where it
        was cut, and the peer never sees half a frame followed by another."""
        transport = self._transport
        if not transport.sync:
            await transport.send_all(data)  # a cancelled TLS write breaks the stream
            self.stats.bytes_out += len(data)
            return
        sent = 0
        try:
            while True:
                with memoryview(data) as view:
                    written = transport.try_send(view[sent:])
                sent += written
                self.stats.bytes_out += written
                if sent >= len(data):
                    break
                self._in_flight = len(data) - sent
                await transport.wait_writable()
        except trio.Cancelled:
            if isinstance(data, memoryview):
                self._head = data[sent:]  # nothing took its place while we wrote
            else:
                self._out[:0] = data[sent:]
            raise
        finally:
            self._in_flight = 0

    async def _half_close(self) -> None:
        """Send EOF, keeping the read side open to drain; a stream that cannot
        half-close (TLS) is closed outright. Shielded: the EOF is already marked sent,
        and a cancellation at trio's checkpoint before the shutdown would lose it."""
        if self._transport.shutdown_write():
            return  # done at once: no checkpoint, nothing to shield
        with trio.CancelScope(shield=True), contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError
        ):
            await self._transport.send_eof()

    async def _fair_checkpoint(self) -> None:
        """Let other tasks run. What is queued goes out as far as the kernel takes it;
        the caller waits for the rest only past ``write_limit`` (as send() would), and
        otherwise the flusher carries it on."""
        self._run = 0
        self._write_now()
        if self._proto.eof_wanted and not self._eof_sent:
            await self._flush(quiet=True)
        elif (self._out or self._head is not None) and not self._writing:
            if (
                self._unsent() > self._settings.write_limit
                or self._flusher is None
                or not self._transport.sync
            ):
                await self._flush(quiet=True)
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self._flusher.schedule(self)
        await trio.lowlevel.checkpoint()

    def _closed_exc(self) -> ConnectionClosed:
        if self.close_code is None:
            return ConnectionClosedError(1006, "connection is closing")
        return closed_error(self.close_code, self.close_reason or "")


def _keep_unwritten(out: bytearray, chunks: list[bytes], written: int) -> None:
    """Append to ``out`` what a vectored write of ``chunks`` left unwritten."""
    for chunk in chunks:
        if written >= len(chunk):
            written -= len(chunk)
            continue
        with memoryview(chunk) as view:
            out += view[written:]
        written = 0


def _preview(data: Data | bytearray | memoryview, limit: int = 64) -> str:
    """The start of a payload for a debug log line: text escaped as every field the peer
    sent is (:mod:`wscompat.logfields`), bytes in hex."""
    if isinstance(data, str):
        return f"text {logfields.field(data, limit)}"
    raw = bytes(data[:limit])
    return f"<{len(data)} bytes> {raw.hex()}" + ("…" if len(data) > limit else "")

