"""Failures stay local: refusals, timeouts, resets, TLS failures and peers that stop
reading, on either side, each beside a chorus of good clients of every draft that keep
echoing through the same gateway."""

from __future__ import annotations

import json
import socket
import ssl
import struct

import pytest
import trio
import trustme

import wscompat
from wscompat import Draft
from wscompat.protocol.handshake.client import ClientHandshake

from ..trio.test_hostile_drafts import chorus
from .conftest import Backend, GatewayStarter

HOST = "127.0.0.1"
FAST_KEEPALIVE = {"ping_interval": 0.5, "ping_timeout": 0.5, "close_timeout": 1.0}


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def refusal(port: int, path: str, draft: Draft = Draft.RFC6455) -> tuple[int, str]:
    """The status a client is refused with, and the body's one line."""
    try:
        async with wscompat.connect(f"ws://{HOST}:{port}{path}", draft=draft):
            pass
    except wscompat.HandshakeRejected as exc:
        return exc.status, exc.reason
    raise AssertionError(f"{path} was accepted")


async def raw_refusal(port: int, path: str) -> bytes:
    """The whole response to an RFC 6455 request, read to EOF."""
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(ClientHandshake(Draft.RFC6455, HOST, path, port=port).request())
    data = b""
    while chunk := await stream.receive_some(4096):
        data += chunk
    await stream.aclose()
    return data


async def silent_listener(nursery: trio.Nursery) -> int:
    """A port that accepts TCP and then never says a word."""
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    held: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, hold, listeners)
    return int(listeners[0].socket.getsockname()[1])


async def test_refusals_and_timeouts_become_the_clients_status(
    start_gateway: GatewayStarter, py_backend: Backend, nursery: trio.Nursery
) -> None:
    silent = await silent_listener(nursery)
    gateway = await start_gateway(py_backend.url, routes={
        "/down": f"ws://{HOST}:{closed_port()}/",
        "/silent": f"ws://{HOST}:{silent}/",
        "/slow": f"{py_backend.url}slow-accept",
    }, connect_timeout=1.0)
    results: dict[str, tuple[int, str]] = {}

    async def check(name: str, path: str, draft: Draft = Draft.RFC6455) -> None:
        results[name] = await refusal(gateway.port, path, draft)

    with trio.fail_after(20):
        async with chorus(gateway.port) as c:
            started = trio.current_time()
            async with trio.open_nursery() as checks:
                for name, path, draft in [
                    ("refused", "/down", Draft.RFC6455),
                    ("refused-hixie76", "/down/x", Draft.HIXIE76),
                    ("silent", "/silent", Draft.HYBI08),
                    ("slow", "/slow", Draft.HIXIE75),
                    ("403", "/reject/403", Draft.RFC6455),
                    ("401-hixie76", "/reject/401", Draft.HIXIE76),
                    ("503", "/reject/503", Draft.HYBI07),
                    ("200", "/reject/200", Draft.RFC6455),
                    ("dot-segments", "/a/../reject/403", Draft.RFC6455),
                ]:
                    checks.start_soon(check, name, path, draft)
            took = trio.current_time() - started
            await c.advance()
    statuses = {name: status for name, (status, _) in results.items()}
    assert statuses == {
        "refused": 502, "refused-hixie76": 502, "silent": 504, "slow": 504,
        "403": 403, "401-hixie76": 401, "503": 503, "200": 502, "dot-segments": 400,
    }
    assert 1.0 <= took < 3.0, "the timeouts came after connect_timeout, not later"


async def test_the_body_says_why(start_gateway: GatewayStarter, py_backend: Backend) -> None:
    gateway = await start_gateway(py_backend.url, routes={"/down": f"ws://{HOST}:9/"})
    with trio.fail_after(10):
        down = await raw_refusal(gateway.port, "/down")
        refused = await raw_refusal(gateway.port, "/reject/403")
    assert down.startswith(b"HTTP/1.1 502 ")
    assert b"backend ws://127.0.0.1:9/: " in down
    assert refused.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert refused.endswith(b"backend refused: Forbidden\n")


