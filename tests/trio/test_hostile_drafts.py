"""Hostile peers of every draft, each attack run beside well-behaved clients of every draft.

Each test starts one in-process server, warms it up, takes a baseline of the process's
open descriptors and traced Python memory, then runs one attack while a chorus of good
clients (two per draft, through ``wscompat.trio.client.connect``) echoes in a loop. It checks
that the chorus lost nothing and kept echoing, that the hostile peers were cut off the
way their draft and the limit say, and that once everyone has gone the descriptors are
back to the baseline exactly and traced memory within a documented tolerance of it.

Memory is measured with ``tracemalloc`` (after ``gc.collect()``): unlike RSS it does not
depend on whether the allocator hands freed arenas back to the kernel, so it is stable
from run to run. It covers every Python object of the process (server and clients share
it); kernel socket buffers are not Python memory and are covered by the descriptor count.
Before the baseline each test holds and drops as many plain connections as the attack
will make, because trio's task and registration tables, like every Python set and dict,
keep their grown size after being emptied, and that growth is not a leak. The attacks
keep only counters, never per-connection lists, so that the test's own bookkeeping does
not read as the server's memory.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import resource
import socket
import struct
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio

import wscompat
from wscompat.drafts import Draft
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.trio.client import connect

from ..conftest import Starter
from ..framing_helpers import client_frame
from ..rawclient import UPGRADE13

HIXIE = [Draft.HIXIE75, Draft.HIXIE76]
HYBI = [Draft.HYBI07, Draft.HYBI08, Draft.RFC6455]
HOST = "127.0.0.1"

HANDSHAKE_TIMEOUT = 1.0
MAX_MESSAGE = 65536
MAX_HEAD = 4096
OPTIONS = {
    "handshake_timeout": HANDSHAKE_TIMEOUT,
    "close_timeout": 1.0,
    "max_message_size": MAX_MESSAGE,
    "max_head_size": MAX_HEAD,
}
MEMORY_TOLERANCE = 64 * 1024
"""Traced bytes allowed above the baseline once an attack is over.

What stays is interpreter noise (free lists, a few cached objects): a few KiB. One open
connection holds about 16 KiB of traced memory (server and raw client together), and
every test runs at least 8 hostile peers, so leaking their connections is caught.
"""
TABLE_SLACK = 384
"""Traced bytes allowed per hostile connection held at once, on top of MEMORY_TOLERANCE.

trio's task sets, epoll registrations and parking lots keep the size they grew to until
a later insertion resizes them, up or down, depending on the order of insertions and
removals; after 1,000 lorises that moves the total by up to about 200 KiB either way.
A loris that leaked even its head parser (a few KiB) is still caught.
"""
CHORUS_PER_DRAFT = 2
ROUND_TIMEOUT = 5.0
"""Seconds one echo may take before the chorus reports it as lost."""
ECHO_BOUND = 0.3
"""Seconds within which a good client's echo must come back while an attack runs
(``Chorus.slowest``), as the hardening rules require."""
FLOOD_MESSAGE = 65536
NOFILE_NEEDED = 4096


# -- process-wide measurements ----------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def traced_memory() -> int:
    """Traced bytes once garbage is collected and trio has dropped expired deadlines.

    trio removes the deadline of a cancel scope that has exited only when it next looks
    for the earliest deadline while no task is runnable; until then each one holds a few
    hundred bytes (a thousand connections' timeouts read as a 250 KiB "leak"). Blocking
    in a worker thread for a moment makes it look.
    """
    await trio.to_thread.run_sync(time.sleep, 0.01)
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.fixture(autouse=True)
def _measured_process() -> Iterator[None]:
    """tracemalloc on, enough descriptors, and no log records kept while a test runs.

    pytest keeps every log record it captures; at INFO the server writes one per
    connection, which would read as growth. WARNING and above still show.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= NOFILE_NEEDED, (
        f"these tests need {NOFILE_NEEDED} descriptors; the hard limit is {hard}"
    )
    if soft != resource.RLIM_INFINITY and soft < NOFILE_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE_NEEDED, hard))
    logger = logging.getLogger("wscompat")
    level = logger.level
    logger.setLevel(logging.WARNING)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(1)
    try:
        yield
    finally:
        if started:
            tracemalloc.stop()
        logger.setLevel(level)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the server under attack ------------------------------------------------------------


