"""Scheduling, coalescing, backpressure and cancellation of the trio ``Connection``,
checked against the rules in docs/architecture.md ("Scheduling rules" and "One write per
burst") over real loopback sockets.

How things are observed, without replacing any part of the server:

- *Yields to the scheduler*: a trio instrument counts the steps of the handler's task; a
  receive() or send() during which the count moved suspended the task. A ticker task that
  is always runnable shows that other tasks then ran.
- *Bytes read per scheduler step*: the same kind of instrument reads the connection's
  public ``stats.bytes_in`` before and after every task step.
- *Write syscalls*: ``syscw`` of ``/proc/thread-self/io`` (the transport writes with
  ``os.write``); the peer's kernel counts the data segments it received (``TCP_INFO``).
- *What is still buffered*: framed bytes handed to send() minus the public
  ``stats.bytes_out`` (bytes the kernel took).
- *Blocked*: ``trio.testing.wait_all_tasks_blocked``: nothing can run any more.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from wscompat.cli import echo
from wscompat.errors import ConnectionClosed, ConnectionClosedOK
from wscompat.protocol.framing.hybi import HybiFramer
from wscompat.trio.client import connect
from wscompat.trio.connection import FAIR_RUN, Connection

from ..conftest import Starter
from ..rawclient import UPGRADE13, RawPeer, client_frame, read_until

TEST_BOUND = 15.0
"""Seconds any one test may wait in all; every wait below is also bounded on its own."""
CANCEL_BOUND = 1.0
"""Seconds from a cancellation to the end of the cancelled call. The call waits at a trio
checkpoint, so it ends at the next scheduler pass: milliseconds even on a loaded machine."""
FLUSH_BOUND = 2.0
"""Seconds for a frame the Flusher writes to reach the peer (one scheduler pass)."""
CLOSE_TIMEOUT = 1.0
"""close_timeout of servers whose peers do not answer the close, to keep the tests short."""

TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8
T = TypeVar("T")


# -- raw peers and server frames -------------------------------------------------------


async def open_peer(port: int, path: str = "/", *, rcvbuf: int | None = None) -> RawPeer:
    """An RFC 6455 connection from a raw socket; ``rcvbuf`` is set before connecting, so
    the window the server may fill stays that small."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        await stream.send_all(UPGRADE13.replace(b"GET / ", f"GET {path} ".encode(), 1))
        head = await read_until(stream, b"\r\n\r\n")
    except BaseException:
        sock.close()
        raise
    assert head.startswith(b"HTTP/1.1 101 "), head
    return RawPeer(stream, head.partition(b"\r\n\r\n")[2])


def server_frame_size(payload: int) -> int:
    """Bytes of an unmasked RFC 6455 frame carrying ``payload`` bytes."""
    return payload + (2 if payload < 126 else 4 if payload < 65536 else 10)


def parse_frame(data: bytes | bytearray) -> tuple[int, bytes, int] | None:
    """The first whole server frame in ``data`` (opcode, payload, its size), or None."""
    if len(data) < 2:
        return None
    first, second = data[0], data[1]
    assert second & 0x80 == 0, "a server frame is never masked"
    length, head = second & 0x7F, 2
    if length == 126:
        length, head = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        length, head = int.from_bytes(data[2:10], "big"), 10
    if len(data) < head + length:
        return None
    assert first & 0x80, "the server sends every message in one frame"
    return first & 0x0F, bytes(data[head : head + length]), head + length


