"""Peers that vanish at the worst moment end only their own connection."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

import wscompat
from wscompat.drafts import Draft
from wscompat.trio.client import connect

from ..conftest import Starter
from ..rawclient import UPGRADE13, RawPeer, client_frame, open_rfc6455


def reset(stream: trio.SocketStream | RawPeer) -> None:
    """Close with RST instead of FIN: what a crashed client or a dropped NAT looks like."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def survivors_echo(port: int) -> None:
    for draft in Draft:
        async with connect(f"ws://127.0.0.1:{port}/", draft=draft) as ws:
            await ws.send("still here")
            assert await ws.receive() == "still here"


async def test_reset_while_echoes_are_in_flight(start_server: Starter) -> None:
    server = await start_server(max_message_size=2**20)
    frame = client_frame(2, b"e" * 65536)
    with trio.fail_after(20):
        for _ in range(20):
            stream = await open_rfc6455(server.port)
            # This client never reads: once TCP is full both ways, sends block. Whatever
            # got through by then has echoes in flight when the reset comes.
            with trio.move_on_after(0.2):
                for _ in range(16):
                    await stream.send_all(frame)
            reset(stream)
        await survivors_echo(server.port)


@pytest.mark.parametrize("cut", [10, len(UPGRADE13)])
async def test_reset_during_the_handshake(start_server: Starter, cut: int) -> None:
    server = await start_server()
    with trio.fail_after(20):
        for _ in range(20):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(UPGRADE13[:cut])
            reset(stream)
        await survivors_echo(server.port)


async def test_reset_while_the_server_sends(start_server: Starter) -> None:
    async def flood(ws: wscompat.Connection) -> None:
        while True:
            await ws.send(b"f" * 65536)

    server = await start_server(flood)
    echo_server = await start_server()
    with trio.fail_after(20):
        for _ in range(10):
            stream = await open_rfc6455(server.port)
            await stream.receive_some(1000)
            reset(stream)
        await survivors_echo(echo_server.port)
        # The flooding server is alive too: a new client gets its first message.
        stream = await open_rfc6455(server.port)
        assert await stream.receive_some(10)
        reset(stream)
