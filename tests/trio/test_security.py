"""Who gets in, and how long the server keeps a connection it has no use for."""

from __future__ import annotations

import contextlib
import gc
import logging
from functools import partial

import pytest
import trio
import websockets.sync.client

import wscompat
from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.trio.client import connect

from ..conftest import Starter
from ..rawclient import UPGRADE13, client_frame, close_code, open_rfc6455, read_to_eof, read_until

ORIGINS = ["https://app.example", "https://*.example.com"]


@pytest.mark.parametrize("draft", list(Draft))
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example", True),
        ("https://chat.example.com", True),
        ("HTTPS://CHAT.EXAMPLE.COM", True),
        ("https://evil.example", False),
        ("https://example.com.evil.net", False),
        ("null", False),
    ],
)
async def test_origin_policy_on_every_draft(
    start_server: Starter, draft: Draft, origin: str, allowed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """hybi-07/08 carry the origin in Sec-WebSocket-Origin; the policy reads it there too."""
    server = await start_server(origins=ORIGINS)
    url = f"ws://127.0.0.1:{server.port}/"
    if allowed:
        async with connect(url, draft=draft, origin=origin) as ws:
            await ws.send("in")
            assert await ws.receive() == "in"
        return
    with caplog.at_level(logging.INFO, "wscompat.server"), pytest.raises(
        HandshakeRejected
    ) as info:
        async with connect(url, draft=draft, origin=origin):
            pass
    assert info.value.status == 403
    await trio.sleep(0.05)
    assert any(f"rejected 403 origin {origin} not allowed" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("draft", list(Draft))
async def test_missing_origin_allowed_or_refused(start_server: Starter, draft: Draft) -> None:
    lenient = await start_server()
    async with connect(f"ws://127.0.0.1:{lenient.port}/", draft=draft, origin=None) as ws:
        await ws.send("no origin")
        assert await ws.receive() == "no origin"
    strict = await start_server(allow_missing_origin=False)
    with pytest.raises(HandshakeRejected) as info:
        async with connect(f"ws://127.0.0.1:{strict.port}/", draft=draft, origin=None):
            pass
    assert info.value.status == 403


async def test_connection_cap_answers_503_and_keeps_serving(start_server: Starter) -> None:
    release = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        await ws.send("hello")
        await release.wait()

    server = await start_server(handler, max_connections=3)
    async with trio.open_nursery() as nursery:
        opened = trio.Semaphore(0)

        async def hold(draft: Draft) -> None:
            async with connect(f"ws://127.0.0.1:{server.port}/", draft=draft) as ws:
                assert await ws.receive() == "hello"
                opened.release()
                await release.wait()

        for draft in (Draft.RFC6455, Draft.HIXIE76, Draft.HYBI08):
            nursery.start_soon(hold, draft)
        for _ in range(3):
            await opened.acquire()
        # The 503 comes once the request is read, as an answer to it: the websockets
        # client reports the status rather than a broken handshake.
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await trio.to_thread.run_sync(
                partial(websockets.sync.client.connect, f"ws://127.0.0.1:{server.port}/",
                        open_timeout=5)
            )
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "5"
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await trio.sleep(0.2)
        assert server.active == 4  # the raw peer is held while its request is awaited
        await stream.send_all(UPGRADE13)
        with trio.fail_after(5):
            answer = await read_to_eof(stream)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"Retry-After: 5\r\n" in answer
        release.set()
    # Capacity is back once the others are gone.
    with trio.fail_after(5):
        while server.active:
            await trio.sleep(0.01)
    async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert await ws.receive() == "hello"
        release.set()


async def test_keepalive_drops_a_peer_that_never_answers(start_server: Starter) -> None:
    ended = trio.Event()
    codes: list[int | None] = []

    async def handler(ws: wscompat.Connection) -> None:
        with contextlib.suppress(wscompat.ConnectionClosed):
            await ws.receive()
        codes.append(ws.close_code)
        ended.set()

    server = await start_server(handler, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.5)
    stream = await open_rfc6455(server.port)  # a raw peer: reads, never pongs
    with trio.fail_after(5):
        data = await read_to_eof(stream)
        await ended.wait()
    assert data.startswith(b"\x89\x04")  # the keepalive ping came
    assert close_code(data) == 1011
    assert codes == [1011]


async def test_keepalive_keeps_a_live_peer(start_server: Starter) -> None:
    server = await start_server(ping_interval=0.1, ping_timeout=5)
    async with connect(f"ws://127.0.0.1:{server.port}/") as ws:  # our client answers pings
        await trio.sleep(0.6)
        await ws.send("still here")
        assert await ws.receive() == "still here"


@pytest.mark.parametrize("draft", [Draft.HIXIE75, Draft.HIXIE76, Draft.RFC6455])
async def test_idle_timeout_closes_the_drafts_way(start_server: Starter, draft: Draft) -> None:
    server = await start_server(idle_timeout=0.3)
    async with connect(f"ws://127.0.0.1:{server.port}/", draft=draft) as ws:
        await ws.send("active")
        assert await ws.receive() == "active"
        started = trio.current_time()
        with trio.fail_after(5), pytest.raises(wscompat.ConnectionClosed):
            await ws.receive()
        assert trio.current_time() - started >= 0.25
    expected = {Draft.HIXIE75: 1000, Draft.HIXIE76: 1000, Draft.RFC6455: 1001}[draft]
    assert ws.close_code == expected


async def test_data_postpones_the_idle_timeout(start_server: Starter) -> None:
    server = await start_server(idle_timeout=1.0)
    async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        for _ in range(6):  # 1.5 s in all, never 1 s quiet
            await trio.sleep(0.25)
            await ws.send("tick")
            assert await ws.receive() == "tick"


async def test_payloads_are_logged_only_when_asked(
    start_server: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    for log_payloads in (False, True):
        caplog.clear()
        server = await start_server(log_payloads=log_payloads)
        with caplog.at_level(logging.DEBUG, "wscompat"):
            async with connect(f"ws://127.0.0.1:{server.port}/secret-path") as ws:
                await ws.send("top secret payload")
                await ws.receive()
        logged = " ".join(r.getMessage() for r in caplog.records
                          if r.name == "wscompat.connection")
        assert ("top secret payload" in logged) is log_payloads


async def test_connection_log_line(start_server: Starter, caplog: pytest.LogCaptureFixture) -> None:
    server = await start_server(log_query=True)  # the query is left out unless asked for
    with caplog.at_level(logging.INFO, "wscompat.server"):
        async with connect(f"ws://127.0.0.1:{server.port}/room?id=7", draft=Draft.HIXIE76,
                           origin="http://site.example") as ws:
            await ws.send("12345")
            await ws.receive()
        await trio.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records if "/room?id=7" in r.getMessage()]
    assert len(lines) == 1
    line = lines[0]
    assert "hixie-76 plain origin=http://site.example" in line
    assert "close=1000 by=peer" in line
    assert "in=" in line and "out=" in line


async def test_raw_frames_after_an_origin_refusal_are_never_read(start_server: Starter) -> None:
    """A refused client that keeps sending gets its 403 and a closed socket, not a reset."""
    server = await start_server(origins=["https://only.example"])
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Origin: https://other.example\r\n\r\n" + client_frame(1, b"x" * 1000)
    )
    with trio.fail_after(5):
        head = await read_until(stream, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")


class _SpawnedNames(trio.abc.Instrument):
    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def test_keepalive_pings_every_connection_from_one_task(start_server: Starter) -> None:
    """No task per connection for keepalive (each cost about 3.5 KiB idle), and a closed
    connection is not kept alive by its place in the ping schedule."""
    server = await start_server(ping_interval=0.2, ping_timeout=1.0)
    spawned = _SpawnedNames()
    trio.lowlevel.add_instrument(spawned)
    try:
        async with trio.open_nursery() as nursery:
            async def client(index: int) -> None:
                async with connect(f"ws://127.0.0.1:{server.port}/{index}") as ws:
                    await trio.sleep(0.7)  # a few pings, answered by the client
                    await ws.send("alive")
                    assert await ws.receive() == "alive"

            for index in range(20):
                nursery.start_soon(client, index)
    finally:
        trio.lowlevel.remove_instrument(spawned)
    watchers = [n for n in spawned.names if n.startswith("wscompat") and (
        "keepalive" in n or "_in_scope" in n)]
    assert watchers == []
    assert sum(n.startswith("wscompat.trio.server._serve_connection") for n in spawned.names) == 20
    assert server.keepalive is not None
    with trio.fail_after(5):
        while server.active:
            await trio.sleep(0.05)
    gc.collect()
    assert all(entry[2]() is None for entry in server.keepalive._due)
