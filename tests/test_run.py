"""``wscompat.run()`` in a real process, and how ``wscompat serve`` ends: the first
SIGINT or SIGTERM closes every connection gracefully and exits 0, a second one ends the
process at once."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from wscompat.trio.running import ListenError, run

from .rawclient import UPGRADE13

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
PROMPT = 3.0
"""Seconds within which a second signal must have ended the process."""

SCRIPT = """\
import logging, sys
import wscompat

async def handler(ws):
    async for message in ws:
        await ws.send(message)

{setup}
wscompat.run(handler, "127.0.0.1", 0{options})
print("run() returned", file=sys.stderr)
"""


class Process:
    """A child process whose stderr is read line by line as the test goes."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=ENV,
                                     cwd=cwd)
        self.lines: list[str] = []

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line (from here on) that matches ``pattern``."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matched {pattern!r}: {''.join(self.lines)}")

    def finish(self, timeout: float) -> tuple[int, str]:
        """The exit status and all of stderr."""
        status = self.proc.wait(timeout=timeout)
        rest = self.proc.stderr.read() if self.proc.stderr else ""
        return status, "".join(self.lines) + rest

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def start_script(processes: list[Process], tmp_path: Path, *, setup: str = "",
                 options: str = "") -> Process:
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT.format(setup=setup, options=options))
    process = Process([sys.executable, str(script)], cwd=tmp_path)
    processes.append(process)
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_serves_until_a_signal_and_returns(
    processes: list[Process], tmp_path: Path, signum: signal.Signals
) -> None:
    process = start_script(processes, tmp_path)
    port = int(process.wait_for(r"INFO wscompat.server: listening on 127.0.0.1 port (\d+)")[1])
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=10)
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        process.proc.send_signal(signum)
        # The connection is closed the way RFC 6455 closes, with 1001 (and answered).
        assert ws.recv_data(control_frame=True)[1][:2] == (1001).to_bytes(2, "big")
        status, stderr = process.finish(timeout=10)
    finally:
        ws.close()
    assert status == 0, stderr
    assert "run() returned" in stderr
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
    assert re.search(r" / rfc6455 .* close=1001 by=local", stderr), stderr


def test_run_keeps_logging_that_is_configured(processes: list[Process], tmp_path: Path) -> None:
    setup = 'logging.basicConfig(level=logging.INFO, format="mine %(name)s %(message)s")'
    process = start_script(processes, tmp_path, setup=setup)
    process.wait_for(r"^mine wscompat.server listening on")
    process.proc.send_signal(signal.SIGINT)
    status, stderr = process.finish(timeout=10)
    assert status == 0
    assert all(line.startswith("mine ") or line == "run() returned"
               for line in stderr.splitlines()), stderr


def test_run_takes_server_options_and_a_policy_port(
    processes: list[Process], tmp_path: Path
) -> None:
    process = start_script(processes, tmp_path, options=", max_message_size=10, policy_port=0")
    policy = int(process.wait_for(r"policy file on 127.0.0.1 port (\d+)")[1])
    port = int(process.wait_for(r"listening on 127.0.0.1 port (\d+)")[1])
    with socket.create_connection(("127.0.0.1", policy), timeout=10) as sock:
        sock.sendall(b"<policy-file-request/>\x00")
        assert b"<cross-domain-policy>" in sock.recv(4096)
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=10)
    try:
        ws.send("x" * 11)
        opcode, payload = ws.recv_data(control_frame=True)
        assert (opcode, payload[:2]) == (websocket.ABNF.OPCODE_CLOSE, (1009).to_bytes(2, "big"))
    finally:
        ws.close()
    process.proc.send_signal(signal.SIGTERM)
    assert process.finish(timeout=10)[0] == 0


def test_run_refuses_before_binding() -> None:
    """Unknown options, bad values and ports out of range fail before anything runs."""
    with pytest.raises(TypeError, match=r"unknown server option\(s\): max_mesage_size"):
        run(echo_never_called, max_mesage_size=10)
    with pytest.raises(ValueError, match="port must be 0 to 65535, not 99999"):
        run(echo_never_called, port=99999)
    with pytest.raises(ValueError, match="policy_port must be 0 to 65535"):
        run(echo_never_called, port=0, policy_port=-1)
    with pytest.raises(ValueError, match="require_tls"):
        run(echo_never_called, require_tls=True)
    with pytest.raises(TypeError, match="the handler must be an async function"):
        run(print)  # type: ignore[arg-type]


async def echo_never_called(ws: object) -> None:
    raise AssertionError("no connection was expected")


def test_a_port_in_use_is_one_listen_error(processes: list[Process], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = tmp_path / "taken.py"
        script.write_text(
            "import sys, wscompat\n"
            "from wscompat.trio.running import ListenError\n"
            "async def handler(ws): pass\n"
            "try:\n"
            f"    wscompat.run(handler, '127.0.0.1', {port})\n"
            "except ListenError as exc:\n"
            "    print('caught', exc, exc.port, exc.policy, isinstance(exc, OSError))\n"
        )
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=30, env=ENV, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"caught cannot listen on '127.0.0.1' port {port}: Address already "
                           f"in use {port} False True\n")


def test_listen_error_tells_resolving_from_binding() -> None:
    resolving = ListenError("nowhere.invalid", 80, socket.gaierror(-2, "Name or service not "
                                                                   "known"), policy=False)
    assert resolving.resolving
    assert str(resolving) == "cannot resolve 'nowhere.invalid': Name or service not known"
    taken = ListenError(None, 843, OSError(98, "Address already in use"), policy=True)
    assert not taken.resolving and taken.errno == 98
    assert str(taken) == "cannot listen on every address policy port 843: Address already in use"


# -- a second signal -------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_exits_at_once(processes: list[Process], signum: signal.Signals) -> None:
    """A peer that never answers the close holds a graceful shutdown for close_timeout
    (60 s here); the second signal ends the process without waiting for it."""
    process = Process([sys.executable, "-m", "wscompat", "serve", "--port", "0",
                       "--close-timeout", "60"])
    processes.append(process)
    port = int(process.wait_for(r"listening on 127.0.0.1 port (\d+)")[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as peer:
        peer.sendall(UPGRADE13)
        assert peer.recv(4096).startswith(b"HTTP/1.1 101")
        process.proc.send_signal(signum)
        process.wait_for(rf"{signum.name} received \(a second one exits at once\)")
        time.sleep(0.5)
        assert process.proc.poll() is None, "the first signal should wait for the peer"
        sent = time.monotonic()
        process.proc.send_signal(signum)
        status, stderr = process.finish(timeout=PROMPT)
        assert time.monotonic() - sent < PROMPT
    assert status == -signum, stderr  # killed by the signal, as Python ends on Ctrl-C
    assert f"{signum.name} received again: exiting without waiting" in stderr
    assert "Traceback" not in stderr
