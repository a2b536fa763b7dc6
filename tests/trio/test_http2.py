"""WebSocket over HTTP/2 (RFC 8441) against the real trio server, over loopback sockets.

The client is ``h2`` (tests/trio/h2client.py), cleartext with prior knowledge or TLS with
ALPN ``h2``. Each test asserts on both ends: what the client received on the wire
(statuses, close frames, END_STREAM and RST_STREAM, GOAWAY) and what the server's
handler saw. Wherever a client leaves early, the server must end with no connection
counted (``server.active``) and no task left behind.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trio
import trustme
from h2.errors import ErrorCodes

import wscompat
from wscompat.options import Rejection
from wscompat.protocol.framing import Closed
from wscompat.trio.client import connect

from ..conftest import Starter
from ..framing_helpers import client_frame
from ..rawclient import read_to_eof
from .h2client import (
    HOST,
    PREFACE,
    Firehose,
    H2WebSocket,
    alpn_context,
    open_h2,
    open_stalled,
    open_stream,
    raw_frame,
)

TEXTS = ["Hello, wscompat over h2 ~ 0123456789", "中文字符 一条消息", "emoji 😀🎉🚀 over h2"]
BIN_64K = bytes(i % 251 for i in range(65536))
BIN_1M = bytes(i % 253 for i in range(1 << 20))
MODES = ["h2c", "h2-tls"]
SETTLE = 15.0
"""Seconds for the server to forget a connection a client left."""


@pytest.fixture(scope="module")
def h2_context(ca: trustme.CA) -> ssl.SSLContext:
    return alpn_context(ca, "h2", "http/1.1")


def task_count() -> int:
    """Every task in the run: a task the server left behind shows here."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries
                       for child in nursery.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def wait_until(predicate: Callable[[], bool], timeout: float = SETTLE) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def settled(server: wscompat.Server, tasks: int) -> None:
    """No connection counted and no more tasks than ``tasks``."""
    await wait_until(lambda: server.active == 0 and task_count() <= tasks)


@dataclass
class Seen:
    """The server's view of one WebSocket."""

    path: str
    http_version: str
    generation: str
    draft: wscompat.Draft
    secure: bool
    origin: str | None
    subprotocol: str | None
    marker: str | None
    messages: int = 0
    raised: int | None = None
    """The code of the ConnectionClosed the handler saw, if it saw one."""
    close_code: int | None = None
    done: bool = False


@dataclass
class Recorder:
    """An echo handler that notes what each WebSocket looked like from the server.
    ``boom`` makes it raise; ``bye`` makes it close with 1000 ``server bye``."""

    seen: dict[str, Seen] = field(default_factory=dict)
    changed: trio.Event = field(default_factory=trio.Event)

    def _note(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def handler(self, ws: wscompat.Connection) -> None:
        seen = Seen(ws.path, ws.http_version, ws.generation, ws.draft, ws.secure, ws.origin,
                    ws.subprotocol, ws.headers.get("x-marker"))
        self.seen[ws.path] = seen
        self._note()
        try:
            async for message in ws:
                seen.messages += 1
                if message == "boom":
                    raise RuntimeError("the handler failed on purpose")
                if message == "bye":
                    await ws.close(1000, "server bye")
                    continue
                await ws.send(message)
        except wscompat.ConnectionClosed as exc:
            seen.raised = exc.code
        finally:
            seen.close_code = ws.close_code
            seen.done = True
            self._note()

    async def wait(self, path: str, *, done: bool = False) -> Seen:
        with trio.fail_after(SETTLE):
            while path not in self.seen or (done and not self.seen[path].done):
                await self.changed.wait()
        return self.seen[path]


# -- echo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_echo_and_what_the_handler_sees(
    start_server: Starter, server_context: ssl.SSLContext, h2_context: ssl.SSLContext,
    mode: str,
) -> None:
    recorder = Recorder()
    server = await start_server(recorder.handler, ssl_context=server_context,
                                subprotocols=["chat"], max_message_size=2 << 20)
    tasks = task_count()
    context = h2_context if mode == "h2-tls" else None
    async with open_h2(server.port, ssl_context=context) as client:
        ws = await client.websocket("/room/1?x=%E4%B8%AD", subprotocols=("superchat", "chat"),
                                    origin="https://example.com",
                                    extra=[("x-marker", "h2 test")])
        assert ws.side.status == 200
        assert ws.side.header("sec-websocket-protocol") == "chat"
        assert ws.side.header("sec-websocket-accept") is None  # none in RFC 8441
        messages: list[str | bytes] = [*TEXTS, BIN_64K, BIN_1M]
        for message in messages:
            await ws.echo(message)
        pong = await ws.send_ping(b"still there?")
        assert pong.data == b"still there?"
        closed = await ws.close(1000, "done")
        assert (closed.code, closed.reason) == (1000, "done")
        assert ws.side.ended and ws.side.reset is None  # END_STREAM, not RST_STREAM
        seen = await recorder.wait("/room/1?x=%E4%B8%AD", done=True)
        assert client.goaway is None
    assert seen == Seen("/room/1?x=%E4%B8%AD", "2", "rfc8441", wscompat.Draft.RFC6455,
                        mode == "h2-tls", "https://example.com", "chat", "h2 test",
                        messages=5, raised=None, close_code=1000, done=True)
    await settled(server, tasks)


