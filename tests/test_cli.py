"""``wscompat serve`` as a real process: the echo server, options, the policy port."""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from websockets.sync.client import connect as ws_connect

from wscompat.cli import _size, main
from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.trio.client import connect

from .rawclient import read_to_eof


class Served:
    def __init__(self, proc: subprocess.Popen[str], ports: dict[str, int]) -> None:
        self.proc, self.ports = proc, ports


def start(*args: str, cwd: Path | None = None) -> Served:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wscompat", "serve", "--port", "0", *args],
        stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
    )
    ports: dict[str, int] = {}
    assert proc.stderr is not None
    want = 2 if "--policy-port" in args else 1
    for line in proc.stderr:
        match = re.search(r"(listening|policy file) on \S+ port (\d+)", line)
        if match:
            ports[match.group(1)] = int(match.group(2))
        if len(ports) == want:
            break
    assert len(ports) == want, "server did not start"
    return Served(proc, ports)


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    args = getattr(request, "param", ())
    server = start(*args)
    yield server
    server.proc.kill()
    server.proc.wait(timeout=10)


def test_echo_server_process(served: Served) -> None:
    with ws_connect(f"ws://127.0.0.1:{served.ports['listening']}/any/path") as ws:
        ws.send("中文 😀")
        assert ws.recv() == "中文 😀"
        ws.send(b"\x00\x01")
        assert ws.recv() == b"\x00\x01"


def test_sigint_stops_the_server_cleanly(served: Served) -> None:
    with ws_connect(f"ws://127.0.0.1:{served.ports['listening']}/") as ws:
        ws.send("x")
        ws.recv()
        served.proc.send_signal(signal.SIGINT)
        assert served.proc.wait(timeout=10) == 0
        rest = served.proc.stderr.read() if served.proc.stderr else ""
        assert "Traceback" not in rest
    assert re.search(r" / rfc6455 .*close=1001 by=local", rest), rest


@pytest.mark.parametrize("served", [("--drafts", "13")], indirect=True)
async def test_drafts_option_restricts(served: Served) -> None:
    url = f"ws://127.0.0.1:{served.ports['listening']}/"
    with pytest.raises(HandshakeRejected) as info:
        async with connect(url, draft=Draft.HIXIE76):
            pass
    assert info.value.status == 426
    async with connect(url, draft=Draft.RFC6455) as ws:
        await ws.send("ok")
        assert await ws.receive() == "ok"


@pytest.mark.parametrize("served", [("--policy-port", "0")], indirect=True)
async def test_policy_port(served: Served) -> None:
    for port in (served.ports["policy file"], served.ports["listening"]):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"<policy-file-request/>\x00")
        with trio.fail_after(5):
            answer = await read_to_eof(stream)
        assert answer.endswith(b"</cross-domain-policy>\n\x00")


async def test_app_option_serves_a_user_handler(tmp_path: Path) -> None:
    (tmp_path / "shout.py").write_text(
        "async def handler(ws):\n"
        "    async for message in ws:\n"
        "        await ws.send(message.upper() + ' ' + ws.draft.value)\n"
    )
    served = start("--app", "shout:handler", cwd=tmp_path)
    try:
        async with connect(f"ws://127.0.0.1:{served.ports['listening']}/",
                           draft=Draft.HIXIE75) as ws:
            await ws.send("hey")
            assert await ws.receive() == "HEY hixie-75"
    finally:
        served.proc.kill()
        served.proc.wait(timeout=10)


def test_help_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("--max-message-size", "--drafts", "--app", "examples:", "75,76,7,8,13"):
        assert text in out
    with pytest.raises(SystemExit) as info:
        main(["serve", "--drafts", "13,9"])
    assert info.value.code == 2
    assert "unknown draft '9'" in capsys.readouterr().err


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "wscompat", "--version"], capture_output=True,
                          text=True, timeout=30, check=True)
    assert done.stdout == f"wscompat {importlib.metadata.version('wscompat')}\n"


@pytest.mark.parametrize(
    ("text", "size"), [("1048576", 2**20), ("64KiB", 65536), ("16MiB", 16 * 2**20), ("none", None)]
)
def test_sizes(text: str, size: int | None) -> None:
    assert _size(text) == size
