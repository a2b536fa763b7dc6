"""HTTP/2's own attacks against the real trio server over loopback, beside good clients.

Each flood of docs/limits.md (``h2_flood_limit``, ``h2_max_streams``,
``h2_max_header_list``, the frame size) is sent as raw frames by :class:`RawH2`
(tests/trio/h2client.py), in bursts, with the server's default limits. Between bursts
a good RFC 6455 client over HTTP/1.1 and a good RFC 8441 WebSocket on another HTTP/2
connection each echo a message, so both are served while the flood is under way, and
again after it. Every flood must end with GOAWAY and the error code the server's
design gives it, then a TCP close.

The flood is run once to warm up, then three more times; afterwards the server's own
counters (connections, tasks), the process's open file descriptors (the server runs
in this process) and the memory allocated by the server's code (tracemalloc, traces
of wscompat, h2, hpack, hyperframe and trio) are back to what they were after the
first, within a small margin.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame, SettingsFrame

import wscompat
from wscompat.trio.client import connect

from ..conftest import Starter
from .h2client import (
    HOST,
    PREFACE,
    Firehose,
    GoAway,
    H2Client,
    H2WebSocket,
    RawH2,
    open_h2,
    open_raw_h2,
    open_stalled,
    open_stream,
    raw_frame,
    read_frames,
)

CALM = int(ErrorCodes.ENHANCE_YOUR_CALM)
PROTOCOL_ERROR = int(ErrorCodes.PROTOCOL_ERROR)
FRAME_SIZE_ERROR = int(ErrorCodes.FRAME_SIZE_ERROR)
# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, CONTINUATION = 0, 1, 2, 3, 4, 6, 9
END_HEADERS = 0x4
CONNECT = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
           (":path", "/flood"), (":authority", HOST), ("sec-websocket-version", "13")]
BURSTS = 200
"""Most bursts a flood may take before the test fails: every flood here ends within a
few, whatever the machine's speed (the budgets refill at 10 frames a second)."""
ROUNDS = 3
"""Floods measured after the warm-up one."""
SETTLE = 20.0
MEMORY_MARGIN = 24 * 1024
"""Bytes the server's code may hold more after the floods than before (about 1 KiB is
seen). An idle HTTP/2 session alone holds about 16 KiB, and three floods ran: a
session kept by each, or its streams, would pass it twice over."""
TRACED = ["*/wscompat/*", "*/h2/*", "*/hpack/*", "*/hyperframe/*"]
"""Where the server's own allocations are made. trio is left out: its deadline heap
keeps cancelled scopes until it prunes them (past a thousand), which is not the
server's; the server's tasks are counted instead."""


@dataclass
class Flood:
    """One attack: ``setup`` once on the new connection, then bursts of ``frames``
    frames, each made by ``burst``, until the server answers."""

    code: int
    """The GOAWAY's error code."""
    reason: bytes | None
    """The GOAWAY's debug data, where the server writes one."""
    burst: Callable[[RawH2, Ids], bytes]
    frames: int = 50
    setup: Callable[[RawH2, Ids], Awaitable[None]] | None = None


@dataclass
class Ids:
    """The flood's own state: the next stream id."""

    sid: int = 1

    def next(self) -> int:
        sid, self.sid = self.sid, self.sid + 2
        return sid


def headers(sid: int, block: bytes, flags: int = END_HEADERS) -> bytes:
    return raw_frame(HEADERS, flags, sid, block)


def rapid_reset(raw: RawH2, state: Ids) -> bytes:
    """CVE-2023-44487: a request, and its reset at once."""
    sid = state.next()
    return (headers(sid, raw.block(CONNECT))
            + raw_frame(RST_STREAM, 0, sid, int(ErrorCodes.CANCEL).to_bytes(4, "big")))


SETTINGS_FRAME = raw_frame(SETTINGS, 0, 0, (1).to_bytes(2, "big") + (4096).to_bytes(4, "big"))
"""SETTINGS_HEADER_TABLE_SIZE = 4096: no change, but acknowledged all the same."""
PING_FRAME = raw_frame(PING, 0, 0, b"flooding")


