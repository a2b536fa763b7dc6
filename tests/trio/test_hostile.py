"""Bad input on RFC 6455 connections, concurrently with well-behaved clients.

Every hostile peer must get the right close code and a closed socket, while a good
client on the same server keeps echoing without a single lost or altered message.
"""

from __future__ import annotations

import pytest
import trio
from websockets.sync.client import connect as ws_connect

import wscompat
from wscompat.cli import echo

from ..conftest import Starter
from ..rawclient import UPGRADE13, client_frame, close_code, open_rfc6455, read_to_eof

HOSTILE = {
    "unmasked": ([client_frame(1, b"hi", masked=False)], 1002),
    "reserved-bits": ([client_frame(1, b"hi", rsv=0x70)], 1002),
    "reserved-opcode": ([client_frame(0x5, b"")], 1002),
    "control-too-long": ([client_frame(0xA, b"p" * 126)], 1002),
    "fragmented-control": ([client_frame(0x9, b"p", fin=False)], 1002),
    "bad-utf8-close-reason": ([client_frame(8, b"\x03\xe8\xc0\xaf")], 1007),
    "over-limit": ([client_frame(2, b"z" * 4097)], 1009),
    "over-limit-fragments": ([client_frame(2, b"z" * 3000, fin=False),
                              client_frame(0, b"z" * 3000)], 1009),
    "length-2-63": ([b"\x82\xff" + (2**63 - 1).to_bytes(8, "big") + b"\0\0\0\0"], 1009),
    # The size limit is checked before the reserved top bit: refused before any payload.
    "length-top-bit": ([b"\x82\xff" + (2**63).to_bytes(8, "big") + b"\0\0\0\0"], 1009),
}


async def good_client(port: int, rounds: int, failures: list[str]) -> None:
    def run() -> None:
        with ws_connect(f"ws://127.0.0.1:{port}/good") as ws:
            for i in range(rounds):
                message = f"message {i} 中文 😀"
                ws.send(message)
                if ws.recv(timeout=10) != message:
                    failures.append(f"round {i}")

    await trio.to_thread.run_sync(run)


async def hostile_peer(port: int, frames: list[bytes]) -> tuple[int | None, bool]:
    stream = await open_rfc6455(port)
    for frame in frames:
        await stream.send_all(frame)
    data = await read_to_eof(stream)
    return close_code(data), True


async def test_hostile_peers_do_not_disturb_good_clients(start_server: Starter) -> None:
    server = await start_server(echo, max_message_size=4096, handshake_timeout=1)
    failures: list[str] = []
    results: dict[str, tuple[int | None, bool]] = {}

    async def hostile(name: str, frames: list[bytes]) -> None:
        results[name] = await hostile_peer(server.port, frames)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(good_client, server.port, 200, failures)
            for name, (frames, _) in HOSTILE.items():
                nursery.start_soon(hostile, name, frames)
    assert failures == []
    assert {name: code for name, (code, _) in results.items()} == {
        name: code for name, (_, code) in HOSTILE.items()
    }


async def test_invalid_utf8_fails_before_the_message_ends(start_server: Starter) -> None:
    """The first fragment already holds an impossible byte: 1007 comes while FIN is pending."""
    server = await start_server(echo)
    stream = await open_rfc6455(server.port)
    await stream.send_all(client_frame(1, b"valid start \xf5", fin=False))
    with trio.fail_after(5):
        data = await read_to_eof(stream)
    assert close_code(data) == 1007


async def test_half_sent_handshakes_time_out_while_others_are_served(
    start_server: Starter,
) -> None:
    server = await start_server(echo, handshake_timeout=0.5)
    stalled = []
    for _ in range(20):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(UPGRADE13[:30])
        stalled.append(stream)

    def run() -> str:
        with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.send("served")
            return str(ws.recv(timeout=5))

    assert await trio.to_thread.run_sync(run) == "served"
    with trio.fail_after(5):
        for stream in stalled:
            assert await read_to_eof(stream) == b""


async def test_messages_before_the_close_in_one_read_are_delivered(
    start_server: Starter,
) -> None:
    received: list[object] = []
    done = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        received.extend([m async for m in ws])
        done.set()

    server = await start_server(handler)
    stream = await open_rfc6455(server.port)
    await stream.send_all(
        client_frame(1, b"one") + client_frame(2, b"two") + client_frame(8, b"\x03\xe8")
    )
    with trio.fail_after(5):
        await done.wait()
        data = await read_to_eof(stream)
    assert received == ["one", b"two"]
    assert close_code(data) == 1000


@pytest.mark.parametrize("vanish_after", [1, 7, 100])
async def test_a_client_that_vanishes_mid_message(start_server: Starter, vanish_after: int) -> None:
    closed: list[int | None] = []
    done = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except wscompat.ConnectionClosedError:
            pass
        closed.append(ws.close_code)
        done.set()

    server = await start_server(handler)
    stream = await open_rfc6455(server.port)
    await stream.send_all(client_frame(2, b"q" * 1000)[:vanish_after])
    await stream.aclose()
    with trio.fail_after(5):
        await done.wait()
    assert closed == [1006]