@dataclass
class Record:
    """What the server's handler saw, in bounded form: counters, never per-connection lists."""

    closes: Counter[tuple[str, int | None]] = field(default_factory=Counter)
    flood_sent: int = 0


def make_handler(record: Record) -> Callable[[wscompat.Connection], Awaitable[None]]:
    """Echo everywhere; on ``/flood`` send 64 KiB messages for as long as the peer takes them."""
    text = "f" * FLOOD_MESSAGE
    data = b"f" * FLOOD_MESSAGE

    async def handler(ws: wscompat.Connection) -> None:
        path = ws.path.split("?")[0]
        try:
            if path == "/flood":
                message: str | bytes = data if ws.caps.binary else text
                while True:
                    await ws.send(message)
                    record.flood_sent += 1
            async for message in ws:
                await ws.send(message)
        except wscompat.ConnectionClosed:
            pass
        finally:
            record.closes[(path, ws.close_code)] += 1

    return handler


@dataclass
class Arena:
    server: wscompat.Server
    record: Record
    hostile: int
    fds: int = 0
    memory: int = 0

    @property
    def port(self) -> int:
        return self.server.port

    def hostile_closes(self) -> Counter[tuple[str, int | None]]:
        """Close codes the server saw on hostile connections; the chorus's must all be 1000."""
        good = Counter({k: n for k, n in self.record.closes.items() if k[0].startswith("/good/")})
        assert good == Counter({(f"/good/{i}", 1000): 5 for i in range(CHORUS_PER_DRAFT)})
        return self.record.closes - good

    async def released(self) -> None:
        """Wait until the server holds no connection, then compare with the baseline."""
        with trio.move_on_after(15):
            while self.server.active or open_fds() != self.fds:
                await trio.sleep(0.05)
        assert (self.server.active, open_fds()) == (0, self.fds), "(connections, descriptors)"
        grown = await traced_memory() - self.memory
        allowed = MEMORY_TOLERANCE + TABLE_SLACK * self.hostile
        assert grown <= allowed, f"{grown} bytes still held after the attack"


async def warm_up(port: int, server: wscompat.Server, connections: int) -> None:
    """Hold as many connections at once as the attack will, both ends waiting to read,
    then drop them, and echo a little: the tables trio grows for them are then already
    in the baseline. The connections complete a handshake, so that none of them times
    out before all are open, however slowly the machine opens them."""
    limiter = trio.CapacityLimiter(100)
    async with trio.open_nursery() as nursery:

        async def one() -> None:
            async with limiter:
                stream = await trio.open_tcp_stream(HOST, port)
                await stream.send_all(UPGRADE13)
                assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 101 ")
            try:
                await stream.receive_some(1)
            finally:
                await trio.aclose_forcefully(stream)

        for _ in range(connections):
            nursery.start_soon(one)
        with trio.fail_after(30):
            while len(server.connections) < connections:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    async with chorus(port) as c:
        await c.advance()


async def arena(start_server: Starter, hostile: int, **options: object) -> Arena:
    record = Record()
    server = await start_server(make_handler(record), **{**OPTIONS, **options})
    await warm_up(server.port, server, hostile + 5 * CHORUS_PER_DRAFT)
    with trio.fail_after(10):
        while server.active:
            await trio.sleep(0.05)
    record.closes.clear()
    return Arena(server, record, hostile, open_fds(), await traced_memory())


# -- the well-behaved chorus ------------------------------------------------------------


