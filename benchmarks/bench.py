"""Compare wscompat's echo server with other Python WebSocket servers on this machine.

Usage: ``python benchmarks/bench.py [--quick] [--rounds N] [--servers NAME,...]``

Each server runs alone, in its own process, on a free loopback port, and is driven by
the same load client (``client.py``, also its own process), so the client's cost is the
same for all. wscompat is measured three times: with the client speaking RFC 6455,
hixie-76 and hixie-75 to the same server. On a machine with two cores or more the server
is pinned to one core and the client to another. The table gives every figure with its
ratio to the ``websockets`` asyncio server measured in the same run, then the hixie
figures as ratios to wscompat's RFC 6455 ones. See docs/performance.md for what each
figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
MAX_MESSAGE_SIZE = 2 * 2**20
"""The same receive limit for every server; the 1 MiB echo phase needs more than 1 MiB."""
REFERENCE = "websockets-asyncio"
WSCOMPAT = "wscompat"
"""wscompat speaking RFC 6455: what its hixie columns are compared with."""

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
    """The draft the load client speaks to it (``client.py --wire``)."""


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


def peers() -> list[Peer]:
    has_trio = importlib.util.find_spec("websockets.trio") is not None
    return [
        Peer(WSCOMPAT, _wscompat),
        Peer("wscompat hixie-76", _wscompat, wire="hixie-76"),
        Peer("wscompat hixie-75", _wscompat, wire="hixie-75"),
        Peer("websockets-trio", _script("websockets_trio_echo.py"),
             None if has_trio else "websockets.trio is not in the installed websockets"),
        Peer(REFERENCE, _script("websockets_asyncio_echo.py")),
        Peer("trio-websocket", _script("trio_websocket_echo.py")),
    ]


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
            client = procs.start(
                [sys.executable, str(HERE / "client.py"), "--port", str(port),
                 "--server-pid", str(server.pid), "--config", json.dumps(config),
                 "--wire", peer.wire],
                stdout=subprocess.PIPE,
            )
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


def align(rows: list[list[str]]) -> str:
    """Rows as text columns: the first left-aligned, figures right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in rows
    )


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds of one server.

    For each timed phase, the round in which other processes used the least CPU: the
    machine may be shared, and a disturbed round understates a server. Idle memory does
    not depend on CPU contention; its rounds are averaged.
    """
    merged = {key: min((r[key] for r in rounds), key=lambda p: p["cpu"][2])
              for _, key in PHASES}
    memory = [r["memory"]["kib_per_idle_connection"] for r in rounds]
    merged["memory"] = {"kib_per_idle_connection": sum(memory) / len(memory)}
    merged["closes"] = {k: sum(r["closes"][k] for r in rounds) for k in rounds[0]["closes"]}
    merged["wire"] = rounds[0]["wire"]
    return merged


def contention(results: dict[str, dict[str, Any] | None], limit: int = 20) -> list[str]:
    """Phases during which other processes took more than ``limit``% of a core."""
    found = []
    for name, result in results.items():
        for label, key in PHASES:
            other = result[key]["cpu"][2] if result else 0
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 40 s)")
    parser.add_argument("--servers", help="comma-separated subset of (quote names with "
                        "spaces): " + ", ".join(p.name for p in peers()))
    parser.add_argument("--rounds", type=int, help="rounds per server (default: 2, quick: 1)")
    args = parser.parse_args()
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
            for peer in runnable:
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
    print()
    print(render(list(results), results))
    hixie = render_hixie(results)
    if hixie:
        print()
        print(hixie)
    print(f"\n↑ higher is better, ↓ lower is better; Nx: ratio to {REFERENCE} in this run"
          f"{f' (hixie block: to {WSCOMPAT}, RFC 6455)' if hixie else ''}. "
          f"Total {time.monotonic() - started:.0f} s.")
    busy = contention(results)
    if busy:
        print("warning: other processes competed for the CPU during " + "; ".join(busy)
              + ". Those figures are low; rerun on an idle machine.")
    return 0 if all(len(runs) == rounds for runs in measured.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every server and client process was stopped", file=sys.stderr)
        sys.exit(130)
