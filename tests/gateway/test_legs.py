"""Each leg of a proxied connection is a connection of its own: compression is agreed on
each, the backend leg is kept alive by the gateway's pings while the client is quiet,
the credentials the client sent are withheld on request, and a client that resets its
TCP connection reaches the backend as going away (1001)."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

import wscompat
from wscompat import Draft
from wscompat.gateway import HeaderPolicy
from wscompat.protocol.extensions import ClientPerMessageDeflateFactory
from wscompat.protocol.handshake.client import ClientHandshake

from ..rawclient import client_frame
from .conftest import Backend, GatewayStarter, backend_view, header
from .test_echo import AUTH, COOKIE, recorded

HOST = "127.0.0.1"


@pytest.mark.parametrize(("client_offers", "gateway_offers"),
                         [(True, False), (False, True), (True, True), (False, False)],
                         ids=["client-only", "backend-only", "both", "neither"])
async def test_compression_is_agreed_on_each_leg_on_its_own(
    start_gateway: GatewayStarter, py_backend: Backend, client_offers: bool,
    gateway_offers: bool,
) -> None:
    """The client's offer is answered by the gateway, never passed to the backend; the
    backend leg offers permessage-deflate only with ``upstream_compression``."""
    gateway = await start_gateway(py_backend.url, upstream_compression=gateway_offers)
    offer = [ClientPerMessageDeflateFactory()] if client_offers else []
    text = "squeeze me " * 2000
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/headers",
                                    extensions=offer) as ws:
            view = await backend_view(ws)
            await ws.send(text)
            assert await ws.receive() == text
            agreed = ws.extensions
    assert (agreed or "").startswith("permessage-deflate") == client_offers
    offered = header(view, "Sec-WebSocket-Extensions")
    assert bool(offered) == gateway_offers
    assert all(value.startswith("permessage-deflate") for value in offered)
    assert view["extensions"] == (["permessage-deflate"] if gateway_offers else [])


async def test_an_idle_pair_is_kept_alive_by_pings_to_the_backend(
    start_gateway: GatewayStarter, node_backend: Backend
) -> None:
    """While neither side says anything, the gateway pings the backend every
    ``ping_interval``; Node's ws answers each, and the pair stays up."""
    gateway = await start_gateway(node_backend.url, ping_interval=0.2, ping_timeout=2.0)
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/pings",
                                    draft=Draft.HIXIE76) as ws:
            await ws.send("hello")
            assert await ws.receive() == "hello"
            await trio.sleep(1.5)
            await ws.send("pings?")
            pings = int(str(await ws.receive()))
            await ws.send("still here")
            assert await ws.receive() == "still here"
    assert 3 <= pings <= 9, pings


@pytest.mark.parametrize("backend_name", ["py_backend", "node_backend"],
                         ids=["websockets", "node-ws"])
async def test_the_clients_credentials_are_withheld_on_request(
    start_gateway: GatewayStarter, request: pytest.FixtureRequest, backend_name: str
) -> None:
    """With no field to forward (``--forward-headers ''``), Cookie and Authorization
    stay at the gateway; the gateway's own fields still go."""
    backend: Backend = request.getfixturevalue(backend_name)
    gateway = await start_gateway(backend.url, headers=HeaderPolicy(forward=()))
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://{HOST}:{gateway.port}/headers",
                                    extra_headers=(COOKIE, AUTH)) as ws:
            view = await backend_view(ws)
    assert header(view, "Cookie") == []
    assert header(view, "Authorization") == []
    assert header(view, "X-Forwarded-For") == [HOST]
    assert header(view, "X-WebSocket-Draft") == ["rfc6455"]


@pytest.mark.parametrize("draft", [Draft.RFC6455, Draft.HYBI07, Draft.HIXIE76], ids=str)
async def test_a_client_that_resets_reaches_the_backend_as_going_away(
    start_gateway: GatewayStarter, py_backend: Backend, draft: Draft
) -> None:
    gateway = await start_gateway(py_backend.url)
    key = f"reset-{draft}"
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream(HOST, gateway.port)
        handshake = ClientHandshake(draft, HOST, f"/record/{key}", port=gateway.port)
        await stream.send_all(handshake.request())
        data = b""
        while handshake.receive_data(data) is None:
            data = bytes(await stream.receive_some(4096))
            assert data, "the gateway closed the connection during the handshake"
        message = client_frame(1, b"one") if draft.caps.binary else b"\x00one\xff"
        await stream.send_all(message)
        echo = b""
        while b"one" not in echo:
            chunk = await stream.receive_some(4096)
            assert chunk, "the gateway closed the connection before the echo"
            echo += chunk
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()  # a reset, not a FIN
        assert await recorded(py_backend.port, key) == {"code": 1001,
                                                        "reason": "client went away"}