class Chorus:
    """Good clients of every draft, echoing until told to stop; nothing may be lost.

    A round has no cancel scope of its own: trio keeps a deadline that was left early in
    its heap until every earlier deadline is gone, so a scope per round would leave a few
    hundred stale entries behind the server's keepalive deadline and read as a leak.
    Rounds record when they started, and the checks look for one that is overdue.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.rounds: Counter[Draft] = Counter(dict.fromkeys(Draft, 0))
        self.failures: list[str] = []
        self.slowest = 0.0
        """The longest round trip any good client has seen, in seconds."""
        self.waiting: dict[tuple[Draft, int], float] = {}
        """When each client's unanswered message went out."""
        self._stop = trio.Event()

    async def client(self, draft: Draft, index: int) -> None:
        url = f"ws://{HOST}:{self.port}/good/{index}"
        key = (draft, index)
        n = 0
        try:
            async with connect(url, draft=draft) as ws:
                while not self._stop.is_set():
                    message: str | bytes = f"{draft} #{index} round {n}: ü€😀"
                    if draft.caps.binary and n % 3 == 2:
                        message = n.to_bytes(4, "big") * 50
                    sent_at = self.waiting[key] = trio.current_time()
                    await ws.send(message)
                    answer = await ws.receive()
                    del self.waiting[key]
                    self.slowest = max(self.slowest, trio.current_time() - sent_at)
                    if answer != message:
                        self.failures.append(f"{draft} #{index} round {n}: wrong echo")
                    self.rounds[draft] += 1
                    n += 1
                    await trio.sleep(0.01)
        except wscompat.WebSocketError as exc:
            self.failures.append(f"{draft} #{index}: {exc!r}")
        finally:
            if key in self.waiting:
                self.failures.append(f"{draft} #{index} round {n}: no echo in time")

    def check(self) -> None:
        """Fail on any failure so far, or on a round older than ROUND_TIMEOUT."""
        now = trio.current_time()
        late = [f"{d} #{i}" for (d, i), at in self.waiting.items() if now - at > ROUND_TIMEOUT]
        assert not late, f"no echo in time: {late}"
        assert not self.failures, self.failures

    async def advance(self, rounds: int = 3) -> None:
        """Return once every draft has echoed ``rounds`` more messages."""
        start = Counter(self.rounds)
        with trio.fail_after(10):
            while any(self.rounds[d] < start[d] + rounds for d in Draft):
                self.check()
                await trio.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def chorus(port: int) -> AsyncIterator[Chorus]:
    c = Chorus(port)
    async with trio.open_nursery() as nursery:
        for draft in Draft:
            for index in range(CHORUS_PER_DRAFT):
                nursery.start_soon(c.client, draft, index)
        await c.advance(1)
        try:
            yield c
        finally:
            c.stop()
            # A client still waiting for an echo gets ROUND_TIMEOUT from now, then is
            # cancelled and reported as lost.
            nursery.cancel_scope.deadline = trio.current_time() + ROUND_TIMEOUT
    assert c.failures == []


# -- raw hostile peers ------------------------------------------------------------------


async def open_raw(
    port: int, draft: Draft, path: str, *, quiet: bool = True
) -> trio.SocketStream:
    """A raw TCP peer that has completed ``draft``'s handshake. With ``quiet`` the
    server sent nothing after its answer; a handler that sends at once (``/flood``) may
    have its first frames arrive in the same read as the 101."""
    handshake = ClientHandshake(draft, HOST, path, port=port)
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(handshake.request())
    result = None
    while result is None:
        chunk = await stream.receive_some(65536)
        assert chunk, f"{draft}: closed during the handshake"
        result = handshake.receive_data(bytes(chunk))
    assert not quiet or result.leftover == b""
    return stream


async def read_to_eof(stream: trio.SocketStream, limit: int = 1 << 20) -> bytes:
    data = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:  # a reset after the server's last bytes
            return data
        if not chunk:
            return data
        data += chunk
        assert len(data) < limit