async def test_the_same_port_serves_http1_beside_h2(
    start_server: Starter, server_context: ssl.SSLContext, client_context: ssl.SSLContext,
    h2_context: ssl.SSLContext,
) -> None:
    """An HTTP/1.1 client offering no ALPN gets HTTP/1.1 over TLS, and ws:// works too."""
    recorder = Recorder()
    server = await start_server(recorder.handler, ssl_context=server_context)
    for scheme in ("ws", "wss"):
        async with connect(f"{scheme}://{HOST}:{server.port}/{scheme}",
                           ssl_context=client_context) as ws:
            await ws.send("over http/1.1")
            assert await ws.receive() == "over http/1.1"
    async with open_h2(server.port, ssl_context=h2_context) as client:
        ws2 = await client.websocket("/h2")
        await ws2.echo("over h2")
        await ws2.close()
    versions = {path: (s.http_version, s.generation, s.secure)
                for path, s in recorder.seen.items()}
    assert versions == {"/ws": ("1.1", "rfc6455", False), "/wss": ("1.1", "rfc6455", True),
                        "/h2": ("2", "rfc8441", True)}


# -- many WebSockets on one connection ----------------------------------------------------


async def test_twenty_websockets_on_one_connection(start_server: Starter) -> None:
    """Each echoes at once; one closed cleanly and one whose handler fails end only
    themselves, and the rest go on echoing."""
    recorder = Recorder()
    server = await start_server(recorder.handler)
    tasks = task_count()
    async with open_h2(server.port) as client:
        sockets = [await client.websocket(f"/ws/{i}") for i in range(20)]
        assert len({ws.sid for ws in sockets}) == 20

        async def chat(ws: H2WebSocket, rounds: int) -> None:
            for n in range(rounds):
                await ws.echo(f"{ws.sid}: message {n} 中文 😀")
            await ws.echo(BIN_64K)

        async with trio.open_nursery() as nursery:
            for ws in sockets:
                nursery.start_soon(chat, ws, 10)

        closing, failing, others = sockets[0], sockets[1], sockets[2:]
        closed = await closing.close(1000, "one of twenty")
        assert closed.code == 1000 and closing.side.ended and closing.side.reset is None

        await failing.send("boom")
        failed = await failing.closed()
        assert failed.code == 1011  # the handler's exception: internal error
        await client.wait_for(lambda: failing.side.ended or failing.side.reset is not None)

        async with trio.open_nursery() as nursery:
            for ws in others:
                nursery.start_soon(chat, ws, 3)
        assert client.goaway is None
        for ws in others:
            assert not ws.side.ended and ws.side.reset is None
            await ws.close()
        await wait_until(lambda: sum(s.done for s in recorder.seen.values()) == 20)
    assert recorder.seen["/ws/0"].close_code == 1000
    assert recorder.seen["/ws/1"].close_code is None  # it raised while open: 1011 above
    assert all(recorder.seen[f"/ws/{i}"].close_code == 1000 for i in range(2, 20))
    # Each: ten texts and 64 KiB, then three texts and 64 KiB.
    assert [recorder.seen[f"/ws/{i}"].messages for i in range(2, 20)] == [15] * 18
    await settled(server, tasks)


