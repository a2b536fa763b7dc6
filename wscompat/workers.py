"""``--workers N``: N server processes on one port, and the parent that looks after them.

Python runs one thread of protocol code at a time, so one process uses one core. The
parent binds each port first (SO_REUSEPORT, not listening: the port is reserved, and
``--port 0`` picks it once for everybody), then starts N copies of the same command
line, each told the ports and to listen with SO_REUSEPORT; the kernel spreads new
connections over them. The parent:

- restarts a worker that exits on its own, unless it keeps dying right after starting
  (:data:`CRASH_LOOP` times in a row), when it stops them all and exits 1;
- forwards SIGINT and SIGTERM to every worker as SIGTERM (each one shuts down
  gracefully, closing its connections the way their drafts close) and exits 0 once all
  are gone; a second signal kills them at once;
- with metrics on, gives the workers one directory for prometheus_client's
  multiprocess mode, so ``/metrics`` on any worker shows the sum, and tells the
  library when a worker is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import trio
from prometheus_client import multiprocess

__all__ = ["CRASH_LOOP", "WORKER_ENV", "Supervisor", "worker_count"]

logger = logging.getLogger("wscompat.workers")

WORKER_ENV = "WSCOMPAT_WORKER"
"""Set in a worker's environment to its number (1..N)."""
CRASH_LOOP = 5
"""Exits in a row, each within :data:`QUICK_EXIT` seconds of starting, that stop all."""
QUICK_EXIT = 2.0
RESTART_DELAY = 0.5
"""Seconds before a worker that died is started again (doubling while it keeps dying)."""


def worker_count(text: str) -> int:
    """``--workers``: a count of at least 1, or ``auto`` for the CPUs this process may use."""
    if text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    count = int(text)
    if count < 1:
        raise ValueError(f"{text!r}: at least 1 worker")
    return count


@dataclass
class _Worker:
    index: int
    process: trio.Process | None = None
    started: float = 0.0
    quick_exits: int = 0


@dataclass
class Supervisor:
    """Start and watch ``count`` workers, each running ``argv`` (a full command line)."""

    argv: Sequence[str]
    count: int
    metrics: bool = False
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False
    failed: bool = False
    _multiproc_dir: str | None = None

    async def run(self) -> int:
        """Serve until a signal (0) or a crash loop (1)."""
        env = dict(os.environ)
        if self.metrics:
            self._multiproc_dir = tempfile.mkdtemp(prefix="wscompat-metrics-")
            env["PROMETHEUS_MULTIPROC_DIR"] = self._multiproc_dir
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    for index in range(1, self.count + 1):
                        worker = _Worker(index)
                        self.workers.append(worker)
                        nursery.start_soon(self._keep, worker, env)
                    nursery.start_soon(self._on_signals, signals, nursery)
                    await self._all_gone(nursery)
        finally:
            if self._multiproc_dir is not None:
                shutil.rmtree(self._multiproc_dir, ignore_errors=True)
        return 1 if self.failed else 0

    async def _all_gone(self, nursery: trio.Nursery) -> None:
        """Once every worker task has ended, nothing but the signal watcher is left."""
        while any(w.process is not None or not self.stopping for w in self.workers):
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()

    async def _keep(self, worker: _Worker, env: dict[str, str]) -> None:
        delay = RESTART_DELAY
        while not self.stopping:
            worker_env = {**env, WORKER_ENV: str(worker.index)}
            worker.started = time.monotonic()
            worker.process = await trio.lowlevel.open_process(
                list(self.argv), env=worker_env, stdin=subprocess.DEVNULL
            )
            pid = worker.process.pid
            logger.info("worker %d started (pid %d)", worker.index, pid)
            if self.stopping:  # the signal came while it was starting
                worker.process.send_signal(signal.SIGTERM)
            with trio.CancelScope(shield=True):
                status = await worker.process.wait()
            worker.process = None
            self._forget(pid)
            if self.stopping:
                logger.info("worker %d (pid %d) stopped", worker.index, pid)
                return
            lived = time.monotonic() - worker.started
            worker.quick_exits = worker.quick_exits + 1 if lived < QUICK_EXIT else 0
            if worker.quick_exits >= CRASH_LOOP:
                logger.error("worker %d exited %d times in a row right after starting "
                             "(last status %s): stopping", worker.index, CRASH_LOOP, status)
                self.failed = True
                self._stop(signal.SIGTERM)
                return
            delay = delay * 2 if worker.quick_exits else RESTART_DELAY
            logger.warning("worker %d (pid %d) exited with status %s after %.1fs: "
                           "restarting", worker.index, pid, status, lived)
            await trio.sleep(min(delay, 10.0))

    async def _on_signals(self, signals: AsyncIterator[int],
                          nursery: trio.Nursery) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self.stopping:
                logger.info("%s received: stopping %d workers gracefully", name,
                            sum(w.process is not None for w in self.workers))
                self._stop(signal.SIGTERM)
            else:
                logger.warning("%s received again: killing the workers", name)
                self._stop(signal.SIGKILL)

    def _stop(self, how: signal.Signals) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(how)

    def _forget(self, pid: int) -> None:
        """Tell prometheus_client the worker is gone: its live gauges stop counting."""
        if self._multiproc_dir is None:
            return
        multiprocess.mark_process_dead(pid, self._multiproc_dir)  # type: ignore[no-untyped-call]


def worker_argv(argv: Sequence[str], ports: dict[str, int]) -> list[str]:
    """The command line of a worker: the parent's, with the reserved ports filled in and
    ``--workers 1`` (the last occurrence of a flag wins)."""
    command = [sys.executable, "-m", "wscompat", *argv]
    for flag, port in ports.items():
        command += [flag, str(port)]
    return [*command, "--reuse-port", "--workers", "1"]