def vanish(stream: trio.SocketStream) -> None:
    """Close with a reset, as a peer whose machine went away would look."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Unmasked frames from a server's bytes: (opcode, payload) pairs and the unparsed rest."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        length, head = data[pos + 1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        if len(data) < pos + head + length:
            break
        frames.append((data[pos] & 0x0F, data[pos + head : pos + head + length]))
        pos += head + length
    return frames, data[pos:]


def close_code(data: bytes) -> int | None:
    for opcode, payload in server_frames(data)[0]:
        if opcode == 8:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
    return None


def hixie_length(n: int) -> bytes:
    """A hixie length-prefixed frame header length: 7-bit groups, high bit on all but the last."""
    groups = [n & 0x7F]
    n >>= 7
    while n:
        groups.insert(0, 0x80 | (n & 0x7F))
        n >>= 7
    return bytes(groups)


# -- slowloris --------------------------------------------------------------------------

LORISES_PER_DRAFT = 200
LORIS_TIMEOUT = 2.0


LorisResults = Counter[tuple[Draft, str, str]]


async def slowloris(port: int, c: Chorus) -> tuple[LorisResults, float, float, int]:
    """Run the lorises: (answers by draft and start point, shortest and longest life, the
    most lorises connected at a moment when every draft of the chorus had just echoed).

    Each loris sends one byte of its draft's request per second until the server closes it.
    """
    limiter = trio.CapacityLimiter(100)
    results: LorisResults = Counter()
    durations: list[float] = []
    connected = 0
    held_while_echoing = 0

    async def loris(draft: Draft, near_end: bool) -> None:
        nonlocal connected
        request = ClientHandshake(draft, HOST, "/loris", port=port).request()
        bulk, rest = (request[:-8], request[-8:]) if near_end else (b"", request)
        async with limiter:
            # Timed from before the connect: the server's timeout runs from its accept,
            # and this task may run well after the connect completed, with 1,000 others.
            began = trio.current_time()
            stream = await trio.open_tcp_stream(HOST, port)
        connected += 1
        received = b""
        if bulk:
            await stream.send_all(bulk)
        for byte in rest:
            try:
                await stream.send_all(bytes([byte]))
            except trio.BrokenResourceError:
                break
            with trio.move_on_after(1.0):
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:  # closed with our byte unread
                    break
                if not chunk:
                    break
                received += chunk
        else:
            raise AssertionError(f"{draft}: the whole request went through")
        connected -= 1
        durations.append(trio.current_time() - began)
        await stream.aclose()
        if not received:
            answer = "nothing"
        elif received.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n") and (
            received.endswith(b"\r\n\r\n")
        ):
            answer = "early 101 head"
        else:
            answer = repr(received[:40])
        results[(draft, "near end" if near_end else "from start", answer)] += 1

    with trio.fail_after(LORIS_TIMEOUT + 20):
        async with trio.open_nursery() as nursery:
            for i in range(LORISES_PER_DRAFT):
                for draft in Draft:
                    nursery.start_soon(loris, draft, i % 2 == 1)
            while len(durations) < 5 * LORISES_PER_DRAFT:
                await c.advance(1)
                held_while_echoing = max(held_while_echoing, connected)
    return results, min(durations), max(durations), held_while_echoing


async def test_slowloris_on_every_draft(start_server: Starter) -> None:
    """1,000 connections, 200 per draft, each sending one byte of its request per second.

    Half start at the first byte (the sniffer is waiting), half send all but the last 8
    bytes at once (the head parser is waiting; on hixie-76 the head is complete and key3
    is being waited for, so the early 101 head has been written). Every one is closed by
    the server at the handshake timeout, without any response but that early head,
    while the chorus keeps echoing.
    """
    a = await arena(start_server, 5 * LORISES_PER_DRAFT, handshake_timeout=LORIS_TIMEOUT)
    async with chorus(a.port) as c:
        results, shortest, longest, held = await slowloris(a.port, c)
    expected: LorisResults = Counter()
    for draft in Draft:
        near = "early 101 head" if draft is Draft.HIXIE76 else "nothing"
        expected[(draft, "near end", near)] = LORISES_PER_DRAFT // 2
        expected[(draft, "from start", "nothing")] = LORISES_PER_DRAFT // 2
    assert results == expected
    # The chorus echoed while most lorises were holding their connections.
    assert held >= 5 * LORISES_PER_DRAFT // 2
    # Cut off by the timeout: not before it, and not long after it.
    assert shortest >= LORIS_TIMEOUT * 0.9
    assert longest <= LORIS_TIMEOUT + 3.0
    assert a.hostile_closes() == Counter()
    await a.released()


# -- a head that never ends -------------------------------------------------------------


def head_without_end(draft: Draft) -> bytes:
    """``draft``'s request head without the blank line that would end it."""
    request = ClientHandshake(draft, HOST, "/endless", port=80).request()
    return request[: request.index(b"\r\n\r\n") + 2]


