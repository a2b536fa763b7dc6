"""Compression over real sockets: the websockets library as a client, wscompat's client
offering only x-webkit-deflate-frame as Safari 6-14 did, and hostile compressed input
(RSV1 without negotiation, corrupt data, bombs) while good clients keep echoing.
"""

from __future__ import annotations

import logging
import re
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import trio
from websockets.extensions import ClientExtensionFactory
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory as WsClientPerMessageDeflate,
)
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsPerMessageDeflate
from websockets.sync.client import connect as ws_connect

import wscompat
from wscompat.protocol.extensions import ClientDeflateFrameFactory, ClientPerMessageDeflateFactory
from wscompat.trio.client import connect

from ..conftest import Starter
from ..rawclient import client_frame, close_code, read_to_eof, read_until

BIG = 2**20
MESSAGES: list[str | bytes] = [
    "Hello", "", "中文 😀" * 100, "wscompat " * (BIG // 9), bytes(range(256)) * 64, b"\x00" * BIG,
    bytes(b * 7 % 251 for b in range(100000)),
]


class Recorder:
    """An echo handler that notes each connection's extension and byte counts."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, int, int]] = []
        self.done = trio.Event()

    async def handler(self, ws: wscompat.Connection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            self.seen.append((ws.extensions, ws.stats.bytes_in, ws.stats.bytes_out))
            self.done.set()


async def in_thread(fn: Callable[[], Any]) -> Any:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn)


# -- the websockets library as client ----------------------------------------------------------

WS_CLIENTS: dict[str, tuple[dict[str, Any], str | None]] = {
    "default-deflate": ({}, "permessage-deflate"),
    "client-no-context-takeover": (
        {"compression": None,
         "extensions": [WsClientPerMessageDeflate(client_no_context_takeover=True)]},
        "permessage-deflate; client_no_context_takeover"),
    "server-no-context-takeover-window-10": (
        {"compression": None, "extensions": [WsClientPerMessageDeflate(
            server_no_context_takeover=True, server_max_window_bits=10,
            client_max_window_bits=9)]},
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
        "client_max_window_bits=9"),
    "no-compression": ({"compression": None}, None),
}


@pytest.mark.parametrize("name", list(WS_CLIENTS))
async def test_websockets_client(start_server: Starter, name: str) -> None:
    kwargs, answer = WS_CLIENTS[name]
    recorder = Recorder()
    server = await start_server(recorder.handler, max_message_size=2 * BIG)

    def run() -> tuple[list[str | bytes], list[Any]]:
        got: list[str | bytes] = []
        with ws_connect(f"ws://127.0.0.1:{server.port}/", max_size=2 * BIG, **kwargs) as ws:
            for message in MESSAGES:
                ws.send(message)
                got.append(ws.recv(timeout=10))
            ws.send(["frag", "mented ", "中" * 1000])  # RSV1 on the first frame only
            got.append(ws.recv(timeout=10))
            return got, list(ws.protocol.extensions)

    got, client_extensions = await in_thread(run)
    assert got == [*MESSAGES, "fragmented " + "中" * 1000]
    with trio.fail_after(5):
        await recorder.done.wait()
    extension, bytes_in, bytes_out = recorder.seen[0]
    assert extension == answer
    payload = sum(len(m.encode() if isinstance(m, str) else m) for m in MESSAGES)
    if answer is None:
        assert client_extensions == []
        assert bytes_in > payload and bytes_out > payload
    else:
        (ext,) = client_extensions
        assert isinstance(ext, WsPerMessageDeflate)
        no_takeover = "client_no_context_takeover" in answer
        assert ext.local_no_context_takeover is no_takeover
        assert bytes_in < payload / 2 and bytes_out < payload / 2


# -- wscompat's client as old Safari: x-webkit-deflate-frame only ------------------------------

OUR_CLIENTS: dict[str, tuple[Sequence[ClientExtensionFactory], wscompat.Draft, str]] = {
    "safari-x-webkit-deflate-frame": (
        [ClientDeflateFrameFactory()], wscompat.Draft.RFC6455, "x-webkit-deflate-frame"),
    "deflate-frame-no-context-window-9": (
        [ClientDeflateFrameFactory("deflate-frame", max_window_bits=9,
                                   no_context_takeover=True)],
        wscompat.Draft.RFC6455, "deflate-frame"),
    "hybi-08-x-webkit-deflate-frame": (
        [ClientDeflateFrameFactory()], wscompat.Draft.HYBI08, "x-webkit-deflate-frame"),
    "hybi-07-permessage-deflate": (
        [ClientPerMessageDeflateFactory()], wscompat.Draft.HYBI07, "permessage-deflate"),
}


@pytest.mark.parametrize("name", list(OUR_CLIENTS))
async def test_wscompat_client(start_server: Starter, name: str) -> None:
    factories, draft, answer = OUR_CLIENTS[name]
    recorder = Recorder()
    server = await start_server(recorder.handler, max_message_size=2 * BIG)
    with trio.fail_after(30):
        async with connect(f"ws://127.0.0.1:{server.port}/", draft=draft,
                           extensions=factories, max_message_size=2 * BIG) as ws:
            assert ws.extensions == answer
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.receive() == message
        await recorder.done.wait()
    extension, bytes_in, bytes_out = recorder.seen[0]
    assert extension == answer
    payload = sum(len(m.encode() if isinstance(m, str) else m) for m in MESSAGES)
    assert bytes_in < payload / 2 and bytes_out < payload / 2


async def test_deflate_frame_is_not_offered_when_only_permessage_deflate_is_on(
    start_server: Starter,
) -> None:
    server = await start_server(compression="permessage-deflate")
    with trio.fail_after(10):
        async with connect(f"ws://127.0.0.1:{server.port}/",
                           extensions=[ClientDeflateFrameFactory()]) as ws:
            assert ws.extensions is None
            await ws.send("plain")
            assert await ws.receive() == "plain"


# -- hostile compressed input ------------------------------------------------------------------


def bomb(size: int, *, last: bool = True) -> bytes:
    """Raw DEFLATE for ``size`` zero bytes (a multiple of 1 MiB), about 1000 times smaller.

    A full flush resets the compressor, so every MiB compresses to the same bytes and the
    bomb is built by repetition instead of by compressing gigabytes. Like any flush it
    ends with ``00 00 ff ff``, which the last frame of a message leaves out."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(2**20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = piece * (size // 2**20)
    return data[:-4] if last else data


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


PMD, XW = "permessage-deflate", "x-webkit-deflate-frame"
HELLO = bytes.fromhex("f248cdc9c90700")
COMPRESSED = 0x40
HOSTILE: dict[str, tuple[str | None, list[bytes], int]] = {
    "rsv1-not-offered": (None, [client_frame(1, HELLO, rsv=COMPRESSED)], 1002),
    "rsv1-offer-declined": (f"{PMD}; x=1", [client_frame(1, HELLO, rsv=COMPRESSED)], 1002),
    "rsv1-on-continuation": (PMD, [client_frame(1, HELLO[:3], rsv=COMPRESSED, fin=False),
                                   client_frame(0, HELLO[3:], rsv=COMPRESSED)], 1002),
    "rsv1-on-ping": (XW, [client_frame(9, b"", rsv=COMPRESSED)], 1002),
    "corrupt-permessage-deflate": (PMD, [client_frame(1, b"\xff" * 8, rsv=COMPRESSED)], 1007),
    "corrupt-deflate-frame": (XW, [client_frame(2, b"\xff" * 8, rsv=COMPRESSED)], 1007),
    "truncated-stream": (PMD, [client_frame(2, deflate(b"x" * 500)[:5] + b"\xff\xff",
                                            rsv=COMPRESSED)], 1007),
    "compressed-bad-utf8": (PMD, [client_frame(1, deflate(b"ok \xc0\xaf"), rsv=COMPRESSED)],
                            1007),
    "bomb-permessage-deflate": (PMD, [client_frame(2, bomb(2**30), rsv=COMPRESSED)], 1009),
    "bomb-deflate-frame": (XW, [client_frame(2, bomb(2**30), rsv=COMPRESSED)], 1009),
    "bomb-across-fragments": (PMD, [client_frame(2, bomb(2**20, last=False), rsv=COMPRESSED,
                                                 fin=False),
                                    client_frame(0, bomb(2**20))], 1009),
    "bomb-deflate-frame-fragments": (XW, [client_frame(2, bomb(2**20), rsv=COMPRESSED, fin=False),
                                          client_frame(0, bomb(2**20), rsv=COMPRESSED)], 1009),
}
LIMIT = int(1.5 * 2**20)
"""max_message_size for the hostile tests: above a 1 GiB bomb's compressed size."""


def upgrade(offer: str | None) -> bytes:
    extra = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    return (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


async def hostile_peer(port: int, offer: str | None, frames: list[bytes]) -> int | None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(upgrade(offer))
    head = await read_until(stream, b"\r\n\r\n")
    agreed = offer is not None and f"Sec-WebSocket-Extensions: {offer}".encode() in head
    assert agreed == (offer in (PMD, XW)), head
    with trio.move_on_after(10):  # the server may stop reading once it has failed
        for frame in frames:
            await stream.send_all(frame)
    data = await read_to_eof(stream)
    await stream.aclose()
    return close_code(data)


async def test_hostile_compressed_input_does_not_disturb_good_clients(
    start_server: Starter,
) -> None:
    server = await start_server(max_message_size=LIMIT)
    failures: list[str] = []
    codes: dict[str, int | None] = {}

    def good(rounds: int) -> None:
        with ws_connect(f"ws://127.0.0.1:{server.port}/good", max_size=LIMIT) as ws:
            assert ws.protocol.extensions, "the good client should be compressing too"
            for i in range(rounds):
                message = f"message {i} 中文 😀 " * 50
                ws.send(message)
                if ws.recv(timeout=10) != message:
                    failures.append(f"round {i}")

    async def hostile(name: str, offer: str | None, frames: list[bytes]) -> None:
        codes[name] = await hostile_peer(server.port, offer, frames)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(trio.to_thread.run_sync, good, 200)
            for name, (offer, frames, _) in HOSTILE.items():
                nursery.start_soon(hostile, name, offer, frames)
    assert failures == []
    assert codes == {name: code for name, (_, _, code) in HOSTILE.items()}


@pytest.mark.parametrize("offer", [PMD, XW])
async def test_a_gigabyte_bomb_costs_about_the_limit_in_memory(
    start_server: Starter, offer: str
) -> None:
    """1 GiB of zeros in a 1 MiB frame: the server closes 1009 having allocated a few
    MiB, not the gigabyte (traced across the whole process: server and this client)."""
    server = await start_server(max_message_size=LIMIT)
    frame = client_frame(2, bomb(2**30), rsv=COMPRESSED)
    tracemalloc.start()
    try:
        with trio.fail_after(20):
            code = await hostile_peer(server.port, offer, [frame])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 1009
    assert peak < 8 * LIMIT, f"peak {peak} bytes"


async def test_the_connection_log_names_the_extension(
    start_server: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    with caplog.at_level(logging.INFO, "wscompat.server"):
        for factories in ([ClientPerMessageDeflateFactory(client_no_context_takeover=True)],
                          [ClientDeflateFrameFactory()], []):
            with trio.fail_after(10):
                async with connect(f"ws://127.0.0.1:{server.port}/logged",
                                   extensions=factories) as ws:
                    await ws.send("x")
                    await ws.receive()
        await trio.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records if " /logged " in r.getMessage()]
    assert [re.search(r" (ext=\S+) ", line).group(1) for line in lines] == [  # type: ignore[union-attr]
        "ext=permessage-deflate;client_no_context_takeover", "ext=x-webkit-deflate-frame",
        "ext=-",
    ]