# -- backpressure -------------------------------------------------------------------------


async def test_a_stream_nobody_reads_holds_back_only_itself(start_server: Starter) -> None:
    """The handler of /sink never reads; the client floods it until flow control stops
    it, while /echo on the same connection keeps answering. What the client managed to
    send is what the server holds for /sink: bounded by its window, its queue and one
    read, whatever the client tries."""
    release = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        if ws.path == "/sink":
            await release.wait()
            with contextlib.suppress(wscompat.ConnectionClosed):
                while True:
                    await ws.receive()
        else:
            async for message in ws:
                await ws.send(message)

    server = await start_server(handler)
    options = server.options
    message = b"s" * 16384
    async with open_h2(server.port) as client:
        sink = await client.websocket("/sink")
        echo = await client.websocket("/echo")
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while True:
                await sink.send(message)
                sent += len(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            stalled_at = -1
            for n in range(400):  # echoes go on while the flood fills the window
                await echo.echo(f"still here {n}")
                if n % 50 == 49:
                    if sent == stalled_at:
                        break
                    stalled_at = sent
                    await trio.sleep(0.2)
            else:
                raise AssertionError("the flood never stalled")
            nursery.cancel_scope.cancel()
        bound = (options.h2_stream_window + options.max_queue_bytes + options.read_size
                 + 2 * len(message))
        assert 0 < sent <= bound, (sent, bound)
        release.set()  # the handler reads at last: the window opens again
        with trio.fail_after(SETTLE):
            for _ in range(50):
                await sink.send(message)
        await echo.echo("the end")
        await echo.close()
        await sink.close()


async def test_a_client_that_stops_reading_tcp(
    start_server: Starter, h2_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    """The client gives the server all the window it wants and then stops reading the
    socket: the server's writers block on TCP (the handler sends a bounded amount),
    while another HTTP/2 connection and an HTTP/1.1 client are served throughout."""
    sent: dict[str, int] = {}

    async def handler(ws: wscompat.Connection) -> None:
        if ws.path.startswith("/firehose"):
            sent[ws.path] = 0
            chunk = b"f" * 65536
            with contextlib.suppress(wscompat.ConnectionClosed):
                while True:
                    await ws.send(chunk)
                    sent[ws.path] += len(chunk)
        else:
            async for message in ws:
                await ws.send(message)

    server = await start_server(handler, ssl_context=server_context)
    tasks = task_count()
    async with open_h2(server.port, window=2**31 - 1, rcvbuf=4096) as stuck, \
            open_h2(server.port, ssl_context=h2_context) as good:
        hoses = [await stuck.websocket(f"/firehose/{i}") for i in range(3)]
        stuck.pause_reading()  # only now: a client that never reads never sees the 200s
        await wait_until(lambda: len(sent) == 3)
        before = -1
        with trio.fail_after(SETTLE):
            while sum(sent.values()) != before:  # until every writer is blocked
                before = sum(sent.values())
                await trio.sleep(0.5)
        ws = await good.websocket("/good")
        for n in range(20):
            await ws.echo(f"served while the other is stuck {n}")
        async with connect(f"ws://{HOST}:{server.port}/http1") as ws1:
            await ws1.send("and HTTP/1.1 too")
            assert await ws1.receive() == "and HTTP/1.1 too"
        # What the client read before it paused is not held anywhere; the rest is in
        # the kernel's buffers on loopback (tcp_wmem's maximum, 4 MiB on Linux by
        # default, and the client's small receive buffer), plus, on the server, each
        # writer's write_limit and frame.
        blocked = sum(sent.values()) - stuck.bytes_in
        assert blocked <= 8 << 20, (blocked, sent, stuck.bytes_in)
        await ws.close()
        assert [h.side.reset for h in hoses] == [None, None, None]
    await settled(server, tasks)


async def test_a_client_that_reads_nothing_is_let_go_by_the_keepalive(
    start_server: Starter, caplog: pytest.LogCaptureFixture,
) -> None:
    """A client opens a WebSocket whose handler sends without end, then reads nothing:
    the handler's write blocks on TCP, where no WebSocket ping can help. The HTTP/2
    PING goes unacknowledged, and within ``ping_interval + ping_timeout`` (and the
    bounded wait for the GOAWAY) the connection is closed and the handler freed. A
    client that reads, on another connection, is kept all along."""
    firehose = Firehose()
    caplog.set_level(logging.INFO, logger="wscompat.server")
    server = await start_server(firehose.handler, ping_interval=1.0, ping_timeout=2.0)
    tasks = task_count()
    async with open_h2(server.port) as good:
        ws = await good.websocket("/good")
        stalled = await open_stalled(server.port, "/firehose")
        with trio.fail_after(SETTLE):
            n = 0
            while not firehose.freed.is_set():  # the good client answers pings as it echoes
                await ws.echo(f"still here {n}")
                n += 1
                await trio.sleep(0.2)
        assert firehose.sent > 0
        assert any("HTTP/2 keepalive ping timed out" in r.getMessage() for r in caplog.records)
        await wait_until(lambda: server.active == 2)  # the good connection and its stream
        for m in range(5):
            await trio.sleep(0.5)  # more keepalive rounds: the good client stays
            await ws.echo(f"after {m}")
        assert good.goaway is None and ws.side.reset is None
        await ws.close()
        await stalled.aclose()
    await settled(server, tasks)


# -- clients that leave at every point ----------------------------------------------------

POINTS = ["before-200", "after-200", "mid-message", "after-client-close",
          "after-server-close"]


@pytest.mark.parametrize("action", ["end", "reset"])
@pytest.mark.parametrize("point", POINTS)
async def test_a_client_leaves_a_stream_at_every_point(
    start_server: Starter, point: str, action: str
) -> None:
    """END_STREAM (a half-close) or RST_STREAM on one stream at each point of its life:
    the handler sees how it ended, the other WebSocket on the connection goes on, and
    once the client leaves nothing of it remains on the server."""
    recorder = Recorder()
    deciding = trio.Event()
    decide = trio.Event()

    async def process_request(upgrade: object) -> None:
        if "slow" in upgrade.path:  # type: ignore[attr-defined]
            deciding.set()
            await decide.wait()

    server = await start_server(recorder.handler, process_request=process_request)
    tasks = task_count()
    async with open_h2(server.port) as client:
        other = await client.websocket("/other")
        await other.echo("before")
        if point == "before-200":
            side = await client.request([
                (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                (":path", "/slow"), (":authority", HOST), ("sec-websocket-version", "13")])
            with trio.fail_after(SETTLE):
                await deciding.wait()
            ws = H2WebSocket(client, side)
        else:
            decide.set()
            ws = await client.websocket("/slow")
        if point == "mid-message":
            frame = client_frame(2, b"m" * 1000)
            await client.send_data(ws.sid, frame[:600])
        elif point == "after-client-close":
            await ws.send_close(1000, "client bye")
        elif point == "after-server-close":
            await ws.send("bye")
            await ws.close_frame()  # and never answered
        if action == "end":
            await ws.end()
        else:
            await ws.reset(ErrorCodes.CANCEL)
        decide.set()
        if point == "before-200" and action == "reset":
            await other.echo("after")
            assert "/slow" not in recorder.seen  # never opened: no handler ran
        else:
            seen = await recorder.wait("/slow", done=True)
            expected = {
                "after-client-close": 1000,  # the close frame arrived before the end
                # The server's close went out; a stream that ends unanswered ends it
                # with the code sent, as a TCP close does over HTTP/1.1.
                "after-server-close": 1000,
            }.get(point, 1006)
            assert seen.close_code == expected, seen
            if expected == 1006:
                assert seen.raised == 1006, seen
        await other.echo("after")
        if action == "end" and point != "before-200":
            # A half-close leaves the server's side to end: END_STREAM or RST_STREAM.
            await client.wait_for(lambda: ws.side.ended or ws.side.reset is not None)
        assert client.goaway is None
        await other.close()
    await settled(server, tasks)


@pytest.mark.parametrize("when", ["idle", "mid-message", "mid-echo"])
async def test_tcp_closed_under_open_streams(start_server: Starter, when: str) -> None:
    recorder = Recorder()
    server = await start_server(recorder.handler, max_message_size=4 << 20)
    tasks = task_count()
    async with open_h2(server.port) as client:
        sockets = [await client.websocket(f"/tcp/{i}") for i in range(3)]
        await sockets[0].echo("hello")
        if when == "mid-message":
            await client.send_data(sockets[1].sid, client_frame(2, b"x" * 50000)[:30000])
        elif when == "mid-echo":
            await sockets[2].send(b"y" * (3 << 20))  # the echo is still going out
        await client.aclose()
    for i in range(3):
        seen = await recorder.wait(f"/tcp/{i}", done=True)
        assert seen.close_code == 1006, seen
    await settled(server, tasks)


async def test_a_client_goaway_ends_the_connection(start_server: Starter) -> None:
    recorder = Recorder()
    server = await start_server(recorder.handler)
    tasks = task_count()
    async with open_h2(server.port) as client:
        sockets = [await client.websocket(f"/goaway/{i}") for i in range(2)]
        await sockets[0].echo("before the GOAWAY")
        client.conn.close_connection(ErrorCodes.NO_ERROR)
        await client.flush()
        for i in range(2):
            seen = await recorder.wait(f"/goaway/{i}", done=True)
            assert seen.close_code == 1006, seen
        await client.wait_for(lambda: client.eof)  # the server closed TCP
    await settled(server, tasks)


# -- refusals over the wire ---------------------------------------------------------------


async def test_refusals_over_h2(start_server: Starter) -> None:
    async def process_request(upgrade: object) -> Rejection | None:
        if upgrade.path == "/private":  # type: ignore[attr-defined]
            return Rejection(401, "a token is needed")
        return None

    recorder = Recorder()
    server = await start_server(recorder.handler, origins=["https://good.example"],
                                process_request=process_request)
    async with open_h2(server.port) as client:
        bad = await client.connect("/", origin="https://evil.example")
        await client.wait_for(lambda: bad.ended)
        assert bad.status == 403
        private = await client.connect("/private", origin="https://good.example")
        await client.wait_for(lambda: private.ended)
        assert private.status == 401
        assert bytes(private.data) == b"a token is needed\n"
        health = await client.get("/healthz")
        assert (health.status, bytes(health.data)) == (200, b"ok\n")
        page = await client.get("/")
        assert page.status == 426
        assert (page.header("content-type") or "").startswith("text/html")
        assert b"WebSocket" in page.data
        connect_only = await client.request([(":method", "CONNECT"), (":authority", HOST)])
        await client.wait_for(lambda: connect_only.ended or connect_only.reset is not None)
        assert connect_only.status == 405  # a CONNECT without :protocol: not a proxy
        ws = await client.websocket("/fine", origin="https://good.example")
        await ws.echo("refusals end only their own stream")
        await ws.close()
        assert client.goaway is None
    assert list(recorder.seen) == ["/fine"]


async def test_max_connections_counts_the_connection_and_each_websocket(
    start_server: Starter,
) -> None:
    """docs/limits.md: the HTTP/2 connection is one connection, and each WebSocket on it
    counts too; over the limit a stream gets 503 with retry-after and the rest go on."""
    server = await start_server(max_connections=3)
    async with open_h2(server.port) as client:
        first = await client.websocket("/1")
        second = await client.websocket("/2")
        refused = await client.connect("/3")
        await client.wait_for(lambda: refused.ended)
        assert refused.status == 503
        assert refused.header("retry-after") == "5"
        await first.echo("still served")
        await first.close()
        # The slot comes free once the stream's task is done, just after END_STREAM.
        await wait_until(lambda: server.active == 2)
        third = await client.websocket("/3 again")
        await third.echo("now there is room")
        await second.echo("two open")
        assert client.goaway is None


async def test_http2_off_refuses_the_preface_and_alpn(
    start_server: Starter, client_context: ssl.SSLContext, h2_context: ssl.SSLContext,
    ca: trustme.CA,
) -> None:
    """With ``http2=False`` the preface is just a bad HTTP/1.1 request, and ALPN offers
    http/1.1 alone, even on a context that offered h2 before."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])  # as another server had set it
    server = await start_server(http2=False, ssl_context=context)
    stream = await open_stream(server.port)
    await stream.send_all(PREFACE + raw_frame(0x4, 0, 0))
    with trio.fail_after(SETTLE):
        answer = await read_to_eof(stream)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:100]  # refused as HTTP/1.1 would
    tls = await open_stream(server.port, ssl_context=h2_context)
    assert isinstance(tls, trio.SSLStream)
    assert tls.selected_alpn_protocol() == "http/1.1"
    await tls.aclose()
    async with connect(f"wss://{HOST}:{server.port}/", ssl_context=client_context) as ws:
        await ws.send("HTTP/1.1 still")
        assert await ws.receive() == "HTTP/1.1 still"


# -- graceful shutdown ---------------------------------------------------------------------


async def _shutdown_case(stop: Callable[[wscompat.Server, trio.Nursery], Awaitable[None]],
                         ) -> None:
    """Three WebSockets that answer the close and one that never does: GOAWAY NO_ERROR,
    1001 on each with END_STREAM, all within ``close_timeout``."""
    close_timeout = 2.0
    ready = trio.Semaphore(0)

    async def handler(ws: wscompat.Connection) -> None:
        ready.release()
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as servers:
        server: wscompat.Server = await servers.start(
            lambda task_status: wscompat.serve(handler, HOST, 0, close_timeout=close_timeout,
                                               task_status=task_status))
        async with open_h2(server.port) as client:
            sockets = [await client.websocket(f"/stop/{i}") for i in range(4)]
            for _ in sockets:
                await ready.acquire()
            await sockets[0].echo("before the shutdown")
            started = trio.current_time()
            with trio.fail_after(close_timeout + 10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(stop, server, servers)
                    closes: list[Closed] = []

                    async def answer(ws: H2WebSocket) -> None:
                        closes.append(await ws.closed())  # the framer answers the close
                        await client.wait_for(lambda: ws.side.ended)
                        await ws.end()

                    for ws in sockets[:3]:
                        nursery.start_soon(answer, ws)
                await client.wait_for(lambda: client.eof)
            took = trio.current_time() - started
            assert client.goaway is not None
            assert client.goaway.error_code == ErrorCodes.NO_ERROR
            assert client.goaway.last_stream_id == sockets[-1].sid
            assert [(c.code, c.by_peer) for c in closes] == [(1001, True)] * 3
            # END_STREAM after the close frames; the server may then stop waiting for
            # the client's with RST_STREAM NO_ERROR (RFC 9113 §8.1), never CANCEL.
            ends = [(ws.side.ended, ws.side.reset) for ws in sockets[:3]]
            assert all(ended and reset in (None, ErrorCodes.NO_ERROR)
                       for ended, reset in ends), ends
            silent = sockets[3]
            assert silent.side.ended or silent.side.reset is not None
            # The silent one is waited for close_timeout (REJECT_LINGER after it).
            assert took < close_timeout + 8, took


async def test_shutdown_sends_goaway_and_closes_each_websocket() -> None:
    async def stop(server: wscompat.Server, servers: trio.Nursery) -> None:
        await server.shutdown()

    await _shutdown_case(stop)


async def test_cancelling_serve_sends_goaway_and_closes_each_websocket() -> None:
    async def stop(server: wscompat.Server, servers: trio.Nursery) -> None:
        servers.cancel_scope.cancel()

    await _shutdown_case(stop)

