"""WebSocket over HTTP/2 writes a burst of replies in one write, as HTTP/1.1 does
(docs/architecture.md, "One write per burst"), over real loopback sockets.

The server and the test's client run in this thread. The server writes its socket with
``os.write``, which ``syscw`` of ``/proc/thread-self/io`` counts; the client (trio's
``SocketStream``) sends with ``send()``, which it does not. During the measured span
the client writes nothing but the burst itself: it hands no window back
(``auto_ack`` off), and its windows are larger than everything sent.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio

import wscompat
from wscompat.trio.connection import FAIR_RUN

from ..conftest import Starter
from ..framing_helpers import client_frame
from .h2client import BIG_WINDOW, H2WebSocket, open_h2

DEFAULT_WINDOW = 65535
"""A stream's window before the client changes it (RFC 9113 §6.9.2)."""

TEST_BOUND = 20.0
"""Seconds any one test may take: generous, for a loaded two-core machine."""
BINARY = 0x2


def write_syscalls() -> int:
    """write() system calls made so far by this thread."""
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/thread-self/io")


needs_proc_io = pytest.mark.skipif(
    not Path("/proc/thread-self/io").exists(), reason="write syscalls are counted on Linux"
)


def numbered(index: int) -> bytes:
    return b"m%07d" % index


async def echo(ws: wscompat.Connection) -> None:
    async for message in ws:
        await ws.send(message)


async def receive_burst(ws: H2WebSocket, count: int) -> list[str | bytes]:
    return [await ws.receive() for _ in range(count)]


def few_writes(burst: int) -> int:
    """The most writes a burst of ``burst`` replies may take: one, and one more per
    fairness checkpoint of the handler (every FAIR_RUN calls of receive() and send())."""
    return -(-2 * burst // FAIR_RUN) + 1


@needs_proc_io
@pytest.mark.parametrize("burst", [100, 1000])
async def test_a_burst_of_echoes_on_one_stream_leaves_in_few_writes(
    start_server: Starter, burst: int
) -> None:
    """``burst`` messages arrive in one DATA frame; their echoes come back whole and in
    order, in at most one write per FAIR_RUN calls plus one, not one per message."""
    server = await start_server(echo, max_queue=burst + 16)
    frames = b"".join(client_frame(BINARY, numbered(i)) for i in range(burst))
    with trio.fail_after(TEST_BOUND):
        async with open_h2(server.port, window=BIG_WINDOW) as client:
            ws = await client.websocket("/burst")
            await ws.echo(b"warm")  # the stream is open and idle on both sides
            client.auto_ack = False
            before = write_syscalls()
            await client.send_data(ws.sid, frames)
            echoed = await receive_burst(ws, burst)
            writes = write_syscalls() - before
            client.auto_ack = True
            await ws.close()
    assert echoed == [numbered(i) for i in range(burst)]
    assert 1 <= writes <= few_writes(burst), writes


@needs_proc_io
async def test_bursts_on_many_streams_leave_together(start_server: Starter) -> None:
    """Ten streams each get a burst in the same read; all the echoes leave in a few
    writes for the whole connection, not one per stream, let alone per message."""
    streams, burst = 10, 20
    server = await start_server(echo, max_queue=burst + 16)
    frames = b"".join(client_frame(BINARY, numbered(i)) for i in range(burst))
    with trio.fail_after(TEST_BOUND):
        async with open_h2(server.port, window=BIG_WINDOW) as client:
            sockets = [await client.websocket(f"/many/{n}") for n in range(streams)]
            for ws in sockets:
                await ws.echo(b"warm")
            client.auto_ack = False
            before = write_syscalls()
            for ws in sockets:  # queued in h2, then sent in one write
                client.conn.send_data(ws.sid, frames)
            await client.flush()
            echoed = [await receive_burst(ws, burst) for ws in sockets]
            writes = write_syscalls() - before
            client.auto_ack = True
            for ws in sockets:
                await ws.close()
    assert echoed == [[numbered(i) for i in range(burst)]] * streams
    # Each stream's handler runs in a pass of its own at worst; far below the
    # streams * burst writes of a write per message.
    assert 1 <= writes <= streams, writes


async def test_a_stream_whose_window_stays_shut_holds_back_only_its_sender(
    start_server: Starter,
) -> None:
    """The client never hands back the window of /hose (65,535 bytes), while the
    connection's window is wide open. The handler of /hose sends 16 KiB messages without
    end: its sends stop once the stream's window, its share of ``write_limit`` in the
    session and its own ``write_limit`` are full, and /echo on the same connection
    answers meanwhile. Once the client hands the window back, /hose goes on."""
    sent = [0]

    async def handler(ws: wscompat.Connection) -> None:
        if ws.path == "/hose":
            chunk = b"h" * 16384
            with contextlib.suppress(wscompat.ConnectionClosed):
                while True:
                    await ws.send(chunk)
                    sent[0] += len(chunk)
        else:
            await echo(ws)

    server = await start_server(handler)
    limit = server.options.write_limit
    with trio.fail_after(TEST_BOUND):
        async with open_h2(server.port) as client:
            client.auto_ack = False  # no window handed back, on any stream
            client.conn.increment_flow_control_window(BIG_WINDOW - DEFAULT_WINDOW)
            await client.flush()
            hose = await client.websocket("/hose")
            other = await client.websocket("/echo")
            stalled_at = -1
            for n in range(1000):  # bounded: the hose must stall well before
                await other.echo(f"still here {n}")
                if n % 20 == 19:
                    if sent[0] == stalled_at:
                        break
                    stalled_at = sent[0]
                    await trio.sleep(0.2)
            else:
                raise AssertionError("the hose never stalled")
            # Its window, its bytes held in the session, and its connection's own
            # backlog, each at most a message over its bound.
            bound = DEFAULT_WINDOW + 2 * limit + 3 * 16384
            assert DEFAULT_WINDOW <= sent[0] <= bound, (sent[0], bound)
            received = len(hose.side.data)
            assert received <= DEFAULT_WINDOW
            client.conn.acknowledge_received_data(received, hose.sid)
            hose.side.data.clear()
            await client.flush()
            await client.wait_for(lambda: sent[0] > stalled_at + 16384)
            await other.close()
