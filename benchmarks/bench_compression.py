"""Throughput with and without permessage-deflate: wscompat beside the websockets server.

Usage: ``python benchmarks/bench_compression.py [--quick] [--rounds N]``

Each server runs alone in its own process, once without compression and once with
permessage-deflate at the same zlib settings (15-bit window, level 6, memLevel 8), and
the same load client drives all four. The client offers
``permessage-deflate; server_no_context_takeover; client_no_context_takeover``, so every
message is compressed on its own in both directions: the client sends one precompressed
frame over and over, checks the first echo by inflating it, and every later echo by
comparing bytes, which keeps its own cost small and the same for every server. With
context takeover (what browsers use) small messages cost less, because the compressor is
not set up again per message; this run measures the per-message cost instead.

Per payload, the table gives echoes per second, payload MiB/s one way, the bytes of one
echo on the wire, the server's CPU time per echo (inflate what arrives, deflate what it
sends; the figure to compare when other load made the machine busy), and the CPU used by
the server, the client and everything else, in % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any

from bench import (
    HERE,
    HOST,
    Processes,
    _terminated,
    align,
    environment,
    free_port,
    wait_listening,
)
from client import Cpu, EchoCheck, within

MAX_MESSAGE_SIZE = 2 * 2**20
OFFER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8
RSV1 = 0x40
MASK = b"\x37\xfa\x21\x3d"
READ_CHUNK = 1 << 18


def json_payload(size: int) -> bytes:
    """A JSON array of user-like records, ``size`` bytes: what APIs push over WebSockets."""
    rng = random.Random(size)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    out, i = bytearray(b"["), 0
    while len(out) < size:
        record = {"id": i, "user": f"user-{rng.randrange(10**6)}", "active": rng.random() < 0.5,
                  "score": round(rng.random() * 1000, 3), "tags": rng.sample(words, 3),
                  "updated": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
        out += json.dumps(record).encode() + b","
        i += 1
    return bytes(out[: size - 1] + b"]")


@dataclass(frozen=True)
class Payload:
    label: str
    opcode: int
    data: bytes
    window: int
    """Echoes kept in flight on the one connection."""


def payloads() -> list[Payload]:
    return [
        Payload("JSON 1 KiB", TEXT, json_payload(1024), 32),
        Payload("JSON 64 KiB", TEXT, json_payload(65536), 8),
        Payload("JSON 1 MiB", TEXT, json_payload(2**20), 2),
        Payload("random 64 KiB", BINARY, random.Random(1).randbytes(65536), 8),
    ]


@dataclass(frozen=True)
class Server:
    name: str
    argv: list[str]
    compressed: bool


def servers(port: int = 0) -> list[Server]:
    wscompat = [sys.executable, "-m", "wscompat", "serve", "--host", HOST, "--port", str(port),
                "--max-message-size", str(MAX_MESSAGE_SIZE), "--log-level", "warning"]
    reference = [sys.executable, str(HERE / "servers" / "websockets_asyncio_echo.py"),
                 "--port", str(port), "--max-size", str(MAX_MESSAGE_SIZE)]
    return [
        Server("wscompat", [*wscompat, "--compression", "off"], False),
        Server("wscompat deflate", wscompat, True),
        Server("websockets", reference, False),
        Server("websockets deflate", [*reference, "--deflate"], True),
    ]


# -- the load client --------------------------------------------------------------------


def frame(first: int, payload: bytes, *, masked: bool) -> bytes:
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes([first, bit | n])
    elif n < 1 << 16:
        head = bytes([first, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = (MASK * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + MASK + body


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One whole unmasked frame, header included."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    extra = b""
    if length == 126:
        extra = await reader.readexactly(2)
        length = int.from_bytes(extra, "big")
    elif length == 127:
        extra = await reader.readexactly(8)
        length = int.from_bytes(extra, "big")
    return head + extra + await reader.readexactly(length)


def payload_of(echo: bytes) -> tuple[bool, bytes]:
    length = echo[1] & 0x7F
    start = 2 + {126: 2, 127: 8}.get(length, 0)
    return bool(echo[0] & RSV1), echo[start:]


async def open_ws(port: int, compressed: bool
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await within(asyncio.open_connection(HOST, port))
    offer = f"Sec-WebSocket-Extensions: {OFFER}\r\n" if compressed else ""
    writer.write(
        f"GET /bench HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
    )
    head = (await within(reader.readuntil(b"\r\n\r\n"))).decode("latin-1")
    if not head.startswith("HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head.splitlines()[0]}")
    answered = f"Sec-WebSocket-Extensions: {OFFER}\r\n".lower() in head.lower()
    if answered != compressed:
        raise RuntimeError(f"expected compression {compressed}, got the answer {head!r}")
    return reader, writer


async def measure(port: int, pid: int, payload: Payload, compressed: bool, *,
                  warmup: float, duration: float) -> dict[str, Any]:
    reader, writer = await open_ws(port, compressed)
    body = deflate(payload.data) if compressed else payload.data
    out = frame(0x80 | payload.opcode | (RSV1 if compressed else 0), body, masked=True)
    writer.write(out)
    echo = await within(read_frame(reader))
    rsv1, data = payload_of(echo)
    if rsv1:
        data = zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
    if data != payload.data:
        raise RuntimeError(f"{payload.label}: wrong first echo {echo[:16].hex()}")
    check = EchoCheck(echo)
    count, sent = [0], [payload.window]
    writer.write(out * payload.window)

    async def pump(until: float, refill: bool = True) -> None:
        while time.perf_counter() < until if refill else count[0] < sent[0]:
            data = await within(reader.read(READ_CHUNK))
            if not data:
                raise RuntimeError("the server closed the connection")
            n = check.feed(data)
            count[0] += n
            if n and refill:
                writer.write(out * n)
                sent[0] += n
                await writer.drain()

    await pump(time.perf_counter() + warmup)
    cpu, before = Cpu(pid), count[0]
    await pump(time.perf_counter() + duration)
    rate = (count[0] - before) / (time.perf_counter() - cpu.start[0])
    usage = cpu.percent()
    await pump(0.0, refill=False)  # the echoes still in flight, then a clean close
    writer.write(frame(0x80 | CLOSE, (1000).to_bytes(2, "big"), masked=True))
    closing = await within(reader.read())
    if not closing.startswith(b"\x88"):
        raise RuntimeError(f"expected the server's close frame, got {closing[:8]!r}")
    writer.close()
    return {"msgs_per_s": rate, "mib_per_s": rate * len(payload.data) / 2**20,
            "wire_bytes": len(echo), "cpu": usage}


def run_server(procs: Processes, name: str, quick: bool) -> dict[str, Any]:
    """Start the server on a port free now (not one reused from an earlier run, which
    another process may have taken since), measure every payload, stop it."""
    port = free_port()
    server = next(s for s in servers(port) if s.name == name)
    proc = procs.start(server.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(proc, port)
        time.sleep(0.2)
        warmup, duration = (0.2, 0.7) if quick else (0.5, 2.0)
        return {p.label: asyncio.run(measure(port, proc.pid, p, server.compressed,
                                             warmup=warmup, duration=duration))
                for p in payloads()}
    finally:
        procs.stop(proc)


# -- the table ----------------------------------------------------------------------------


def render(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    rows: list[list[str]] = [["", *names]]
    for p in payloads():
        rows.append([f"{p.label} ({len(p.data):,} bytes)", *[""] * len(names)])
        for label, key, fmt in (("echoes/s", "msgs_per_s", ",.0f"),
                                ("MiB/s", "mib_per_s", ",.1f"),
                                ("bytes per echo on the wire", "wire_bytes", ",d")):
            rows.append([f"  {label}", *(format(results[n][p.label][key], fmt) for n in names)])
        figures = [results[n][p.label] for n in names]
        rows.append(["  server CPU per echo (µs)",
                     *(f"{f['cpu'][0] * 1e4 / f['msgs_per_s']:,.0f}" for f in figures)])
        rows.append(["  CPU server / client / other, %",
                     *(" / ".join(f"{t:.0f}" for t in results[n][p.label]["cpu"])
                       for n in names)])
    return align(rows)


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per payload, the round in which other processes took the least CPU."""
    return {label: min((r[label] for r in runs), key=lambda m: m["cpu"][2])
            for label in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 20 s)")
    parser.add_argument("--rounds", type=int, default=None, help="default 2, quick 1")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    rounds = args.rounds or (1 if args.quick else 2)
    print(environment())
    print(f"{'quick' if args.quick else 'default'} run, {rounds} round(s); client offers "
          f"{OFFER!r}", flush=True)
    started = time.monotonic()
    measured: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers()}
    procs = Processes()
    try:
        for n in range(1, rounds + 1):
            for name, runs in measured.items():
                t0 = time.monotonic()
                runs.append(run_server(procs, name, args.quick))
                print(f"round {n}, {name}: {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        procs.stop_all()
    results = {name: best(runs) for name, runs in measured.items()}
    print()
    print(render(results))
    print(f"\nCPU in % of one core during the measurement. Total "
          f"{time.monotonic() - started:.0f} s.")
    busy = [f"{name} / {label}" for name, result in results.items()
            for label, figures in result.items() if figures["cpu"][2] > 20]
    if busy:
        print("warning: other processes competed for the CPU during " + "; ".join(busy)
              + ". Those figures are low; rerun on an idle machine.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every server process was stopped", file=sys.stderr)
        sys.exit(130)
