"""The one load client every server in the benchmark is measured with.

It speaks one WebSocket draft over raw sockets, RFC 6455 by default, hixie-76 or
hixie-75 on request (``--wire``), with frames built once per phase, and checks the
echoed byte stream against the expected one with a memory compare, so its cost per
message is small and exactly the same whatever server it talks to. What differs between
drafts (handshake, frames, close) is one ``Wire`` object; the phases do not know which
draft they speak. It runs in its own process (started by ``bench.py``), runs every phase
against one server and prints the figures as one JSON object on stdout.

Every wait has a deadline: a server that stops answering fails the run, it never hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import random
import resource
import socket
import statistics
import struct
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

HOST = "127.0.0.1"
ORIGIN = "http://127.0.0.1"
RESOURCE = "/bench"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MASK = b"\x37\xfa\x21\x3d"
BINARY, CLOSE = 0x2, 0x8
MAX_HEAD = 16384
CLOSE_PAYLOAD = (1000).to_bytes(2, "big")
READ_CHUNK = 1 << 18
"""The most asyncio hands to ``data_received`` at once (its selector transport reads 256 KiB)."""
TIMEOUT = 30.0
"""Seconds any single wait may take before the run is declared failed."""

T = TypeVar("T")
CLOSES = {"total": 0, "without_close_frame": 0}
"""Closing handshakes done by this client, and those the server answered with bare EOF."""
HANDSHAKE_POOL = 256
"""Opening handshakes made before the handshake phase and used in turn: making one costs
the client 2 µs on RFC 6455 and 20 µs on hixie-76 (two keys of random digits, spaces
and noise), which would otherwise count against the server in that row."""


class BenchError(RuntimeError):
    """The server answered something other than the expected echo, or not in time."""


@dataclass(frozen=True)
class Config:
    """How much of each phase to run; ``bench.py`` sends it as JSON."""

    warmup: float
    duration: float
    settle: float
    """Seconds the server is left alone before its RSS is read."""
    pipeline_window: int
    small_size: int
    connections: int
    per_connection_window: int
    latency_rounds: int
    medium_size: int
    medium_window: int
    large_size: int
    large_window: int
    handshake_workers: int
    idle_connections: int
    open_concurrency: int


# -- wire format ----------------------------------------------------------------------


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked RFC 6455 frame, as a client must send it."""
    return _header(opcode, len(payload), masked=True) + MASK + _mask(payload)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """The unmasked RFC 6455 frame an echo server sends back for ``payload``."""
    return _header(opcode, len(payload), masked=False) + payload


def _header(opcode: int, length: int, *, masked: bool) -> bytes:
    bit = 0x80 if masked else 0
    if length < 126:
        return bytes([0x80 | opcode, bit | length])
    if length < 1 << 16:
        return bytes([0x80 | opcode, bit | 126]) + length.to_bytes(2, "big")
    return bytes([0x80 | opcode, bit | 127]) + length.to_bytes(8, "big")


