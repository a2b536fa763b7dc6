"""``wscompat serve`` as an operator runs it, each case a real process: ``--workers``
(processes sharing the port, restarted when they die, stopped together), metrics summed
over the workers and on a port of their own, JSON logs, the health check flags."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import websocket
from prometheus_client.parser import text_string_to_metric_families

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
HOST = "127.0.0.1"
BOUND = 20.0
"""Seconds any awaited line or exit may take (loaded CI machines start Python slowly)."""


class Served:
    """``wscompat serve ...`` in a child process; stderr is read by a thread, so every
    wait is bounded."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wscompat", "serve", "--host", HOST, *flags],
            stderr=subprocess.PIPE, text=True, env=ENV,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = BOUND) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {pattern!r} in {timeout}s:\n{''.join(self.lines)}") from None
            if line is None:
                raise AssertionError(f"exited before {pattern!r}:\n{''.join(self.lines)}")
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def find(self, pattern: str) -> re.Match[str]:
        """A line already read that matches, else the next one that does."""
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return match
        return self.wait_for(pattern)

    def drain(self, seconds: float = 0.3) -> None:
        """Take in what was logged meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if line is None:
                return
            self.lines.append(line)

    def stop(self, how: int = signal.SIGTERM) -> int:
        self.proc.send_signal(how)
        status = self.proc.wait(timeout=BOUND)
        self.drain(0.5)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=BOUND)


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for one in started:
        one.kill()


def start(served: list[Served], *flags: str) -> tuple[Served, int]:
    one = Served(*flags)
    served.append(one)
    port = int(one.wait_for(r"listening on \S+ port (\d+)").group(1))
    return one, port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def echo(port: int, message: str, *headers: str) -> None:
    ws = websocket.create_connection(f"ws://{HOST}:{port}/", timeout=5, header=list(headers))
    try:
        ws.send(message)
        assert ws.recv() == message
    finally:
        ws.close()


def metric(body: bytes, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                total += sample.value
    return total


# -- workers ----------------------------------------------------------------------------


def test_workers_share_the_port_and_sum_their_metrics(served: list[Served]) -> None:
    one, port = start(served, "--port", "0", "--workers", "2", "--metrics",
                      "--policy-port", "0")
    one.wait_for(r"\[w[12]\]: listening on")  # both workers are up
    policy_port = int(one.find(r"policy file on \S+ port (\d+)").group(1))
    for _ in range(4):  # the policy port is shared too, and its requests are logged
        with socket.create_connection((HOST, policy_port), timeout=5) as sock:
            sock.sendall(b"<policy-file-request/>\x00")
            assert b"<cross-domain-policy>" in sock.recv(4096)
    one.wait_for(r"\[w[12]\]: \S+ policy file sent")
    for i in range(40):
        echo(port, f"message {i}")
    one.drain()
    # Each worker logs its own connections; the kernel spread them over both.
    closed = [line for line in one.lines if " rfc6455 plain " in line]
    assert len(closed) == 40
    assert {line.partition("[w")[2][:1] for line in closed} == {"1", "2"}
    # Whichever worker answers /metrics gives the sum of both.
    for _ in range(4):
        status, body = http_get(port, "/metrics")
        assert status == 200
        assert metric(body, "wscompat_handshakes_total", draft="rfc6455",
                      outcome="accepted") == 40
        assert metric(body, "wscompat_messages_received_total", draft="rfc6455") == 40
        assert metric(body, "wscompat_connections_open", draft="rfc6455") == 0
        assert metric(body, "wscompat_policy_requests_total", port="policy") == 4
    assert one.stop() == 0
    assert "Traceback" not in "".join(one.lines)


def test_a_worker_that_dies_is_restarted(served: list[Served]) -> None:
    one, port = start(served, "--port", "0", "--workers", "2")
    pid = int(one.find(r"worker 1 started \(pid (\d+)\)").group(1))
    one.wait_for(r"\[w[12]\]: listening on")
    os.kill(pid, signal.SIGKILL)
    one.wait_for(rf"worker 1 \(pid {pid}\) exited with status -9.*restarting")
    new_pid = int(one.wait_for(r"worker 1 started \(pid (\d+)\)").group(1))
    assert new_pid != pid
    one.wait_for(r"\[w1\]: listening on")
    for i in range(10):
        echo(port, f"after the restart {i}")
    assert one.stop(signal.SIGINT) == 0


def test_workers_stop_gracefully_together(served: list[Served]) -> None:
    """SIGTERM to the parent: each worker closes its connections with 1001 and exits,
    then the parent exits 0."""
    one, port = start(served, "--port", "0", "--workers", "2")
    one.wait_for(r"\[w[12]\]: listening on")
    clients = [websocket.create_connection(f"ws://{HOST}:{port}/", timeout=5)
               for _ in range(6)]
    for ws in clients:
        ws.send("hello")
        assert ws.recv() == "hello"
    one.proc.send_signal(signal.SIGTERM)
    for ws in clients:
        opcode, data = ws.recv_data(control_frame=True)
        assert (opcode, data[:2]) == (websocket.ABNF.OPCODE_CLOSE, (1001).to_bytes(2, "big"))
    assert one.proc.wait(timeout=BOUND) == 0
    one.drain(0.5)
    assert len([line for line in one.lines if re.search(r"worker \d \(pid \d+\) stopped",
                                                        line)]) == 2


def test_a_port_in_use_stops_the_parent_before_any_worker(served: list[Served]) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "wscompat", "serve", "--host", HOST, "--port", str(port),
             "--workers", "2"], check=False, capture_output=True, text=True, env=ENV, timeout=BOUND,
        )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"wscompat: error: --host '{HOST}' --port {port}: cannot listen: Address already in use"
    ]


def test_workers_flag_is_checked() -> None:
    proc = subprocess.run([sys.executable, "-m", "wscompat", "serve", "--workers", "0"],
                          check=False, capture_output=True, text=True, env=ENV,
                          timeout=BOUND)
    assert proc.returncode == 2
    assert "argument --workers: '0': a number of processes (1 or more), or 'auto'" in proc.stderr


# -- metrics port, logs, health ---------------------------------------------------------


def test_metrics_port_serves_metrics_and_only_there(served: list[Served]) -> None:
    metrics_port = free_port()
    one, port = start(served, "--port", "0", "--metrics-port", str(metrics_port),
                      "--policy-port", "0")
    one.wait_for(rf"metrics on \S+ port {metrics_port}")
    echo(port, "counted")
    status, body = http_get(metrics_port, "/metrics")
    assert status == 200
    assert metric(body, "wscompat_messages_sent_total", draft="rfc6455") == 1
    assert http_get(port, "/metrics")[0] == 426
    assert one.stop(signal.SIGINT) == 0


def test_json_logs_one_object_per_line(served: list[Served]) -> None:
    one, port = start(served, "--port", "0", "--log-format", "json", "--log-open")
    echo(port, "shipped", 'User-Agent: Kiosk/2.1 "lobby"')
    one.wait_for(r'"event":"closed"')
    assert one.stop() == 0
    entries = [json.loads(line) for line in one.lines]
    events = [e for e in entries if "event" in e]
    assert [e["event"] for e in events] == ["opened", "closed"]
    closed = events[1]
    assert closed["draft"] == "rfc6455" and closed["transport"] == "plain"
    assert closed["messages_in"] == 1 and closed["close"] == 1000
    assert closed["user_agent"] == 'Kiosk/2.1 "lobby"'
    assert closed["message"].endswith(' ua="Kiosk/2.1 \\x22lobby\\x22"')
    assert {"time", "level", "logger", "message"} <= set(closed)


def test_health_flags(served: list[Served]) -> None:
    one, port = start(served, "--port", "0", "--health-path", "/ready")
    assert http_get(port, "/ready") == (200, b"ok\n")
    assert http_get(port, "/healthz")[0] == 426
    assert one.stop() == 0
    one, port = start(served, "--port", "0", "--health-path", "none")
    assert http_get(port, "/healthz")[0] == 426
    assert one.stop() == 0


def test_drain_time_answers_503_while_still_serving(served: list[Served]) -> None:
    one, port = start(served, "--port", "0", "--drain-time", "3")
    assert http_get(port, "/healthz")[0] == 200
    one.proc.send_signal(signal.SIGTERM)
    one.wait_for(r"draining for 3s")
    assert http_get(port, "/healthz")[0] == 503
    echo(port, "still served while draining")
    assert one.proc.wait(timeout=BOUND) == 0