async def endless_head_fast(port: int, draft: Draft) -> tuple[bytes, float]:
    """Header lines as fast as the server takes them; returns the answer once closed."""
    stream = await trio.open_tcp_stream(HOST, port)
    answered = trio.Event()
    began = trio.current_time()

    async def send() -> None:
        await stream.send_all(head_without_end(draft))
        sent = 0
        try:
            while not answered.is_set() and sent < 1 << 20:
                lines = b"".join(b"X-Filler-%06d: %s\r\n" % (sent + i, b"v" * 80)
                                 for i in range(10))
                await stream.send_all(lines)
                sent += 10
                await trio.sleep(0)
            await stream.send_eof()
        except trio.BrokenResourceError:
            pass

    data = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                answered.set()
    await stream.aclose()
    return data, trio.current_time() - began


async def endless_head_slow(port: int, draft: Draft) -> tuple[bytes, float]:
    """One header line every 0.2 s, staying under the size limit; returns once closed."""
    stream = await trio.open_tcp_stream(HOST, port)
    began = trio.current_time()
    await stream.send_all(head_without_end(draft))
    data = b""
    for i in range(100):
        try:
            await stream.send_all(b"X-Slow-%d: v\r\n" % i)
        except trio.BrokenResourceError:
            break
        with trio.move_on_after(0.2):
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # closed with our last line unread
                break
            data += chunk
            if not chunk:
                break
    else:
        raise AssertionError("never closed")
    await stream.aclose()
    return data, trio.current_time() - began


@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_a_head_that_never_ends(start_server: Starter, draft: Draft) -> None:
    """Fast: 431 once over ``max_head_size``. Slow: closed unanswered at the handshake timeout."""
    a = await arena(start_server, 8)
    answers: list[tuple[str, bytes, float]] = []

    async def peer(kind: str) -> None:
        attack = endless_head_fast if kind == "fast" else endless_head_slow
        data, took = await attack(a.port, draft)
        answers.append((kind, data, took))

    async with chorus(a.port) as c, trio.open_nursery() as nursery:
        for kind in ("fast", "slow") * 4:
            nursery.start_soon(peer, kind)
        await c.advance()
    assert len(answers) == 8
    for kind, data, took in answers:
        if kind == "fast":
            assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
            assert took < HANDSHAKE_TIMEOUT
        else:
            assert data == b""
            assert took >= HANDSHAKE_TIMEOUT * 0.9
    await a.released()


# -- frames that claim too much ---------------------------------------------------------


def huge_frames(draft: Draft) -> list[bytes]:
    """Frame heads announcing 2**63 - 1 bytes (hybi) or 2**63 bytes (hixie, length-prefixed)."""
    if draft in HIXIE:
        return [b"\x80" + hixie_length(2**63), b"\x80" + hixie_length(2**63) + b"x" * 100]
    head = b"\x82\xff" + (2**63 - 1).to_bytes(8, "big")
    return [head + b"\x01\x02\x03\x04", head + b"\x01\x02\x03\x04" + b"x" * 100,
            b"\x81\xff" + (2**63 - 1).to_bytes(8, "big") + b"\0\0\0\0"]


def endless_sentinel_frames(draft: Draft) -> list[bytes]:
    """hixie sentinel frames with no end byte: text (0x00) and a discarded type (0x01)."""
    return [b"\x00" + b"a" * 1000, b"\x01" + b"b" * 1000]


