"""The transport's synchronous path on real sockets: vectored writes, partial writes
and what is kept of them, the bare accepted socket's lazy trio stream, and TCP
keepalive as accepted connections inherit it."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

import wscompat
from wscompat.drafts import Draft
from wscompat.trio.connection import _keep_unwritten
from wscompat.trio.transport import Transport

from ..conftest import Starter


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return a, b


def _drain(sock: socket.socket) -> bytes:
    got = bytearray()
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return bytes(got)
        got += data


async def test_writev_sends_every_chunk_in_order() -> None:
    a, b = _pair()
    with a, b:
        transport = Transport(a)
        assert transport.try_sendv([b"\x00", b"hello", b"\xff"]) == 7
        assert _drain(b) == b"\x00hello\xff"
        transport.close()


async def test_a_partial_writev_keeps_exactly_the_unwritten_rest() -> None:
    a, b = _pair()
    chunks = [b"H" * 10, bytes(range(256)) * 4096, b"T" * 10]  # 1 MiB: more than fits
    expected = b"".join(chunks)
    with a, b:
        transport = Transport(a)
        written = transport.try_sendv(chunks)
        assert 0 < written < len(expected)
        rest = bytearray()
        _keep_unwritten(rest, chunks, written)
        assert bytes(rest) == expected[written:]
        received = bytearray()
        for _ in range(10_000):  # bounded: each round moves at least one buffer's worth
            received += _drain(b)
            if not rest:
                break
            sent = transport.try_send(rest)
            del rest[:sent]
        received += _drain(b)
        assert bytes(received) == expected
        transport.close()


def test_keep_unwritten_at_every_chunk_boundary() -> None:
    chunks = [b"ab", b"", b"cde", b"f"]
    whole = b"".join(chunks)
    for written in range(len(whole) + 1):
        out = bytearray(b"<")
        _keep_unwritten(out, chunks, written)
        assert bytes(out) == b"<" + whole[written:]


def test_writev_on_a_stream_without_a_descriptor_reports_nothing_written() -> None:
    left, _right = trio.testing.memory_stream_pair()
    assert Transport(left).try_sendv([b"a", b"b"]) == 0


async def test_a_bare_socket_gets_its_trio_stream_only_when_asked() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    with b:
        transport = Transport(a)
        assert transport._stream is None and transport.sync
        stream = transport.stream  # what TLS and the recorder ask for
        assert isinstance(stream, trio.SocketStream)
        assert transport.stream is stream
        await stream.send_all(b"through trio")
        b.settimeout(5)
        assert b.recv(100) == b"through trio"
        await transport.aclose()
        assert b.recv(100) == b""  # closed: the peer sees EOF


KEEPALIVE_OPTIONS = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
)


@pytest.mark.parametrize(("draft", "expected"), [
    (Draft.HIXIE76, (1, 30, 10, 3)),  # no ping: TCP keepalive, with the server's timers
    (Draft.HIXIE75, (1, 30, 10, 3)),
    (Draft.RFC6455, (0,)),  # pinged instead: left off
])
async def test_tcp_keepalive_is_on_for_drafts_without_ping_with_the_servers_timers(
    start_server: Starter, draft: Draft, expected: tuple[int, ...]
) -> None:
    """The timers are set once, on the listening socket, and every accepted connection
    inherits them; a hixie connection only has the switch turned on."""
    seen: list[tuple[int, ...]] = []

    async def handler(ws: wscompat.Connection) -> None:
        sock = ws._transport._socket()
        seen.append(tuple(sock.getsockopt(level, name) for level, name in
                          KEEPALIVE_OPTIONS[: len(expected)]))
        await ws.send("checked")

    server = await start_server(handler, tcp_keepalive=30.0)
    assert server.keepalive_inherited
    with trio.fail_after(10):
        async with wscompat.connect(f"ws://127.0.0.1:{server.port}/", draft=draft) as ws:
            assert await ws.receive() == "checked"
    assert seen == [expected]


async def test_without_tcp_keepalive_the_listener_sets_no_timers(start_server: Starter) -> None:
    server = await start_server(tcp_keepalive=None)
    assert not server.keepalive_inherited
    sock = server.listeners[0].socket
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
