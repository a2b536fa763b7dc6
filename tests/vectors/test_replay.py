"""``wscompat replay``: the client side of every vector over real loopback sockets.

The whole corpus replays as expected against wscompat servers started with each
vector's options; against the ``websockets`` library's server every vector is
classified; a silent server gives "no answer", a wrong one "different" with a diff, and
chunks and pauses reach the server as written.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as ws_serve

import wscompat
from wscompat.cli import echo
from wscompat.vectors.format import Vector, load, load_all, server_options
from wscompat.vectors.replay import STATUSES, ReplaySettings, replay_all, replay_vector
from wscompat.vectors.report import Outcome

Starter = Callable[..., Awaitable[wscompat.Server]]
ROOT = Path(__file__).parents[2]
CORPUS = sorted(load_all([ROOT / "vectors"]), key=lambda v: v.id)
FAST = {"timeout": 2.0, "settle": 0.15, "jobs": 16}
"""Replay settings for servers expected to answer every vector."""


def _groups() -> dict[str, list[Vector]]:
    groups: dict[str, list[Vector]] = {}
    for vector in CORPUS:
        groups.setdefault(json.dumps(vector.options, sort_keys=True), []).append(vector)
    return groups


def _failures(outcomes: list[Outcome]) -> str:
    return "\n".join(f"{o.id} [{o.status}] step {o.step}: {o.problem}\n  " + "\n  ".join(o.diff)
                     for o in outcomes if o.status != "expected")


async def test_the_whole_corpus_replays_against_wscompat(nursery: trio.Nursery) -> None:
    """One server per distinct ``options``, started with them; every vector expected."""
    outcomes: list[Outcome] = []
    with trio.fail_after(60):
        for group in _groups().values():
            options = server_options(group[0])
            server: wscompat.Server = await nursery.start(
                lambda task_status, o=options: wscompat.serve(
                    echo, "127.0.0.1", 0, options=o, task_status=task_status)
            )
            settings = ReplaySettings("127.0.0.1", server.port, server_options=group[0].options,
                                      **FAST)  # type: ignore[arg-type]
            outcomes += await replay_all(group, settings)
    assert len(outcomes) == len(CORPUS)
    assert all(o.status == "expected" for o in outcomes), _failures(outcomes)


@pytest.fixture
def websockets_echo() -> Iterator[int]:
    """The ``websockets`` library's own server, echoing, in a thread; its port."""

    def handler(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with ws_serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield int(server.socket.getsockname()[1])
        server.shutdown()
        thread.join(10)


async def test_replay_against_the_websockets_library_server(websockets_echo: int) -> None:
    settings = ReplaySettings("127.0.0.1", websockets_echo, timeout=1.0, settle=0.15, jobs=16)
    with trio.fail_after(60):
        outcomes = {o.id: o for o in await replay_all(CORPUS, settings)}
    assert len(outcomes) == len(CORPUS)
    assert {o.status for o in outcomes.values()} <= set(STATUSES)
    # Vectors that need other server options are skipped, never guessed at.
    assert {i for i, o in outcomes.items() if o.status == "skipped"} == {
        v.id for v in CORPUS if v.options
    }
    # An RFC 6455 echo server answers RFC 6455 framing as the vectors say...
    for vector_id in ("rfc6455/frame-text-hello", "rfc6455/frame-binary-64k",
                      "rfc6455/frame-fragmented-hello", "rfc6455/frame-ping-pong",
                      "rfc6455/close-1000", "rfc6455/bad-unmasked-frame"):
        assert outcomes[vector_id].status == "expected", _failures([outcomes[vector_id]])
    # ...its Date and Server headers are allowed by "vary"...
    assert outcomes["rfc6455/frame-text-hello"].status == "expected"
    # ...and it refuses the drafts before RFC 6455 with an HTTP error (hixie-76's key3,
    # left unread, may make the kernel reset the connection before the error arrives).
    for vector_id in ("hixie-75/handshake-draft-example", "hybi-07/frame-text-hello",
                      "hybi-08/frame-text-hello"):
        outcome = outcomes[vector_id]
        assert outcome.status == "different", vector_id
        assert outcome.step == 2 and any(line.startswith("+ HTTP/1.1 4") for line in
                                         outcome.diff), outcome.diff
    assert outcomes["hixie-76/handshake-draft-example"].status == "different"


async def test_the_replay_command_against_the_websockets_server(websockets_echo: int) -> None:
    command = [sys.executable, "-m", "wscompat", "replay", f"ws://127.0.0.1:{websockets_echo}/",
               str(ROOT / "vectors" / "rfc6455"), "--json", "--timeout", "1", "--jobs", "16"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                      check=False, env=env)
    assert done.returncode == 1, done.stderr.decode()[-2000:]  # some answers differ
    report = json.loads(done.stdout)
    assert report["command"] == "replay" and report["ok"] is False
    summary = report["summary"]["rfc6455"]
    assert summary["vectors"] == sum(summary[s] for s in STATUSES)
    assert summary["expected"] >= 15 and summary["different"] >= 1
    assert any("echo" in note for note in report["notes"])


async def test_the_replay_command_against_wscompat(start_server: Starter) -> None:
    # As ``wscompat serve`` does, accept the first subprotocol offered.
    server = await start_server(echo, select_subprotocol=lambda _, offered: offered[0])
    command = [sys.executable, "-m", "wscompat", "replay", f"ws://127.0.0.1:{server.port}/",
               str(ROOT / "vectors" / "hixie-76")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                      check=False, env=env)
    out = done.stdout.decode()
    assert done.returncode == 0, out[-3000:] + done.stderr.decode()[-2000:]
    assert "hixie-76 (" in out and "skipped" in out  # options vectors are listed, skipped


async def _serve_raw(nursery: trio.Nursery, handler: object) -> int:
    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


async def test_a_silent_server_is_no_answer(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        with trio.move_on_after(5):
            while await stream.receive_some(65536):
                pass

    port = await _serve_raw(nursery, silent)
    vector = load(ROOT / "vectors/rfc6455/frame-text-hello.json")
    with trio.fail_after(10):
        outcome = await replay_vector(vector, ReplaySettings("127.0.0.1", port, timeout=0.3))
    assert outcome.status == "no_answer"
    assert outcome.step == 2 and "sent nothing within 0.3 s" in outcome.problem


async def test_a_wrong_answer_is_different_with_a_diff(nursery: trio.Nursery) -> None:
    async def wrong(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n")
        await trio.sleep(5)

    port = await _serve_raw(nursery, wrong)
    vector = load(ROOT / "vectors/rfc6455/handshake-rfc-example.json")
    with trio.fail_after(10):
        outcome = await replay_vector(vector, ReplaySettings("127.0.0.1", port, timeout=1))
    assert outcome.status == "different" and outcome.step == 2
    assert "Sec-WebSocket-Accept: AAAA" in outcome.problem
    assert "+ Sec-WebSocket-Accept: AAAA\\r\\n" in outcome.diff
    assert "- Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\\r\\n" in outcome.diff


async def test_chunks_and_pauses_reach_the_server_as_written(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    arrivals: list[tuple[float, bytes]] = []

    async def log(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(65536):
            arrivals.append((trio.current_time(), bytes(data)))
            if b"".join(d for _, d in arrivals) == b"abcdefghij":
                await stream.send_all(b"ok")

    port = await _serve_raw(nursery, log)
    path = tmp_path / "chunks.json"
    path.write_text(json.dumps({
        "name": "pieces", "draft": "rfc6455", "source": "a test of replay's timing",
        "steps": [{"send": "abcdefg", "chunks": [3, 2]}, {"pause": 0.3}, {"send": "hij"},
                  {"expect": "ok"}],
        "end": {"eof": False},
    }), encoding="utf-8")
    settings = ReplaySettings("127.0.0.1", port, timeout=2, gap=0.05)
    with trio.fail_after(10):
        outcome = await replay_vector(load(path), settings)
    assert outcome.status == "expected", outcome.problem
    assert [d for _, d in arrivals] == [b"abc", b"de", b"fg", b"hij"]
    assert arrivals[3][0] - arrivals[2][0] >= 0.25
