"""Between two plain sockets the gateway relays without a task of its own: each side's
reader hands what it parses straight to the other side (``Connection.relay``), so one
message costs one task step each way, and a burst read at once leaves at once."""

from __future__ import annotations

import pytest
import trio

import wscompat
from wscompat.gateway import DRAFT_HEADER
from wscompat.trio.connection import Connection

from ..rawclient import RawPeer, client_frame, open_rfc6455
from .conftest import Backend, GatewayStarter, backend_view, header

ROUNDS = 200


class Steps(trio.abc.Instrument):
    """Task steps of every task but the test's own (the raw client)."""

    def __init__(self, skip: trio.lowlevel.Task) -> None:
        self.skip = skip
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.skip:
            self.count += 1


async def read_exactly(peer: RawPeer, size: int, buffer: bytearray) -> bytes:
    while len(buffer) < size:
        chunk = await peer.receive_some(65536)
        assert chunk, "the gateway closed the connection"
        buffer += chunk
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


async def round_trips(peer: RawPeer, count: int, buffer: bytearray) -> None:
    for i in range(count):
        payload = i.to_bytes(8, "big")
        await peer.send_all(client_frame(0x2, payload))
        assert await read_exactly(peer, 10, buffer) == b"\x82\x08" + payload


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "pumps"])
async def test_a_message_and_its_echo_cost_a_task_step_each_way(
    start_gateway: GatewayStarter, py_backend: Backend, relay: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One message at a time, so nothing is batched: the client's reader relays it to
    the backend leg and the backend leg's reader relays the echo, about two task steps
    a round trip. The pumps a TLS leg still uses (checked here by turning the relay
    off) take a task of their own each way, about four."""
    if not relay:
        monkeypatch.setattr(Connection, "can_relay", lambda self, target: False)
    gateway = await start_gateway(py_backend.url, ping_interval=None)
    steps = Steps(trio.lowlevel.current_task())
    with trio.fail_after(30):
        peer = await open_rfc6455(gateway.port)
        buffer = bytearray()
        await round_trips(peer, 20, buffer)  # the backend leg is open and warm
        trio.lowlevel.add_instrument(steps)
        try:
            await round_trips(peer, ROUNDS, buffer)
        finally:
            trio.lowlevel.remove_instrument(steps)
        await peer.aclose()
    per_round_trip = steps.count / ROUNDS
    if relay:
        assert per_round_trip <= 2.5, per_round_trip
    else:
        assert per_round_trip >= 3.5, per_round_trip


async def test_a_burst_read_at_once_reaches_the_backend_and_back_whole(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    """500 messages written in one go come back whole and in order, relayed read by
    read, with a backend that answers each as it comes."""
    gateway = await start_gateway(py_backend.url, ping_interval=None)
    count = 500
    with trio.fail_after(30):
        peer = await open_rfc6455(gateway.port)
        await peer.send_all(b"".join(client_frame(0x2, i.to_bytes(8, "big"))
                                     for i in range(count)))
        buffer = bytearray()
        echoed = [await read_exactly(peer, 10, buffer) for _ in range(count)]
        await peer.aclose()
    assert echoed == [b"\x82\x08" + i.to_bytes(8, "big") for i in range(count)]


async def test_an_http2_client_is_relayed_to_a_backend_over_http11(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    """An RFC 8441 client (a stream of an HTTP/2 connection) reaches the backend as an
    ordinary RFC 6455 client; the backend is told its generation, and text, a 64 KiB
    binary message and a burst all come back whole, in order, over the relay."""
    gateway = await start_gateway(py_backend.url, ping_interval=None)
    payload = bytes(i % 251 for i in range(65536))
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/headers/h2",
                                    http2=True) as ws:
            assert ws.http_version == "2"
            view = await backend_view(ws)
            for text in ("hello", "中文字符 😀🎉"):
                await ws.send(text)
                assert await ws.receive() == text
            await ws.send(payload)
            assert await ws.receive() == payload
            for i in range(200):
                await ws.send(i.to_bytes(4, "big"))
            assert [await ws.receive() for _ in range(200)] == [
                i.to_bytes(4, "big") for i in range(200)]
    assert view["path"] == "/headers/h2"
    assert header(view, DRAFT_HEADER) == ["rfc8441"]
    assert header(view, "Sec-WebSocket-Version") == ["13"]