class FrameReader:
    """Whole server frames from a raw peer, as they arrive."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def frame(self) -> tuple[int, bytes]:
        """The next frame; EOFError carrying the bytes left over if the stream ends first."""
        for _ in range(100_000):
            parsed = parse_frame(self._buffer)
            if parsed is not None:
                opcode, payload, size = parsed
                del self._buffer[:size]
                return opcode, payload
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError(bytes(self._buffer))
            self._buffer += chunk
        raise AssertionError("no whole frame within 100,000 reads")

    async def eof(self) -> bytes:
        """Everything up to the end of the stream, whole frames or not."""
        data = bytes(self._buffer)
        self._buffer.clear()
        for _ in range(100_000):
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return data
            data += chunk
        raise AssertionError("no end of stream within 100,000 reads")


def numbered(index: int, size: int = 8) -> bytes:
    """A payload that says which message it is, in every 4 bytes of it."""
    return index.to_bytes(4, "big") * (size // 4)


async def wait_received(ws: Connection, nbytes: int) -> None:
    """Until the reader has taken ``nbytes`` from the socket: every message they carry is
    then queued (the reader dispatches a read's messages before it yields)."""
    for _ in range(10_000):
        if ws.stats.bytes_in >= nbytes:
            return
        await trio.sleep(0.001)
    raise AssertionError(f"only {ws.stats.bytes_in} of {nbytes} bytes arrived")


# -- observing the scheduler -------------------------------------------------------------


class TaskSteps(trio.abc.Instrument):
    """Counts the steps of one task: the count moves each time the task resumes."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


class BytesInPerStep(trio.abc.Instrument):
    """The most bytes of one connection that any single task step read."""

    def __init__(self, ws: Connection) -> None:
        self.ws = ws
        self.at_step_start = 0
        self.most = 0
        self.reading_steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.at_step_start = self.ws.stats.bytes_in

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        read = self.ws.stats.bytes_in - self.at_step_start
        if read:
            self.reading_steps += 1
            self.most = max(self.most, read)


@dataclass
class Ticker:
    """A task that is always runnable and counts its turns."""

    ticks: int = 0

    async def run(self) -> None:
        for _ in range(10_000_000):
            await trio.lowlevel.checkpoint()
            self.ticks += 1


@dataclass
class CallLog:
    """For each call made through :meth:`call`: whether the task yielded during it, and
    how many turns the ticker had meanwhile."""

    steps: TaskSteps
    ticker: Ticker
    yielded: list[bool] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)

    async def call(self, awaitable: Awaitable[T]) -> T:
        step, tick = self.steps.count, self.ticker.ticks
        result = await awaitable
        self.yielded.append(self.steps.count != step)
        self.ticks.append(self.ticker.ticks - tick)
        return result


def longest_run_without(flags: list[bool]) -> int:
    """The most consecutive False values in ``flags``."""
    longest = current = 0
    for flag in flags:
        current = 0 if flag else current + 1
        longest = max(longest, current)
    return longest


# -- fairness ------------------------------------------------------------------------------

FLOOD_FRAME = client_frame(BINARY, b"flooding")
FLOOD_CHUNK_MESSAGES = 4096
FLOOD_CHUNK = FLOOD_FRAME * FLOOD_CHUNK_MESSAGES
FLOOD_MAX_CHUNKS = 4000
"""16 million messages: far more than the server handles in the test's time, so the
flood is still being sent when B's round trips end (asserted)."""
FLOOD_HEAD_START = 20_000
"""Messages of A the server has handled before B connects."""
ROUND_TRIPS = 50
ROUND_TRIP_BOUND = 2.0
"""Seconds per round trip of B. A round trip takes a few scheduler passes, in each of
which A's handler makes at most FAIR_RUN calls and A's reader one read: milliseconds.
A flood that could starve B would hold B until the 16 million messages are handled."""
PASSES_PER_ROUND_TRIP = 16
"""About 4 scheduler passes carry one round trip of B (server reader, server handler,
client reader, client); 16 leaves room for wakeups that come late on a loaded machine.
Without the fairness checkpoint A's handler would take a whole read's worth of queued
messages (some 4,600) in each pass instead of FAIR_RUN."""


@dataclass
class Flood:
    handled: int = 0
    chunks_sent: int = 0


@pytest.mark.parametrize("flood_handler", ["echo", "sink"])
async def test_a_flood_on_one_connection_does_not_starve_another(
    start_server: Starter, flood_handler: str
) -> None:
    """A pipelines small messages as fast as the kernel takes them (and reads the echoes
    as fast as they come); B connects during the flood and makes 50 echo round trips,
    each within ROUND_TRIP_BOUND, while A is still being served and still sending."""
    flood = Flood()

    async def handler(ws: Connection) -> None:
        if ws.path != "/flood":
            await echo(ws)
            return
        async for message in ws:
            flood.handled += 1
            if flood_handler == "echo":
                await ws.send(message)

    server = await start_server(handler, close_timeout=CLOSE_TIMEOUT)
    peer = await open_peer(server.port, "/flood")

    async def pump() -> None:
        for _ in range(FLOOD_MAX_CHUNKS):
            await peer.send_all(FLOOD_CHUNK)
            flood.chunks_sent += 1

    async def drain() -> None:
        for _ in range(10_000_000):
            if not await peer.receive_some(65536):
                return

    handled_during: list[int] = []
    durations: list[float] = []
    with trio.fail_after(TEST_BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            nursery.start_soon(drain)
            for _ in range(10_000):
                if flood.handled >= FLOOD_HEAD_START:
                    break
                await trio.sleep(0.001)
            handled_at_start = flood.handled
            async with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
                for i in range(ROUND_TRIPS):
                    before, started = flood.handled, trio.current_time()
                    with trio.fail_after(ROUND_TRIP_BOUND):
                        await ws.send(f"round trip {i}")
                        answer = await ws.receive()
                    assert answer == f"round trip {i}"
                    durations.append(trio.current_time() - started)
                    handled_during.append(flood.handled - before)
                handled_at_end = flood.handled
                sent_at_end = flood.chunks_sent * FLOOD_CHUNK_MESSAGES
                chunks_at_end = flood.chunks_sent
            nursery.cancel_scope.cancel()
    await peer.aclose()

    assert len(durations) == ROUND_TRIPS
    assert max(durations) < ROUND_TRIP_BOUND
    # The flood was under way when B began, and still was when B was done: A's client had
    # not sent everything and the server had not handled all that it had sent.
    assert handled_at_start >= FLOOD_HEAD_START
    assert chunks_at_end < FLOOD_MAX_CHUNKS
    assert handled_at_end < sent_at_end
    # A was served during B's round trips, not paused while B ran ...
    assert sum(1 for handled in handled_during if handled) >= ROUND_TRIPS // 2, handled_during
    # ... and in each pass for at most FAIR_RUN calls (receive, and send when echoing).
    calls_per_message = 2 if flood_handler == "echo" else 1
    typical = sorted(handled_during)[ROUND_TRIPS // 2] * calls_per_message
    assert typical <= PASSES_PER_ROUND_TRIP * FAIR_RUN, handled_during


QUEUED = 4 * FAIR_RUN + 10


@pytest.mark.parametrize("mode", ["receive", "echo"])
async def test_queued_messages_yield_once_every_fair_run_calls(
    start_server: Starter, mode: str
) -> None:
    """QUEUED messages wait in the queue before the handler takes the first. receive()
    (and, echoing, send()) then yields only at the fairness checkpoint: at least once in
    every FAIR_RUN consecutive calls, and not much more often; another task runs then."""
    frames = b"".join(client_frame(BINARY, numbered(i)) for i in range(QUEUED))
    ticker = Ticker()
    logs: list[CallLog] = []
    received: list[bytes | str] = []
    done = trio.Event()

    async def handler(ws: Connection) -> None:
        try:
            await wait_received(ws, len(frames))
            log = CallLog(TaskSteps(trio.lowlevel.current_task()), ticker)
            logs.append(log)
            trio.lowlevel.add_instrument(log.steps)
            try:
                for _ in range(QUEUED):
                    message = await log.call(ws.receive())
                    received.append(message)
                    if mode == "echo":
                        await log.call(ws.send(message))
            finally:
                trio.lowlevel.remove_instrument(log.steps)
        finally:
            done.set()

    # max_queue above QUEUED: the reader never pauses, so every message can be queued.
    server = await start_server(handler, max_queue=QUEUED + 16)
    with trio.fail_after(TEST_BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            peer = await open_peer(server.port)
            await peer.send_all(frames)
            await done.wait()
            if mode == "echo":
                reader = FrameReader(peer)
                echoed = [await reader.frame() for _ in range(QUEUED)]
                assert echoed == [(BINARY, numbered(i)) for i in range(QUEUED)]
            nursery.cancel_scope.cancel()
        await peer.aclose()

    calls = QUEUED * (2 if mode == "echo" else 1)
    assert received == [numbered(i) for i in range(QUEUED)]
    yielded, ticks = logs[0].yielded, logs[0].ticks
    assert len(yielded) == calls
    # At most FAIR_RUN - 1 calls in a row without a yield: one task step of the handler
    # completes at most FAIR_RUN calls.
    assert longest_run_without(yielded) <= FAIR_RUN - 1
    # Queued messages are taken without a yield each: one per FAIR_RUN calls at most.
    yields = sum(yielded)
    assert yields <= -(-calls // FAIR_RUN)
    assert yields >= calls // FAIR_RUN
    # Other tasks ran only while the handler was suspended, and they did run then: the
    # ticker runs once in every scheduler pass, before or after the handler, so at least
    # once for each yield but the last.
    assert not any(tick for tick, suspended in zip(ticks, yielded, strict=True) if not suspended)
    assert sum(ticks) >= yields - 1 >= 1


READ_SIZE = 4096
BIG_MESSAGE = 1000
BIG_COUNT = 1024


async def test_the_reader_reads_at_most_read_size_per_scheduler_step(
    start_server: Starter,
) -> None:
    """About 1 MB arrives at once with read_size 4096: no task step reads more than one
    read_size of it (the reader yields after every full read)."""
    frames = b"".join(client_frame(BINARY, numbered(i, BIG_MESSAGE)) for i in range(BIG_COUNT))
    measured: list[BytesInPerStep] = []
    ready = trio.Event()
    done = trio.Event()
    received: list[bytes | str] = []

    async def handler(ws: Connection) -> None:
        per_step = BytesInPerStep(ws)
        measured.append(per_step)
        trio.lowlevel.add_instrument(per_step)
        try:
            ready.set()
            received.extend([await ws.receive() for _ in range(BIG_COUNT)])
        finally:
            trio.lowlevel.remove_instrument(per_step)
            done.set()

    # A queue that never fills: only the full-read checkpoint makes the reader yield.
    server = await start_server(handler, read_size=READ_SIZE, max_queue=BIG_COUNT + 16)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        await ready.wait()
        await peer.send_all(frames)
        await done.wait()
        await peer.aclose()

    assert received == [numbered(i, BIG_MESSAGE) for i in range(BIG_COUNT)]
    per_step = measured[0]
    assert 0 < per_step.most <= READ_SIZE
    assert per_step.reading_steps >= len(frames) // READ_SIZE


# -- one write per burst -------------------------------------------------------------------


def write_syscalls() -> int:
    """write() system calls made so far by this thread."""
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/thread-self/io")


def data_segments_received(sock: trio.socket.SocketType) -> int | None:
    """Data segments this socket has received (Linux tcp_info.tcpi_data_segs_in)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < 160:
        return None
    count: int = struct.unpack_from("I", info, 152)[0]
    return count


needs_proc_io = pytest.mark.skipif(
    not Path("/proc/thread-self/io").exists(), reason="write syscalls are counted on Linux"
)


@dataclass
class Writes:
    syscalls: int = -1
    bytes_out_after_first_send: int = -1
    bytes_out_before_first_send: int = -1


@needs_proc_io
@pytest.mark.parametrize("burst", [100, 1000])
async def test_a_burst_of_replies_goes_out_in_few_writes(start_server: Starter, burst: int) -> None:
    """``burst`` messages are queued when the handler starts answering them one by one:
    the replies leave in at most one write per FAIR_RUN calls plus one, and arrive whole
    and in order (in as few TCP segments at the peer)."""
    frames = b"".join(client_frame(BINARY, numbered(i)) for i in range(burst))
    writes = Writes()
    done = trio.Event()

    async def handler(ws: Connection) -> None:
        try:
            await wait_received(ws, len(frames))
            before = write_syscalls()
            for i in range(burst):
                message = await ws.receive()
                if i == 0:
                    writes.bytes_out_before_first_send = ws.stats.bytes_out
                await ws.send(message)
                if i == 0:
                    writes.bytes_out_after_first_send = ws.stats.bytes_out
            writes.syscalls = write_syscalls() - before
        finally:
            done.set()

    server = await start_server(handler, max_queue=burst + 16)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        segments_before = data_segments_received(peer.socket)
        await peer.send_all(frames)
        reader = FrameReader(peer)
        echoed = [await reader.frame() for _ in range(burst)]
        segments_after = data_segments_received(peer.socket)
        await done.wait()
        await peer.aclose()

    assert echoed == [(BINARY, numbered(i)) for i in range(burst)]
    bound = -(-2 * burst // FAIR_RUN) + 1
    assert 1 <= writes.syscalls <= bound
    # The first reply was held for the burst, not written on its own.
    assert writes.bytes_out_after_first_send == writes.bytes_out_before_first_send
    if segments_before is not None and segments_after is not None:
        assert 1 <= segments_after - segments_before <= bound


@needs_proc_io
async def test_sends_with_nothing_queued_are_written_at_once(start_server: Starter) -> None:
    """The other side of the rule, and a check that the syscall count sees writes: with
    no received message waiting, each send() is one write of its own."""
    count = 100
    writes = Writes()
    done = trio.Event()

    async def handler(ws: Connection) -> None:
        try:
            await ws.receive()
            before = write_syscalls()
            for i in range(count):
                await ws.send(numbered(i))
            writes.syscalls = write_syscalls() - before
        finally:
            done.set()

    server = await start_server(handler)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        await peer.send_all(client_frame(TEXT, b"go"))
        reader = FrameReader(peer)
        sent = [await reader.frame() for _ in range(count)]
        await done.wait()
        await peer.aclose()

    assert sent == [(BINARY, numbered(i)) for i in range(count)]
    assert writes.syscalls == count


@needs_proc_io
async def test_sends_told_more_follows_leave_together(start_server: Starter) -> None:
    """``send(more=True)`` (a relay whose source has messages waiting) holds a short
    message for the next: with nothing received waiting, a run of them and a last one
    without ``more`` leave in one write, whole and in order."""
    count = 100
    writes = Writes()
    done = trio.Event()

    async def handler(ws: Connection) -> None:
        try:
            await ws.receive()
            before = write_syscalls()
            for i in range(count):
                await ws.send(numbered(i), more=i < count - 1)
            writes.syscalls = write_syscalls() - before
        finally:
            done.set()

    server = await start_server(handler)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        await peer.send_all(client_frame(TEXT, b"go"))
        reader = FrameReader(peer)
        sent = [await reader.frame() for _ in range(count)]
        await done.wait()
        await peer.aclose()

    assert sent == [(BINARY, numbered(i)) for i in range(count)]
    assert 1 <= writes.syscalls <= -(-count // FAIR_RUN) + 1


@dataclass
class Held:
    deferred: bool = False
    waiting: bool = False
    resumed: bool = False
    rest: list[bytes | str] = field(default_factory=list)


async def test_the_flusher_writes_a_burst_reply_while_the_handler_waits_elsewhere(
    start_server: Starter,
) -> None:
    """Two messages arrive together; the handler answers the first, which is held for
    the burst, then waits on something else than receive(). The reply still reaches the
    peer, within FLUSH_BOUND and while the handler is still waiting."""
    release = trio.Event()
    held = Held()
    done = trio.Event()
    frames = client_frame(TEXT, b"first") + client_frame(TEXT, b"second")

    async def handler(ws: Connection) -> None:
        try:
            await wait_received(ws, len(frames))
            assert await ws.receive() == "first"
            before = ws.stats.bytes_out
            await ws.send("reply")
            held.deferred = ws.stats.bytes_out == before
            held.waiting = True
            with trio.move_on_after(TEST_BOUND):
                await release.wait()
            held.resumed = True
            held.rest.append(await ws.receive())
        finally:
            done.set()

    server = await start_server(handler)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        await peer.send_all(frames)
        reader = FrameReader(peer)
        with trio.fail_after(FLUSH_BOUND):
            reply = await reader.frame()
        assert reply == (TEXT, b"reply")
        assert held.deferred  # it was the Flusher's write, not send()'s
        assert held.waiting
        assert not held.resumed
        release.set()
        await done.wait()
        await peer.aclose()
    assert held.rest == ["second"]


# -- backpressure --------------------------------------------------------------------------

BP_MESSAGE = 16384
BP_COUNT = 1024
"""16 MiB in all: more than the kernel holds for a peer whose receive buffer is small."""
PEER_RCVBUF = 8192


@dataclass
class Sender:
    """What a handler sending BP_COUNT numbered messages has done so far."""

    accepted: int = 0
    """Framed bytes handed to send(), the message in a send() that has not returned
    included."""
    returned: int = 0
    worst_after_return: int = 0
    """The most bytes still buffered in the server when a send() returned."""
    cancelled: bool = False
    ended_at: float = 0.0
    scope: trio.CancelScope | None = None
    ws: Connection | None = None
    ended: trio.Event = field(default_factory=trio.Event)

    def buffered(self) -> int:
        """Bytes handed to send() that the kernel has not taken (an upper bound: bytes
        a waiting write has passed on so far are counted when it completes)."""
        assert self.ws is not None
        return self.accepted - self.ws.stats.bytes_out

    async def send_all(self, ws: Connection, scope: trio.CancelScope) -> None:
        self.ws, self.scope = ws, scope
        try:
            with scope:
                for i in range(BP_COUNT):
                    self.accepted += server_frame_size(BP_MESSAGE)
                    await ws.send(numbered(i, BP_MESSAGE))
                    self.returned += 1
                    self.worst_after_return = max(self.worst_after_return, self.buffered())
            self.cancelled = scope.cancelled_caught
        finally:
            self.ended_at = trio.current_time()
            self.ended.set()


@pytest.mark.parametrize("write_limit", [4096, 65536])
async def test_send_waits_beyond_write_limit_until_the_peer_reads(
    start_server: Starter, write_limit: int
) -> None:
    """A peer that does not read: send() blocks with at most write_limit + one message
    buffered, instead of buffering the 16 MiB; once the peer reads, the sends resume and
    every message arrives whole and in order."""
    sender = Sender()

    async def handler(ws: Connection) -> None:
        await sender.send_all(ws, trio.CancelScope())

    server = await start_server(handler, write_limit=write_limit)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port, rcvbuf=PEER_RCVBUF)
        await trio.testing.wait_all_tasks_blocked()
        # Everything is blocked: the handler waits inside a send().
        assert not sender.ended.is_set()
        assert sender.returned < BP_COUNT
        assert sender.buffered() <= write_limit + server_frame_size(BP_MESSAGE)
        assert sender.worst_after_return <= write_limit + server_frame_size(BP_MESSAGE)
        reader = FrameReader(peer)
        for i in range(BP_COUNT):
            assert await reader.frame() == (BINARY, numbered(i, BP_MESSAGE))
        await sender.ended.wait()
        await peer.aclose()
    assert sender.returned == BP_COUNT
    # "About write_limit + one message": buffered() also counts what a write still in
    # progress has already passed to the kernel, so one message of slack is allowed.
    assert sender.worst_after_return <= write_limit + server_frame_size(BP_MESSAGE)


async def test_send_does_not_wait_while_at_most_write_limit_is_queued(
    start_server: Starter,
) -> None:
    """The other side of the rule: "A send waits only when more than write_limit bytes
    are queued". 2 * FAIR_RUN messages of 1000 bytes to a peer that does not read stay
    below a write_limit of 1 MiB, so every send() returns while the peer reads nothing."""
    count, size, write_limit = 2 * FAIR_RUN, 1000, 1 << 20
    returned: list[int] = []
    done = trio.Event()

    async def handler(ws: Connection) -> None:
        try:
            await ws.receive()
            for i in range(count):
                await ws.send(numbered(i, size))
                returned.append(i)
        finally:
            done.set()

    server = await start_server(handler, write_limit=write_limit)
    assert count * server_frame_size(size) <= write_limit
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port, rcvbuf=PEER_RCVBUF)
        await peer.send_all(client_frame(TEXT, b"go"))
        await trio.testing.wait_all_tasks_blocked()
        sends_before_the_peer_read = len(returned)
        reader = FrameReader(peer)
        for i in range(count):
            assert await reader.frame() == (BINARY, numbered(i, size))
        await done.wait()
        await peer.aclose()
    assert sends_before_the_peer_read == count


async def test_what_the_kernel_did_not_take_leaves_while_the_handler_waits_elsewhere(
    start_server: Starter,
) -> None:
    """A send below write_limit returns without waiting, and the part of its frame the
    kernel could not take yet still leaves on its own: the handler here never calls
    the connection again, yet the peer, reading slowly, gets the whole message."""
    size, write_limit = 16 << 20, 64 << 20  # more than any kernel buffer takes at once
    sent = trio.Event()

    async def handler(ws: Connection) -> None:
        await ws.receive()
        await ws.send(numbered(0, size))
        sent.set()
        await trio.sleep(TEST_BOUND)  # waits on something else; the connection is idle

    server = await start_server(handler, write_limit=write_limit)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port, rcvbuf=PEER_RCVBUF)
        await peer.send_all(client_frame(TEXT, b"go"))
        await sent.wait()
        await trio.sleep(0.05)  # the peer's window is full: the rest waits in the server
        assert server.connections
        [ws] = server.connections
        assert ws.stats.bytes_out < server_frame_size(size)  # not all taken at once
        assert await FrameReader(peer).frame() == (BINARY, numbered(0, size))
        await peer.aclose()


# -- cancellation --------------------------------------------------------------------------

DEADLINE = 0.3
"""Seconds a handler gives a call before its cancel scope's deadline cancels it."""


def cancel_scope(how: str) -> trio.CancelScope:
    return trio.move_on_after(DEADLINE) if how == "deadline" else trio.CancelScope()


async def echo_once(port: int) -> None:
    """The server still serves: a new connection makes a round trip."""
    async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        await ws.send("still serving")
        assert await ws.receive() == "still serving"


@dataclass
class Waiter:
    scope: trio.CancelScope | None = None
    got: list[bytes | str] = field(default_factory=list)
    cancelled: bool = False
    ended_at: float = 0.0
    ended: trio.Event = field(default_factory=trio.Event)


@pytest.mark.parametrize("how", ["deadline", "cancel"])
async def test_a_receive_with_no_message_coming_is_cancelled_promptly(
    start_server: Starter, how: str
) -> None:
    """A handler waits in receive() and nothing comes; its cancel scope (a deadline, or
    cancel() from another task) ends the wait within CANCEL_BOUND. The handler returns,
    the peer sees the close (1000), and the server serves a new connection."""
    waiter = Waiter()

    async def handler(ws: Connection) -> None:
        if ws.path != "/idle":
            await echo(ws)
            return
        try:
            with cancel_scope(how) as scope:
                waiter.scope = scope
                waiter.got.append(await ws.receive())
            waiter.cancelled = scope.cancelled_caught
        finally:
            waiter.ended_at = trio.current_time()
            waiter.ended.set()

    server = await start_server(handler)
    with trio.fail_after(TEST_BOUND):
        async with connect(f"ws://127.0.0.1:{server.port}/idle") as client:
            if how == "cancel":
                await trio.testing.wait_all_tasks_blocked()
                assert not waiter.ended.is_set()
                assert waiter.scope is not None
                waiter.scope.cancel()
                cancelled_at = trio.current_time()
                with trio.fail_after(CANCEL_BOUND):
                    await waiter.ended.wait()
            else:
                with trio.fail_after(DEADLINE + CANCEL_BOUND):
                    await waiter.ended.wait()
                assert waiter.scope is not None
                cancelled_at = waiter.scope.deadline
            with trio.fail_after(CANCEL_BOUND), pytest.raises(ConnectionClosedOK):
                await client.receive()
            assert client.close_code == 1000
        await echo_once(server.port)

    assert waiter.cancelled
    assert waiter.got == []
    assert 0 <= waiter.ended_at - cancelled_at < CANCEL_BOUND


@pytest.mark.parametrize("how", ["deadline", "cancel"])
async def test_a_send_blocked_by_a_peer_that_does_not_read_is_cancelled_promptly(
    start_server: Starter, how: str
) -> None:
    """With write_limit 4096 and a peer that does not read, send() blocks; the handler's
    cancel scope ends it within CANCEL_BOUND. The server then closes the connection (the
    peer reads up to the end of the stream), and serves a new connection."""
    sender = Sender()

    async def handler(ws: Connection) -> None:
        if ws.path == "/blocked":
            await sender.send_all(ws, cancel_scope(how))
        else:
            await echo(ws)

    server = await start_server(handler, write_limit=4096, close_timeout=CLOSE_TIMEOUT)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port, "/blocked", rcvbuf=PEER_RCVBUF)
        if how == "cancel":
            await trio.testing.wait_all_tasks_blocked()
            assert not sender.ended.is_set()
            assert sender.scope is not None
            sender.scope.cancel()
            cancelled_at = trio.current_time()
            with trio.fail_after(CANCEL_BOUND):
                await sender.ended.wait()
        else:
            with trio.fail_after(DEADLINE + CANCEL_BOUND):
                await sender.ended.wait()
            assert sender.scope is not None
            cancelled_at = sender.scope.deadline
        assert sender.cancelled
        assert sender.returned < BP_COUNT
        assert 0 <= sender.ended_at - cancelled_at < CANCEL_BOUND
        # The close cannot get through a full window: the server gives up after its
        # close_timeout and closes; the peer gets what was sent, then the end of stream.
        with trio.fail_after(CLOSE_TIMEOUT + FLUSH_BOUND):
            await FrameReader(peer).eof()
        await peer.aclose()
        await echo_once(server.port)


async def test_after_a_cancelled_send_the_peer_gets_whole_frames_and_the_close(
    start_server: Starter,
) -> None:
    """A send() blocked by a peer that does not read is cancelled; the handler returns and
    the server closes (1000). The peer then reads: the messages already handed to send()
    arrive as whole frames, followed by a close frame the peer can parse."""
    sender = Sender()

    async def handler(ws: Connection) -> None:
        await sender.send_all(ws, trio.CancelScope())

    server = await start_server(handler, write_limit=4096, close_timeout=CLOSE_TIMEOUT)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port, rcvbuf=PEER_RCVBUF)
        await trio.testing.wait_all_tasks_blocked()
        assert sender.scope is not None
        sender.scope.cancel()
        with trio.fail_after(CANCEL_BOUND):
            await sender.ended.wait()
        assert sender.cancelled
        returned = sender.returned
        reader = FrameReader(peer)
        messages = 0
        for _ in range(BP_COUNT + 1):
            try:
                opcode, payload = await reader.frame()
            except EOFError as end:
                tail = end.args[0]
                raise AssertionError(
                    f"the stream ended after {messages} whole messages with {len(tail)} "
                    f"bytes of a cut frame (header {tail[:4].hex()}, last bytes "
                    f"{tail[-4:].hex()}): the close frame is not readable"
                ) from None
            if opcode == CLOSE:
                assert payload[:2] == (1000).to_bytes(2, "big")
                await peer.send_all(client_frame(CLOSE, payload[:2]))
                break
            assert (opcode, payload) == (BINARY, numbered(messages, BP_MESSAGE))
            messages += 1
        # Every message whose send() returned, and perhaps the cancelled one.
        assert returned <= messages <= returned + 1
        assert await reader.eof() == b""
        await peer.aclose()


@dataclass
class Run:
    got: list[bytes | str] = field(default_factory=list)
    sent: int = 0
    cancelled: bool = False
    next_message: bytes | str | None = None
    ended: trio.Event = field(default_factory=trio.Event)


@pytest.mark.parametrize("call", ["receive", "send"])
async def test_a_cancelled_handler_that_never_waits_stops_within_fair_run_calls(
    start_server: Starter, call: str
) -> None:
    """The handler's scope is cancelled before it starts calls that need not wait (queued
    messages to take, or small sends the kernel takes at once). Such calls do not check
    for cancellation, so at least the first returns; the fairness checkpoint raises
    Cancelled within FAIR_RUN calls."""
    count = 2 * FAIR_RUN
    frames = b"".join(client_frame(BINARY, numbered(i)) for i in range(count))
    run = Run()

    async def handler(ws: Connection) -> None:
        try:
            if call == "receive":
                await wait_received(ws, len(frames))
            else:
                await ws.receive()
            with trio.CancelScope() as scope:
                scope.cancel()
                for i in range(count):
                    if call == "receive":
                        run.got.append(await ws.receive())
                    else:
                        await ws.send(numbered(i))
                        run.sent += 1
            run.cancelled = scope.cancelled_caught
        finally:
            run.ended.set()

    server = await start_server(handler, max_queue=count + 16)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        await peer.send_all(frames if call == "receive" else client_frame(TEXT, b"go"))
        await run.ended.wait()
        await peer.aclose()

    assert run.cancelled
    done = len(run.got) if call == "receive" else run.sent
    assert 1 <= done <= FAIR_RUN - 1
    assert run.got == [numbered(i) for i in range(len(run.got))]


async def test_a_receive_cancelled_at_the_fairness_checkpoint_loses_no_message(
    start_server: Starter,
) -> None:
    """As above, with queued messages: the receive() that raises Cancelled at the
    fairness checkpoint must leave its message in the queue, so the next receive()
    returns the message after the last one returned."""
    count = 2 * FAIR_RUN
    frames = b"".join(client_frame(BINARY, numbered(i)) for i in range(count))
    run = Run()

    async def handler(ws: Connection) -> None:
        try:
            await wait_received(ws, len(frames))
            with trio.CancelScope() as scope:
                scope.cancel()
                for _ in range(count):
                    run.got.append(await ws.receive())
            run.cancelled = scope.cancelled_caught
            run.next_message = await ws.receive()
        finally:
            run.ended.set()

    server = await start_server(handler, max_queue=count + 16)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        await peer.send_all(frames)
        await run.ended.wait()
        await peer.aclose()

    assert run.cancelled
    assert 1 <= len(run.got) < count
    assert run.got == [numbered(i) for i in range(len(run.got))]
    assert isinstance(run.next_message, bytes)
    assert run.next_message == numbered(len(run.got)), (
        f"after {len(run.got)} messages the next receive() returned message "
        f"{int.from_bytes(run.next_message[:4], 'big')}"
    )


# -- receive() reads the socket itself ------------------------------------------------------

PING, PONG = 0x9, 0xA


class ReaderSteps(trio.abc.Instrument):
    """Counts the steps of the server connections' reader tasks (the test's peers are
    raw sockets, so every reader is the server's)."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("Connection.run_reader"):
            self.count += 1


async def echo_raw(peer: RawPeer, reader: FrameReader, payload: bytes) -> None:
    await peer.send_all(client_frame(BINARY, payload))
    assert await reader.frame() == (BINARY, payload)


class Spawned(trio.abc.Instrument):
    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def test_a_connection_whose_handler_waits_in_receive_starts_no_reader_task(
    start_server: Starter,
) -> None:
    """An echo connection opens, echoes, answers the peer's close and ends the TCP
    connection with one task: the handler's receive() does all the reading, the drain
    after the close included."""
    server = await start_server()
    spawned = Spawned()
    trio.lowlevel.add_instrument(spawned)
    try:
        with trio.fail_after(TEST_BOUND):
            peer = await open_peer(server.port)
            reader = FrameReader(peer)
            for index in range(5):
                await echo_raw(peer, reader, numbered(index))
            await peer.send_all(client_frame(CLOSE, (1000).to_bytes(2, "big")))
            assert await reader.frame() == (CLOSE, (1000).to_bytes(2, "big"))
            assert await reader.eof() == b""
            await peer.aclose()
            while server.active:
                await trio.sleep(0.01)
    finally:
        trio.lowlevel.remove_instrument(spawned)
    assert [n for n in spawned.names if n.endswith("run_reader")] == []
    assert sum(n.endswith("_serve_connection") for n in spawned.names) == 1


async def test_an_echo_loop_is_woken_by_the_socket_with_no_reader_step_per_message(
    start_server: Starter,
) -> None:
    """Once a message has been handed over, an echo handler's receive() reads the socket
    itself: round trips after the first take no step of the reader task (the reader would
    otherwise wake for every message, then wake the handler)."""
    server = await start_server()
    steps = ReaderSteps()
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        reader = FrameReader(peer)
        for index in range(3):
            await echo_raw(peer, reader, numbered(index))
        trio.lowlevel.add_instrument(steps)
        try:
            for index in range(200):
                await echo_raw(peer, reader, numbered(index))
        finally:
            trio.lowlevel.remove_instrument(steps)
        await peer.aclose()
    assert steps.count <= 2


@pytest.mark.parametrize("away", ["elsewhere", "cancelled", "never"])
async def test_a_handler_that_stops_receiving_still_has_pings_answered_and_the_close_read(
    start_server: Starter, away: str
) -> None:
    """The handler takes one message, then never calls receive() again: it waits on
    something else, or its next receive() (which reads the socket itself) is cancelled;
    or it never calls receive() at all. The reader starts, or takes the socket back,
    within a scheduler pass, so pings are answered, later messages queue, and the
    peer's close is answered and the connection ended."""
    left = trio.Event()

    async def handler(ws: Connection) -> None:
        if away != "never":
            await ws.receive()
        if away == "cancelled":
            with trio.move_on_after(DEADLINE):
                await ws.receive()
        left.set()
        await trio.sleep_forever()

    server = await start_server(handler)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        reader = FrameReader(peer)
        await peer.send_all(client_frame(BINARY, b"first"))
        await left.wait()
        with trio.fail_after(FLUSH_BOUND):
            await peer.send_all(client_frame(PING, b"still there?"))
            assert await reader.frame() == (PONG, b"still there?")
            [ws] = server.connections
            before = ws.stats.bytes_in
            await peer.send_all(client_frame(BINARY, b"queued"))
            await wait_received(ws, before + 1)
            assert ws.pending == (2 if away == "never" else 1)
            await peer.send_all(client_frame(CLOSE, (1000).to_bytes(2, "big")))
            assert await reader.frame() == (CLOSE, (1000).to_bytes(2, "big"))
            assert await reader.eof() == b""
        await peer.aclose()


async def test_a_close_from_another_task_is_answered_while_the_handler_reads_in_receive(
    start_server: Starter,
) -> None:
    """One task waits in receive(), reading the socket itself, when another calls
    close(): the receiving task reads the peer's answer, close() returns as soon as it
    comes (well before close_timeout), and receive() raises ConnectionClosedOK."""
    outcome: dict[str, object] = {}

    async def handler(ws: Connection) -> None:
        await ws.receive()

        async def receiving() -> None:
            with pytest.raises(ConnectionClosedOK):
                await ws.receive()
            outcome["receive"] = ws.close_code

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiving)
            await trio.testing.wait_all_tasks_blocked()
            started = trio.current_time()
            await ws.close(1000, "bye")
            outcome["close took"] = trio.current_time() - started

    server = await start_server(handler, close_timeout=4 * FLUSH_BOUND)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        reader = FrameReader(peer)
        await peer.send_all(client_frame(BINARY, b"first"))
        opcode, payload = await reader.frame()
        assert (opcode, payload[:2]) == (CLOSE, (1000).to_bytes(2, "big"))
        await peer.send_all(client_frame(CLOSE, payload[:2]))
        with trio.fail_after(FLUSH_BOUND):
            assert await reader.eof() == b""
        await peer.aclose()
    assert outcome["receive"] == 1000
    took = outcome["close took"]
    assert isinstance(took, float) and took < FLUSH_BOUND


async def test_two_tasks_in_receive_get_every_message_once(start_server: Starter) -> None:
    """Two tasks receive from one connection: one reads the socket itself, the other
    waits for what it queues. Every message reaches exactly one of them."""
    count = 50
    got: list[bytes | str] = []
    done = trio.Event()

    async def handler(ws: Connection) -> None:
        got.append(await ws.receive())

        async def receiving() -> None:
            with contextlib.suppress(ConnectionClosedOK):
                while True:
                    got.append(await ws.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiving)
            nursery.start_soon(receiving)
        done.set()

    server = await start_server(handler)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port)
        reader = FrameReader(peer)
        for index in range(count):
            await peer.send_all(client_frame(BINARY, numbered(index)))
            await trio.sleep(0.001 * (index % 3))
        await peer.send_all(client_frame(CLOSE, (1000).to_bytes(2, "big")))
        assert (await reader.frame())[0] == CLOSE
        await done.wait()
        await peer.aclose()
    assert sorted(got) == [numbered(i) for i in range(count)]


FAULTY = 77
"""The payload length of the message whose parsing the fault test makes fail."""


@pytest.mark.parametrize("reading", ["receive", "reader"])
async def test_a_fault_while_reading_closes_that_connection_with_1011_and_is_logged(
    start_server: Starter, reading: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A read whose parsing raises (a fault of the server, not of the peer) ends only
    its own connection, with 1011 and a logged traceback, whether the handler's
    receive() or the reader task was reading; the server serves on."""
    original = HybiFramer.receive_into

    def failing(self: HybiFramer, buffer: bytearray, count: int) -> None:
        if count >= 2 and buffer[1] & 0x7F == FAULTY:  # the payload is masked: the length
            raise RuntimeError("a fault while parsing")
        original(self, buffer, count)

    monkeypatch.setattr(HybiFramer, "receive_into", failing)
    outcome: dict[str, object] = {}

    async def handler(ws: Connection) -> None:
        if ws.path == "/echo":
            await echo(ws)
            return
        await ws.receive()
        try:
            if reading == "receive":
                await ws.receive()
            else:
                await trio.sleep_forever()
        except ConnectionClosed as closed:
            outcome["raised"] = closed.code

    server = await start_server(handler)
    with trio.fail_after(TEST_BOUND):
        peer = await open_peer(server.port, "/fault")
        reader = FrameReader(peer)
        await peer.send_all(client_frame(BINARY, b"first"))
        [ws] = server.connections
        await wait_received(ws, 1)
        if reading == "reader":
            await trio.sleep(0.05)  # the handler waits elsewhere: the reader reads
        await peer.send_all(client_frame(BINARY, bytes(FAULTY)))
        opcode, payload = await reader.frame()
        assert (opcode, payload[:2]) == (CLOSE, (1011).to_bytes(2, "big"))
        await peer.aclose()
        await echo_once(server.port)
    assert ws.close_code == 1011
    if reading == "receive":
        assert outcome["raised"] == 1011
    assert any("reader failed" in r.getMessage() and r.exc_info for r in caplog.records)
