"""The trio server against real third-party clients and hostile raw peers, over loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin, Subprotocol

import wscompat
from wscompat.cli import echo

from ..conftest import Starter
from ..rawclient import UPGRADE13, client_frame, close_code, open_rfc6455, read_to_eof, read_until

TEXTS = ["hello", "中文字符", "emoji 😀🎉", ""]


async def in_thread(fn: Callable[[], Any]) -> Any:
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(fn)


async def test_websockets_client_round_trips(echo_server: wscompat.Server) -> None:
    url = f"ws://127.0.0.1:{echo_server.port}/path?q=1"

    def run() -> list[Any]:
        got: list[Any] = []
        with ws_connect(url, max_size=None) as ws:
            for text in TEXTS:
                ws.send(text)
                got.append(ws.recv())
            ws.send(bytes(range(256)) * 256)
            got.append(ws.recv())
            ws.send(["frag", "mented ", "中"])  # one message in three frames
            got.append(ws.recv())
            assert ws.ping(b"x").wait(5)
        return got

    got = await in_thread(run)
    assert got == [*TEXTS, bytes(range(256)) * 256, "fragmented 中"]


async def test_websocket_client_round_trips_and_close_code(start_server: Starter) -> None:
    seen: list[tuple[int | None, str | None]] = []

    async def handler(ws: wscompat.Connection) -> None:
        with pytest.raises(wscompat.ConnectionClosedError):  # 4001 is not a normal closure
            async for message in ws:
                await ws.send(message)
        seen.append((ws.close_code, ws.close_reason))

    server = await start_server(handler)

    def run() -> list[Any]:
        client = websocket.create_connection(f"ws://127.0.0.1:{server.port}/", timeout=10)
        got = []
        for text in TEXTS:
            client.send(text)
            got.append(client.recv())
        client.send_binary(b"\x00\xff" * 40000)
        got.append(client.recv())
        client.close(status=4001, reason=b"done")
        return got

    got = await in_thread(run)
    assert got == [*TEXTS, b"\x00\xff" * 40000]
    with trio.fail_after(5):
        while not seen:
            await trio.sleep(0.01)
    assert seen == [(4001, "done")]


async def test_subprotocol_selection(start_server: Starter) -> None:
    server = await start_server(echo, subprotocols=["b", "c"])

    def run() -> tuple[str | None, str | None]:
        offered = [Subprotocol("a"), Subprotocol("c"), Subprotocol("b")]
        with ws_connect(f"ws://127.0.0.1:{server.port}/", subprotocols=offered) as ws:
            chosen = ws.subprotocol
        with ws_connect(f"ws://127.0.0.1:{server.port}/", subprotocols=[Subprotocol("z")]) as ws:
            return chosen, ws.subprotocol

    assert await in_thread(run) == ("c", None)


async def test_process_request_can_refuse(start_server: Starter) -> None:
    seen: list[wscompat.UpgradeRequest] = []

    def check(request: wscompat.UpgradeRequest) -> wscompat.Rejection | None:
        seen.append(request)
        if request.path.startswith("/private"):
            return wscompat.Rejection(403, "private area")
        return None

    server = await start_server(echo, process_request=check)

    def run() -> int:
        with ws_connect(f"ws://127.0.0.1:{server.port}/public",
                        origin=Origin("http://a.example")) as ws:
            ws.send("ok")
            assert ws.recv() == "ok"
        with pytest.raises(InvalidStatus) as info:
            ws_connect(f"ws://127.0.0.1:{server.port}/private")
        return int(info.value.response.status_code)

    assert await in_thread(run) == 403
    assert [r.path for r in seen] == ["/public", "/private"]
    assert seen[0].origin == "http://a.example" and seen[0].draft is wscompat.Draft.RFC6455


async def test_async_process_request(start_server: Starter) -> None:
    async def check(request: wscompat.UpgradeRequest) -> wscompat.Rejection | None:
        await trio.sleep(0)
        return wscompat.Rejection(401, "who are you") if "token" not in request.path else None

    server = await start_server(echo, process_request=check)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(UPGRADE13)
    with trio.fail_after(5):
        answer = await read_to_eof(stream)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert answer.endswith(b"\r\n\r\nwho are you\n")


async def test_handler_exception_is_1011_and_server_survives(
    start_server: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: wscompat.Connection) -> None:
        if await ws.receive() == "boom":
            raise RuntimeError("handler bug")
        await ws.send("fine")

    server = await start_server(handler)

    def run() -> tuple[int | None, str]:
        with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.send("boom")
            with pytest.raises(WsClosed) as info:
                ws.recv()
            code = info.value.rcvd.code if info.value.rcvd else None
        with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.send("hi")
            return code, str(ws.recv())

    assert await in_thread(run) == (1011, "fine")
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)


async def test_server_ping_returns_on_pong(start_server: Starter) -> None:
    rtts: list[bool] = []

    async def handler(ws: wscompat.Connection) -> None:
        await ws.ping(b"abc")
        await ws.ping()
        rtts.append(True)
        await ws.send("pinged")

    server = await start_server(handler)

    def run() -> str:
        with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
            return str(ws.recv())

    assert await in_thread(run) == "pinged" and rtts == [True]


async def test_server_close_code_reaches_client(start_server: Starter) -> None:
    async def handler(ws: wscompat.Connection) -> None:
        await ws.close(4000, "bye")
        assert ws.close_code == 4000 and ws.closed

    server = await start_server(handler)

    def run() -> tuple[int, str]:
        with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws, pytest.raises(WsClosed) as info:
            ws.recv()
        assert info.value.rcvd is not None
        return info.value.rcvd.code, info.value.rcvd.reason

    assert await in_thread(run) == (4000, "bye")


async def test_cancelling_the_server_closes_connections_with_1001() -> None:
    async def handler(ws: wscompat.Connection) -> None:
        await ws.send("ready")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server: wscompat.Server = await nursery.start(
            lambda task_status: wscompat.serve(handler, "127.0.0.1", 0, close_timeout=2,
                                               task_status=task_status)
        )
        stream = await open_rfc6455(server.port)
        await read_until(stream, b"ready")
        started = trio.current_time()
        nursery.cancel_scope.cancel()
    with trio.fail_after(5):
        await stream.send_all(client_frame(8, b"\x03\xe9"))
        rest = await read_to_eof(stream)
    assert close_code(rest) == 1001
    assert trio.current_time() - started < 3


async def test_ipv6(start_server: Starter) -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback")
    server = await start_server(echo, host="::1")
    seen = server.addresses[0][0]
    assert seen == "::1"

    def run() -> str:
        with ws_connect(f"ws://[::1]:{server.port}/") as ws:
            ws.send("v6")
            return str(ws.recv())

    assert await in_thread(run) == "v6"


async def test_half_sent_handshake_is_closed_after_the_timeout(start_server: Starter) -> None:
    server = await start_server(echo, handshake_timeout=0.3)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(UPGRADE13[:40])
    started = trio.current_time()
    with trio.fail_after(3):
        assert await read_to_eof(stream) == b""
    assert 0.25 < trio.current_time() - started < 2


async def test_plain_http_gets_a_page_and_post_a_405(echo_server: wscompat.Server) -> None:
    answers = []
    for request in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST / HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 0\r\n\r\n", b"\x00\x01garbage\r\n\r\n"):
        stream = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
        await stream.send_all(request)
        with trio.fail_after(5):
            answers.append(await read_to_eof(stream))
    page, post, garbage = answers
    assert page.startswith(b"HTTP/1.1 426 Upgrade Required\r\n") and b"wscompat" in page
    assert b"Content-Type: text/html" in page
    assert post.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and b"Allow: GET" in post
    assert garbage == b""


async def test_flash_policy_on_the_websocket_port(echo_server: wscompat.Server) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
    await stream.send_all(b"<policy-file-request/>\x00")
    with trio.fail_after(5):
        answer = await read_to_eof(stream)
    assert answer.startswith(b'<?xml version="1.0"?>')
    assert answer.endswith(b"</cross-domain-policy>\n\x00")
    assert b'<allow-access-from domain="*" to-ports="*"/>' in answer


async def test_a_handler_that_never_reads_pushes_back(start_server: Starter) -> None:
    """The receive queue is bounded: the server stops reading and TCP fills up."""
    ready = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        ready.set()
        await trio.sleep_forever()

    server = await start_server(handler, max_queue=4)
    stream = await open_rfc6455(server.port)
    await ready.wait()
    frame = client_frame(2, b"x" * 65536)
    sent = 0
    with trio.move_on_after(1.5):
        while sent < 512 * len(frame):
            await stream.send_all(frame)
            sent += len(frame)
    # 512 frames is 32 MiB; the kernel buffers plus 4 queued messages hold far less.
    assert sent < 512 * len(frame)
    await stream.aclose()


async def test_async_for_and_close_code(start_server: Starter) -> None:
    results: list[Any] = []

    async def handler(ws: wscompat.Connection) -> None:
        results.extend([m async for m in ws])
        results.append(ws.close_code)
        with pytest.raises(wscompat.ConnectionClosedOK):
            await ws.receive()
        with pytest.raises(wscompat.ConnectionClosedOK):
            await ws.send("late")

    server = await start_server(handler)

    def run() -> None:
        with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.send("a")
            ws.send(b"b")

    await in_thread(run)
    with trio.fail_after(5):
        while len(results) < 3:
            await trio.sleep(0.01)
    assert results == ["a", b"b", 1000]


async def test_host_none_serves_ipv4_and_ipv6(start_server: Starter) -> None:
    server = await start_server(echo, host=None)
    families = {len(address) for address in server.addresses}  # 2-tuples v4, 4-tuples v6
    assert families == {2, 4}

    def run() -> list[str]:
        got = []
        for host in ("127.0.0.1", "[::1]"):
            with ws_connect(f"ws://{host}:{server.port}/") as ws:
                ws.send(host)
                got.append(str(ws.recv()))
        return got

    assert await in_thread(run) == ["127.0.0.1", "[::1]"]
