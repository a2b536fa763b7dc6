"""Between two plain sockets the gateway relays without a task of its own: each side's
reader hands what it parses straight to the other side (``Connection.relay``), so one
message costs one task step each way, and a burst read at once leaves at once."""

from __future__ import annotations

from functools import partial

import pytest
import trio

import wscompat
from wscompat.gateway import DRAFT_HEADER
from wscompat.protocol.framing import HybiFramer
from wscompat.protocol.handshake.hybi import accept_key
from wscompat.trio.connection import Connection

from ..framing_helpers import frames_of
from ..rawclient import RawPeer, client_frame, open_rfc6455, read_until
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


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    return client_frame(opcode, payload, fin=fin, masked=False)


async def scripted_backend(nursery: trio.Nursery, script: bytes, frames_in: int
                           ) -> tuple[int, list[bytes]]:
    """A raw RFC 6455 backend: it answers the upgrade, waits for the first frame, writes
    ``script`` in one write, and keeps what it reads (in the list returned with its
    port) until ``frames_in`` whole frames came."""
    received: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        head = await read_until(stream, b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
            % accept_key(key.decode()).encode())
        data = head.partition(b"\r\n\r\n")[2]
        while not frames_of(data):
            data += await stream.receive_some(65536)
        await stream.send_all(script)
        while len(frames_of(data)) < frames_in:
            data += await stream.receive_some(65536)
        received.append(data)
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1], received


async def test_whole_data_frames_cross_as_they_came_and_the_rest_as_messages(
    start_gateway: GatewayStarter, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data frames read whole are relayed without being parsed into messages: the
    backend's go to the client byte for byte; the client's reach the backend masked
    with the gateway's own keys. A ping in the middle is still answered by the
    gateway, and a fragmented message still crosses as one message."""
    passed: list[bytes] = []
    pass_frames = HybiFramer.pass_frames

    def recording(self: HybiFramer, frames: bytes) -> bool:
        taken = pass_frames(self, frames)
        if taken:
            passed.append(frames)
        return taken

    monkeypatch.setattr(HybiFramer, "pass_frames", recording)
    run = server_frame(2, b"a") + server_frame(1, "é".encode())
    script = (run + server_frame(9, b"ping") + server_frame(1, b"d", fin=False)
              + server_frame(0, b"e") + server_frame(2, b"f"))
    port, received = await scripted_backend(nursery, script, frames_in=3)
    gateway = await start_gateway(f"ws://127.0.0.1:{port}/", ping_interval=None)
    key = b"\x0a\x0b\x0c\x0d"
    sent = client_frame(2, b"go", key=key) + client_frame(1, b"text", key=key)
    with trio.fail_after(10):
        peer = await open_rfc6455(gateway.port)
        await peer.send_all(sent)
        expected = run + server_frame(1, b"de") + server_frame(2, b"f")
        assert await read_exactly(peer, len(expected), bytearray()) == expected
        while not received:
            await trio.sleep(0.01)
        await peer.aclose()
    to_backend = frames_of(received[0])
    assert [(first, payload) for first, _, payload in to_backend] == [
        (0x82, b"go"), (0x81, b"text"), (0x8A, b"ping")]
    assert all(k and k != key for _, k, _ in to_backend)
    assert sent in passed  # as the client framed them, masked anew on the way
    assert run in passed  # the backend's run, up to its ping