def _mask(payload: bytes) -> bytes:
    """XOR with the mask key as one big integer: fast enough for 1 MiB, done once."""
    n = len(payload)
    key = (MASK * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


@dataclass(frozen=True)
class Handshake:
    """One opening handshake: the request to send and how to check the server's answer.

    The answer is an HTTP head, checked by ``check_head``, followed by ``answer``: raw
    bytes the server sends right after its head (hixie-76's 16-byte MD5; empty for the
    other drafts). Anything after those is the first frame data.
    """

    request: bytes
    check_head: Callable[[bytes], None]
    answer: bytes = b""

    def complete(self, data: bytes | bytearray) -> int | None:
        """The offset just past the whole answer in ``data``; None while incomplete."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD:
                raise BenchError("handshake answer too long")
            return None
        stop = end + 4 + len(self.answer)
        if len(data) < stop:
            return None
        self.check_head(bytes(data[:end]))
        if data[end + 4 : stop] != self.answer:
            raise BenchError(f"wrong challenge answer {bytes(data[end + 4 : stop])!r}")
        return stop


class Wire(ABC):
    """Everything the phases need that differs between drafts, all as bytes."""

    name: str
    close_request: bytes | None
    """What the client sends to close; None: it just closes TCP (shutdown of its side)."""
    close_reply: bytes | None
    """How the server's answer to that starts; None: the server answers with EOF only."""

    @abstractmethod
    def handshake(self, port: int) -> Handshake:
        """A fresh opening handshake (new keys every time)."""

    @abstractmethod
    def payload(self, size: int) -> bytes:
        """A message of ``size`` bytes this draft can carry."""

    @abstractmethod
    def frame(self, payload: bytes) -> bytes:
        """The bytes a client sends for one message."""

    @abstractmethod
    def echo(self, payload: bytes) -> bytes:
        """The bytes an echo server sends back for that message."""


class Rfc6455(Wire):
    """RFC 6455: binary messages of random bytes, masked client frames, close 1000."""

    name = "rfc6455"
    close_request = client_frame(CLOSE, CLOSE_PAYLOAD)
    close_reply = b"\x88"

    def handshake(self, port: int) -> Handshake:
        request, accept = handshake_request(port)
        return Handshake(request, lambda head: check_response(head, accept))

    def payload(self, size: int) -> bytes:
        return os.urandom(size)

    def frame(self, payload: bytes) -> bytes:
        return client_frame(BINARY, payload)

    def echo(self, payload: bytes) -> bytes:
        return server_frame(BINARY, payload)


class Hixie75(Wire):
    """hixie-75: no keys, text frames 0x00 <UTF-8> 0xFF both ways, close by closing TCP."""

    name = "hixie-75"
    close_request: bytes | None = None
    close_reply: bytes | None = None
    status = b"HTTP/1.1 101 Web Socket Protocol Handshake"
    prefix = b""
    """Of the Origin and Location response headers: ``Sec-`` from hixie-76 on."""

    def handshake(self, port: int) -> Handshake:
        request = (
            b"GET %s HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
            b"Host: %s:%d\r\nOrigin: %s\r\n\r\n"
            % (RESOURCE.encode(), HOST.encode(), port, ORIGIN.encode())
        )
        return Handshake(request, lambda head: self.check_head(head, port))

    def check_head(self, head: bytes, port: int) -> None:
        """The first three lines byte for byte (hixie clients compare them so), then the
        echoed origin and the location."""
        lines = head.split(b"\r\n")
        if lines[:3] != [self.status, b"Upgrade: WebSocket", b"Connection: Upgrade"]:
            raise BenchError(f"not a {self.name} handshake answer: {lines[:3]!r}")
        location = b"ws://%s:%d%s" % (HOST.encode(), port, RESOURCE.encode())
        for line in (b"%sWebSocket-Origin: %s" % (self.prefix, ORIGIN.encode()),
                     b"%sWebSocket-Location: %s" % (self.prefix, location)):
            if line not in lines[3:]:
                raise BenchError(f"{self.name} handshake answer without {line!r}")

    def payload(self, size: int) -> bytes:
        """Printable ASCII (base64 text of random bytes): valid UTF-8, never 0xFF."""
        return base64.b64encode(os.urandom(size))[:size]

    def frame(self, payload: bytes) -> bytes:
        return b"\x00" + payload + b"\xff"

    def echo(self, payload: bytes) -> bytes:
        return b"\x00" + payload + b"\xff"


class Hixie76(Hixie75):
    """hixie-76 (= hybi-00): hixie-75 plus the MD5 key challenge and 0xFF 0x00 close."""

    name = "hixie-76"
    close_request = b"\xff\x00"
    close_reply = b"\xff\x00"
    status = b"HTTP/1.1 101 WebSocket Protocol Handshake"
    prefix = b"Sec-"

    def handshake(self, port: int) -> Handshake:
        key1, number1 = hixie76_key()
        key2, number2 = hixie76_key()
        key3 = os.urandom(8)
        request = (
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n"
            b"Origin: %s\r\nSec-WebSocket-Key1: %s\r\nSec-WebSocket-Key2: %s\r\n\r\n%s"
            % (RESOURCE.encode(), HOST.encode(), port, ORIGIN.encode(), key1, key2, key3)
        )
        answer = hashlib.md5(struct.pack(">II", number1, number2) + key3).digest()
        return Handshake(request, lambda head: self.check_head(head, port), answer)


_NOISE = bytes([*range(0x21, 0x30), *range(0x3A, 0x7F)])


def hixie76_key() -> tuple[bytes, int]:
    """A Sec-WebSocket-Key1/2 value made as a hixie-76 client makes it, and its number.

    The key's digits divided by its count of spaces give the number; 1 to 12 spaces and
    1 to 12 other characters are scattered through it, spaces never first or last.
    """
    spaces = random.randint(1, 12)
    number = random.randint(0, 0xFFFFFFFF // spaces)
    key = bytearray(str(number * spaces).encode())
    for _ in range(random.randint(1, 12)):
        key.insert(random.randint(0, len(key)), random.choice(_NOISE))
    for _ in range(spaces):
        key.insert(random.randint(1, len(key) - 1), 0x20)
    return bytes(key), number


WIRES: dict[str, Wire] = {wire.name: wire for wire in (Rfc6455(), Hixie76(), Hixie75())}


def handshake_request(port: int) -> tuple[bytes, bytes]:
    """An RFC 6455 upgrade request and the Sec-WebSocket-Accept it must get back."""
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (RESOURCE.encode(), HOST.encode(), port, key)
    )
    return request, base64.b64encode(hashlib.sha1(key + GUID).digest())


def check_response(head: bytes, accept: bytes) -> None:
    """Fail unless ``head`` is a 101 carrying the right accept value."""
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 101"):
        raise BenchError(f"handshake refused: {lines[0]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept" and value.strip() == accept:
            return
    raise BenchError("handshake answer without the right Sec-WebSocket-Accept")


class EchoCheck:
    """Counts echoes in a stream that must be ``frame`` repeated, byte for byte.

    The expected bytes are the frame repeated past one read's size, so each received
    chunk is checked with a single slice compare at its offset in the period.
    """

    def __init__(self, frame: bytes) -> None:
        self.period = len(frame)
        self.pattern = frame * (READ_CHUNK // self.period + 2)
        self.window = len(self.pattern) - self.period
        self.seen = 0

    def feed(self, data: bytes) -> int:
        """Check ``data`` and return how many echoes it completed."""
        before = self.seen // self.period
        for at in range(0, len(data), self.window):
            piece = data[at : at + self.window]
            start = self.seen % self.period
            if self.pattern[start : start + len(piece)] != piece:
                raise BenchError(f"wrong echo bytes at stream offset {self.seen}")
            self.seen += len(piece)
        return self.seen // self.period - before


# -- one asyncio connection -----------------------------------------------------------


class Conn(asyncio.Protocol):
    """A client connection: handshake, then echo bytes to an EchoCheck, then close."""

    def __init__(self, port: int, wire: Wire, check: EchoCheck | None,
                 handshake: Handshake | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.wire = wire
        self.handshake = wire.handshake(port) if handshake is None else handshake
        self.check = check
        self.on_echo: Callable[[int], None] = lambda n: None
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.tail = bytearray()
        self.state = "handshake"
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.handshake.request)

    def data_received(self, data: bytes) -> None:
        try:
            if self.state == "open":
                self._echo_data(data)
            elif self.state == "closing":
                self.tail += data
            else:
                self._handshake_data(data)
        except BenchError as exc:
            self._fail(exc)

    def _echo_data(self, data: bytes) -> None:
        if self.check is None:
            raise BenchError("unexpected data on an idle connection")
        self.on_echo(self.check.feed(data))

    def _handshake_data(self, data: bytes) -> None:
        self.head += data
        end = self.handshake.complete(self.head)
        if end is None:
            return
        self.state = "open"
        rest = bytes(self.head[end:])
        if not self.opened.done():
            self.opened.set_result(None)
        if rest:
            self.data_received(rest)

    def _fail(self, exc: BaseException) -> None:
        for future in (self.opened, self.lost):
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(BenchError(f"closed during handshake: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def close(self) -> bool:
        """Closing handshake: send the draft's close, wait for the server's and its FIN.

        A draft without a closing handshake (hixie-75) shuts down the client's side of
        TCP and waits for the server's EOF. Returns False when the server ended TCP
        without the close its draft requires: an incomplete closing handshake, counted
        and reported rather than fatal.
        """
        assert self.transport is not None
        self.state = "closing"
        if self.wire.close_request is None:
            self.transport.write_eof()
        else:
            self.send(self.wire.close_request)
        await within(self.lost)
        CLOSES["total"] += 1
        return _closed(self.wire, bytes(self.tail))


def _closed(wire: Wire, tail: bytes) -> bool:
    """Check what the server sent after the client's close; False if no close came."""
    if wire.close_reply is None:
        if tail:
            raise BenchError(f"data after the client closed: {tail[:8]!r}")
        return True
    if not tail:
        CLOSES["without_close_frame"] += 1
        return False
    if not tail.startswith(wire.close_reply):
        raise BenchError(f"expected {wire.close_reply!r} to close, got {tail[:8]!r}")
    return True


async def within(awaitable: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Await with the run's deadline, naming the failure instead of hanging."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise BenchError(f"no answer within {timeout} s") from None


async def connect(port: int, wire: Wire, check: EchoCheck | None = None,
                  handshake: Handshake | None = None) -> Conn:
    """An open connection; ``handshake`` made beforehand, or a fresh one."""
    loop = asyncio.get_running_loop()
    _, conn = await within(
        loop.create_connection(lambda: Conn(port, wire, check, handshake), HOST, port)
    )
    await within(conn.opened)
    return conn


async def open_many(port: int, wire: Wire, count: int, concurrency: int,
                    echo: bytes | None) -> list[Conn]:
    """``count`` open connections, at most ``concurrency`` handshakes at once."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Conn:
        async with gate:
            return await connect(port, wire, None if echo is None else EchoCheck(echo))

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_all(conns: list[Conn]) -> int:
    """Close every connection; the number closed without the server's close frame."""
    return sum(not ok for ok in await asyncio.gather(*(conn.close() for conn in conns)))


async def echo_once(conn: Conn, frame: bytes) -> None:
    """Send one message and wait for its whole echo (``conn`` checks the bytes)."""
    got: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def echoed(n: int) -> None:
        if n and not got.done():
            got.set_result(None)

    conn.on_echo = echoed
    conn.send(frame)
    await within(got)


# -- CPU accounting -------------------------------------------------------------------


class Cpu:
    """CPU time of the server, of this client and of everything else over a window.

    The last one says whether other work on the machine competed with the measurement.
    """

    def __init__(self, server_pid: int) -> None:
        self.stat = f"/proc/{server_pid}/stat"
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        with open(self.stat) as f:
            fields = f.read().rpartition(")")[2].split()
        server = (int(fields[11]) + int(fields[12])) / self.tick
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open("/proc/stat") as f:
            ticks = [int(n) for n in f.readline().split()[1:]]
        # user, nice, system and steal: not interrupt time, which loopback traffic adds.
        busy = (ticks[0] + ticks[1] + ticks[2] + ticks[7]) / self.tick
        return time.perf_counter(), server, usage.ru_utime + usage.ru_stime, busy

    def percent(self) -> list[float]:
        """Server, client and other CPU since construction, in % of one core."""
        wall, server, client, busy = (
            b - a for a, b in zip(self.start, self._now(), strict=True)
        )
        other = max(0.0, busy - server - client)
        return [round(100 * t / wall, 1) for t in (server, client, other)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS in /proc status")


# -- phases ---------------------------------------------------------------------------


class Pump:
    """Keeps ``window`` echoes in flight on one connection; refills as echoes arrive."""

    def __init__(self, conn: Conn, frame: bytes, window: int, total: list[int]) -> None:
        self.conn, self.frame, self.window, self.total = conn, frame, window, total
        self.burst = frame * window
        self.sent = self.received = 0
        self.running = True
        self.drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        conn.on_echo = self._on_echo

    def start(self) -> None:
        self.conn.send(self.burst)
        self.sent = self.window

    def _on_echo(self, n: int) -> None:
        self.received += n
        self.total[0] += n
        if self.running:
            if n:
                self.conn.send(self.burst if n == self.window else self.frame * n)
                self.sent += n
        elif self.received == self.sent and not self.drained.done():
            self.drained.set_result(None)

    async def stop(self) -> None:
        """Stop refilling and wait for the echoes still in flight."""
        self.running = False
        if self.received == self.sent:
            return
        await within(self.drained)


async def pumped(conns: list[Conn], frame: bytes, window: int, cfg: Config, cpu_pid: int
                 ) -> tuple[float, list[float]]:
    """Echoes per second over ``cfg.duration`` after ``cfg.warmup``, every pump running."""
    total = [0]
    pumps = [Pump(conn, frame, window, total) for conn in conns]
    for pump in pumps:
        pump.start()
    await asyncio.sleep(cfg.warmup)
    cpu, before = Cpu(cpu_pid), total[0]
    await asyncio.sleep(cfg.duration)
    done, wall = total[0] - before, time.perf_counter() - cpu.start[0]
    usage = cpu.percent()
    await asyncio.gather(*(pump.stop() for pump in pumps))
    return done / wall, usage


async def phase_memory(port: int, pid: int, wire: Wire, cfg: Config) -> dict[str, Any]:
    """RSS growth per idle open connection, on a server that has served one echo."""
    payload = wire.payload(cfg.small_size)
    warm = await connect(port, wire, EchoCheck(wire.echo(payload)))
    await echo_once(warm, wire.frame(payload))
    await warm.close()
    await asyncio.sleep(cfg.settle)
    before = rss_kib(pid)
    conns = await open_many(port, wire, cfg.idle_connections, cfg.open_concurrency, None)
    await asyncio.sleep(cfg.settle)
    after = rss_kib(pid)
    await close_all(conns)
    return {
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_idle_connection": (after - before) / cfg.idle_connections,
    }


async def phase_one_conn(port: int, pid: int, wire: Wire, cfg: Config, *, size: int,
                         window: int) -> dict[str, Any]:
    """Messages of ``size`` bytes on one connection, ``window`` of them in flight."""
    payload = wire.payload(size)
    conn = await connect(port, wire, EchoCheck(wire.echo(payload)))
    rate, cpu = await pumped([conn], wire.frame(payload), window, cfg, pid)
    await conn.close()
    return {"ops_per_s": rate, "mib_per_s": rate * size / 2**20, "cpu": cpu}


async def phase_many(port: int, pid: int, wire: Wire, cfg: Config) -> dict[str, Any]:
    payload = wire.payload(cfg.small_size)
    conns = await open_many(port, wire, cfg.connections, cfg.open_concurrency,
                            wire.echo(payload))
    rate, cpu = await pumped(conns, wire.frame(payload), cfg.per_connection_window, cfg, pid)
    await close_all(conns)
    return {"ops_per_s": rate, "cpu": cpu}


async def phase_handshakes(port: int, pid: int, wire: Wire, cfg: Config) -> dict[str, Any]:
    """Cycles of open, echo one small message, close per second, ``handshake_workers``
    running side by side. The opening handshakes come from a pool made before the phase
    (``HANDSHAKE_POOL``), so the client's work per cycle is the same on every draft."""
    payload = wire.payload(cfg.small_size)
    frame, echo = wire.frame(payload), wire.echo(payload)
    pool = itertools.cycle([wire.handshake(port) for _ in range(HANDSHAKE_POOL)])
    done = [0]
    deadline = time.perf_counter() + cfg.warmup + cfg.duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            conn = await connect(port, wire, EchoCheck(echo), next(pool))
            await echo_once(conn, frame)
            await conn.close()
            done[0] += 1

    return await timed_workers(worker, done, pid, cfg)


async def timed_workers(worker: Callable[[], Coroutine[Any, Any, None]], done: list[int], pid: int,
                        cfg: Config) -> dict[str, Any]:
    """``handshake_workers`` copies of ``worker`` side by side, each counting its cycles
    in ``done[0]`` until its deadline: cycles per second over the measured window after
    the warm-up, and the server's CPU over the same window."""
    tasks = [asyncio.create_task(worker()) for _ in range(cfg.handshake_workers)]
    try:
        await asyncio.sleep(cfg.warmup)
        cpu, before = Cpu(pid), done[0]
        await asyncio.sleep(cfg.duration)
        count, wall = done[0] - before, time.perf_counter() - cpu.start[0]
        usage = cpu.percent()
        await within(asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
    return {"ops_per_s": count / wall, "cpu": usage}


def phase_latency(port: int, pid: int, wire: Wire, cfg: Config) -> dict[str, Any]:
    """Round-trip times, one message at a time, on a blocking socket (no event loop)."""
    payload = wire.payload(cfg.small_size)
    frame, echo = wire.frame(payload), wire.echo(payload)
    buf = bytearray(len(echo))
    view = memoryview(buf)
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _blocking_handshake(sock, wire.handshake(port))
        warmup = max(100, cfg.latency_rounds // 10)
        deadline = time.perf_counter() + TIMEOUT
        cpu: Cpu | None = None
        times: list[int] = []
        for i in range(warmup + cfg.latency_rounds):
            if i == warmup:
                cpu = Cpu(pid)
            t0 = time.perf_counter_ns()
            sock.sendall(frame)
            got = 0
            while got < len(buf):
                n = sock.recv_into(view[got:])
                if not n:
                    raise BenchError("connection closed during the latency phase")
                got += n
            times.append(time.perf_counter_ns() - t0)
            if buf != echo:
                raise BenchError("wrong echo in the latency phase")
            if time.perf_counter() > deadline:
                raise BenchError("latency phase exceeded its time limit")
        assert cpu is not None
        wall, usage = time.perf_counter() - cpu.start[0], cpu.percent()
        _blocking_close(sock, wire)
    measured = sorted(times[warmup:])
    return {
        "p50_us": statistics.median(measured) / 1000,
        "p99_us": measured[min(len(measured) - 1, int(len(measured) * 0.99))] / 1000,
        "ops_per_s": cfg.latency_rounds / wall,
        "cpu": usage,
    }


def _blocking_handshake(sock: socket.socket, handshake: Handshake) -> None:
    sock.sendall(handshake.request)
    data = bytearray()
    while (end := handshake.complete(data)) is None:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError("closed during the handshake")
        data += chunk
    if data[end:]:
        raise BenchError("unexpected data after the handshake answer")


def _blocking_close(sock: socket.socket, wire: Wire) -> None:
    """The draft's close, then read to the server's EOF (each read within TIMEOUT)."""
    if wire.close_request is None:
        sock.shutdown(socket.SHUT_WR)
    else:
        sock.sendall(wire.close_request)
    tail = bytearray()
    with contextlib.suppress(OSError):
        while (chunk := sock.recv(65536)) and len(tail) <= MAX_HEAD:
            tail += chunk
    CLOSES["total"] += 1
    _closed(wire, bytes(tail))


async def run_async(port: int, pid: int, wire: Wire, cfg: Config) -> dict[str, Any]:
    return {
        "memory": await phase_memory(port, pid, wire, cfg),
        "pipelined": await phase_one_conn(port, pid, wire, cfg, size=cfg.small_size,
                                          window=cfg.pipeline_window),
        "many": await phase_many(port, pid, wire, cfg),
        "medium": await phase_one_conn(port, pid, wire, cfg, size=cfg.medium_size,
                                       window=cfg.medium_window),
        "large": await phase_one_conn(port, pid, wire, cfg, size=cfg.large_size,
                                      window=cfg.large_window),
        "handshakes": await phase_handshakes(port, pid, wire, cfg),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--config", required=True, help="Config fields as a JSON object")
    parser.add_argument("--wire", choices=list(WIRES), default="rfc6455",
                        help="the draft the client speaks (default: rfc6455)")
    args = parser.parse_args()
    cfg = Config(**json.loads(args.config))
    wire = WIRES[args.wire]
    results = asyncio.run(run_async(args.port, args.server_pid, wire, cfg))
    results["latency"] = phase_latency(args.port, args.server_pid, wire, cfg)
    results["closes"] = CLOSES
    results["wire"] = wire.name
    results["client_cpus"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(results))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
