"""Compare wscompat's echo server with other Python WebSocket servers on this machine.

Usage: ``python benchmarks/bench.py [--quick] [--rounds N] [--servers NAME,...]``

Each server runs alone, in its own process, on a free loopback port, and is driven by
the same load client (``client.py``, also its own process), so the client's cost is the
same for all. wscompat is measured three times: with the client speaking RFC 6455,
hixie-76 and hixie-75 to the same server. On a machine with two cores or more the server
is pinned to one core and the client to another. The table gives every figure with its
ratio to the ``websockets`` asyncio server measured in the same run, then the hixie
figures as ratios to wscompat's RFC 6455 ones.

WebSocket over HTTP/2 (RFC 8441) has columns of its own (``... h2``): wscompat and
hypercorn's trio worker, each driven by the HTTP/2 load client below (this file run with
``--h2-client``, over the ``h2`` library, cleartext with prior knowledge), and compared
with the same server's HTTP/1.1 figures of the run. See docs/performance.md for what
each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, cast

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from client import (  # noqa: E402  (beside this file, found through the line above)
    BINARY,
    CLOSE,
    CLOSE_PAYLOAD,
    ORIGIN,
    RESOURCE,
    TIMEOUT,
    BenchError,
    Config,
    Cpu,
    EchoCheck,
    client_frame,
    server_frame,
    timed_workers,
    within,
)

HOST = "127.0.0.1"
MAX_MESSAGE_SIZE = 2 * 2**20
"""The same receive limit for every server; the 1 MiB echo phase needs more than 1 MiB."""
REFERENCE = "websockets-asyncio"
WSCOMPAT = "wscompat"
"""wscompat speaking RFC 6455: what its hixie columns are compared with."""
HYPERCORN = "hypercorn-trio"
H2 = "h2"
"""The wire of the HTTP/2 columns: RFC 8441, driven by this file's own load client."""

DEFAULT = {
    "warmup": 1.0, "duration": 3.0, "settle": 1.0, "pipeline_window": 64, "small_size": 64,
    "connections": 100, "per_connection_window": 4, "latency_rounds": 5000,
    "medium_size": 2**16, "medium_window": 4, "large_size": 2**20, "large_window": 2,
    "handshake_workers": 4,
    "idle_connections": 1000, "open_concurrency": 50,
}
QUICK = {
    **DEFAULT, "warmup": 0.2, "duration": 0.7, "settle": 0.3, "latency_rounds": 1000,
    "idle_connections": 200,
}
ROUNDS = {"default": 2, "quick": 1}
"""Each round restarts every server; per phase the least disturbed round is kept."""


@dataclass(frozen=True)
class Peer:
    """One server under test: its name and how to start it on a port."""

    name: str
    command: Callable[[int], list[str]]
    missing: str | None = None
    """Why it cannot run here, if it cannot."""
    wire: str = "rfc6455"
    """The draft the load client speaks to it (``client.py --wire``), or ``h2``: RFC 8441,
    spoken by this file's HTTP/2 load client."""


def _script(filename: str) -> Callable[[int], list[str]]:
    path = str(HERE / "servers" / filename)
    return lambda port: [
        sys.executable, path, "--port", str(port), "--max-size", str(MAX_MESSAGE_SIZE)
    ]


def _wscompat(port: int) -> list[str]:
    # Logging at warning: the other servers log nothing per connection either.
    return [
        sys.executable, "-m", "wscompat", "serve", "--host", HOST, "--port", str(port),
        "--max-message-size", str(MAX_MESSAGE_SIZE), "--log-level", "warning",
    ]


def _hypercorn(port: int) -> list[str]:
    return [sys.executable, str(HERE / "bench.py"), "--serve-hypercorn", str(port)]


def peers() -> list[Peer]:
    has_trio = importlib.util.find_spec("websockets.trio") is not None
    no_hypercorn = (None if importlib.util.find_spec("hypercorn") is not None
                    else "hypercorn is not installed (pip install -e '.[bench]')")
    return [
        Peer(WSCOMPAT, _wscompat),
        Peer("wscompat hixie-76", _wscompat, wire="hixie-76"),
        Peer("wscompat hixie-75", _wscompat, wire="hixie-75"),
        Peer("websockets-trio", _script("websockets_trio_echo.py"),
             None if has_trio else "websockets.trio is not in the installed websockets"),
        Peer(REFERENCE, _script("websockets_asyncio_echo.py")),
        Peer("trio-websocket", _script("trio_websocket_echo.py")),
        Peer(HYPERCORN, _hypercorn, no_hypercorn),
        Peer(f"{WSCOMPAT} {H2}", _wscompat, wire=H2),
        Peer(f"{HYPERCORN} {H2}", _hypercorn, no_hypercorn, wire=H2),
    ]


