"""``connect(url, http2=True)``: RFC 6455 over an HTTP/2 stream (RFC 8441), the client
side, against real servers on loopback: wscompat's own (cleartext with prior knowledge,
and TLS with ALPN ``h2``), wscompat with HTTP/2 turned off, a small server written here
with the ``h2`` library for what no well-behaved server does, and hypercorn, a
third-party RFC 8441 server, as a subprocess."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trustme
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

import wscompat
from wscompat.conformance.wire import FrameParser
from wscompat.errors import ConnectionClosed, HandshakeRejected
from wscompat.options import Rejection, UpgradeRequest
from wscompat.trio.client import connect, open_h2_connection
from wscompat.trio.http2_client import open_h2_client

from ..conftest import Starter

ROOT = Path(__file__).parents[2]
TEXTS = ("plain ASCII", "中文 and 日本語", "emoji 😀🎉 and a flag 🇫🇷", "mixed é ü ñ 中 😀")
BINARY = bytes(range(256)) * 256
"""64 KiB: four DATA frames of the default size, and more than an HTTP/2 stream's
initial window of 65,535 bytes."""
BOUND = 20.0
"""Seconds any one exchange may take on a busy two-core machine."""


async def recording_echo(seen: list[wscompat.Connection]) -> Callable[
        [wscompat.Connection], Awaitable[None]]:
    async def handler(ws: wscompat.Connection) -> None:
        seen.append(ws)
        async for message in ws:
            await ws.send(message)

    return handler


# -- against wscompat's server ---------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_echo_over_http2(start_server: Starter, server_context: ssl.SSLContext,
                               client_context: ssl.SSLContext, scheme: str) -> None:
    seen: list[wscompat.Connection] = []
    server = await start_server(await recording_echo(seen), ssl_context=server_context,
                                subprotocols=["chat"])
    url = f"{scheme}://127.0.0.1:{server.port}/room?x=1"
    with trio.fail_after(BOUND):
        async with connect(url, http2=True, ssl_context=client_context,
                           subprotocols=("other", "chat")) as ws:
            assert ws.http_version == "2"
            assert ws.subprotocol == "chat"
            assert ws.secure is (scheme == "wss")
            for text in TEXTS:
                await ws.send(text)
                assert await ws.receive() == text
            await ws.send(BINARY)
            assert await ws.receive() == BINARY
    # The server answered the close and ended its side of the stream: the closing
    # handshake did not run into close_timeout, as with a server that never ends it.
    assert (ws.close_code, ws.close_reason) == (1000, "")
    [server_ws] = seen
    assert server_ws.http_version == "2"
    assert server_ws.draft.value == "rfc6455"
    assert server_ws.secure is (scheme == "wss")
    assert server_ws.path == "/room?x=1"
    assert server_ws.subprotocol == "chat"
    with trio.fail_after(BOUND):
        while not server_ws.closed:
            await trio.sleep(0.01)
    assert server_ws.close_code == 1000


async def test_close_codes_both_ways(start_server: Starter) -> None:
    heard: list[tuple[int | None, str | None]] = []
    done = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        try:
            if ws.path == "/server-closes":
                await ws.send("bye soon")
                await ws.close(4002, "server done ✓")
            else:
                async for message in ws:  # 4001 is no normal close: it raises
                    await ws.send(message)
        finally:
            heard.append((ws.close_code, ws.close_reason))
            if len(heard) == 2:
                done.set()

    server = await start_server(handler)
    base = f"ws://127.0.0.1:{server.port}"
    with trio.fail_after(BOUND):
        async with connect(f"{base}/client-closes", http2=True) as ws:
            await ws.send("x")
            assert await ws.receive() == "x"
            await ws.close(4001, "client done ✓")
        assert (ws.close_code, ws.close_reason) == (4001, "client done ✓")
        async with connect(f"{base}/server-closes", http2=True) as ws:
            assert await ws.receive() == "bye soon"
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
        assert (info.value.code, info.value.reason) == (4002, "server done ✓")
        await done.wait()
    assert sorted(heard, key=str) == sorted([(4001, "client done ✓"),
                                             (4002, "server done ✓")], key=str)


async def test_refusals_carry_the_status_and_reason(start_server: Starter) -> None:
    def process_request(request: UpgradeRequest) -> Rejection | None:
        if request.path.startswith("/missing"):
            return Rejection(404, "no such room")
        return None

    server = await start_server(origins=["http://good.example"],
                                process_request=process_request)
    base = f"ws://127.0.0.1:{server.port}"
    with trio.fail_after(BOUND):
        with pytest.raises(HandshakeRejected) as info:
            async with connect(f"{base}/", http2=True, origin="http://evil.example"):
                pass
        assert info.value.status == 403
        assert "http://evil.example" in info.value.reason
        with pytest.raises(HandshakeRejected) as info:
            async with connect(f"{base}/missing", http2=True, origin="http://good.example"):
                pass
        assert (info.value.status, info.value.reason) == (404, "no such room")
        async with connect(f"{base}/", http2=True, origin="http://good.example") as ws:
            await ws.send("still serving")
            assert await ws.receive() == "still serving"


async def test_http2_carries_rfc6455_only(start_server: Starter) -> None:
    server = await start_server()
    with pytest.raises(ValueError, match="RFC 6455 only"):
        async with connect(f"ws://127.0.0.1:{server.port}/", http2=True,
                           draft=wscompat.Draft.HIXIE76):
            pass


async def test_server_without_http2_is_a_clear_error(
    start_server: Starter, ca: trustme.CA, client_context: ssl.SSLContext
) -> None:
    # A context of its own: the server sets ALPN on the context it is given.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = await start_server(ssl_context=context, http2=False)
    with trio.fail_after(BOUND):
        with pytest.raises(HandshakeRejected) as info:
            async with connect(f"ws://127.0.0.1:{server.port}/", http2=True):
                pass
        assert info.value.status == 0
        assert "answered in HTTP/1.1" in info.value.reason
        assert "HTTP/2" in info.value.reason
        with pytest.raises(HandshakeRejected) as info:
            async with connect(f"wss://127.0.0.1:{server.port}/", http2=True,
                               ssl_context=client_context):
                pass
        assert info.value.status == 0
        assert "ALPN" in info.value.reason
        # The same context serves HTTP/1.1 next: it offers http/1.1 again.
        async with connect(f"wss://127.0.0.1:{server.port}/",
                           ssl_context=client_context) as ws:
            assert ws.http_version == "1.1"
            await ws.send("over HTTP/1.1")
            assert await ws.receive() == "over HTTP/1.1"


async def test_one_context_for_http2_then_http1(
    start_server: Starter, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """http2=True sets ALPN h2 on the context passed in; an HTTP/1.1 connection made
    with it afterwards offers http/1.1 again, or an HTTP/2 server would choose h2."""
    server = await start_server(ssl_context=server_context)
    url = f"wss://127.0.0.1:{server.port}/"
    with trio.fail_after(BOUND):
        for http2 in (True, False, True):
            async with connect(url, http2=http2, ssl_context=client_context) as ws:
                assert ws.http_version == ("2" if http2 else "1.1")
                await ws.send("ok")
                assert await ws.receive() == "ok"


async def test_many_websockets_on_one_connection(start_server: Starter) -> None:
    """Two WebSockets on one HTTP/2 connection: a flood on one, which the client does
    not read, stops only its own sender; the other echoes meanwhile; closing one leaves
    the other open."""
    seen: list[wscompat.Connection] = []
    flood_sent = 0
    chunk = b"\xaa" * 16384

    async def handler(ws: wscompat.Connection) -> None:
        nonlocal flood_sent
        seen.append(ws)
        if ws.path == "/flood":
            for _ in range(64):  # 1 MiB, far beyond the stream's 128 KiB window
                await ws.send(chunk)
                flood_sent += 1
        async for message in ws:
            await ws.send(message)

    server = await start_server(handler)
    with trio.fail_after(BOUND):
        async with open_h2_client("127.0.0.1", server.port, timeout=BOUND) as client, \
                trio.open_nursery() as nursery:
            flood = await open_h2_connection(client, "/flood")
            echo = await open_h2_connection(client, "/echo")
            nursery.start_soon(flood.run_reader)
            nursery.start_soon(echo.run_reader)
            for round_ in range(20):
                await echo.send(f"round {round_} 😀")
                assert await echo.receive() == f"round {round_} 😀"
            await trio.sleep(0.3)
            # Held back by flow control: the client's queue (16 messages) and the
            # stream's window, not the whole flood.
            assert flood_sent < 40, flood_sent
            for _ in range(64):
                assert await flood.receive() == chunk
            assert flood_sent == 64
            await flood.close(4000, "flood over")
            await echo.send(BINARY)
            assert await echo.receive() == BINARY
            await echo.close()
            nursery.cancel_scope.cancel()
    assert flood.close_code == 4000 and echo.close_code == 1000
    assert [ws.http_version for ws in seen] == ["2", "2"]
    # One TCP connection: the server saw both from the same address.
    assert seen[0].remote == seen[1].remote


async def test_the_servers_stream_limit_is_a_clear_error(start_server: Starter) -> None:
    server = await start_server(h2_max_streams=1)
    with trio.fail_after(BOUND):
        async with open_h2_client("127.0.0.1", server.port, timeout=BOUND) as client:
            first = await client.open_websocket("/")
            with pytest.raises(HandshakeRejected) as info:
                await client.open_websocket("/")
            assert info.value.status == 0
            assert "takes 1 streams at once" in info.value.reason
            await first.aclose()  # reset: the stream no longer counts
            second = await client.open_websocket("/")
            assert second.stream_id > first.stream_id
            await second.send_eof()  # END_STREAM: sending is over, reading is not
            with pytest.raises(trio.ClosedResourceError):
                await second.send_all(b"after the end")
            assert await second.receive_some() == b""  # the server ended its side too
            await second.aclose()


async def test_large_messages_through_flow_control(start_server: Starter) -> None:
    """Messages of several windows both ways: each side waits for WINDOW_UPDATEs."""
    server = await start_server(max_message_size=2**20)
    message = bytes(range(251)) * 1700  # about 417 KiB: prime-sized, never aligned
    with trio.fail_after(BOUND):
        async with connect(f"ws://127.0.0.1:{server.port}/", http2=True,
                           max_message_size=2**20) as ws:
            for _ in range(3):
                await ws.send(message)
                assert await ws.receive() == message


async def test_shutdown_closes_the_websocket_with_1001(start_server: Starter) -> None:
    """On shutdown wscompat sends a graceful GOAWAY and closes each WebSocket with
    1001; the client sees the 1001 and answers it."""
    seen: list[wscompat.Connection] = []
    server = await start_server(await recording_echo(seen), close_timeout=BOUND)
    with trio.fail_after(BOUND):
        async with connect(f"ws://127.0.0.1:{server.port}/", http2=True) as ws:
            await ws.send("before")
            assert await ws.receive() == "before"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                with pytest.raises(ConnectionClosed) as info:
                    while True:
                        await ws.receive()
    assert info.value.code == 1001
    [server_ws] = seen
    assert (server_ws.close_code, server_ws.close_reason) == (1001, "server shutting down")


# -- against an HTTP/2 server written here ------------------------------------------------


@dataclass
class Peer:
    """What the hand-written server does, and what it saw."""

    enable_connect: bool = True
    answer: list[tuple[str, str]] = field(default_factory=lambda: [(":status", "200")])
    events: list[h2.events.Event] = field(default_factory=list)
    echoed: list[bytes] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)


async def serve_h2(peer: Peer, stream: trio.SocketStream) -> None:
    """One HTTP/2 connection: SETTINGS (with or without the extended CONNECT), the
    configured answer to each request, and every event kept for the test."""
    config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config)
    if peer.enable_connect:
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    conn.initiate_connection()
    await stream.send_all(conn.data_to_send())
    try:
        with trio.move_on_after(BOUND):
            while data := await stream.receive_some(65536):
                for event in conn.receive_data(data):
                    peer.events.append(event)
                    if isinstance(event, h2.events.RequestReceived):
                        refused = not dict(peer.answer)[":status"].startswith("2")
                        conn.send_headers(event.stream_id, peer.answer, end_stream=refused)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                await stream.send_all(conn.data_to_send())
    except (trio.BrokenResourceError, h2.exceptions.ProtocolError):
        pass
    finally:
        peer.done.set()
        await stream.aclose()


@asynccontextmanager
async def h2_peer(peer: Peer,
                  serve: Callable[[Peer, trio.SocketStream], Awaitable[None]] = serve_h2,
                  ) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            partial(trio.serve_tcp, lambda stream: serve(peer, stream), 0, host="127.0.0.1"))
        yield listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def _kinds(peer: Peer) -> list[str]:
    return [type(event).__name__ for event in peer.events]


async def test_server_without_extended_connect() -> None:
    peer = Peer(enable_connect=False)
    async with h2_peer(peer) as port:
        with trio.fail_after(BOUND), pytest.raises(HandshakeRejected) as info:
            async with connect(f"ws://127.0.0.1:{port}/", http2=True):
                pass
        await peer.done.wait()
    assert info.value.status == 0
    assert "RFC 8441" in info.value.reason and "extended CONNECT" in info.value.reason
    # Nothing was asked of a server that did not enable it; the client said GOAWAY.
    assert "RequestReceived" not in _kinds(peer)
    assert "ConnectionTerminated" in _kinds(peer)


@pytest.mark.parametrize(("answer", "problem"), [
    ([(":status", "200"), ("sec-websocket-protocol", "unoffered")],
     "server chose subprotocol 'unoffered', which was not offered"),
    ([(":status", "200"), ("sec-websocket-extensions", "x-unknown")],
     "Sec-WebSocket-Extensions"),
])
async def test_an_answer_the_client_must_fail_resets_the_stream(
        answer: list[tuple[str, str]], problem: str) -> None:
    peer = Peer(answer=answer)
    async with h2_peer(peer) as port:
        with trio.fail_after(BOUND), pytest.raises(HandshakeRejected) as info:
            async with connect(f"ws://127.0.0.1:{port}/", http2=True):
                pass
        await peer.done.wait()
    assert info.value.status == 200
    assert problem in info.value.reason
    resets = [event for event in peer.events if isinstance(event, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.CANCEL)]


async def test_a_refusal_without_a_body_says_the_status() -> None:
    peer = Peer(answer=[(":status", "503")])
    async with h2_peer(peer) as port:
        with trio.fail_after(BOUND), pytest.raises(HandshakeRejected) as info:
            async with connect(f"ws://127.0.0.1:{port}/", http2=True):
                pass
    assert (info.value.status, info.value.reason) == (503, "Service Unavailable")


async def test_the_request_is_an_extended_connect() -> None:
    peer = Peer(answer=[(":status", "404")])
    async with h2_peer(peer) as port:
        with trio.fail_after(BOUND), pytest.raises(HandshakeRejected):
            async with connect(f"ws://127.0.0.1:{port}/a/b?c=d", http2=True,
                               origin="http://app.example", subprotocols=("v1", "v2"),
                               extra_headers=(("X-Token", "t"),)):
                pass
    [request] = [e for e in peer.events if isinstance(e, h2.events.RequestReceived)]
    assert [(_text(name), _text(value)) for name, value in request.headers or []] == [
        (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
        (":path", "/a/b?c=d"), (":authority", f"127.0.0.1:{port}"),
        ("sec-websocket-version", "13"), ("origin", "http://app.example"),
        ("sec-websocket-protocol", "v1, v2"), ("x-token", "t"),
    ]


async def test_a_silent_server_times_out() -> None:
    async def silent(peer: Peer, stream: trio.SocketStream) -> None:
        await trio.sleep(BOUND)

    async with h2_peer(Peer(), silent) as port:
        started = trio.current_time()
        with trio.fail_after(BOUND), pytest.raises(trio.TooSlowError):
            async with connect(f"ws://127.0.0.1:{port}/", http2=True, open_timeout=0.5):
                pass
        assert trio.current_time() - started < BOUND / 2


async def test_a_server_that_hangs_up_at_once() -> None:
    async def hang_up(peer: Peer, stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with h2_peer(Peer(), hang_up) as port:
        with trio.fail_after(BOUND), pytest.raises(HandshakeRejected) as info:
            async with connect(f"ws://127.0.0.1:{port}/", http2=True):
                pass
    assert info.value.status == 0
    assert "closed the connection before its HTTP/2 SETTINGS" in info.value.reason


async def serve_graceful(peer: Peer, stream: trio.SocketStream) -> None:
    """Accept each stream, then send a graceful GOAWAY; echo DATA, end ended streams."""
    config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config)
    conn.local_settings = h2.settings.Settings(
        client=False, initial_values={SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    conn.initiate_connection()
    await stream.send_all(conn.data_to_send())
    with trio.move_on_after(BOUND):
        while data := await stream.receive_some(65536):
            out = b""
            for event in conn.receive_data(data):
                peer.events.append(event)
                if isinstance(event, h2.events.RequestReceived):
                    conn.send_headers(event.stream_id, [(":status", "200")])
                    # Written by hand, split in two writes: h2 would close the
                    # connection on its own GOAWAY.
                    goaway = GoAwayFrame(0, last_stream_id=event.stream_id,
                                         error_code=0, additional_data=b"going away")
                    out = conn.data_to_send() + goaway.serialize()
                elif isinstance(event, h2.events.DataReceived):
                    peer.echoed.append(event.data or b"")
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                    conn.send_data(event.stream_id, event.data)
                elif isinstance(event, h2.events.StreamEnded):
                    conn.end_stream(event.stream_id)
            out += conn.data_to_send()
            for part in (out[:-7], out[-7:]):
                await stream.send_all(part)
                await trio.sleep(0.01)
    peer.done.set()
    await stream.aclose()


async def test_a_graceful_goaway_keeps_the_open_stream() -> None:
    """A GOAWAY NO_ERROR refuses new streams, but the stream the server took goes on
    both ways until it ends (h2 alone would end the whole connection on it)."""
    peer = Peer()

    async with h2_peer(peer, serve_graceful) as port:
        with trio.fail_after(BOUND):
            async with open_h2_client("127.0.0.1", port, timeout=BOUND) as client:
                io = await client.open_websocket("/")
                while client.session.going_away is None:
                    await trio.sleep(0.01)
                assert client.session.going_away == 1
                with pytest.raises(HandshakeRejected) as info:
                    await client.open_websocket("/second")
                assert info.value.status == 0
                assert "GOAWAY NO_ERROR: going away" in info.value.reason
                assert "no new streams" in info.value.reason
                for part in (b"after the GOAWAY", b"x" * 100000):
                    await io.send_all(part)
                    got = b""
                    while len(got) < len(part):
                        got += await io.receive_some()
                    assert got == part
                await io.send_eof()
                assert await io.receive_some() == b""  # the server ended its side
                await io.aclose()
            await peer.done.wait()
    assert b"".join(peer.echoed) == b"after the GOAWAY" + b"x" * 100000
    assert [type(e).__name__ for e in peer.events].count("RequestReceived") == 1


async def serve_websocket(peer: Peer, stream: trio.SocketStream, *, first: bytes = b"",
                          answer_close: bool = True) -> None:
    """Accept each extended CONNECT and send ``first`` on it; echo short text messages,
    but reset a stream whose path is ``/reset`` (CANCEL) on its first one; answer the
    client's close frame with the same code, then END_STREAM, unless ``answer_close``
    is off."""
    paths: dict[int, str] = {}
    config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config)
    conn.local_settings = h2.settings.Settings(
        client=False, initial_values={SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    conn.initiate_connection()
    await stream.send_all(conn.data_to_send())
    frames = FrameParser()
    with trio.move_on_after(BOUND):
        while data := await stream.receive_some(65536):
            for event in conn.receive_data(data):
                peer.events.append(event)
                if isinstance(event, h2.events.RequestReceived):
                    fields = {_text(name): _text(value) for name, value in event.headers or []}
                    paths[event.stream_id or 0] = fields[":path"]
                    conn.send_headers(event.stream_id, [(":status", "200")])
                    if first:
                        conn.send_data(event.stream_id, first)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                    frames.feed(event.data or b"")
                    while (frame := frames.next()) is not None:
                        peer.echoed.append(bytes([frame.opcode]) + frame.payload)
                        if frame.opcode == 0x1 and paths[event.stream_id or 0] == "/reset":
                            conn.reset_stream(event.stream_id, ErrorCodes.CANCEL)
                            break
                        if frame.opcode == 0x1 and len(frame.payload) < 126:
                            conn.send_data(event.stream_id,
                                           bytes([0x81, len(frame.payload)]) + frame.payload)
                        if frame.opcode == 0x8 and answer_close:
                            conn.send_data(event.stream_id, b"\x88\x02" + frame.payload[:2],
                                           end_stream=True)
            await stream.send_all(conn.data_to_send())
    peer.done.set()
    await stream.aclose()


def _text(field: bytes | str) -> str:
    return field.decode() if isinstance(field, bytes) else field


def _stream_endings(peer: Peer) -> list[tuple[str, int]]:
    """How the client ended its streams: (``END_STREAM``, 0) or (``RST_STREAM``, code)."""
    found: list[tuple[str, int]] = []
    for event in peer.events:
        if isinstance(event, h2.events.StreamEnded):
            found.append(("END_STREAM", 0))
        elif isinstance(event, h2.events.StreamReset):
            found.append(("RST_STREAM", int(event.error_code or 0)))
    return found


async def test_a_clean_close_ends_the_stream_with_end_stream() -> None:
    peer = Peer()
    async with h2_peer(peer, serve_websocket) as port:
        with trio.fail_after(BOUND):
            async with connect(f"ws://127.0.0.1:{port}/", http2=True) as ws:
                await ws.close(4005, "done")
            await peer.done.wait()
    assert ws.close_code == 4005
    assert peer.echoed == [b"\x08\x0f\xa5done"]  # the client's close frame, unmasked
    assert _stream_endings(peer) == [("END_STREAM", 0)]


async def test_a_server_that_breaks_the_protocol_is_failed_with_1002() -> None:
    """A masked frame from the server: the client fails the connection with 1002; the
    server answers the close and ends the stream, and so does the client."""
    peer = Peer()
    masked = b"\x81\x82abcd" + bytes(x ^ k for x, k in zip(b"hi", b"ab", strict=True))

    async def serve(peer: Peer, stream: trio.SocketStream) -> None:
        await serve_websocket(peer, stream, first=masked)

    async with h2_peer(peer, serve) as port:
        with trio.fail_after(BOUND):
            async with connect(f"ws://127.0.0.1:{port}/", http2=True) as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await ws.receive()
            await peer.done.wait()
    assert info.value.code == 1002
    assert [frame[0] for frame in peer.echoed] == [0x8]
    assert int.from_bytes(peer.echoed[0][1:3], "big") == 1002
    assert _stream_endings(peer) == [("END_STREAM", 0)]


async def test_a_stream_reset_by_the_server_leaves_the_others() -> None:
    peer = Peer()
    async with h2_peer(peer, serve_websocket) as port:
        with trio.fail_after(BOUND):
            async with open_h2_client("127.0.0.1", port, timeout=BOUND) as client, \
                    trio.open_nursery() as nursery:
                doomed = await open_h2_connection(client, "/reset")
                kept = await open_h2_connection(client, "/echo")
                nursery.start_soon(doomed.run_reader)
                nursery.start_soon(kept.run_reader)
                await doomed.send("first")
                with pytest.raises(ConnectionClosed) as info:
                    await doomed.receive()
                for text in TEXTS:
                    await kept.send(text)
                    assert await kept.receive() == text
                await kept.close()
            await peer.done.wait()
    assert info.value.code == 1006
    assert kept.close_code == 1000
    assert _stream_endings(peer) == [("END_STREAM", 0)]  # the kept one's; none reset


async def test_a_close_never_answered_resets_the_stream() -> None:
    peer = Peer()

    async def serve(peer: Peer, stream: trio.SocketStream) -> None:
        await serve_websocket(peer, stream, answer_close=False)

    async with h2_peer(peer, serve) as port:
        with trio.fail_after(BOUND):
            async with connect(f"ws://127.0.0.1:{port}/", http2=True,
                               close_timeout=0.5) as ws:
                await ws.send("unanswered")
            await peer.done.wait()
    assert (ws.close_code, ws.close_reason) == (1000, "closing handshake timed out")
    assert peer.echoed == [b"\x01unanswered", b"\x08\x03\xe8"]
    assert _stream_endings(peer) == [("RST_STREAM", ErrorCodes.CANCEL)]


# -- against hypercorn ------------------------------------------------------------------


@dataclass
class Hypercorn:
    process: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]
    """The port of each scheme: ``wss`` (TLS, ALPN h2) and ``ws`` (prior knowledge)."""


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[Hypercorn]:
    """hypercorn's trio worker serving :mod:`tests.trio.hypercorn_echo`, with TLS (ALPN
    h2) on one port and cleartext HTTP/2 with prior knowledge on another."""
    directory = tmp_path_factory.mktemp("hypercorn")
    cert, key = directory / "cert.pem", directory / "key.pem"
    issued = ca.issue_cert("127.0.0.1")
    cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    log = directory / "hypercorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "--worker-class", "trio",
             "--bind", "127.0.0.1:0", "--insecure-bind", "127.0.0.1:0",
             "--certfile", str(cert), "--keyfile", str(key),
             "tests.trio.hypercorn_echo:app"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + BOUND
        ports: dict[str, int] = {}
        while time.monotonic() < deadline and process.poll() is None and len(ports) < 2:
            time.sleep(0.05)
            for scheme, port in re.findall(r"Running on (https?)://127\.0\.0\.1:(\d+)",
                                           log.read_text()):
                ports["wss" if scheme == "https" else "ws"] = int(port)
        if len(ports) < 2:
            pytest.fail(f"hypercorn did not start:\n{log.read_text()[-2000:]}", pytrace=False)
        yield Hypercorn(process, log, ports)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_hypercorn(hypercorn: Hypercorn, client_context: ssl.SSLContext,
                         scheme: str) -> None:
    """hypercorn answers the extended CONNECT and echoes; it answers the close frame
    but never ends its side of the stream, so the client resets the stream after
    ``close_timeout`` as Chromium does (an END_STREAM instead takes hypercorn's trio
    worker down: it must stay up for the second connection and the check after)."""
    url = f"{scheme}://127.0.0.1:{hypercorn.ports[scheme]}/echo"
    for _ in range(2):
        with trio.fail_after(BOUND):
            async with connect(url, http2=True, ssl_context=client_context,
                               subprotocols=("chat",), close_timeout=1.0) as ws:
                assert ws.http_version == "2"
                assert ws.subprotocol == "chat"
                for text in TEXTS:
                    await ws.send(text)
                    assert await ws.receive() == text
                await ws.send(BINARY)
                assert await ws.receive() == BINARY
                await ws.send(BINARY * 4)  # 256 KiB: beyond hypercorn's windows
                assert await ws.receive() == BINARY * 4
        assert ws.close_code == 1000
    assert hypercorn.process.poll() is None, hypercorn.log.read_text()[-2000:]
