"""wss and ws on one port: the sniffer sees the TLS record and the handshake starts over
on the decrypted stream."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trustme
from websockets.sync.client import connect as ws_connect

import wscompat
from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.trio.client import connect

from ..conftest import Starter
from ..rawclient import read_to_eof
from ..test_cli import start


@pytest.mark.parametrize("draft", list(Draft))
async def test_wss_and_ws_on_one_port(
    start_server: Starter, server_context: ssl.SSLContext, client_context: ssl.SSLContext,
    draft: Draft,
) -> None:
    """The client checks the hixie location, so it must say wss:// over TLS and ws:// not."""
    secure_seen: list[bool] = []

    async def handler(ws: wscompat.Connection) -> None:
        secure_seen.append(ws.secure)
        async for message in ws:
            await ws.send(message)

    server = await start_server(handler, ssl_context=server_context)
    for scheme in ("wss", "ws"):
        async with connect(f"{scheme}://127.0.0.1:{server.port}/tls?x=1", draft=draft,
                           ssl_context=client_context) as ws:
            await ws.send("over " + scheme + " 中文")
            assert await ws.receive() == "over " + scheme + " 中文"
    assert secure_seen == [True, False]


async def test_websockets_client_over_wss(
    start_server: Starter, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = await start_server(ssl_context=server_context)

    def run() -> str | bytes:
        with ws_connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
            ws.send(b"\x00" * 100000)
            return ws.recv()

    with trio.fail_after(20):
        assert await trio.to_thread.run_sync(run) == b"\x00" * 100000


async def test_require_tls_refuses_plain(
    start_server: Starter, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = await start_server(ssl_context=server_context, require_tls=True)
    with pytest.raises(HandshakeRejected) as info:
        async with connect(f"ws://127.0.0.1:{server.port}/"):
            pass
    assert info.value.status == 403
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n"
                          b"Connection: Upgrade\r\n\r\n")
    with trio.fail_after(5):
        answer = await read_to_eof(stream)
    assert answer.endswith(b"\r\n\r\nTLS required: connect with wss://\n")
    async with connect(f"wss://127.0.0.1:{server.port}/", ssl_context=client_context) as ws:
        await ws.send("secure")
        assert await ws.receive() == "secure"


async def test_tls_client_on_a_plain_port_is_closed(
    start_server: Starter, client_context: ssl.SSLContext
) -> None:
    server = await start_server()
    with trio.fail_after(5), pytest.raises((trio.BrokenResourceError, OSError)):
        async with connect(f"wss://127.0.0.1:{server.port}/", ssl_context=client_context):
            pass


async def test_broken_and_stalled_tls_handshakes_are_cut_off(
    start_server: Starter, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = await start_server(ssl_context=server_context, tls_handshake_timeout=0.3)
    garbage = await trio.open_tcp_stream("127.0.0.1", server.port)
    await garbage.send_all(b"\x16\x03\x01\x00\x05hello-not-tls")
    stalled = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stalled.send_all(b"\x16\x03")
    with trio.fail_after(5):
        await read_to_eof(garbage)
        assert await read_to_eof(stalled) == b""
    async with connect(f"wss://127.0.0.1:{server.port}/", ssl_context=client_context) as ws:
        await ws.send("still serving")
        assert await ws.receive() == "still serving"


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


async def test_cli_certfile(cert_files: tuple[Path, Path], client_context: ssl.SSLContext) -> None:
    certfile, keyfile = cert_files
    served = start("--certfile", str(certfile), "--keyfile", str(keyfile))
    try:
        port = served.ports["listening"]
        for scheme in ("wss", "ws"):
            async with connect(f"{scheme}://127.0.0.1:{port}/", draft=Draft.HIXIE76,
                               ssl_context=client_context) as ws:
                await ws.send(scheme)
                assert await ws.receive() == scheme
    finally:
        served.proc.kill()
        served.proc.wait(timeout=10)


def test_cli_tls_options_need_a_certificate() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wscompat", "serve", "--require-tls"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2 and "--certfile" in result.stderr