async def send_then_read(port: int, draft: Draft, path: str, first: bytes, *,
                         more: bytes = b"", repeat: int = 0) -> tuple[bytes, int]:
    """Send ``first`` then ``more`` up to ``repeat`` times; (what came back, bytes sent)."""
    stream = await open_raw(port, draft, path)
    sent = 0
    data = b""
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            nonlocal sent
            try:
                await stream.send_all(first)
                sent += len(first)
                for _ in range(repeat):
                    await stream.send_all(more)
                    sent += len(more)
            except trio.BrokenResourceError:
                pass

        nursery.start_soon(send)
        data = await read_to_eof(stream)
        nursery.cancel_scope.cancel()
    await stream.aclose()
    return data, sent


@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_a_length_of_2_to_the_63(start_server: Starter, draft: Draft) -> None:
    """Refused on the length header alone: close 1009 on hybi, a bare TCP close on hixie."""
    frames = huge_frames(draft) * 4
    a = await arena(start_server, len(frames))
    answers: list[bytes] = []

    async def peer(frame: bytes) -> None:
        data, _ = await send_then_read(a.port, draft, "/huge", frame)
        answers.append(data)

    async with chorus(a.port) as c:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for frame in frames:
                    nursery.start_soon(peer, frame)
        await c.advance()
    if draft in HIXIE:
        assert answers == [b""] * len(frames)
    else:
        assert [close_code(data) for data in answers] == [1009] * len(frames)
        assert all(server_frames(data)[0] == [(8, server_frames(data)[0][0][1])]
                   for data in answers)
    assert a.hostile_closes() == Counter({("/huge", 1009): len(frames)})
    await a.released()


@pytest.mark.parametrize("draft", HIXIE, ids=str)
async def test_a_hixie_frame_with_no_end_byte(start_server: Starter, draft: Draft) -> None:
    """The bytes before a missing 0xFF are capped at ``max_message_size``: TCP closed, 1009."""
    frames = endless_sentinel_frames(draft) * 4
    a = await arena(start_server, len(frames))
    answers: list[tuple[bytes, int]] = []

    async def peer(frame: bytes) -> None:
        # Up to 4 MiB on offer; the server stops reading a little past 64 KiB.
        answers.append(await send_then_read(a.port, draft, "/endless", frame,
                                            more=frame[1:] * 4, repeat=1024))

    async with chorus(a.port) as c:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for frame in frames:
                    nursery.start_soon(peer, frame)
        await c.advance()
    assert [data for data, _ in answers] == [b""] * len(frames)
    assert all(sent < 4 << 20 for _, sent in answers)
    assert a.hostile_closes() == Counter({("/endless", 1009): len(frames)})
    await a.released()


# -- peers that stop reading, vanish, or flood ------------------------------------------


NEVER_READING = 8


@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_a_client_that_never_reads(start_server: Starter, draft: Draft) -> None:
    """The handler sends 64 KiB messages without pause to peers that never read.

    Its sends stop making progress once the kernel buffers are full, and traced memory
    stays within a bound far below what was attempted: the server holds no queue of its
    own. Then the peers vanish, the handler's send fails, and everything is released.
    """
    a = await arena(start_server, NEVER_READING)
    streams = []
    async with chorus(a.port) as c:
        tracemalloc.reset_peak()
        for _ in range(NEVER_READING):
            streams.append(await open_raw(a.port, draft, "/flood", quiet=False))
        with trio.fail_after(15):
            last = -1
            while a.record.flood_sent != last:
                last = a.record.flood_sent
                await trio.sleep(0.25)
        # Stalled, and the chorus echoes meanwhile.
        await c.advance()
        stalled_at = a.record.flood_sent
        await trio.sleep(0.5)
        assert a.record.flood_sent == stalled_at
        peak = tracemalloc.get_traced_memory()[1] - a.memory
        assert peak < 4 << 20, f"peak {peak} bytes above the baseline"
        # What went out sits in kernel buffers, a few MiB per peer at most.
        assert stalled_at * FLOOD_MESSAGE < NEVER_READING * (16 << 20)
        for stream in streams:
            vanish(stream)
        del streams
        await c.advance()
    assert a.hostile_closes() == Counter({("/flood", 1006): NEVER_READING})
    await a.released()