async def asgi_echo(scope: dict[str, Any], receive: Callable[[], Any],
                    send: Callable[[dict[str, Any]], Any]) -> None:
    """The ASGI application hypercorn serves: every WebSocket message back as it came."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (event := await receive())["type"] == "websocket.receive":
        if event.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": event["bytes"]})
        else:
            await send({"type": "websocket.send", "text": event["text"]})


def serve_hypercorn(port: int) -> None:
    """Serve :func:`asgi_echo` with hypercorn's trio worker (``hypercorn -k trio``), on
    HTTP/1.1 and on cleartext HTTP/2 with prior knowledge, until terminated."""
    # Imported here: only this process needs them, and hypercorn is an optional extra.
    import trio  # noqa: PLC0415
    from hypercorn.config import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        Config as HypercornConfig,
    )
    from hypercorn.trio import serve  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    config = HypercornConfig()
    config.bind = [f"{HOST}:{port}"]
    config.websocket_max_message_size = MAX_MESSAGE_SIZE
    # By default an HTTP/2 connection ends (GOAWAY) after 1000 requests; the stream
    # phases open more than that on one connection.
    config.keep_alive_max_requests = 2**31
    trio.run(partial(serve, cast(Any, asgi_echo), config))


# -- processes ------------------------------------------------------------------------


class Processes:
    """Every child started, so all of them are ended on any exit path."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, **kwargs)
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.live):
            self.stop(proc)


def pin_cores() -> tuple[int, int] | None:
    """The core for the server and the one for the client; None with fewer than two."""
    cores = sorted(os.sched_getaffinity(0))
    return (cores[0], cores[1]) if len(cores) >= 2 else None


def pin(proc: subprocess.Popen[bytes], core: int) -> None:
    """Every thread of ``proc`` onto ``core``; threads it starts later inherit that."""
    try:
        threads = os.listdir(f"/proc/{proc.pid}/task")
    except OSError:
        return  # it exited: the caller's checks say so
    for tid in threads:
        with contextlib.suppress(OSError):  # that thread has ended meanwhile
            os.sched_setaffinity(int(tid), {core})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} at startup")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on port {port} after {timeout} s")


def _check_exits(client: subprocess.Popen[bytes], server: subprocess.Popen[bytes]) -> None:
    if client.returncode != 0 or server.poll() is not None:
        state = "running" if server.poll() is None else f"exited {server.returncode}"
        raise RuntimeError(f"client exited {client.returncode}, server {state}")


