"""Every generation on one port at once, over real sockets."""

from __future__ import annotations

import contextlib
import random
from collections import Counter

import trio

import wscompat
from wscompat.drafts import Draft
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.trio.client import connect

from ..conftest import Starter
from ..rawclient import client_frame, close_code, open_rfc6455, read_to_eof, read_until

MESSAGES = ["ascii", "中文字符", "emoji 😀🎉", "", "x" * 5000]


async def well_behaved(port: int, draft: Draft, index: int, failures: list[str]) -> None:
    async with connect(f"ws://127.0.0.1:{port}/mixed/{index}", draft=draft) as ws:
        for text in MESSAGES:
            await ws.send(text)
            if await ws.receive() != text:
                failures.append(f"{draft} #{index}")
        if draft.caps.binary:
            await ws.send(b"\x00\xff" * 100)
            if await ws.receive() != b"\x00\xff" * 100:
                failures.append(f"{draft} #{index} binary")


HIXIE75_HEAD = (b"GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
                b"Host: 127.0.0.1\r\nOrigin: http://x\r\n\r\n")


async def misbehaving(port: int, kind: str) -> bytes:
    """Peers of each generation that break their draft's rules; returns what they got."""
    stream: trio.abc.HalfCloseableStream
    if kind == "hybi-unmasked":
        stream = await open_rfc6455(port)
        await stream.send_all(client_frame(1, b"x", masked=False))
        return await read_to_eof(stream)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    if kind == "hixie75-endless-frame":
        await stream.send_all(HIXIE75_HEAD)
        await read_until(stream, b"\r\n\r\n")
        for _ in range(40):  # never sends 0xFF: cut off at the message limit
            await stream.send_all(b"\x00" + b"a" * 4096)
        return await read_to_eof(stream)
    if kind == "hixie76-bad-key":
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n"
            b"Sec-WebSocket-Key1: 3e6b26341780\r\nSec-WebSocket-Key2: 1 2\r\n\r\n12345678"
        )
        return await read_to_eof(stream)
    if kind == "hixie76-bad-utf8":
        handshake = ClientHandshake(Draft.HIXIE76, "127.0.0.1", port=port)
        await stream.send_all(handshake.request())
        while handshake.receive_data(bytes(await stream.receive_some(4096))) is None:
            pass
        await stream.send_all(b"\x00\xc0\xaf\xff")
        return await read_to_eof(stream)
    raise AssertionError(kind)


async def test_every_generation_at_once(start_server: Starter) -> None:
    drafts_seen: Counter[Draft] = Counter()

    async def handler(ws: wscompat.Connection) -> None:
        drafts_seen[ws.draft] += 1
        async for message in ws:
            await ws.send(message)

    server = await start_server(handler, max_message_size=65536, max_queue=4)
    failures: list[str] = []
    answers: dict[str, bytes] = {}

    async def bad(kind: str) -> None:
        answers[kind] = await misbehaving(server.port, kind)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for draft in Draft:
                for index in range(25):
                    nursery.start_soon(well_behaved, server.port, draft, index, failures)
            for kind in ("hybi-unmasked", "hixie75-endless-frame", "hixie76-bad-key",
                         "hixie76-bad-utf8"):
                nursery.start_soon(bad, kind)
    assert failures == []
    # 25 good clients each, plus the misbehaving ones whose handshake succeeded.
    assert drafts_seen == {Draft.HIXIE75: 26, Draft.HIXIE76: 26, Draft.HYBI07: 25,
                           Draft.HYBI08: 25, Draft.RFC6455: 26}
    assert close_code(answers["hybi-unmasked"]) == 1002
    # hixie drafts have no close code: a failed connection is a plain TCP close.
    assert answers["hixie75-endless-frame"] == b""
    assert answers["hixie76-bad-utf8"] == b""
    assert answers["hixie76-bad-key"].startswith(b"HTTP/1.1 400 ")


async def test_handshakes_one_byte_at_a_time(start_server: Starter) -> None:
    server = await start_server()
    for draft in Draft:
        handshake = ClientHandshake(draft, "127.0.0.1", "/slow?x=1", port=server.port,
                                    rng=random.Random(7))
        request = handshake.request()
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        with trio.fail_after(10):
            for i in range(len(request)):
                await stream.send_all(request[i : i + 1])
                await trio.sleep(0)
            result = None
            while result is None:
                result = handshake.receive_data(bytes(await stream.receive_some(4096)))
        assert result.draft is draft
        await stream.aclose()


async def test_hixie76_head_and_key3_in_separate_reads(start_server: Starter) -> None:
    server = await start_server()
    handshake = ClientHandshake(Draft.HIXIE76, "127.0.0.1", port=server.port)
    request = handshake.request()
    head, key3 = request[:-8], request[-8:]
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    with trio.fail_after(10):
        await stream.send_all(head)
        early = await read_until(stream, b"\r\n\r\n")
        assert early.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n")
        assert early.endswith(b"\r\n\r\n")  # the head came before key3 was sent
        await trio.sleep(0.3)
        await stream.send_all(key3)
        answer = b""
        while len(answer) < 16:
            answer += await stream.receive_some(16)
    assert handshake.receive_data(early + answer) is not None


async def test_missing_key3_times_out(start_server: Starter) -> None:
    server = await start_server(handshake_timeout=0.5)
    handshake = ClientHandshake(Draft.HIXIE76, "127.0.0.1", port=server.port)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(handshake.request()[:-8])
    with trio.fail_after(5):
        data = await read_to_eof(stream)
    assert data.startswith(b"HTTP/1.1 101 ") and data.endswith(b"\r\n\r\n")


async def test_shutdown_closes_each_draft_its_own_way() -> None:
    ready = trio.Semaphore(0)

    async def handler(ws: wscompat.Connection) -> None:
        ready.release()
        await trio.sleep_forever()

    outcomes: dict[Draft, tuple[int | None, str]] = {}

    async def client(port: int, draft: Draft) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", draft=draft) as ws:
            with contextlib.suppress(wscompat.ConnectionClosed):
                await ws.receive()
            outcomes[draft] = (ws.close_code, ws.stats.closed_by)

    with trio.fail_after(15):
        async with trio.open_nursery() as clients, trio.open_nursery() as servers:
            server: wscompat.Server = await servers.start(
                lambda task_status: wscompat.serve(handler, "127.0.0.1", 0,
                                                   task_status=task_status)
            )
            for draft in Draft:
                clients.start_soon(client, server.port, draft)
            for _ in Draft:
                await ready.acquire()
            servers.cancel_scope.cancel()
    assert outcomes == {
        Draft.HIXIE75: (1000, "peer"),  # TCP closed: the only close hixie-75 has
        Draft.HIXIE76: (1000, "peer"),  # 0xFF 0x00 closing handshake
        Draft.HYBI07: (1001, "peer"),
        Draft.HYBI08: (1001, "peer"),
        Draft.RFC6455: (1001, "peer"),
    }
