"""Echo through ``wscompat proxy`` against the same backend directly, in one run.

Usage: ``python benchmarks/bench_gateway.py [--quick] [--rounds N]``

The backend is the ``websockets`` asyncio echo server (``servers/websockets_asyncio_echo.py``,
compression and pings off); the gateway runs in front of it with pings off on both legs,
as the backend has them. The load is ``client.py``'s, run by a client process of its own
(this script with ``--run-client``): the 100-connection phase (64-byte messages, 4 in
flight per connection), the one-at-a-time round trip (p50, p99), and the memory phase
(RSS growth per idle open connection, read from the gateway's process: what one proxied
connection costs the gateway, on top of what it costs the backend). Each round starts
fresh processes; per figure the best round is kept.

Placement: with three cores or more, the backend, the gateway and the client each get
one. With two, the client gets its own and the backend and the gateway share the other,
so the gateway's rate is halved by sharing a core rather than by its own cost; the
CPU per message of each process, printed beside the rates, is the figure that does not
depend on the placement: the gateway keeps up with the backend on a core of its own
when its CPU per message is no more than the backend's.

Reference: when ``haproxy`` is installed, the same load also runs through haproxy in TCP
mode (one thread, placed where the gateway is), a proxy in C that copies bytes and
reads no frame. What it adds to the round trip is what a second process on the way
costs on this machine before any WebSocket work: the floor for any gateway. Its
configuration is the one docs/gateway.md gives for routing RFC 6455 clients past the
gateway (the request head is read once, then bytes are copied), so the column is also
what those clients get in that deployment. ``--no-reference`` leaves it out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import client
from bench import (
    DEFAULT,
    HOST,
    MAX_MESSAGE_SIZE,
    QUICK,
    Processes,
    environment,
    free_port,
    pin,
    wait_listening,
)

HERE = Path(__file__).resolve().parent
PHASES = ("many", "latency", "memory")


def _backend(port: int) -> list[str]:
    return [sys.executable, str(HERE / "servers" / "websockets_asyncio_echo.py"), "--port",
            str(port), "--max-size", str(MAX_MESSAGE_SIZE)]


def _gateway(port: int, backend: int) -> list[str]:
    return [sys.executable, "-m", "wscompat.gateway", "proxy", "--host", HOST, "--port",
            str(port), "--upstream", f"ws://{HOST}:{backend}/", "--max-message-size",
            str(MAX_MESSAGE_SIZE), "--ping-interval", "none", "--log-level", "warning"]


HAPROXY_CONFIG = """\
global
    nbthread 1
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend clients
    bind {host}:{port}
    tcp-request inspect-delay 5s
    tcp-request content accept if HTTP
    use_backend direct if {{ req.hdr(sec-websocket-version) -m str 13 }}
    default_backend gateway
backend direct
    server backend {host}:{backend}
backend gateway
    server gateway {host}:{gateway}