async def test_a_slow_backend_is_504_before_the_clients_handshake_timeout(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    """The backend's deadline is kept under the client's handshake timeout, so the
    client learns what happened instead of being cut off."""
    gateway = await start_gateway(py_backend.url, connect_timeout=30.0,
                                  handshake_timeout=1.5)
    with trio.fail_after(10):
        started = trio.current_time()
        status, _ = await refusal(gateway.port, "/slow-accept")
    assert status == 504
    assert trio.current_time() - started < 1.5


async def test_no_route_is_404(start_gateway: GatewayStarter, py_backend: Backend) -> None:
    gateway = await start_gateway(routes={"/chat": py_backend.url})
    with trio.fail_after(10):
        assert (await refusal(gateway.port, "/chatroom"))[0] == 404
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/chat/x") as ws:
            await ws.send("routed")
            assert await ws.receive() == "routed"


async def test_tls_to_the_backend(
    start_gateway: GatewayStarter, tls_backend: Backend, tls_ca: trustme.CA
) -> None:
    """wss:// backends have their certificate checked: against the system's CAs the
    test CA is unknown (502); with it (``--upstream-cafile``) the client echoes."""
    trusting = ssl.create_default_context()
    tls_ca.configure_trust(trusting)
    url = f"wss://127.0.0.1:{tls_backend.port}/"
    checked = await start_gateway(url)
    trusted = await start_gateway(url, upstream_ssl_context=trusting)
    with trio.fail_after(20):
        async with chorus(trusted.port) as c:
            refused = await raw_refusal(checked.port, "/")
            for draft in Draft:
                async with wscompat.connect(f"ws://{HOST}:{trusted.port}/headers",
                                            draft=draft) as ws:
                    view = json.loads(str(await ws.receive()))
                    await ws.send("over tls")
                    assert await ws.receive() == "over tls"
            await c.advance()
    assert refused.startswith(b"HTTP/1.1 502 ")
    assert b"TLS handshake failed: CERTIFICATE_VERIFY_FAILED" in refused
    assert view["path"] == "/headers"


async def test_a_unix_socket_backend(
    start_gateway: GatewayStarter, unix_backend: Backend
) -> None:
    gateway = await start_gateway(routes={"/u": f"ws+unix:{unix_backend.where}:/headers"})
    with trio.fail_after(10):
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/u/x?q=1",
                                    draft=Draft.HIXIE76) as ws:
            view = json.loads(str(await ws.receive()))
            await ws.send("over a unix socket")
            assert await ws.receive() == "over a unix socket"
    assert view["path"] == "/headers/x?q=1"
    assert ["Host", "localhost"] in view["headers"]


@pytest.mark.parametrize(("path", "failure_code"), [("/reset", 1011), ("/cut", 1011),
                                                    ("/reset", 1014)])
async def test_a_backend_that_vanishes_closes_only_its_client(
    start_gateway: GatewayStarter, py_backend: Backend, path: str, failure_code: int
) -> None:
    """Reset, or cut off in the middle of a frame: each client is closed the way its
    draft closes (1011, or 1014 on RFC 6455 when asked; hybi-07/08 always get 1011)."""
    gateway = await start_gateway(py_backend.url, failure_code=failure_code,
                                  **FAST_KEEPALIVE)
    closes: dict[Draft, tuple[int | None, str]] = {}

    async def victim(draft: Draft) -> None:
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}{path}", draft=draft) as ws:
            await ws.send("first")
            assert await ws.receive() == "first"
            with pytest.raises(wscompat.ConnectionClosed):
                await ws.receive()
            closes[draft] = (ws.close_code, ws.stats.closed_by)

    with trio.fail_after(20):
        async with chorus(gateway.port) as c:
            async with trio.open_nursery() as victims:
                for draft in Draft:
                    victims.start_soon(victim, draft)
            await c.advance()
    hybi = failure_code if failure_code == 1011 else 1011
    assert closes == {
        Draft.HIXIE75: (1000, "peer"),  # TCP closed: all hixie-75 has
        Draft.HIXIE76: (1000, "peer"),  # 0xFF 0x00
        Draft.HYBI07: (hybi, "peer"),
        Draft.HYBI08: (hybi, "peer"),
        Draft.RFC6455: (failure_code, "peer"),
    }


