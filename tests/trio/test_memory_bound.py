"""What one connection can make the server hold, measured: a peer that sends large
messages as fast as the server reads them and never reads a byte back.

The bound is the formula of docs/limits.md ("Memory of one connection, at worst"),
computed from the server's own options. Memory is Python's traced memory
(``tracemalloc``): every object of the process, the server's and the test's, with the
peer's frame built before the baseline so that it is not counted. The peer's socket
takes no more than its small receive buffer, so the echo backs up into the server.
"""

from __future__ import annotations

import gc
import socket
import tracemalloc

import pytest
import trio

from wscompat.cli import echo
from wscompat.drafts import Draft
from wscompat.options import ServerOptions
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.trio import connection

from ..conftest import Starter
from ..framing_helpers import client_frame
from .test_hostile_drafts import ECHO_BOUND, chorus, open_fds

HOST = "127.0.0.1"
ATTACK = 3.0
"""Seconds the peer keeps sending."""
SLACK = 128 * 1024
"""Bytes allowed beyond the formula: the connection's fixed cost, trio's task and
registration tables, the peer's own stream objects."""
UNMASKED = b"\x00\x00\x00\x00"  # a zero mask: the payload goes out as it is, no copy


PROMISED = 3 << 20
"""docs/limits.md: with the default limits, one connection holds at most 3 MiB."""


def bound(options: ServerOptions, *, text: bool) -> int:
    """docs/limits.md: ``Q + 3M + 2R + W`` (binary), ``Q + 4M + 2R + W`` (text). The
    read itself goes into the process's shared read buffer, made before the baseline
    by the chorus's connections: one per process, not one per connection."""
    m = options.max_message_size
    assert m is not None
    held = 4 * m if text else 3 * m
    return options.max_queue_bytes + held + 2 * options.read_size + options.write_limit


async def open_peer(port: int, draft: Draft) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((HOST, port))
    stream = trio.SocketStream(sock)
    handshake = ClientHandshake(draft, HOST, "/", port=port)
    await stream.send_all(handshake.request())
    result = None
    while result is None:
        chunk = await stream.receive_some(65536)
        assert chunk, "closed during the handshake"
        result = handshake.receive_data(bytes(chunk))
    return stream


@pytest.mark.parametrize(
    ("draft", "text"),
    [(Draft.RFC6455, False), (Draft.RFC6455, True), (Draft.HIXIE76, True)],
    ids=["rfc6455-binary", "rfc6455-text", "hixie76-text"],
)
async def test_a_peer_that_never_reads_cannot_push_the_server_past_the_bound(
    start_server: Starter, draft: Draft, text: bool
) -> None:
    server = await start_server(echo)
    size = server.options.max_message_size
    assert size is not None
    payload = b"x" * size  # the largest message the server accepts
    if draft is Draft.HIXIE76:
        frame = b"\x00" + payload + b"\xff"
    else:
        frame = client_frame(1 if text else 2, payload, key=UNMASKED)
    limit = bound(server.options, text=text)
    fds = open_fds()
    async with chorus(server.port) as good:  # clients of every draft echo throughout
        peer = await open_peer(server.port, draft)
        # The process's read buffer is there already (see bound()).
        assert server.options.read_size in connection._READ_BUFFERS
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            sent = 0
            with trio.move_on_after(ATTACK):
                while True:
                    await peer.send_all(frame)  # blocks once the server stops reading
                    sent += 1
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        await good.advance()
        await trio.aclose_forcefully(peer)
    assert good.slowest < ECHO_BOUND, good.slowest
    with trio.fail_after(10):
        while server.active or open_fds() != fds:
            await trio.sleep(0.05)
    assert sent >= 2, "the server never read a whole message"
    assert peak <= limit + SLACK, f"held {peak} bytes, bound {limit} (+{SLACK})"
    assert limit <= PROMISED
    assert peak <= PROMISED, f"held {peak} bytes, more than the 3 MiB promised"
    assert server.options == ServerOptions(), "measured with the default limits"


async def test_a_flood_of_empty_fragments_costs_no_memory(start_server: Starter) -> None:
    """Each fragment used to cost a list slot and an object; a flood of empty ones grew
    the server without any limit counting it. Now fragments share one buffer."""
    server = await start_server(echo)
    count = 300_000
    empty = b"\x00\x80" + UNMASKED  # a masked, empty continuation frame
    flood = empty * count
    peer = await open_peer(server.port, Draft.RFC6455)
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with trio.fail_after(30):
            await peer.send_all(client_frame(1, b"start ", fin=False, key=UNMASKED))
            await peer.send_all(flood)
            await peer.send_all(client_frame(0, b"end", key=UNMASKED))
            echoed = b""
            while b"start end" not in echoed:
                chunk = await peer.receive_some(65536)
                assert chunk, "closed instead of echoing"
                echoed += chunk
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    await trio.aclose_forcefully(peer)
    assert b"\x81\x09start end" in echoed  # a keepalive ping may come first on a slow run
    assert peak <= 3 * server.options.read_size + SLACK, peak  # reads, not fragments
