"""100-connection echo against wscompat with 1 and with 2 worker processes, and against
the ``websockets`` asyncio server, in one run.

Usage: ``python benchmarks/bench_workers.py [--quick] [--clients N]``

The load is the 100-connection phase of ``client.py`` (64-byte messages, 4 in flight
per connection), split over ``--clients`` client processes (2 by default) so that the
client is not the one process everything waits on; their rates are added. Nothing is
pinned: the workers, like the clients, go where the kernel puts them. On a machine with
as many cores as workers plus clients the figure shows what the extra worker buys; on
a smaller one the clients take their share of the cores and the gain is smaller.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import client
from bench import DEFAULT, HOST, MAX_MESSAGE_SIZE, QUICK, Processes, free_port, wait_listening

HERE = Path(__file__).resolve().parent


def _wscompat(workers: int) -> Any:
    return lambda port: [
        sys.executable, "-m", "wscompat", "serve", "--host", HOST, "--port", str(port),
        "--max-message-size", str(MAX_MESSAGE_SIZE), "--log-level", "warning",
        "--workers", str(workers),
    ]


SERVERS = {
    "wscompat, 1 worker": _wscompat(1),
    "wscompat, 2 workers": _wscompat(2),
    "websockets-asyncio": lambda port: [
        sys.executable, str(HERE / "servers" / "websockets_asyncio_echo.py"), "--port",
        str(port), "--max-size", str(MAX_MESSAGE_SIZE)],
}


async def _client(port: int, connections: int, config: dict[str, Any]) -> float:
    cfg = client.Config(**{**config, "connections": connections})
    result = await client.phase_many(port, os.getpid(), client.WIRES["rfc6455"], cfg)
    return float(result["ops_per_s"])


def _one_client(port: int, connections: int, config: dict[str, Any]) -> None:
    print(json.dumps(asyncio.run(_client(port, connections, config))))


def measure(procs: Processes, command: Any, config: dict[str, Any], clients: int) -> float:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = procs.start(command(port), stdout=log, stderr=log)
        try:
            wait_listening(server, port)
            time.sleep(0.5)  # every worker is listening
            share = config["connections"] // clients
            runners = [
                procs.start([sys.executable, __file__, "--run-client", str(port), str(share),
                             json.dumps(config)], stdout=subprocess.PIPE)
                for _ in range(clients)
            ]
            total = 0.0
            for runner in runners:
                out, _ = runner.communicate(timeout=120)
                if runner.returncode != 0:
                    raise RuntimeError(f"client exited {runner.returncode}")
                total += float(out)
            return total
        finally:
            procs.stop(server)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-client":
        _one_client(int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    config = QUICK if args.quick else DEFAULT
    procs = Processes()
    best: dict[str, float] = {}
    try:
        for _ in range(args.rounds):
            for name, command in SERVERS.items():
                rate = measure(procs, command, config, args.clients)
                best[name] = max(best.get(name, 0.0), rate)
    finally:
        procs.stop_all()
    reference = best["websockets-asyncio"]
    one = best["wscompat, 1 worker"]
    print(f"100-connection echo, 64 B messages, {args.clients} client processes, "
          f"{os.cpu_count()} CPUs, best of {args.rounds}")
    print(f"{'server':<22}{'msgs/s':>12}{'vs asyncio':>12}{'vs 1 worker':>13}")
    for name, rate in best.items():
        print(f"{name:<22}{rate:>12,.0f}{rate / reference:>11.2f}x{rate / one:>12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
