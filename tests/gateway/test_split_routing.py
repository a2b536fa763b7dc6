"""RFC 6455 clients routed past the gateway, every older draft through it: haproxy in
TCP mode reads each connection's request head once (``tcp-request content``), sends
those with ``Sec-WebSocket-Version: 13`` straight to the backend and the rest to the
gateway, the configuration docs/gateway.md gives for sparing modern clients the
gateway's hop. The backend tells by ``X-WebSocket-Draft`` which way each came."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from websockets.sync.client import connect as ws_connect

import wscompat
from wscompat import Draft
from wscompat.gateway import DRAFT_HEADER
from wscompat.protocol.handshake.client import ClientHandshake

from ..live.test_haproxy import run_haproxy
from ..live.test_proxy_protocol import CLIENT_HOST, first_text, open_from
from .conftest import Backend, GatewayStarter, backend_view, header

SPLIT = """\
global
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend websockets
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 5s
    tcp-request content accept if HTTP
    use_backend direct if {{ req.hdr(sec-websocket-version) -m str 13 }}
    default_backend gateway
backend direct
    server app 127.0.0.1:DIRECT
backend gateway
    server gw 127.0.0.1:{backend_port}
"""
"""``run_haproxy`` fills in its port and the gateway's; DIRECT is the backend's."""


@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_only_older_drafts_go_through_the_gateway(
    start_gateway: GatewayStarter, py_backend: Backend, tmp_path: Path, draft: Draft
) -> None:
    gateway = await start_gateway(py_backend.url)
    config = SPLIT.replace("DIRECT", str(py_backend.port))
    with trio.fail_after(30):
        async with run_haproxy(gateway.port, tmp_path, config) as proxy:
            started = trio.current_time()
            async with wscompat.connect(f"ws://127.0.0.1:{proxy.port}/headers/split",
                                        draft=draft) as ws:
                opened = trio.current_time() - started
                view = await backend_view(ws)
                await ws.send("through")
                assert await ws.receive() == "through"
            if draft is Draft.RFC6455:  # haproxy says so too
                await proxy.wait_for_log("websockets direct/app")
    expected = [] if draft is Draft.RFC6455 else [str(draft)]
    assert header(view, DRAFT_HEADER) == expected
    assert view["path"] == "/headers/split"
    assert opened < 2.0, "haproxy waited for its inspect-delay: the head was not read"


async def test_a_hixie76_key3_sent_late_still_reaches_the_gateway(
    start_gateway: GatewayStarter, py_backend: Backend, tmp_path: Path
) -> None:
    """haproxy decides on the head alone: the eight bytes of key3 that a client sends
    after it follow the head to the gateway."""
    gateway = await start_gateway(py_backend.url)
    config = SPLIT.replace("DIRECT", str(py_backend.port))
    with trio.fail_after(30):
        async with run_haproxy(gateway.port, tmp_path, config) as proxy:
            stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            handshake = ClientHandshake(Draft.HIXIE76, "127.0.0.1", "/late",
                                        port=proxy.port)
            request = handshake.request()
            head, key3 = request[:-8], request[-8:]
            await stream.send_all(head)
            await trio.sleep(0.3)
            await stream.send_all(key3)
            data = b""
            while handshake.receive_data(data) is None:
                data = bytes(await stream.receive_some(4096))
                assert data, "closed during the handshake"
            await stream.send_all(b"\x00late\xff")
            echo = b""
            while b"\xff" not in echo:
                chunk = await stream.receive_some(4096)
                assert chunk, "closed before the echo"
                echo += chunk
            assert echo == b"\x00late\xff"
            await stream.aclose()


async def test_the_websockets_client_goes_straight_to_the_backend(
    start_gateway: GatewayStarter, py_backend: Backend, tmp_path: Path
) -> None:
    gateway = await start_gateway(py_backend.url)
    config = SPLIT.replace("DIRECT", str(py_backend.port))

    def run(port: int) -> tuple[str, str]:
        with ws_connect(f"ws://127.0.0.1:{port}/headers", open_timeout=10) as ws:
            first = ws.recv(timeout=10)
            ws.send("straight")
            echo = ws.recv(timeout=10)
        assert isinstance(first, str) and isinstance(echo, str)
        return first, echo

    with trio.fail_after(30):
        async with run_haproxy(gateway.port, tmp_path, config) as proxy:
            first, echo = await trio.to_thread.run_sync(run, proxy.port)
    assert echo == "straight"
    assert f'"{DRAFT_HEADER}"' not in first


async def test_the_gateway_learns_the_clients_address_from_haproxy(
    start_gateway: GatewayStarter, py_backend: Backend, tmp_path: Path
) -> None:
    """In TCP mode the gateway would see haproxy's address; with ``send-proxy-v2`` on the
    gateway's line and ``--proxy-protocol`` on the gateway, the backend is told the
    client's own (here 127.0.0.2, haproxy being 127.0.0.1)."""
    gateway = await start_gateway(py_backend.url, proxy_protocol=True)
    config = (SPLIT.replace("DIRECT", str(py_backend.port))
              .replace("server gw 127.0.0.1:{backend_port}",
                       "server gw 127.0.0.1:{backend_port} send-proxy-v2"))
    with trio.fail_after(30):
        async with run_haproxy(gateway.port, tmp_path, config) as proxy:
            stream, buffered = await open_from(CLIENT_HOST, proxy.port, Draft.HIXIE76,
                                               "/headers/proxied")
            view = json.loads(await first_text(stream, Draft.HIXIE76, buffered))
            await stream.aclose()
    assert header(view, "X-Forwarded-For") == [CLIENT_HOST]
    assert header(view, "Forwarded")[0].startswith(f"for={CLIENT_HOST};")
    assert header(view, DRAFT_HEADER) == ["hixie-76"]