def partial_messages(draft: Draft) -> list[bytes]:
    """Where a peer can vanish mid-message: in a frame head, a length, a payload."""
    if draft in HIXIE:
        return [b"\x00", b"\x00half a message \xc3", b"\x80\x81", b"\x80\x05ab"]
    frame = client_frame(1, "ü".encode() * 200)
    return [frame[:1], frame[:3], frame[:10], frame[:200],
            client_frame(2, b"x" * 50, fin=False) + client_frame(0, b"y" * 50)[:20]]


@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_a_client_that_vanishes_mid_message(start_server: Starter, draft: Draft) -> None:
    """Each peer sends part of a message and vanishes (half with FIN, half with a reset)."""
    pieces = partial_messages(draft) * 2
    a = await arena(start_server, len(pieces))
    async with chorus(a.port) as c:
        with trio.fail_after(10):
            for i, piece in enumerate(pieces):
                stream = await open_raw(a.port, draft, "/vanish")
                await stream.send_all(piece)
                await trio.sleep(0.01)
                if i % 2:
                    vanish(stream)
                else:
                    await stream.aclose()
            while sum(a.record.closes.values()) < len(pieces):
                await trio.sleep(0.02)
        await c.advance()
    assert a.hostile_closes() == Counter({("/vanish", 1006): len(pieces)})
    await a.released()


PINGS = 3000
PINGERS_NOT_READING = 3
"""Pingers that never read, beside the two that do: each is stalled on its own."""
MAX_UNREAD_PINGS = 100_000
"""A pinger that never reads is stalled long before this (13 MiB of pings)."""


def ping_payload(i: int) -> bytes:
    return i.to_bytes(4, "big") * 31


async def ping_flood_reading(port: int, draft: Draft) -> int:
    """Send PINGS distinct pings in bursts while reading; returns how many pongs echoed
    their ping's payload, in order (only a count is kept: the test measures memory)."""
    stream = await open_raw(port, draft, "/pings")
    answered = 0
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            nonlocal answered
            rest = b""
            while answered < PINGS:
                chunk = await stream.receive_some(65536)
                assert chunk, "closed during the flood"
                frames, rest = server_frames(rest + chunk)
                for opcode, payload in frames:
                    assert (opcode, payload) == (0xA, ping_payload(answered))
                    answered += 1

        nursery.start_soon(read)
        for start in range(0, PINGS, 100):
            await stream.send_all(
                b"".join(client_frame(9, ping_payload(i)) for i in range(start, start + 100))
            )
    await stream.send_all(client_frame(8, (1000).to_bytes(2, "big")))
    assert close_code(await read_to_eof(stream)) == 1000
    await stream.aclose()
    return answered


async def ping_flood_not_reading(port: int, draft: Draft) -> int:
    """Send pings and never read the pongs; returns how many went out before sends stalled."""
    stream = await open_raw(port, draft, "/pings")
    burst = b"".join(client_frame(9, b"p" * 125) for _ in range(100))
    sent = 0
    while sent < MAX_UNREAD_PINGS:
        with trio.move_on_after(0.5):
            await stream.send_all(burst)
            sent += 100
            continue
        break
    vanish(stream)
    return sent


@pytest.mark.parametrize("draft", HYBI, ids=str)
async def test_a_flood_of_pings(start_server: Starter, draft: Draft) -> None:
    """Pingers that read get every pong, in order. One that never reads is pushed back on:
    the server stops reading it once its pongs cannot be written, and when it then
    vanishes, only its own connection ends (1006)."""
    a = await arena(start_server, 2 + PINGERS_NOT_READING)
    answered: list[int] = []
    stalled: list[int] = []

    async def reading() -> None:
        answered.append(await ping_flood_reading(a.port, draft))

    async def not_reading() -> None:
        stalled.append(await ping_flood_not_reading(a.port, draft))

    async with chorus(a.port) as c:
        tracemalloc.reset_peak()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reading)
                nursery.start_soon(reading)
                for _ in range(PINGERS_NOT_READING):
                    nursery.start_soon(not_reading)
                await c.advance()
        await c.advance()
        peak = tracemalloc.get_traced_memory()[1] - a.memory
    assert answered == [PINGS, PINGS]
    assert len(stalled) == PINGERS_NOT_READING
    assert max(stalled) < MAX_UNREAD_PINGS
    assert peak < 4 << 20, f"peak {peak} bytes above the baseline"
    assert a.hostile_closes() == Counter(
        {("/pings", 1000): 2, ("/pings", 1006): PINGERS_NOT_READING}
    )
    await a.released()