def settings(raw: RawH2, state: Ids) -> bytes:
    return SETTINGS_FRAME


def ping(raw: RawH2, state: Ids) -> bytes:
    return PING_FRAME


def priority(raw: RawH2, state: Ids) -> bytes:
    return raw_frame(PRIORITY, 0, 1, (0).to_bytes(4, "big") + b"\x0f")


async def open_websocket(raw: RawH2, state: Ids) -> None:
    """An accepted WebSocket on stream 1, for DATA to go to."""
    assert state.next() == 1
    assert await raw.send(headers(1, raw.block(CONNECT)))
    await raw.wait_for(lambda: bool(raw.headers_for(1)))


def empty_data(raw: RawH2, state: Ids) -> bytes:
    return raw_frame(DATA, 0, 1, b"")


def empty_headers(raw: RawH2, state: Ids) -> bytes:
    return headers(state.next(), b"")


async def open_header_block(raw: RawH2, state: Ids) -> None:
    """HEADERS without END_HEADERS: the header block never ends."""
    block = raw.block(CONNECT)
    assert await raw.send(headers(state.next(), block[:5], flags=0))


def continuation(size: int) -> Callable[[RawH2, Ids], bytes]:
    """CVE-2024-27316: CONTINUATION frames without END_HEADERS, ``size`` bytes each."""

    def burst(raw: RawH2, state: Ids) -> bytes:
        return raw_frame(CONTINUATION, 0, 1, b"\x00" * size)

    return burst


def open_streams(raw: RawH2, state: Ids) -> bytes:
    """WebSockets left open: the 101st breaks MAX_CONCURRENT_STREAMS (100)."""
    return headers(state.next(), raw.block(CONNECT))


def hpack_bomb(raw: RawH2, state: Ids) -> bytes:
    """A few hundred bytes that decode to 120 KB: forty references to one entry of
    the dynamic table."""
    return headers(state.next(), raw.block([*CONNECT, *[("x-bomb", "b" * 3000)] * 40]))


def long_header_list(raw: RawH2, state: Ids) -> bytes:
    """One literal field of 20,000 bytes (no Huffman), across HEADERS and CONTINUATION."""
    block = raw.encoder.encode([*CONNECT, ("x-long", "a" * 20000)], huffman=False)
    sid = state.next()
    return (headers(sid, block[:16000], flags=0)
            + raw_frame(CONTINUATION, END_HEADERS, sid, block[16000:]))


def oversized_frame(raw: RawH2, state: Ids) -> bytes:
    """A DATA frame of 16,385 bytes, one more than SETTINGS_MAX_FRAME_SIZE."""
    return raw_frame(DATA, 0, 1, b"\x00" * 16385)


FLOODS = {
    "rapid-reset": Flood(CALM, b"RST_STREAM (rapid reset) flood", rapid_reset),
    "settings": Flood(CALM, b"SETTINGS flood", settings),
    "ping": Flood(CALM, b"PING flood", ping),
    "priority": Flood(CALM, b"PRIORITY flood", priority),
    "empty-data": Flood(CALM, b"empty DATA flood", empty_data, setup=open_websocket),
    "empty-headers": Flood(PROTOCOL_ERROR, None, empty_headers),
    "continuation-empty": Flood(PROTOCOL_ERROR, None, continuation(0),
                                setup=open_header_block),
    "continuation-16k": Flood(PROTOCOL_ERROR, None, continuation(16384), frames=8,
                              setup=open_header_block),
    "too-many-streams": Flood(PROTOCOL_ERROR, None, open_streams, frames=30),
    "hpack-bomb": Flood(CALM, None, hpack_bomb, frames=1),
    "long-header-list": Flood(CALM, None, long_header_list, frames=1),
    "oversized-frame": Flood(FRAME_SIZE_ERROR, b"a frame of 16385 bytes is over the limit",
                             oversized_frame, frames=1),
}