"""
"""haproxy in TCP mode, one thread, as docs/gateway.md has it in front of a gateway:
RFC 6455 clients straight to the backend, older drafts to the gateway. The load speaks
RFC 6455 only, so no connection is sent to the gateway, where nothing listens here."""


def _haproxy(port: int, backend: int, config: Path) -> list[str]:
    with socket.socket() as unused:  # a port nothing listens on, for the gateway line
        unused.bind((HOST, 0))
        gateway = unused.getsockname()[1]
    config.write_text(HAPROXY_CONFIG.format(host=HOST, port=port, backend=backend,
                                            gateway=gateway))
    return ["haproxy", "-db", "-f", str(config)]


async def _many(port: int, pid: int, backend_pid: int, cfg: client.Config
                ) -> dict[str, Any]:
    """client.py's 100-connection phase, with the backend's CPU counted over the same
    window as the server's (the gateway's, when it is in front)."""
    wire = client.WIRES["rfc6455"]
    payload = wire.payload(cfg.small_size)
    conns = await client.open_many(port, wire, cfg.connections, cfg.open_concurrency,
                                   wire.echo(payload))
    total = [0]
    pumps = [client.Pump(conn, wire.frame(payload), cfg.per_connection_window, total)
             for conn in conns]
    for pump in pumps:
        pump.start()
    await asyncio.sleep(cfg.warmup)
    cpu, backend_cpu, before = client.Cpu(pid), client.Cpu(backend_pid), total[0]
    await asyncio.sleep(cfg.duration)
    done, wall = total[0] - before, time.perf_counter() - cpu.start[0]
    usage, backend_usage = cpu.percent(), backend_cpu.percent()
    await asyncio.gather(*(pump.stop() for pump in pumps))
    await client.close_all(conns)
    return {"ops_per_s": done / wall, "cpu": usage, "backend_cpu": backend_usage[0]}


async def _phases(port: int, pid: int, backend_pid: int, config: dict[str, Any]
                  ) -> dict[str, Any]:
    """The client's side: the three phases."""
    cfg = client.Config(**config)
    wire = client.WIRES["rfc6455"]
    return {
        "many": await _many(port, pid, backend_pid, cfg),
        "latency": await asyncio.to_thread(client.phase_latency, port, pid, wire, cfg),
        "memory": await client.phase_memory(port, pid, wire, cfg),
    }


def _run_client(port: int, pid: int, backend_pid: int, config: dict[str, Any]) -> None:
    print(json.dumps(asyncio.run(_phases(port, pid, backend_pid, config))))


def _placement() -> tuple[int, int, int] | None:
    """Cores for the backend, the gateway and the client (None: fewer than two)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 3:
        return cores[0], cores[1], cores[2]
    if len(cores) == 2:
        return cores[0], cores[0], cores[1]
    return None


def measure(procs: Processes, config: dict[str, Any], *, through: str | None
            ) -> dict[str, Any]:
    """One round: fresh backend (and proxy: ``gateway`` or ``haproxy``), the client's
    figures."""
    place = _placement()
    backend_port = free_port()
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as scratch:
        backend = procs.start(_backend(backend_port), stdout=log, stderr=log)
        gateway = None
        try:
            wait_listening(backend, backend_port)
            port, pid = backend_port, backend.pid
            if through is not None:
                port = free_port()
                command = (_gateway(port, backend_port) if through == "gateway" else
                           _haproxy(port, backend_port, Path(scratch) / "haproxy.cfg"))
                gateway = procs.start(command, stdout=log, stderr=log)
                wait_listening(gateway, port)
                pid = gateway.pid
            if place:
                pin(backend, place[0])
                if gateway is not None:
                    pin(gateway, place[1])
            time.sleep(0.3)
            runner = procs.start([sys.executable, __file__, "--run-client", str(port),
                                  str(pid), str(backend.pid), json.dumps(config)],
                                 stdout=subprocess.PIPE)
            if place:
                pin(runner, place[2])
            out, _ = runner.communicate(timeout=600)
            if runner.returncode != 0:
                log.seek(0)
                print(log.read()[-2000:].decode(errors="replace"), file=sys.stderr)
                raise RuntimeError(f"client exited {runner.returncode}")
            result: dict[str, Any] = json.loads(out)
            return result
        finally:
            if gateway is not None:
                procs.stop(gateway)
            procs.stop(backend)


def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase, the round with the best figure (the least disturbed one)."""
    return {
        "many": max((r["many"] for r in rounds), key=lambda p: p["ops_per_s"]),
        "latency": min((r["latency"] for r in rounds), key=lambda p: p["p50_us"]),
        "memory": min((r["memory"] for r in rounds),
                      key=lambda p: p["kib_per_idle_connection"]),
    }


def per_message(phase: dict[str, Any], percent: float) -> float:
    """CPU µs per message from a % of a core over the phase's rate."""
    return float(percent) * 1e4 / float(phase["ops_per_s"])


