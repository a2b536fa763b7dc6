"""Real clients through the gateway to Node's ``ws`` server: Perl's Protocol::WebSocket
as draft-hixie-75, -hybi-00, -hybi-10 and -hybi-17, ``websocket-client`` and the
``websockets`` client. Each client's report is checked as against ``wscompat serve``
(the gateway answers the handshake itself), and the backend's record of the same
connection shows the forwarded fields and the close as the table maps it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import websocket
from websockets.sync.client import connect as ws_connect

import wscompat
from wscompat import Draft
from wscompat.gateway import DRAFT_HEADER

from ..live.legacy_helpers import (
    MESSAGES,
    PERL_DRAFTS,
    check_close,
    check_echoes,
    check_handshake,
    require_perl_websocket,
    run_perl_client,
    short_name,
)
from .conftest import Backend, GatewayStarter, header

pytestmark = pytest.mark.live

HOST = "127.0.0.1"


async def record(backend: Backend, key: str) -> dict[str, Any]:
    """What the Node backend kept of the ``/record/KEY`` connection."""
    async with wscompat.connect(f"ws://{HOST}:{backend.port}/recorded/{key}") as ws:
        with trio.fail_after(10):
            kept = json.loads(str(await ws.receive()))
    assert kept is not None, f"the backend kept nothing under {key}"
    assert isinstance(kept, dict)
    return kept


@pytest.mark.parametrize("perl_draft", list(PERL_DRAFTS), ids=short_name)
async def test_perl_protocol_websocket(
    start_gateway: GatewayStarter, node_backend: Backend, perl_draft: str
) -> None:
    await require_perl_websocket()
    draft = PERL_DRAFTS[perl_draft]
    key = f"perl-{short_name(perl_draft)}"
    path = f"/record/{key}?q=1"
    gateway = await start_gateway(node_backend.url)
    with trio.fail_after(60):
        run = await run_perl_client(gateway.port, perl_draft, MESSAGES, path=path)
        kept = await record(node_backend, key)

    assert not run.errors, run
    assert run.returncode == 0, run
    check_handshake(run, draft, gateway.port, path)
    check_echoes(run)
    check_close(run, draft)

    assert kept["path"] == path
    assert header(kept, DRAFT_HEADER) == [str(draft)]
    assert header(kept, "X-Forwarded-For") == [HOST]
    # hybi-10 sends Sec-WebSocket-Origin; the backend gets it as Origin.
    assert header(kept, "Origin") == [f"http://{HOST}:{gateway.port}"]
    expected_close = {
        Draft.HIXIE75: (1001, "client went away"),
        Draft.HIXIE76: (1000, ""),
    }.get(draft, (1000, "bye from perl"))
    assert (kept["code"], kept["reason"]) == expected_close


async def test_websocket_client(start_gateway: GatewayStarter, node_backend: Backend) -> None:
    gateway = await start_gateway(node_backend.url)
    payload = bytes(range(256)) * 64

    def run() -> list[Any]:
        ws = websocket.create_connection(
            f"ws://{HOST}:{gateway.port}/record/websocket-client", timeout=10,
            cookie="session=42", header=["Authorization: Basic dTpw"])
        try:
            ws.send("héllo")
            text = ws.recv()
            ws.send_binary(payload)
            data = ws.recv()
            ws.ping(b"p")
        finally:
            ws.close(status=4002, reason=b"done")
        return [text, data]

    with trio.fail_after(30):
        echoes = await trio.to_thread.run_sync(run)
        kept = await record(node_backend, "websocket-client")
    assert echoes == ["héllo", payload]
    assert header(kept, "Cookie") == ["session=42"]
    assert header(kept, "Authorization") == ["Basic dTpw"]
    assert header(kept, DRAFT_HEADER) == ["rfc6455"]
    assert (kept["code"], kept["reason"]) == (4002, "done")


async def test_websockets_client(start_gateway: GatewayStarter, node_backend: Backend) -> None:
    """The ``websockets`` client offers permessage-deflate: the gateway's own leg agrees
    to it, the backend's leg has none."""
    gateway = await start_gateway(node_backend.url)

    def run() -> tuple[str | None, str | None, list[str | bytes], dict[str, Any]]:
        with ws_connect(f"ws://{HOST}:{gateway.port}/headers",
                        subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            view = json.loads(ws.recv(timeout=10))
            echoes = []
            for message in ("a" * 10000, b"\x00" * 10000):
                ws.send(message)
                echoes.append(ws.recv(timeout=10))
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            return ws.subprotocol, extensions, echoes, view

    with trio.fail_after(30):
        subprotocol, extensions, echoes, view = await trio.to_thread.run_sync(run)
    assert subprotocol == "chat"
    assert extensions is not None
    assert extensions.startswith("permessage-deflate")
    assert echoes == ["a" * 10000, b"\x00" * 10000]
    assert header(view, "Sec-WebSocket-Extensions") == []
    assert header(view, "Sec-WebSocket-Protocol") == ["chat"]
