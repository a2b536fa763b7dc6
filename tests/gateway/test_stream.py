"""TCP mode (websockify style): a raw TCP or Unix-socket echo behind the gateway.

Binary messages carry the byte stream for clients that can send binary; the ``base64``
subprotocol, and every hixie client, get it as base64 text.
"""

from __future__ import annotations

import base64
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

import wscompat
from wscompat import Draft

from ..trio.test_hostile_drafts import chorus
from .conftest import Backend, GatewayStarter
from .test_failures import open_quiet

HOST = "127.0.0.1"
StreamHandler = Callable[[trio.SocketStream], Awaitable[None]]


async def tcp_echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


async def tcp_bye(stream: trio.SocketStream) -> None:
    async with stream:
        await stream.send_all(b"bye\n")


async def tcp_reset(stream: trio.SocketStream) -> None:
    data = await stream.receive_some(65536)
    await stream.send_all(data)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def serve_tcp(nursery: trio.Nursery, handler: StreamHandler) -> int:
    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


@pytest.fixture
async def tcp_gateway(start_gateway: GatewayStarter, nursery: trio.Nursery) -> wscompat.Server:
    echo, bye, reset = [await serve_tcp(nursery, h) for h in (tcp_echo, tcp_bye, tcp_reset)]
    return await start_gateway(
        f"tcp://{HOST}:{echo}",
        routes={"/bye": f"tcp://{HOST}:{bye}", "/reset": f"tcp://{HOST}:{reset}"},
    )


@pytest.mark.parametrize(
    ("draft", "offer", "chosen", "mode"),
    [
        (Draft.RFC6455, (), None, "binary"),
        (Draft.RFC6455, ("binary", "base64"), "binary", "binary"),
        (Draft.RFC6455, ("base64",), "base64", "base64"),
        (Draft.HYBI08, ("binary",), "binary", "binary"),
        (Draft.HYBI07, (), None, "binary"),
        (Draft.HIXIE76, (), None, "base64"),
        (Draft.HIXIE76, ("base64",), "base64", "base64"),
        (Draft.HIXIE75, ("base64",), "base64", "base64"),
    ],
    ids=["rfc6455", "rfc6455-binary", "rfc6455-base64", "hybi08-binary", "hybi07",
         "hixie76", "hixie76-base64", "hixie75-base64"],
)
async def test_the_byte_stream_echoes(
    tcp_gateway: wscompat.Server, draft: Draft, offer: tuple[str, ...], chosen: str | None,
    mode: str,
) -> None:
    chunk = bytes(range(256)) * 1024  # 256 KiB, more than one read on the way
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://{HOST}:{tcp_gateway.port}/", draft=draft,
                                    subprotocols=offer, max_message_size=2**22) as ws:
            assert ws.subprotocol == chosen
            await ws.send(chunk if mode == "binary" else base64.b64encode(chunk).decode())
            got = b""
            while len(got) < len(chunk):
                message = await ws.receive()
                if mode == "binary":
                    assert isinstance(message, bytes)
                    got += message
                else:
                    assert isinstance(message, str)
                    got += base64.b64decode(message)
    assert got == chunk


async def test_an_offer_without_binary_or_base64_is_refused(
    tcp_gateway: wscompat.Server,
) -> None:
    with trio.fail_after(10), pytest.raises(wscompat.HandshakeRejected) as caught:
        async with wscompat.connect(f"ws://{HOST}:{tcp_gateway.port}/",
                                    subprotocols=("chat",)):
            pass
    assert caught.value.status == 400


async def test_text_that_is_not_base64_closes_with_1007(tcp_gateway: wscompat.Server) -> None:
    with trio.fail_after(10):
        async with wscompat.connect(f"ws://{HOST}:{tcp_gateway.port}/",
                                    subprotocols=("base64",)) as ws:
            await ws.send("not base64!")
            with pytest.raises(wscompat.ConnectionClosed):
                await ws.receive()
            assert ws.close_code == 1007


@pytest.mark.parametrize(("path", "code"), [("/bye", 1000), ("/reset", 1011)])
async def test_the_backend_ending_closes_the_client(
    tcp_gateway: wscompat.Server, path: str, code: int
) -> None:
    """The stream's EOF is a normal close (1000), a reset a failure (1011)."""
    with trio.fail_after(10):
        async with wscompat.connect(f"ws://{HOST}:{tcp_gateway.port}{path}") as ws:
            if path == "/reset":
                await ws.send(b"ping")
            assert await ws.receive() == (b"bye\n" if path == "/bye" else b"ping")
            with pytest.raises(wscompat.ConnectionClosed):
                await ws.receive()
            assert ws.close_code == code


async def test_a_refused_stream_is_502(start_gateway: GatewayStarter) -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    gateway = await start_gateway(f"tcp://{HOST}:{port}")
    with trio.fail_after(10), pytest.raises(wscompat.HandshakeRejected) as caught:
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/", draft=Draft.HIXIE76):
            pass
    assert caught.value.status == 502


async def test_a_unix_socket_stream(
    start_gateway: GatewayStarter, nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "echo.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen()
    listener = trio.SocketListener(sock)
    nursery.start_soon(trio.serve_listeners, tcp_echo, [listener])
    gateway = await start_gateway(routes={"/vnc": f"unix:{path}"})
    with trio.fail_after(10):
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/vnc",
                                    draft=Draft.HIXIE75) as ws:
            await ws.send(base64.b64encode(b"\x00RFB 003.008\n").decode())
            assert base64.b64decode(str(await ws.receive())) == b"\x00RFB 003.008\n"


@pytest.mark.parametrize("draft", [Draft.HIXIE76, Draft.RFC6455], ids=str)
async def test_a_client_that_stops_reading_holds_the_stream_back(
    start_gateway: GatewayStarter, nursery: trio.Nursery, py_backend: Backend, draft: Draft
) -> None:
    """A byte stream that floods is held back by the client that does not read: what
    the stream wrote stops growing within the buffers on the way (the gateway's, base64
    included, and the kernel's), while a chorus of clients of every draft keeps echoing
    through the same gateway to a WebSocket backend."""
    written = [0]
    ended: list[bool] = []

    async def tcp_flood(stream: trio.SocketStream) -> None:
        chunk = bytes(65536)
        async with stream:
            try:
                while True:
                    await stream.send_all(chunk)
                    written[0] += len(chunk)
            except trio.BrokenResourceError:
                ended.append(True)

    flood = await serve_tcp(nursery, tcp_flood)
    gateway = await start_gateway(py_backend.url, routes={"/flood": f"tcp://{HOST}:{flood}"})
    with trio.fail_after(30):
        async with chorus(gateway.port) as c:
            stream = await open_quiet(gateway.port, draft, "/flood")
            counts = []
            for _ in range(6):
                await trio.sleep(0.5)
                counts.append(written[0])
            held = not ended  # still connected, only held back
            await c.advance()
            await stream.aclose()
    assert held, "the gateway closed the stream instead of holding it back"
    assert counts[0] > 0, "nothing was written"
    assert counts[-1] == counts[-2], f"the stream is still being read: {counts}"
    assert counts[-1] < 48 * 2**20, counts