# -- compression bombs ------------------------------------------------------------------

BOMB_SIZE = 16 << 20
"""What each bomb inflates to: 256 times ``max_message_size``, from about 16 KiB."""


@functools.cache
def deflated_zeros() -> bytes:
    """BOMB_SIZE zero bytes as raw DEFLATE, sync-flushed, without the final 00 00 ff ff.

    Made in 1 MiB pieces, before any baseline, so the test never holds the inflated size.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    data = b"".join(compressor.compress(zeros) for _ in range(BOMB_SIZE >> 20))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def bombs() -> dict[str, tuple[str, bytes]]:
    """Name: (the extension offered, the frames). Each frame is far under the size limit."""
    data = deflated_zeros()
    assert len(data) < MAX_MESSAGE // 2
    quarter = len(data) // 4
    parts = [data[:quarter], data[quarter : 2 * quarter], data[2 * quarter : 3 * quarter],
             data[3 * quarter :]]
    fragmented = b"".join(
        client_frame(2 if i == 0 else 0, part, fin=i == 3, rsv=0x40 if i == 0 else 0)
        for i, part in enumerate(parts)
    )
    return {
        "permessage-deflate": ("permessage-deflate", client_frame(2, data, rsv=0x40)),
        "permessage-deflate-text": ("permessage-deflate", client_frame(1, data, rsv=0x40)),
        "permessage-deflate-fragmented": ("permessage-deflate", fragmented),
        "x-webkit-deflate-frame": ("x-webkit-deflate-frame", client_frame(2, data, rsv=0x40)),
    }


async def open_compressed(port: int, draft: Draft, offer: str) -> trio.SocketStream:
    """A raw hybi peer whose offer of ``offer`` the server accepted."""
    handshake = ClientHandshake(draft, HOST, "/bomb", port=port,
                                extra_headers=(("Sec-WebSocket-Extensions", offer),))
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(handshake.request())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(65536)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 ")
    assert f"\r\nSec-WebSocket-Extensions: {offer}".encode() in head, head
    assert head.endswith(b"\r\n\r\n")
    return stream


@pytest.mark.parametrize("draft", HYBI, ids=str)
async def test_a_compression_bomb(start_server: Starter, draft: Draft) -> None:
    """16 KiB frames that inflate to 16 MiB: close 1009 once the inflated bytes pass
    ``max_message_size``, and traced memory never comes near the inflated size."""
    cases = list(bombs().items()) * 2
    a = await arena(start_server, len(cases))
    codes: Counter[tuple[str, int | None]] = Counter()

    async def bomber(name: str, offer: str, frames: bytes) -> None:
        stream = await open_compressed(a.port, draft, offer)
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(frames)
        codes[(name, close_code(await read_to_eof(stream)))] += 1
        await stream.aclose()

    async with chorus(a.port) as c:
        tracemalloc.reset_peak()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for name, (offer, frames) in cases:
                    nursery.start_soon(bomber, name, offer, frames)
        await c.advance()
        peak = tracemalloc.get_traced_memory()[1] - a.memory
    assert codes == Counter({(name, 1009): 2 for name in bombs()})
    # Each compressing connection holds about 300 KiB of zlib state; one bomb inflated
    # in full would take 16 MiB.
    assert peak < 8 << 20, f"peak {peak} bytes above the baseline"
    assert a.hostile_closes() == Counter({("/bomb", 1009): len(cases)})
    await a.released()
