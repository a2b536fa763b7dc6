"""``--proxy-protocol`` behind a real haproxy in TCP mode: with ``send-proxy`` (version 1)
and ``send-proxy-v2``, the server knows each client by the address haproxy saw, on every
draft. Clients connect from 127.0.0.2 and haproxy from 127.0.0.1, so the two cannot be
confused. A connection that skips the proxy and sends no header is closed unanswered,
and the proxied connections beside it go on."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import wscompat
from wscompat import Draft
from wscompat.protocol.handshake.client import ClientHandshake

from ..rawclient import client_frame
from .test_haproxy import Starter, run_haproxy

pytestmark = pytest.mark.live

CLIENT_HOST = "127.0.0.2"

TCP_PROXY = """\
global
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server ws 127.0.0.1:{backend_port} SEND
"""


async def tell_address(ws: wscompat.Connection) -> None:
    """The handler: the client's address as the server knows it, then an echo."""
    await ws.send(str(ws.remote[0]) if ws.remote else "none")
    async for message in ws:
        await ws.send(message)


async def open_from(host: str, port: int, draft: Draft, path: str = "/whoami"
                    ) -> tuple[trio.SocketStream, bytes]:
    """A raw client of ``draft`` whose socket is bound to ``host``: open, and the
    bytes that came after the handshake's answer."""
    sock = trio.socket.socket()
    await sock.bind((host, 0))
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    handshake = ClientHandshake(draft, "127.0.0.1", path, port=port)
    await stream.send_all(handshake.request())
    data = b""
    while (result := handshake.receive_data(data)) is None:
        data = bytes(await stream.receive_some(4096))
        assert data, "closed during the handshake"
    return stream, result.leftover


async def first_text(stream: trio.SocketStream, draft: Draft, buffered: bytes) -> str:
    """The first text message, hixie or hybi framed (short messages only)."""
    data = buffered
    while True:
        if draft in (Draft.HIXIE75, Draft.HIXIE76):
            end = data.find(b"\xff")
            if data[:1] == b"\x00" and end > 0:
                return data[1:end].decode()
        elif len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
            assert data[0] == 0x81, data
            return data[2 : 2 + data[1]].decode()
        chunk = await stream.receive_some(4096)
        assert chunk, "closed before the first message"
        data += chunk


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
@pytest.mark.parametrize("draft", [Draft.RFC6455, Draft.HYBI08, Draft.HIXIE76, Draft.HIXIE75],
                         ids=str)
async def test_the_client_is_known_by_the_address_haproxy_saw(
    start_server: Starter, tmp_path: Path, send: str, draft: Draft
) -> None:
    with trio.fail_after(30):
        server = await start_server(tell_address, proxy_protocol=True)
        async with run_haproxy(server.port, tmp_path,
                               TCP_PROXY.replace("SEND", send)) as proxy:
            stream, buffered = await open_from(CLIENT_HOST, proxy.port, draft)
            assert await first_text(stream, draft, buffered) == CLIENT_HOST
            await stream.aclose()


async def test_a_connection_without_the_header_is_closed_unanswered(
    start_server: Starter, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        server = await start_server(tell_address, proxy_protocol=True)
        async with run_haproxy(server.port, tmp_path,
                               TCP_PROXY.replace("SEND", "send-proxy-v2")) as proxy:
            proxied, buffered = await open_from(CLIENT_HOST, proxy.port, Draft.RFC6455)
            assert await first_text(proxied, Draft.RFC6455, buffered) == CLIENT_HOST
            direct = await trio.open_tcp_stream("127.0.0.1", server.port)
            await direct.send_all(
                ClientHandshake(Draft.RFC6455, "127.0.0.1", "/", port=server.port).request())
            answer = b""
            try:
                while chunk := await direct.receive_some(4096):
                    answer += chunk
            except trio.BrokenResourceError:
                pass  # a reset: the server closed with the request unread
            assert answer == b""
            await direct.aclose()
            # The proxied connection beside it still echoes.
            await proxied.send_all(client_frame(1, b"still here"))
            assert await first_text(proxied, Draft.RFC6455, b"") == "still here"
            await proxied.aclose()