def render(direct: dict[str, Any], gateway: dict[str, Any],
           reference: dict[str, Any] | None = None) -> str:
    """The table: the backend alone, through the gateway and, if measured, through
    haproxy in TCP mode, each proxy with its ratio to the backend alone."""
    proxies = [("through gateway", gateway)]
    if reference is not None:
        proxies.append(("through haproxy (TCP)", reference))
    rows = [["", "backend alone"]]
    for name, _ in proxies:
        rows[0] += [name, "ratio"]

    def row(label: str, figure: Any, fmt: str) -> None:
        a = figure(direct)
        cells = [label, f"{a:{fmt}}"]
        for _, result in proxies:
            b = figure(result)
            cells += [f"{b:{fmt}}", f"{b / a:.2f}x" if a else "-"]
        rows.append(cells)

    row("small echo, 100 conns (msgs/s) ↑", lambda r: r["many"]["ops_per_s"], ",.0f")
    row("round trip p50 (µs) ↓", lambda r: r["latency"]["p50_us"], ",.0f")
    row("round trip p99 (µs) ↓", lambda r: r["latency"]["p99_us"], ",.0f")
    d_many = direct["many"]
    backend_cpu = per_message(d_many, d_many["cpu"][0])
    cells = ["backend CPU per message (µs) ↓", f"{backend_cpu:,.1f}"]
    for _, result in proxies:
        cells += [f"{per_message(result['many'], result['many']['backend_cpu']):,.1f}", ""]
    rows.append(cells)
    cells = ["proxy CPU per message (µs) ↓", "-"]
    for _, result in proxies:
        cpu = per_message(result["many"], result["many"]["cpu"][0])
        cells += [f"{cpu:,.1f}", f"{cpu / backend_cpu:.2f}x of the backend's"]
    rows.append(cells)
    cells = ["memory per idle connection (KiB) ↓",
             f"{direct['memory']['kib_per_idle_connection']:,.1f} (backend)"]
    for _, result in proxies:
        cells += [f"{result['memory']['kib_per_idle_connection']:,.1f} (proxy)", ""]
    rows.append(cells)
    columns = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(columns)]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in rows)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-client":
        _run_client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                    json.loads(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 30 s)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of each (default: 2, quick: 1)")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave out the haproxy (TCP mode) reference")
    args = parser.parse_args()
    reference = not args.no_reference and shutil.which("haproxy") is not None
    # 1000 idle proxied connections take 2000 descriptors in the gateway.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = QUICK if args.quick else DEFAULT
    rounds = args.rounds or (1 if args.quick else 2)
    place = _placement()
    print(environment())
    print("placement: " + ("none (one core)" if place is None else
                           f"backend on core {place[0]}, gateway on core {place[1]}, "
                           f"client on core {place[2]}"), flush=True)
    if not reference and not args.no_reference:
        print("reference: haproxy is not installed, its column is left out")
    procs = Processes()
    direct: list[dict[str, Any]] = []
    through: list[dict[str, Any]] = []
    relayed: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for n in range(1, rounds + 1):
            direct.append(measure(procs, config, through=None))
            through.append(measure(procs, config, through="gateway"))
            if reference:
                relayed.append(measure(procs, config, through="haproxy"))
            print(f"round {n} done, {time.monotonic() - started:.0f} s", flush=True)
    finally:
        procs.stop_all()
    print()
    print(render(best(direct), best(through), best(relayed) if relayed else None))
    print(f"\n↑ higher is better, ↓ lower is better; ratio: through the proxy over the "
          f"backend alone. {config['connections']} connections, {config['small_size']}-byte "
          f"messages, {config['per_connection_window']} in flight each; round trips one "
          f"at a time; memory over {config['idle_connections']} idle connections.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every process was stopped", file=sys.stderr)
        sys.exit(130)