@dataclass
class GoodClients:
    """An RFC 6455 client over HTTP/1.1 and an RFC 8441 WebSocket, each on a
    connection of its own; ``round()`` echoes one message on each."""

    http1: wscompat.Connection
    h2: H2Client
    h2_ws: H2WebSocket
    echoes: int = 0

    async def round(self, tag: str) -> None:
        with trio.fail_after(SETTLE):
            text = f"{tag} #{self.echoes} 中文 😀"
            await self.http1.send(text)
            assert await self.http1.receive() == text
            await self.h2_ws.echo(text.encode())
        self.echoes += 1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries
                       for child in nursery.child_tasks)

    return walk(root)


def traced() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, pattern) for pattern in TRACED])


def size(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def run_flood(port: int, flood: Flood, good: GoodClients, name: str) -> list[GoAway]:
    """One flood on a new connection, good echoes between its bursts; returns the
    GOAWAY frames received once the server has closed the connection (the client and
    the frames it kept are let go: the memory measured is the server's)."""
    async with open_raw_h2(port) as raw:
        state = Ids()
        if flood.setup is not None:
            await flood.setup(raw, state)
        with trio.fail_after(SETTLE * 3):
            for _ in range(BURSTS):
                data = b"".join(flood.burst(raw, state) for _ in range(flood.frames))
                if not await raw.send(data) or raw.gone:
                    break
                await good.round(name)  # served while the flood is under way
                if raw.gone:
                    break
            else:
                raise AssertionError(f"no answer after {BURSTS} bursts of {name}")
            await raw.wait_for(lambda: raw.eof)  # GOAWAY, then the TCP close
    return raw.goaways


@pytest.mark.parametrize("name", list(FLOODS))
async def test_a_flood_is_answered_with_goaway_beside_good_clients(
    start_server: Starter, name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    flood = FLOODS[name]
    server = await start_server()
    tracemalloc.start()
    try:
        async with connect(f"ws://{HOST}:{server.port}/good-http1") as http1, \
                open_h2(server.port) as h2:
            good = GoodClients(http1, h2, await h2.websocket("/good-h2"))
            await good.round("before")
            with caplog.at_level(logging.INFO, logger="wscompat.server"):
                [goaway] = await run_flood(server.port, flood, good, name)
                await settle(server, baseline=None)
            assert goaway.error_code == flood.code, goaway
            if flood.reason is not None:
                assert goaway.additional_data == flood.reason
            ended = [r.getMessage() for r in caplog.records
                     if "HTTP/2 connection ended" in r.getMessage()]
            assert len(ended) == 1, ended
            assert ErrorCodes(flood.code).name in ended[0]

            caplog.clear()
            fds, tasks, before = open_fds(), task_count(), traced()
            for n in range(ROUNDS):
                goaways = await run_flood(server.port, flood, good, f"{name} {n}")
                assert [g.error_code for g in goaways] == [flood.code]
            for n in range(5):
                await good.round(f"after {n}")
            await settle(server, baseline=(fds, tasks))
            after = traced()
            grown = size(after) - size(before)
            assert grown < MEMORY_MARGIN, growth(before, after)
            assert h2.goaway is None and not h2.eof
            assert good.h2_ws.side.reset is None and not good.h2_ws.side.ended
            assert http1.close_code is None
            await good.h2_ws.close()
    finally:
        tracemalloc.stop()


async def settle(server: wscompat.Server, baseline: tuple[int, int] | None) -> None:
    """Until the server counts only the two good connections and the good WebSocket
    (and, given a baseline, descriptors and tasks are back to it)."""
    with trio.fail_after(SETTLE):
        while True:
            done = server.active == 3 and len(server.connections) == 2
            if baseline is not None:
                done = done and open_fds() <= baseline[0] and task_count() <= baseline[1]
            if done:
                return
            await trio.sleep(0.05)


def growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> str:
    lines = [str(stat) for stat in after.compare_to(before, "lineno")[:10]]
    return f"{size(after) - size(before)} bytes more:\n" + "\n".join(lines)


@pytest.mark.parametrize("frame", [PING_FRAME, SETTINGS_FRAME], ids=["ping", "settings"])
async def test_a_flood_in_one_write_gets_at_most_its_budget_of_acks(
    start_server: Starter, frame: bytes,
) -> None:
    """Five thousand PINGs (or SETTINGS) in one write: ``h2`` acknowledges every frame
    of a read as it parses it, but once the budget is spent the GOAWAY is the whole
    answer, not a read's worth (up to 128 KiB) of acknowledgements."""
    server = await start_server()
    limit = server.options.h2_flood_limit
    async with open_raw_h2(server.port) as raw:
        settled = len(raw.frames)
        await raw.send(frame * 5000)
        await raw.wait_for(lambda: raw.eof)
    acks = [f for f in raw.frames[settled:] if f.type == frame[3] and "ACK" in f.flags]
    assert len(acks) <= limit, len(acks)
    assert [g.error_code for g in raw.goaways] == [CALM]


@pytest.mark.parametrize("frame", [PING_FRAME, SETTINGS_FRAME], ids=["ping", "settings"])
async def test_a_flood_in_the_first_flight_gets_the_settings_then_the_goaway(
    start_server: Starter, frame: bytes,
) -> None:
    """The preface, SETTINGS and the flood in one write, before the server has said a
    thing: the answer is still the server's SETTINGS first (RFC 9113 §3.4), then the
    GOAWAY, then the end of the connection."""
    server = await start_server()
    stream = await open_stream(server.port)
    await stream.send_all(PREFACE + raw_frame(SETTINGS, 0, 0) + frame * 5000)
    frames = await read_frames(stream)
    assert isinstance(frames[0], SettingsFrame) and "ACK" not in frames[0].flags
    assert isinstance(frames[-1], GoAwayFrame) and frames[-1].error_code == CALM


async def flood_quietly(stream: trio.abc.Stream, frames: bytes) -> None:
    """Write the flood; the server may reset the connection before it has read it all."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(frames)


async def test_a_flood_from_a_client_that_does_not_read_is_cut_off(
    start_server: Starter,
) -> None:
    """The server's writes to the client are blocked (it reads nothing) when its flood
    ends the session: the GOAWAY cannot be written, and the connection is closed after
    a bounded wait rather than kept with its stream's task as long as the client likes;
    good clients are served throughout."""
    firehose = Firehose()
    server = await start_server(firehose.handler)
    async with connect(f"ws://{HOST}:{server.port}/good-http1") as http1, \
            open_h2(server.port) as h2:
        good = GoodClients(http1, h2, await h2.websocket("/good-h2"))
        client = await open_stalled(server.port, "/firehose")
        with trio.fail_after(SETTLE):
            before = -1
            while firehose.sent in (0, before):  # until the writes are blocked
                before = firehose.sent
                await trio.sleep(0.3)
                if firehose.sent == before and before:
                    break
            await good.round("while the firehose is blocked")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood_quietly, client, PING_FRAME * 20000)
                await firehose.freed.wait()  # the handler's blocked send was let go
        await settle(server, baseline=None)
        for n in range(3):
            await good.round(f"after {n}")
        await good.h2_ws.close()
    await client.aclose()


async def test_the_goaway_behind_a_backlog_reaches_a_slow_reader(start_server: Starter) -> None:
    """256 KiB wait in the kernel for a client that has not read them yet when its
    flood ends the session. The GOAWAY is written behind them, and the server drains
    the rest of the flood before it closes: closed with unread input, the socket would
    be reset, and the reset would discard the backlog and the GOAWAY with it. The
    client reads only once the server is done, and gets all of it."""
    backlog = 4 * 65536
    queued = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        with contextlib.suppress(wscompat.ConnectionClosed):
            for _ in range(backlog // 65536):
                await ws.send(b"b" * 65536)
            queued.set()
            async for _message in ws:
                pass

    server = await start_server(handler)
    client = await open_stalled(server.port, "/backlog")
    with trio.fail_after(SETTLE):
        await queued.wait()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood_quietly, client, PING_FRAME * 20000)
            while server.active:  # the server is done with the connection
                await trio.sleep(0.05)
    frames = await read_frames(client)
    assert sum(len(f.data) for f in frames if isinstance(f, DataFrame)) >= backlog
    assert isinstance(frames[-1], GoAwayFrame), frames[-3:]
    assert frames[-1].error_code == CALM
