"""Memory per idle connection, per draft, of a wscompat echo server in its own process.

Usage: ``python benchmarks/bench_idle.py [--connections N] [--quick] [--drafts 75,76,...]``

For each draft a fresh server is started (``python -m wscompat serve``; a fresh process,
because memory freed by one draft's connections would otherwise be reused by the next
and hide its cost). After one echo on one connection and a quiet second its resident
memory (VmRSS) is read, N connections of that draft are opened (50 handshakes at a time)
and left idle for a second, and VmRSS is read again: the difference over N is the cost
of an idle connection. Then each connection echoes one short message, and after another
quiet second the figure is taken once more, since a connection that has carried a
message keeps a little more than one that has only shaken hands. Nothing is asserted:
the figures depend on the machine, the Python and the allocator. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: measure this tree's wscompat

from bench import free_port, wait_listening  # noqa: E402  (benchmarks/ is sys.path[0])

from wscompat.drafts import Draft, parse_drafts  # noqa: E402
from wscompat.protocol.handshake.client import ClientHandshake  # noqa: E402

HOST = "127.0.0.1"
OPEN_CONCURRENCY = 50
SETTLE = 1.0
"""Seconds of quiet before each reading, so that the server has finished its work."""


@dataclass(frozen=True)
class Figures:
    draft: Draft
    connections: int
    rss_before_kib: int
    rss_idle_kib: int
    rss_after_echo_kib: int

    @property
    def idle_kib(self) -> float:
        return (self.rss_idle_kib - self.rss_before_kib) / self.connections

    @property
    def echoed_kib(self) -> float:
        return (self.rss_after_echo_kib - self.rss_before_kib) / self.connections


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc status")


def raise_descriptor_limit(needed: int) -> None:
    """The server inherits the limit: both need a descriptor per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"{needed} descriptors needed, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def open_connection(port: int, draft: Draft, index: int) -> trio.SocketStream:
    handshake = ClientHandshake(draft, HOST, f"/idle/{index}", port=port)
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(handshake.request())
    result = None
    while result is None:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise RuntimeError(f"{draft}: closed during the handshake")
        result = handshake.receive_data(bytes(chunk))
    return stream


def frame(draft: Draft, text: str) -> tuple[bytes, bytes]:
    """The frame a client sends for ``text``, and the frame the echo comes back in."""
    payload = text.encode()
    if draft in (Draft.HIXIE75, Draft.HIXIE76):
        return b"\x00" + payload + b"\xff", b"\x00" + payload + b"\xff"
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return (bytes([0x81, 0x80 | len(payload)]) + key + masked,
            bytes([0x81, len(payload)]) + payload)


async def echo(stream: trio.SocketStream, draft: Draft, text: str) -> None:
    sent, expected = frame(draft, text)
    await stream.send_all(sent)
    got = b""
    while len(got) < len(expected):
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise RuntimeError(f"{draft}: closed before the echo")
        got += chunk
    if got != expected:
        raise RuntimeError(f"{draft}: wrong echo {got!r}")


async def measure_draft(pid: int, port: int, draft: Draft, connections: int) -> Figures:
    async with await open_connection(port, draft, -1) as first:
        await echo(first, draft, "warm-up")
    await trio.sleep(SETTLE)
    before = rss_kib(pid)
    streams: list[trio.SocketStream] = []
    limiter = trio.CapacityLimiter(OPEN_CONCURRENCY)

    async def one(index: int) -> None:
        async with limiter:
            streams.append(await open_connection(port, draft, index))

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for index in range(connections):
                nursery.start_soon(one, index)
        await trio.sleep(SETTLE)
        idle = rss_kib(pid)
        async with trio.open_nursery() as nursery:
            for index, stream in enumerate(streams):
                nursery.start_soon(echo, stream, draft, f"message {index}")
        await trio.sleep(SETTLE)
        echoed = rss_kib(pid)
    for stream in streams:
        await trio.aclose_forcefully(stream)
    return Figures(draft, connections, before, idle, echoed)


def run_draft(draft: Draft, connections: int) -> Figures:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "wscompat", "serve", "--host", HOST, "--port", str(port),
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_listening(server, port)
        return trio.run(measure_draft, server.pid, port, draft, connections)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000,
                        help="idle connections per draft (default 1000)")
    parser.add_argument("--quick", action="store_true", help="200 connections per draft")
    parser.add_argument("--drafts", type=parse_drafts, default=frozenset(Draft),
                        help="drafts to measure, e.g. 75,76,7,8,13 (default all)")
    args = parser.parse_args(argv)
    connections = 200 if args.quick else args.connections
    raise_descriptor_limit(connections + 256)
    started = time.monotonic()
    rows = [run_draft(draft, connections) for draft in Draft if draft in args.drafts]
    print(f"memory per idle connection, {connections} connections per draft, "
          f"{datetime.date.today().isoformat()}")
    print(f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
          f"{os.cpu_count()} cores")
    print()
    print(f"{'draft':<10} {'RSS before':>11} {'RSS idle':>10} {'KiB/conn idle':>14} "
          f"{'KiB/conn after one echo':>24}")
    for row in rows:
        print(f"{row.draft.value:<10} {row.rss_before_kib / 1024:>7.1f} MiB "
              f"{row.rss_idle_kib / 1024:>6.1f} MiB {row.idle_kib:>14.1f} "
              f"{row.echoed_kib:>24.1f}")
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
