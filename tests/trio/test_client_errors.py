"""The client's context manager when the code inside it fails: the caller gets its own
exception, not a group around it, and the connection still closes cleanly, with no
second task reading the socket."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging

import pytest
import trio

import wscompat
from wscompat.drafts import Draft

from ..conftest import Starter

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Boom(Exception):
    pass


@pytest.mark.parametrize("draft", [Draft.RFC6455, Draft.HIXIE76, Draft.HYBI08], ids=str)
@pytest.mark.parametrize("wait_first", [False, True], ids=["at-once", "after-an-echo"])
async def test_an_exception_in_the_block_comes_out_as_itself(
    start_server: Starter, caplog: pytest.LogCaptureFixture, draft: Draft, wait_first: bool,
) -> None:
    closes: list[int | None] = []
    done = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closes.append(ws.close_code)
            done.set()

    server = await start_server(handler)
    with caplog.at_level(logging.INFO, "wscompat"), pytest.raises(Boom):
        async with wscompat.connect(f"ws://127.0.0.1:{server.port}/", draft=draft) as ws:
            await ws.send("x")
            if wait_first:
                assert await ws.receive() == "x"
            raise Boom  # before the reader task has even started, when not wait_first
    with trio.fail_after(5):
        await done.wait()
    assert closes == [1000]  # a clean closing handshake, whatever the block did
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == [], [r.getMessage() for r in failures]


async def _server_that_keeps_tcp_open(stream: trio.SocketStream, frames: bytes,
                                      answered: trio.Event) -> None:
    """Accepts an RFC 6455 upgrade, sends ``frames``, answers the client's close with
    a close frame, and then never closes TCP."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(4096)
        assert chunk
        head += chunk
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                          + b"\r\n\r\n" + frames)
    seen = b""
    while b"\x88" not in seen[:1]:
        chunk = await stream.receive_some(4096)
        assert chunk, "the client closed TCP before its close frame"
        seen += chunk
    await stream.send_all(b"\x88\x02" + seen[6:8] if len(seen) >= 8 else b"\x88\x00")
    answered.set()
    await trio.sleep_forever()


@pytest.mark.parametrize("cause", ["violation", "close"])
async def test_a_server_that_never_closes_tcp_after_the_close_is_left_in_time(
    nursery: trio.Nursery, cause: str,
) -> None:
    """The client must wait for the server to close TCP first (RFC 6455 7.1.1); one
    that answers the close and then holds TCP open is given up on after
    ``close_timeout``: receive() raises with the handshake's code instead of waiting
    for ever, whether the client failed the connection (a masked frame from the
    server, 1002) or was asked to close (1000)."""
    masked = b"\x81\x82abcd" + bytes(x ^ y for x, y in zip(b"hi", b"ab", strict=True))
    frames = masked if cause == "violation" else b"\x88\x02\x03\xe8"
    answered = trio.Event()
    listeners = await nursery.start(functools.partial(
        trio.serve_tcp, lambda s: _server_that_keeps_tcp_open(s, frames, answered), 0,
        host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    started = trio.current_time()
    with trio.fail_after(10):
        async with wscompat.connect(f"ws://127.0.0.1:{port}/", close_timeout=1.0) as ws:
            with pytest.raises(wscompat.ConnectionClosed) as closed:
                await ws.receive()
    took = trio.current_time() - started
    assert closed.value.code == (1002 if cause == "violation" else 1000)
    assert took < 5, took
    assert cause == "close" or answered.is_set()