def measure(procs: Processes, peer: Peer, config: dict[str, Any], limit: float,
            cores: tuple[int, int] | None) -> dict[str, Any]:
    """Start the server, run the client against it, stop both; the client's figures.

    With ``cores``, the server runs on the first and the client on the second.
    """
    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = procs.start(peer.command(port), stdout=log, stderr=log)
        try:
            if cores:
                pin(server, cores[0])
            wait_listening(server, port)
            if cores:
                pin(server, cores[0])  # again, for any thread started meanwhile
                if os.sched_getaffinity(server.pid) != {cores[0]}:
                    raise RuntimeError(f"server could not be pinned to core {cores[0]}")
            time.sleep(0.2)  # the readiness probe's connection ends before measuring
            if peer.wire == H2:
                argv = [sys.executable, str(HERE / "bench.py"), "--h2-client",
                        json.dumps({"port": port, "server_pid": server.pid, "config": config})]
            else:
                argv = [sys.executable, str(HERE / "client.py"), "--port", str(port),
                        "--server-pid", str(server.pid), "--config", json.dumps(config),
                        "--wire", peer.wire]
            client = procs.start(argv, stdout=subprocess.PIPE)
            if cores:
                pin(client, cores[1])
            try:
                out, _ = client.communicate(timeout=limit)
            finally:
                procs.stop(client)
            _check_exits(client, server)
            result: dict[str, Any] = json.loads(out)
            if cores and result["client_cpus"] != [cores[1]]:
                raise RuntimeError(f"client ran on cores {result['client_cpus']}, "
                                   f"not {cores[1]}")
            return result
        except (RuntimeError, subprocess.TimeoutExpired):
            log.seek(0)
            tail = log.read()[-2000:].decode(errors="replace")
            if tail:
                print(f"--- {peer.name} server output (end) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            procs.stop(server)


# -- the HTTP/2 load client (RFC 8441) -----------------------------------------------


CLOSE_FRAME = client_frame(CLOSE, CLOSE_PAYLOAD)
CLOSE_PROBE = 2.0
"""Seconds the client's first close waits for the server to answer it. A server that
sends neither its close frame nor the end of the stream by then (hypercorn over HTTP/2
never does) has every later stream reset (CANCEL) right after the client's close frame,
and those closes are counted as without the server's close frame."""
H2_WINDOW = 2**20
"""The client's receive window per stream and (added) for the connection: it hands the
window back as it reads, so the window is never what holds a server back."""
H2_CLOSES = {"total": 0, "without_close_frame": 0}
_answers_close: list[bool] = []
"""Whether the server answered the first close (empty until then)."""


class H2Stream:
    """One WebSocket on an HTTP/2 stream, as the load client drives it."""

    def __init__(self, session: H2Session, check: EchoCheck | None) -> None:
        self.session = session
        self.check = check
        self.id: int = session.h2.get_next_available_stream_id()
        self.status: bytes | None = None
        self.ended = False
        """The server ended the stream (END_STREAM or RST_STREAM)."""
        self.closing = False
        self.tail = bytearray()
        """What the server sent after the client's close frame."""
        self.on_echo: Callable[[int], None] = lambda n: None
        self.on_change: Callable[[], None] = lambda: None
        self._outbox = bytearray()
        self._end = False
        session.streams[self.id] = self
        session.h2.send_headers(self.id, session.request)

    def received(self, data: bytes) -> None:
        if self.closing:
            self.tail += data
        elif self.check is None:
            raise BenchError("unexpected data on a stream")
        else:
            self.on_echo(self.check.feed(data))

    def send(self, data: bytes, *, end: bool = False) -> None:
        """Queue ``data`` (and END_STREAM after it); it leaves as flow control allows."""
        self._outbox += data
        self._end |= end
        self.push()

    def push(self) -> None:
        h2 = self.session.h2
        if self.ended:
            self._outbox.clear()
            return
        while self._outbox:
            room = min(h2.local_flow_control_window(self.id), h2.max_outbound_frame_size)
            if room <= 0:
                return
            chunk = bytes(self._outbox[:room])
            del self._outbox[:room]
            h2.send_data(self.id, chunk, end_stream=self._end and not self._outbox)
            self._end = self._end and bool(self._outbox)

    def start_close(self) -> None:
        """The client's close frame, and the end of its side of the stream with it (an
        END_STREAM sent alone after the close handshake kills hypercorn's worker)."""
        self.closing = True
        self.send(CLOSE_FRAME, end=True)

    def abandon(self) -> None:
        """Reset the stream (CANCEL): the server did not end it."""
        if not self.ended:
            self.session.h2.reset_stream(self.id, ErrorCodes.CANCEL)
            self.ended = True
            self.session.streams.pop(self.id, None)

    def count_close(self) -> None:
        H2_CLOSES["total"] += 1
        if not self.tail.startswith(b"\x88"):
            H2_CLOSES["without_close_frame"] += 1


class H2Session:
    """The client side of one HTTP/2 connection over the ``h2`` library, without I/O:
    bytes in through :meth:`receive`, bytes out from ``h2.data_to_send()``."""

    def __init__(self, port: int) -> None:
        config = H2Configuration(client_side=True, header_encoding=None,
                                 validate_inbound_headers=False,
                                 normalize_inbound_headers=False)
        self.h2 = H2Connection(config)
        self.h2.initiate_connection()
        self.h2.update_settings({SettingCodes.ENABLE_PUSH: 0,
                                 SettingCodes.INITIAL_WINDOW_SIZE: H2_WINDOW})
        self.h2.increment_flow_control_window(H2_WINDOW)
        self.request = [
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
            (b":path", RESOURCE.encode()), (b":authority", f"{HOST}:{port}".encode()),
            (b"sec-websocket-version", b"13"), (b"origin", ORIGIN.encode()),
        ]
        self.streams: dict[int, H2Stream] = {}
        self.ready = False
        """The server's SETTINGS allowed extended CONNECT."""
        self.on_ready: Callable[[], None] = lambda: None

    def receive(self, data: bytes) -> None:
        h2 = self.h2
        for event in h2.receive_data(data):
            kind = type(event)
            stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
            if kind is h2e.DataReceived:
                assert isinstance(event, h2e.DataReceived) and event.stream_id
                h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
                if stream is not None and event.data:
                    stream.received(event.data)
            elif kind is h2e.ResponseReceived and stream is not None:
                assert isinstance(event, h2e.ResponseReceived)
                stream.status = dict(event.headers or ()).get(b":status")
                stream.on_change()
            elif kind in (h2e.StreamEnded, h2e.StreamReset) and stream is not None:
                stream.ended = True
                del self.streams[stream.id]
                stream.on_change()
            elif kind is h2e.WindowUpdated:
                for waiting in list(self.streams.values()):
                    waiting.push()
            elif kind is h2e.RemoteSettingsChanged:
                assert isinstance(event, h2e.RemoteSettingsChanged)
                setting = event.changed_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if setting is None or setting.new_value != 1:
                    raise BenchError("the server's SETTINGS do not enable extended CONNECT")
                self.ready = True
                self.on_ready()
            elif kind is h2e.ConnectionTerminated:
                raise BenchError(f"the server ended the HTTP/2 connection: {event}")


class H2Client(asyncio.Protocol):
    """One HTTP/2 connection of the load client, on asyncio."""

    def __init__(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.session = H2Session(port)
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.session.on_ready = partial(_settle, self.ready)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.session.receive(data)
        except Exception as exc:  # a server's protocol error fails the run, named
            self._fail(exc if isinstance(exc, BenchError) else BenchError(repr(exc)))
            return
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(BenchError(f"connection lost: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, exc: BenchError) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        for stream in list(self.session.streams.values()):
            stream.ended = True
            stream.on_change()
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        out = self.session.h2.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    async def open(self, check: EchoCheck | None) -> H2Stream:
        """A new stream with its extended CONNECT answered 200."""
        stream = H2Stream(self.session, check)
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stream.on_change = partial(_settle, opened)
        self.flush()
        await within(opened)
        if stream.status != b"200":
            raise BenchError(f"extended CONNECT answered {stream.status!r}")
        return stream

    def send(self, stream: H2Stream, data: bytes) -> None:
        stream.send(data)
        self.flush()

    async def close(self, stream: H2Stream) -> None:
        """The WebSocket closing handshake, then the end of the stream both ways."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stream.on_change = partial(_settle, ended)  # only an end can come now
        stream.start_close()
        self.flush()
        if not _answers_close:
            with contextlib.suppress(BenchError):
                await within(asyncio.shield(ended), CLOSE_PROBE)
            _answers_close.append(stream.ended)
        if _answers_close[0]:
            await within(ended)
        else:
            stream.abandon()
            self.flush()
        stream.count_close()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def h2_connect(port: int) -> H2Client:
    loop = asyncio.get_running_loop()
    _, client = await within(loop.create_connection(lambda: H2Client(port), HOST, port))
    await within(client.ready)
    return client


async def h2_echo_once(client: H2Client, stream: H2Stream, frame: bytes) -> None:
    got: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    stream.on_echo = lambda n: _settle(got) if n else None
    client.send(stream, frame)
    await within(got)


async def h2_pumped(port: int, pid: int, cfg: Config, *, streams: int, window: int
                    ) -> dict[str, Any]:
    """Small messages on ``streams`` streams of one connection, ``window`` of them in
    flight on each: every echo that arrives is answered with the next message."""
    payload = os.urandom(cfg.small_size)
    frame = client_frame(BINARY, payload)
    client = await h2_connect(port)
    opened = await within(asyncio.gather(
        *(client.open(EchoCheck(server_frame(BINARY, payload))) for _ in range(streams))))
    counts = {"sent": 0, "received": 0}
    running = True
    drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pump(stream: H2Stream) -> Callable[[int], None]:
        def on_echo(n: int) -> None:
            counts["received"] += n
            if running and n:
                client.send(stream, frame * n)
                counts["sent"] += n
            elif counts["received"] == counts["sent"]:
                _settle(drained)
        return on_echo

    for stream in opened:
        stream.on_echo = pump(stream)
        stream.send(frame * window)
        counts["sent"] += window
    client.flush()
    await asyncio.sleep(cfg.warmup)
    cpu, before = Cpu(pid), counts["received"]
    await asyncio.sleep(cfg.duration)
    done, wall = counts["received"] - before, time.perf_counter() - cpu.start[0]
    usage = cpu.percent()
    running = False
    if counts["received"] != counts["sent"]:
        await within(drained)
    await within(asyncio.gather(*(client.close(stream) for stream in opened)))
    assert client.transport is not None
    client.transport.close()
    return {"ops_per_s": done / wall, "cpu": usage}


async def h2_cycles(port: int, pid: int, cfg: Config, *, new_connection: bool
                    ) -> dict[str, Any]:
    """Cycles of open a stream, echo one small message, close it, per second, with
    ``handshake_workers`` side by side: on one open connection, or each on a new one."""
    payload = os.urandom(cfg.small_size)
    frame, echo = client_frame(BINARY, payload), server_frame(BINARY, payload)
    done = [0]
    deadline = time.perf_counter() + cfg.warmup + cfg.duration
    shared = None if new_connection else await h2_connect(port)

    async def worker() -> None:
        while time.perf_counter() < deadline:
            client = shared or await h2_connect(port)
            stream = await client.open(EchoCheck(echo))
            await h2_echo_once(client, stream, frame)
            await client.close(stream)
            if client is not shared:
                client.session.h2.close_connection()
                client.flush()
                assert client.transport is not None
                client.transport.close()
                await within(client.lost)
            done[0] += 1

    try:
        return await timed_workers(worker, done, pid, cfg)
    finally:
        if shared is not None and shared.transport is not None:
            shared.transport.close()


def h2_latency(port: int, pid: int, cfg: Config) -> dict[str, Any]:
    """Round-trip times on one stream, one message at a time, on a blocking socket."""
    payload = os.urandom(cfg.small_size)
    frame = client_frame(BINARY, payload)
    session = H2Session(port)
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def until(done: Callable[[], bool]) -> None:
            while True:
                out = session.h2.data_to_send()
                if out:
                    sock.sendall(out)
                if done():
                    return
                data = sock.recv(65536)
                if not data:
                    raise BenchError("connection closed during the latency phase")
                session.receive(data)

        until(lambda: session.ready)
        stream = H2Stream(session, EchoCheck(server_frame(BINARY, payload)))
        until(lambda: stream.status is not None)
        got = [0]

        def echoed(n: int) -> None:
            got[0] += n

        stream.on_echo = echoed
        warmup = max(100, cfg.latency_rounds // 10)
        deadline = time.perf_counter() + TIMEOUT
        cpu: Cpu | None = None
        times: list[int] = []
        for i in range(warmup + cfg.latency_rounds):
            if i == warmup:
                cpu = Cpu(pid)
            t0 = time.perf_counter_ns()
            stream.send(frame)
            until(lambda: got[0] > i)  # noqa: B023  (called at once, in this round)
            times.append(time.perf_counter_ns() - t0)
            if time.perf_counter() > deadline:
                raise BenchError("latency phase exceeded its time limit")
        assert cpu is not None
        wall, usage = time.perf_counter() - cpu.start[0], cpu.percent()
        stream.start_close()
        if not _answers_close or _answers_close[0]:
            sock.settimeout(TIMEOUT if _answers_close else CLOSE_PROBE)
            with contextlib.suppress(TimeoutError):
                until(lambda: stream.ended)
        if not stream.ended:
            stream.abandon()
            sock.sendall(session.h2.data_to_send())
        stream.count_close()
    measured = sorted(times[warmup:])
    return {
        "p50_us": statistics.median(measured) / 1000,
        "p99_us": measured[min(len(measured) - 1, int(len(measured) * 0.99))] / 1000,
        "ops_per_s": cfg.latency_rounds / wall,
        "cpu": usage,
    }


async def h2_run(port: int, pid: int, cfg: Config) -> dict[str, Any]:
    return {
        "pipelined": await h2_pumped(port, pid, cfg, streams=1,
                                     window=cfg.pipeline_window),
        "many": await h2_pumped(port, pid, cfg, streams=cfg.connections,
                                window=cfg.per_connection_window),
        "streams": await h2_cycles(port, pid, cfg, new_connection=False),
        "connections": await h2_cycles(port, pid, cfg, new_connection=True),
    }


def h2_client_main(spec: str) -> None:
    """The HTTP/2 load client's process: every phase, the figures as JSON on stdout."""
    args = json.loads(spec)
    port, pid, cfg = args["port"], args["server_pid"], Config(**args["config"])
    results = asyncio.run(h2_run(port, pid, cfg))
    results["latency"] = h2_latency(port, pid, cfg)
    results["closes"] = H2_CLOSES
    results["wire"] = H2
    results["client_cpus"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(results))


# -- the table ------------------------------------------------------------------------

Row = tuple[str, Callable[[dict[str, Any]], float], str, bool]
"""Label, how to read the figure from a client result, its format, higher is better."""
PHASES = [
    ("small echo, 1 conn", "pipelined"), ("small echo, 100 conns", "many"),
    ("round trip", "latency"), ("64 KiB echo", "medium"), ("1 MiB echo", "large"),
    ("open+echo+close", "handshakes"),
]
FIGURES: list[Row] = [
    ("small echo, 1 conn pipelined (msgs/s)", lambda r: r["pipelined"]["ops_per_s"],
     ",.0f", True),
    ("small echo, 100 conns (msgs/s)", lambda r: r["many"]["ops_per_s"], ",.0f", True),
    ("round trip p50 (µs)", lambda r: r["latency"]["p50_us"], ",.0f", False),
    ("round trip p99 (µs)", lambda r: r["latency"]["p99_us"], ",.0f", False),
    ("64 KiB echo (MiB/s)", lambda r: r["medium"]["mib_per_s"], ",.0f", True),
    ("1 MiB echo (MiB/s)", lambda r: r["large"]["mib_per_s"], ",.0f", True),
    ("handshakes, open+echo+close (/s)", lambda r: r["handshakes"]["ops_per_s"], ",.0f",
     True),
    ("memory per idle conn (KiB)", lambda r: r["memory"]["kib_per_idle_connection"],
     ",.1f", False),
]


def _cpu_per_op(key: str) -> Callable[[dict[str, Any]], float]:
    """Server CPU µs per operation: % of a core over operations per second."""
    return lambda r: float(r[key]["cpu"][0] * 1e4 / r[key]["ops_per_s"])


UNITS = {"medium": "64 KiB message", "large": "MiB message"}
CPU_PER_OP: list[Row] = [
    (f"{label} ({UNITS.get(key, 'op')})", _cpu_per_op(key), ",.1f", False)
    for label, key in PHASES
]


H2_PHASES = [
    ("small echo, 1 stream", "pipelined"), ("small echo, 100 streams", "many"),
    ("round trip", "latency"),
    ("open+echo+close, open conn", "streams"), ("open+echo+close, new conn", "connections"),
]
"""The HTTP/2 load client's timed phases (``many``: 100 streams of one connection;
``streams``: each cycle a new stream on one open connection; ``connections``: each on a
new connection)."""


def _figure(label: str) -> Callable[[dict[str, Any]], float]:
    """How to read the HTTP/1.1 figure whose row starts with ``label``."""
    return next(get for name, get, _, _ in FIGURES if name.startswith(label))


H2Row = tuple[Row, Callable[[dict[str, Any]], float]]
"""An HTTP/2 row, and how to read the same server's HTTP/1.1 figure it is compared with."""
H2_FIGURES: list[H2Row] = [
    (("small echo, 1 stream pipelined (msgs/s)", lambda r: r["pipelined"]["ops_per_s"],
      ",.0f", True), _figure("small echo, 1 conn")),
    (("small echo, 100 streams on 1 conn (msgs/s)", lambda r: r["many"]["ops_per_s"],
      ",.0f", True), _figure("small echo, 100 conns")),
    (("round trip p50 (µs)", lambda r: r["latency"]["p50_us"], ",.0f", False),
     _figure("round trip p50")),
    (("round trip p99 (µs)", lambda r: r["latency"]["p99_us"], ",.0f", False),
     _figure("round trip p99")),
    (("open+echo+close, stream on an open conn (/s)", lambda r: r["streams"]["ops_per_s"],
      ",.0f", True), _figure("handshakes")),
    (("open+echo+close, new conn each (/s)", lambda r: r["connections"]["ops_per_s"],
      ",.0f", True), _figure("handshakes")),
]
H2_CPU_PER_OP: list[H2Row] = [
    ((f"{label} (op)", _cpu_per_op(key), ",.1f", False), _cpu_per_op(base))
    for (label, key), base in zip(H2_PHASES, ("pipelined", "many", "latency", "handshakes",
                                              "handshakes"), strict=True)
]


def _ratio_rows(rows: list[Row], names: list[str], results: dict[str, dict[str, Any] | None],
                indent: str = "") -> list[list[str]]:
    """Each figure and its ratio to the reference server's."""
    ref = results.get(REFERENCE)
    lines = []
    for label, get, fmt, higher in rows:
        cells = [f"{indent}{label} {'↑' if higher else '↓'}"]
        for name in names:
            result = results[name]
            if result is None:
                cells.append("-")
                continue
            value = get(result)
            ratio = f" {value / get(ref):5.2f}x" if ref and get(ref) else ""
            cells.append(f"{value:{fmt}}{ratio}")
        lines.append(cells)
    return lines


def render(names: list[str], results: dict[str, dict[str, Any] | None]) -> str:
    """The figures, then server CPU per operation, CPU use and closing handshakes."""
    blank = [""] * len(names)
    lines: list[list[str]] = [["", *names]]
    lines += _ratio_rows(FIGURES, names, results)
    lines += [["", *blank], ["server CPU per operation (µs)", *blank]]
    lines += _ratio_rows(CPU_PER_OP, names, results, indent="  ")
    lines += [["", *blank], ["CPU: server / client / other, % of a core", *blank]]
    for label, key in PHASES:
        cells = [f"  {label}"]
        for name in names:
            result = results[name]
            cpu = "-" if result is None else " / ".join(f"{t:.0f}" for t in result[key]["cpu"])
            cells.append(cpu)
        lines.append(cells)
    cells = ["closes without the server's close frame"]
    for name in names:
        result = results[name]
        if result is None:
            cells.append("-")
        elif result["wire"] == "hixie-75":
            cells.append("none in hixie-75")
        else:
            cells.append("{without_close_frame} of {total}".format(**result["closes"]))
    lines += [["", *blank], cells]
    return align(lines)


def render_hixie(results: dict[str, dict[str, Any] | None]) -> str | None:
    """The hixie columns' figures as ratios to wscompat's RFC 6455 figures of the run.

    None when wscompat (RFC 6455) or every hixie column is missing.
    """
    base = results.get(WSCOMPAT)
    hixie = [name for name, r in results.items() if r and r["wire"].startswith("hixie")]
    if base is None or not hixie:
        return None

    def ratios(rows: list[Row], indent: str) -> list[list[str]]:
        lines = []
        for label, get, _, higher in rows:
            cells = [f"{indent}{label} {'↑' if higher else '↓'}"]
            for name in hixie:
                result = results[name]
                assert result is not None
                cells.append(f"{get(result) / get(base):.2f}x" if get(base) else "-")
            lines.append(cells)
        return lines

    blank = [""] * len(hixie)
    lines = [["hixie vs wscompat RFC 6455", *(n.removeprefix("wscompat ") for n in hixie)]]
    lines += ratios(FIGURES, "  ")
    lines += [["  server CPU per operation (µs)", *blank]]
    lines += ratios(CPU_PER_OP, "    ")
    return align(lines)


def render_h2(results: dict[str, dict[str, Any] | None]) -> str | None:
    """The HTTP/2 columns, each figure with its ratio to the same server's HTTP/1.1 figure
    in the run (``wscompat h2`` to ``wscompat``), then, when both ran, wscompat's HTTP/2
    figure as a ratio to hypercorn's; None when there is no HTTP/2 column."""
    names = [name for name, r in results.items() if r and r["wire"] == H2]
    if not names:
        return None
    measured = {name: results[name] or {} for name in names}
    ours, peer = f"{WSCOMPAT} {H2}", f"{HYPERCORN} {H2}"
    versus = ours in measured and peer in measured

    def ratios(rows: list[H2Row], indent: str) -> list[list[str]]:
        lines = []
        for (label, get, fmt, higher), base in rows:
            cells = [f"{indent}{label} {'↑' if higher else '↓'}"]
            for name in names:
                value, h1 = get(measured[name]), results.get(name.removesuffix(f" {H2}"))
                ratio = f" {value / base(h1):5.2f}x" if h1 and base(h1) else ""
                cells.append(f"{value:{fmt}}{ratio}")
            if versus:
                theirs = get(measured[peer])
                cells.append(f"{get(measured[ours]) / theirs:.2f}x" if theirs else "-")
            lines.append(cells)
        return lines

    head = [*names, *([f"{WSCOMPAT} / {HYPERCORN}"] if versus else [])]
    blank = [""] * len(head)
    lines = [["HTTP/2 (RFC 8441)", *head], *ratios(H2_FIGURES, "")]
    lines += [["", *blank], ["server CPU per operation (µs)", *blank]]
    lines += ratios(H2_CPU_PER_OP, "  ")
    lines += [["", *blank], ["CPU: server / client / other, % of a core", *blank]]
    extra = [""] * (len(head) - len(names))
    lines += [[f"  {label}", *(" / ".join(f"{t:.0f}" for t in measured[n][key]["cpu"])
                               for n in names), *extra] for label, key in H2_PHASES]
    lines += [["", *blank], ["closes without the server's close frame",
                             *("{without_close_frame} of {total}".format(**measured[n]["closes"])
                               for n in names), *extra]]
    return align(lines)


def align(rows: list[list[str]]) -> str:
    """Rows as text columns: the first left-aligned, figures right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in rows
    )


def phases(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The timed phases of a result: the HTTP/1.1 load client's, or the HTTP/2 one's."""
    return H2_PHASES if result["wire"] == H2 else PHASES


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds of one server.

    For each timed phase, the round with the best figure: the highest rate, or for the
    round trip the lowest p50. On a shared or virtual machine interference only ever
    slows a round, so the best is the least disturbed one (the reasoning of ``timeit``'s
    minimum), and every server is merged the same way. Idle memory does not depend on
    CPU contention; its rounds are averaged.
    """
    merged = {key: max((r[key] for r in rounds), key=_score) for _, key in phases(rounds[0])}
    if "memory" in rounds[0]:
        memory = [r["memory"]["kib_per_idle_connection"] for r in rounds]
        merged["memory"] = {"kib_per_idle_connection": sum(memory) / len(memory)}
    merged["closes"] = {k: sum(r["closes"][k] for r in rounds) for k in rounds[0]["closes"]}
    merged["wire"] = rounds[0]["wire"]
    return merged


def _score(phase: dict[str, Any]) -> float:
    """How good one round of a phase was: its rate, or minus its p50 round trip."""
    return -float(phase["p50_us"]) if "p50_us" in phase else float(phase["ops_per_s"])


def contention(results: dict[str, dict[str, Any] | None], limit: int = 20) -> list[str]:
    """Phases during which other processes took more than ``limit``% of a core."""
    found = []
    for name, result in results.items():
        for label, key in phases(result) if result else []:
            other = result[key]["cpu"][2]  # type: ignore[index]
            if other > limit:
                found.append(f"{name} / {label}: {other:.0f}%")
    return found


def _commit() -> str:
    """The wscompat checkout's commit, as versions alone do not tell one build from another."""
    spec = importlib.util.find_spec("wscompat")
    if spec is None or spec.origin is None:
        return ""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=Path(spec.origin).parent,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f" (commit {out})" if out else ""


def environment() -> str:
    versions = []
    for dist in ("wscompat", "websockets", "trio", "trio-websocket"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    versions[0] += _commit()
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return (f"Python {platform.python_version()} on {platform.system()}, {os.cpu_count()} "
            f"cores, {mem_kib / 2**20:.0f} GiB; " + ", ".join(versions))


def _terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


def report(names: list[str], results: dict[str, dict[str, Any] | None],
           elapsed: float) -> None:
    """Print the tables: ``names`` are the HTTP/1.1 columns, in order (none when only
    HTTP/2 columns ran)."""
    if names:
        print()
        print(render(names, results))
    notes = []
    for block, note in ((render_hixie(results), f"hixie block: to {WSCOMPAT}, RFC 6455"),
                        (render_h2(results), "HTTP/2 block: to the same server over HTTP/1.1, "
                         f"last column: {WSCOMPAT} {H2} to {HYPERCORN} {H2}")):
        if block:
            print()
            print(block)
            notes.append(note)
    print(f"\n↑ higher is better, ↓ lower is better; Nx: ratio to {REFERENCE} in this run"
          + (f" ({'; '.join(notes)})" if notes else "") + ". "
          f"Total {elapsed:.0f} s.")
    busy = contention(results)
    if busy:
        print("warning: other processes competed for the CPU during " + "; ".join(busy)
              + ". Those figures are low; rerun on an idle machine.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 40 s)")
    parser.add_argument("--servers", help="comma-separated subset of (quote names with "
                        "spaces): " + ", ".join(p.name for p in peers()))
    parser.add_argument("--rounds", type=int, help="rounds per server (default: 2, quick: 1)")
    # The processes this script starts for itself: the HTTP/2 load client and hypercorn.
    parser.add_argument("--h2-client", help=argparse.SUPPRESS)
    parser.add_argument("--serve-hypercorn", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.h2_client:
        h2_client_main(args.h2_client)
        return 0
    if args.serve_hypercorn:
        serve_hypercorn(args.serve_hypercorn)
        return 0
    signal.signal(signal.SIGTERM, _terminated)
    # 1000 idle connections need more descriptors than many default soft limits.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    config = QUICK if args.quick else DEFAULT
    rounds = args.rounds or ROUNDS["quick" if args.quick else "default"]
    wanted = set(args.servers.split(",")) if args.servers else None
    unknown = sorted((wanted or set()) - {p.name for p in peers()})
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    chosen = [p for p in peers() if wanted is None or p.name in wanted]
    cores = pin_cores()
    print(environment())
    print(f"{'quick' if args.quick else 'default'} run, {rounds} round(s): "
          + ", ".join(f"{k}={v}" for k, v in config.items()))
    print(f"CPU pinning: server on core {cores[0]}, load client on core {cores[1]}" if cores
          else "CPU pinning: none (fewer than 2 cores available)", flush=True)
    for peer in chosen:
        if peer.missing:
            print(f"{peer.name}: skipped, {peer.missing}", flush=True)
    runnable = [p for p in chosen if not p.missing]
    started = time.monotonic()
    measured: dict[str, list[dict[str, Any]]] = {p.name: [] for p in runnable}
    procs = Processes()
    try:
        for n in range(1, rounds + 1):
            # Each round starts one server later, so that no server is always the one
            # measured first (or right after the same other one).
            shift = (n - 1) % len(runnable) if runnable else 0
            for peer in runnable[shift:] + runnable[:shift]:
                t0 = time.monotonic()
                try:
                    measured[peer.name].append(
                        measure(procs, peer, config, limit=600.0, cores=cores))
                    print(f"round {n}, {peer.name}: {time.monotonic() - t0:.1f} s", flush=True)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    print(f"round {n}, {peer.name}: FAILED, {exc}", flush=True)
    finally:
        procs.stop_all()
    results = {name: merge(runs) if runs else None for name, runs in measured.items()}
    report([p.name for p in runnable if p.wire != H2], results, time.monotonic() - started)
    return 0 if all(len(runs) == rounds for runs in measured.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every server and client process was stopped", file=sys.stderr)
        sys.exit(130)
