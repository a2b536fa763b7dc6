"""Every draft echoes through the gateway to backends that speak only RFC 6455: the
``websockets`` asyncio server and Node's ``ws``; each backend sees the forwarded fields,
the client's path, origin and subprotocols, and closes map across as documented."""

from __future__ import annotations

import json
import ssl

import pytest
import trio
import trustme

import wscompat
from wscompat import Draft
from wscompat.gateway import DRAFT_HEADER
from wscompat.protocol.handshake.client import ClientHandshake

from .conftest import Backend, GatewayStarter, backend_view, header

HIXIE = (Draft.HIXIE75, Draft.HIXIE76)
TEXTS = ["hello", "中文字符 😀🎉", "", "x" * 70000]
COOKIE = ("Cookie", "session=abc; theme=dark")
AUTH = ("Authorization", "Bearer t0k3n")


def backends(request: pytest.FixtureRequest, name: str) -> Backend:
    backend: Backend = request.getfixturevalue(name)
    return backend


@pytest.mark.parametrize("backend_name", ["py_backend", "node_backend"],
                         ids=["websockets", "node-ws"])
@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_every_draft_echoes_and_the_backend_sees_its_request(
    start_gateway: GatewayStarter, request: pytest.FixtureRequest, backend_name: str,
    draft: Draft,
) -> None:
    backend = backends(request, backend_name)
    gateway = await start_gateway(backend.url)
    url = f"ws://127.0.0.1:{gateway.port}/headers/room?id=7&x=%20y"
    with trio.fail_after(20):
        async with wscompat.connect(url, draft=draft, origin="https://app.example",
                                    extra_headers=(COOKIE, AUTH, ("X-Private", "no"))) as ws:
            view = await backend_view(ws)
            for text in TEXTS:
                await ws.send(text)
                assert await ws.receive() == text
            if draft.caps.binary:
                payload = bytes(range(256)) * 300
                await ws.send(payload)
                assert await ws.receive() == payload

    assert view["path"] == "/headers/room?id=7&x=%20y"
    assert header(view, "Origin") == ["https://app.example"]
    assert header(view, "Sec-WebSocket-Origin") == []
    assert header(view, "Sec-WebSocket-Version") == ["13"]
    assert header(view, "Host") == [f"127.0.0.1:{backend.port}"]
    assert header(view, "Cookie") == [COOKIE[1]]
    assert header(view, "Authorization") == [AUTH[1]]
    assert header(view, "X-Private") == []
    assert header(view, "X-Forwarded-For") == ["127.0.0.1"]
    assert header(view, "X-Forwarded-Proto") == ["http"]
    assert header(view, "X-Forwarded-Host") == [f"127.0.0.1:{gateway.port}"]
    assert header(view, "Forwarded") == [
        f'for=127.0.0.1;host="127.0.0.1:{gateway.port}";proto=http']
    assert header(view, DRAFT_HEADER) == [str(draft)]
    # Each leg negotiates compression on its own: none is offered to the backend.
    assert header(view, "Sec-WebSocket-Extensions") == []


@pytest.mark.parametrize("backend_name", ["py_backend", "node_backend"],
                         ids=["websockets", "node-ws"])
@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_the_backend_chooses_the_subprotocol(
    start_gateway: GatewayStarter, request: pytest.FixtureRequest, backend_name: str,
    draft: Draft,
) -> None:
    """The client's offer goes to the backend and its choice comes back; a hixie client
    offers one, which the backend must take (and the hixie answer echoes)."""
    backend = backends(request, backend_name)
    gateway = await start_gateway(backend.url)
    offer = ("chat",) if draft in HIXIE else ("v1", "chat", "superchat")
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/headers", draft=draft,
                                    subprotocols=offer) as ws:
            view = await backend_view(ws)
            assert ws.subprotocol == view["subprotocol"]
    offered = ", ".join(header(view, "Sec-WebSocket-Protocol"))
    assert [p.strip() for p in offered.split(",")] == list(offer)
    assert view["subprotocol"] == ("chat" if draft in HIXIE else "superchat")


async def test_a_hixie_offer_the_backend_declines_is_refused(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    """hixie clients fail a 101 that does not echo their subprotocol: 400 instead."""
    gateway = await start_gateway(py_backend.url)
    with trio.fail_after(10), pytest.raises(wscompat.HandshakeRejected) as caught:
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/", draft=Draft.HIXIE76,
                                    subprotocols=("mqtt",)):
            pass
    assert caught.value.status == 400


async def recorded(port: int, key: str) -> object:
    """How the backend says the ``/record/KEY`` connection closed."""
    async with wscompat.connect(f"ws://127.0.0.1:{port}/recorded/{key}") as ws:
        with trio.fail_after(10):
            return json.loads(str(await ws.receive()))