async def test_a_backend_that_stops_reading(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    """The client is slowed down (a send waits) once the bounded buffers on the way are
    full, and the backend leg's keepalive finds the backend unresponsive: the client
    gets 1011. (Once the pair is closing, the gateway reads and drops what the client
    still sends until it sees the close: that is not counted.)"""
    gateway = await start_gateway(py_backend.url, **FAST_KEEPALIVE)
    sent = 0
    stalled_after: int | None = None
    message = b"z" * 65536
    with trio.fail_after(30):
        async with chorus(gateway.port) as c:
            async with wscompat.connect(f"ws://{HOST}:{gateway.port}/deaf") as ws:
                with pytest.raises(wscompat.ConnectionClosed):
                    while True:
                        started = trio.current_time()
                        await ws.send(message)
                        if stalled_after is None and trio.current_time() - started > 0.2:
                            stalled_after = sent
                        sent += len(message)
                        assert sent < 2**30, "nothing slowed the client down"
                with pytest.raises(wscompat.ConnectionClosed):
                    await ws.receive()
                assert ws.close_code == 1011
            await c.advance()
    assert stalled_after is not None, "no send ever waited"
    assert stalled_after < 48 * 2**20, stalled_after


async def open_quiet(port: int, draft: Draft, path: str) -> trio.SocketStream:
    """A client that completes its handshake and then never reads again."""
    stream = await trio.open_tcp_stream(HOST, port)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    handshake = ClientHandshake(draft, HOST, path, port=port)
    await stream.send_all(handshake.request())
    result = None
    while result is None:
        result = handshake.receive_data(bytes(await stream.receive_some(1024)))
    return stream


async def flood_count(port: int, key: str) -> int:
    async with wscompat.connect(f"ws://{HOST}:{port}/recorded/{key}") as ws:
        count = json.loads(str(await ws.receive()))
    assert isinstance(count, int)
    return count


@pytest.mark.parametrize("draft", [Draft.HIXIE76, Draft.RFC6455], ids=str)
async def test_a_client_that_stops_reading_slows_the_backend(
    start_gateway: GatewayStarter, py_backend: Backend, draft: Draft
) -> None:
    """A flooding backend is held back by the client that does not read: what it sent
    stops growing, within the buffers on the way. hixie-76 has no ping, so the pair
    stays until the client leaves (then the backend hears 1001); RFC 6455 is dropped
    by the server's keepalive."""
    gateway = await start_gateway(py_backend.url, hixie_binary="base64", **FAST_KEEPALIVE)
    key = f"flood-{draft}"
    with trio.fail_after(30):
        async with chorus(gateway.port) as c:
            stream = await open_quiet(gateway.port, draft, f"/flood/{key}")
            counts = []
            for _ in range(6):
                await trio.sleep(0.5)
                counts.append(await flood_count(py_backend.port, key))
            await c.advance()
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            await stream.aclose()
    assert counts[-1] == counts[-2], f"the backend is still sending: {counts}"
    assert counts[-1] * 65536 < 48 * 2**20, counts


async def test_shutdown_tells_the_backend(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    gateway = await start_gateway(py_backend.url)
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/record/shutdown") as ws:
            await ws.send("before")
            assert await ws.receive() == "before"
            await gateway.shutdown()
            with pytest.raises(wscompat.ConnectionClosed):
                await ws.receive()
            assert ws.close_code == 1001
        async with wscompat.connect(f"ws://{HOST}:{py_backend.port}/recorded/shutdown") as ws:
            assert json.loads(str(await ws.receive())) == {
                "code": 1001, "reason": "gateway shutting down"}


async def test_a_client_that_never_completes_its_handshake_frees_the_backend(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    """A hixie-76 client whose key3 never comes: the backend was opened when its head
    was decided on, and is closed (1001) once the handshake times out."""
    gateway = await start_gateway(py_backend.url, handshake_timeout=0.5,
                                  hixie76_early_head=False)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(HOST, gateway.port)
        request = ClientHandshake(Draft.HIXIE76, HOST, "/record/no-key3",
                                  port=gateway.port).request()
        await stream.send_all(request[:-8])  # the head, not key3
        assert await stream.receive_some(4096) == b""  # closed at the timeout, unanswered
        await stream.aclose()
        async with wscompat.connect(f"ws://{HOST}:{py_backend.port}/recorded/no-key3") as ws:
            assert json.loads(str(await ws.receive())) == {"code": 1001,
                                                           "reason": "client left"}
