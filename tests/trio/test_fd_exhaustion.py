"""When file descriptors run out, the server backs off and keeps serving."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import trio

from wscompat.trio.client import connect

from ..rawclient import UPGRADE13, read_until

# The server process may hold only this many descriptors: a few for Python itself and
# the listening sockets, the rest for connections.
FD_LIMIT = 40
LAUNCH = (
    "import resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT})); "
    "from wscompat.cli import main; sys.exit(main(sys.argv[1:]))"
)


async def test_accept_backs_off_on_emfile_and_recovers() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "serve", "--port", "0", "--handshake-timeout", "30"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        port = 0
        for line in proc.stderr:
            match = re.search(r"listening on \S+ port (\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port
        with trio.fail_after(30):
            # More WebSocket clients than the server has descriptors for: the ones past
            # the limit wait in the kernel's backlog while accept() fails.
            streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(FD_LIMIT)]
            for stream in streams:
                await stream.send_all(UPGRADE13)
            answered = 0
            for stream in streams:
                with trio.move_on_after(0.3):
                    if (await read_until(stream, b"\r\n\r\n")).startswith(b"HTTP/1.1 101"):
                        answered += 1
            assert 10 < answered < FD_LIMIT, answered
            assert proc.poll() is None, "the server died when descriptors ran out"
            for stream in streams:
                await stream.aclose()
            # Once descriptors are free again, new clients are served.
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("after EMFILE")
                assert await ws.receive() == "after EMFILE"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            proc.kill()
    rest = proc.stderr.read() if proc.stderr else ""
    assert "EMFILE" in rest  # trio's accept loop said so and slept instead of crashing
    assert proc.returncode == 0