@pytest.mark.parametrize(
    ("draft", "code", "expected"),
    [
        (Draft.RFC6455, 4000, {"code": 4000, "reason": "bye"}),
        (Draft.RFC6455, 1000, {"code": 1000, "reason": "bye"}),
        (Draft.HYBI08, 3001, {"code": 3001, "reason": "bye"}),
        (Draft.HYBI07, 1001, {"code": 1001, "reason": "bye"}),
        # 0xFF 0x00 is a clean close with no code: 1000.
        (Draft.HIXIE76, 4000, {"code": 1000, "reason": ""}),
        # hixie-75 can only close TCP: the backend hears the client went away.
        (Draft.HIXIE75, 4000, {"code": 1001, "reason": "client went away"}),
    ],
    ids=["rfc6455-4000", "rfc6455-1000", "hybi08-3001", "hybi07-1001", "hixie76", "hixie75"],
)
async def test_a_client_close_reaches_the_backend(
    start_gateway: GatewayStarter, py_backend: Backend, draft: Draft, code: int,
    expected: dict[str, object],
) -> None:
    gateway = await start_gateway(py_backend.url)
    key = f"client-close-{draft}-{code}"
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/record/{key}",
                                    draft=draft) as ws:
            await ws.send("one")
            assert await ws.receive() == "one"
            await ws.close(code, "bye")
        assert await recorded(py_backend.port, key) == expected


async def test_a_hixie76_client_that_drops_tcp_reaches_the_backend_as_1001(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    gateway = await start_gateway(py_backend.url)
    key = "hixie76-tcp"
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream("127.0.0.1", gateway.port)
        handshake = ClientHandshake(
            Draft.HIXIE76, "127.0.0.1", f"/record/{key}", port=gateway.port)
        await stream.send_all(handshake.request())
        result = None
        while result is None:
            result = handshake.receive_data(bytes(await stream.receive_some(4096)))
        await stream.aclose()
        assert await recorded(py_backend.port, key) == {"code": 1001,
                                                        "reason": "client went away"}


@pytest.mark.parametrize("backend_name", ["py_backend", "node_backend"],
                         ids=["websockets", "node-ws"])
@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_a_backend_close_reaches_the_client(
    start_gateway: GatewayStarter, request: pytest.FixtureRequest, backend_name: str,
    draft: Draft,
) -> None:
    """hybi clients get the backend's code and reason; hixie-76 gets 0xFF 0x00 and
    hixie-75 a TCP close (the client reads both as a clean close)."""
    backend = backends(request, backend_name)
    gateway = await start_gateway(backend.url)
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/close/4321",
                                    draft=draft) as ws:
            await ws.send("last")
            assert await ws.receive() == "last"
            with pytest.raises(wscompat.ConnectionClosed):
                await ws.receive()
            assert ws.stats.closed_by == "peer"
            if draft.caps.close_codes:
                assert (ws.close_code, ws.close_reason) == (4321, "bye")
            else:
                assert ws.close_code == 1000


@pytest.mark.parametrize("policy", ["error", "base64", "drop"])
@pytest.mark.parametrize("draft", HIXIE, ids=str)
async def test_binary_from_the_backend_to_a_hixie_client(
    start_gateway: GatewayStarter, node_backend: Backend, draft: Draft, policy: str
) -> None:
    """The backend's first message on /binary is the bytes 00 01 02."""
    gateway = await start_gateway(node_backend.url, hixie_binary=policy)
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/binary",
                                    draft=draft) as ws:
            if policy == "error":
                with pytest.raises(wscompat.ConnectionClosed):
                    await ws.receive()
                return
            await ws.send("after")
            messages = [await ws.receive()]
            if policy == "base64":
                messages.append(await ws.receive())
    assert messages == (["AAEC", "after"] if policy == "base64" else ["after"])


async def test_binary_reaches_hybi_clients_as_binary(
    start_gateway: GatewayStarter, node_backend: Backend
) -> None:
    gateway = await start_gateway(node_backend.url, hixie_binary="base64")
    with trio.fail_after(20):
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/binary",
                                    draft=Draft.HYBI07) as ws:
            assert await ws.receive() == b"\x00\x01\x02"


async def test_client_pings_are_answered_by_the_gateway(
    start_gateway: GatewayStarter, py_backend: Backend
) -> None:
    gateway = await start_gateway(py_backend.url)
    with trio.fail_after(10):
        async with wscompat.connect(f"ws://127.0.0.1:{gateway.port}/") as ws:
            await ws.ping(b"are you there")
            await ws.send("still echoing")
            assert await ws.receive() == "still echoing"


async def test_a_wss_client_is_forwarded_as_https_beside_a_plain_one(
    start_gateway: GatewayStarter, py_backend: Backend, tls_ca: trustme.CA,
) -> None:
    """One port serves ws:// and wss://: the backend is told which one each client used."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    gateway = await start_gateway(py_backend.url, ssl_context=server_context)
    seen = {}
    for scheme, context in (("wss", client_context), ("ws", None)):
        url = f"{scheme}://127.0.0.1:{gateway.port}/headers/"
        with trio.fail_after(20):
            async with wscompat.connect(url, ssl_context=context) as ws:
                view = await backend_view(ws)
        seen[scheme] = (header(view, "X-Forwarded-Proto"), header(view, "Forwarded"))
    assert seen["wss"][0] == ["https"] and seen["ws"][0] == ["http"]
    assert seen["wss"][1][0].endswith(";proto=https")
