"""``wscompat replay``: the client side of every vector over real loopback sockets.

The whole corpus replays as expected against wscompat servers started with each
vector's options; against the ``websockets`` library's server every vector is
classified; a silent server gives "no answer", a wrong one "different" with a diff, and
chunks and pauses reach the server as written.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pty
import re
import socket
import ssl
import struct
import sys
import termios
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as ws_serve

import wscompat
from wscompat.cli import echo
from wscompat.vectors.format import (
    Vector,
    check,
    load,
    load_all,
    server_options,
    vector_files,
)
from wscompat.vectors.replay import (
    STATUSES,
    CannotConnect,
    ReplaySettings,
    replay_all,
    replay_vector,
    secure_expectations,
)
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
        "provenance": {"kind": "handwritten", "date": "2026-12-01"},
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


# -- for operators: long runs, unreachable servers, TLS ---------------------------------------


async def _replay_command(*argv: str, stderr: int | None = None) -> tuple[int, str, str]:
    """``wscompat replay ...`` in a subprocess, run from outside the checkout."""
    command = [sys.executable, "-m", "wscompat", "replay", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    where: dict[str, Any] = {"capture_stderr": True} if stderr is None else {"stderr": stderr}
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, check=False, env=env,
                                      cwd="/", **where)
    return done.returncode, done.stdout.decode(), (done.stderr or b"").decode()


async def test_options_go_anywhere_on_the_line(start_server: Starter) -> None:
    server = await start_server(echo, select_subprotocol=lambda _, offered: offered[0])
    paths = [str(ROOT / "vectors" / "hixie-75"), str(ROOT / "vectors" / "hybi-07")]
    code, out, err = await _replay_command(f"ws://127.0.0.1:{server.port}/", "--timeout", "1",
                                           paths[0], "--jobs", "8", paths[1], "--settle", "0.1")
    assert code == 0, out[-2000:] + err
    assert err == ""  # standard error is not a terminal: no progress bar
    assert "1 s per expected answer" in out
    count = len(vector_files(paths))
    assert re.search(rf"^total +{count} ", out, re.MULTILINE), out[-1000:]


def _closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_ends_the_run_in_one_line() -> None:
    """Not one "no answer" per vector: the first refusal ends the run (the corpus
    shipped by default)."""
    port = _closed_port()
    started = trio.current_time()
    code, out, err = await _replay_command(f"ws://127.0.0.1:{port}/", "--timeout", "5")
    assert code == 1
    assert out == ""
    assert err == f"wscompat replay: cannot connect to 127.0.0.1:{port}: Connection refused\n"
    assert trio.current_time() - started < 20


async def test_a_server_that_goes_away_ends_the_run(nursery: trio.Nursery) -> None:
    """Refused in the middle of a run: the run ends there too, saying how far it got."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = int(listener.getsockname()[1])

    async def once() -> None:
        connection, _ = await listener.accept()
        listener.close()  # no more connections after this one
        connection.close()

    nursery.start_soon(once)
    vectors = [v for v in CORPUS if v.draft.value == "rfc6455" and not v.options][:10]
    settings = ReplaySettings("127.0.0.1", port, timeout=1, settle=0.05, jobs=1)
    with trio.fail_after(20), pytest.raises(CannotConnect) as stop:
        await replay_all(vectors, settings)
    assert str(stop.value) == (f"cannot connect to 127.0.0.1:{port}: Connection refused "
                               "(1 vector was played)")


def test_over_tls_hixie_locations_say_wss() -> None:
    """What a hixie vector expects over TLS is what a wscompat server answers when it
    knows the connection is secure, port rule included (example.com:80 keeps its port
    under wss, example.com:443 loses it)."""
    hixie = [v for v in CORPUS if v.draft.value in ("hixie-75", "hixie-76") and not v.options]
    changed = 0
    for vector in hixie:
        secure = secure_expectations(vector)
        changed += secure != vector
        result = check(dataclasses.replace(secure, options={"secure": True}))
        assert result.ok, (vector.id, result.problem, result.expected[:300], result.actual)
    assert changed >= 30
    default_port = secure_expectations(load(ROOT / "vectors/hixie-75/"
                                            "location-default-port-omitted.json"))
    assert b"WebSocket-Location: wss://example.com:80/demo\r\n" in default_port.steps[1].data
    written_for_tls = load(ROOT / "vectors/hixie-75/location-secure.json")
    assert secure_expectations(written_for_tls) == written_for_tls
    rfc6455 = load(ROOT / "vectors/rfc6455/handshake-rfc-example.json")
    assert secure_expectations(rfc6455) is rfc6455


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(start_server: Starter, ca: trustme.CA) -> wscompat.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return await start_server(echo, select_subprotocol=lambda _, offered: offered[0],
                              ssl_context=context)


async def test_the_whole_corpus_replays_over_tls(start_server: Starter, ca: trustme.CA) -> None:
    """Over wss:// every vector is answered as expected, hixie locations and hixie-75's
    half-close (a TLS close_notify) included."""
    client = ssl.create_default_context()
    ca.configure_trust(client)
    outcomes: list[Outcome] = []
    with trio.fail_after(60):
        for group in _groups().values():
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            options = dataclasses.replace(server_options(group[0]), ssl_context=context)
            server = await start_server(echo, options=options)
            settings = ReplaySettings("127.0.0.1", server.port, True, ssl_context=client,
                                      server_options=group[0].options,
                                      **FAST)  # type: ignore[arg-type]
            outcomes += await replay_all(group, settings)
    assert len(outcomes) == len(CORPUS)
    assert all(o.status == "expected" for o in outcomes), _failures(outcomes)


async def test_tls_errors_are_shown_and_cafile_or_insecure_gets_past_them(
    tls_server: wscompat.Server, ca: trustme.CA, tmp_path: Path
) -> None:
    url, hixie75 = f"wss://127.0.0.1:{tls_server.port}/", str(ROOT / "vectors" / "hixie-75")
    code, out, err = await _replay_command(url, hixie75)
    assert code == 1 and out == ""
    assert err.startswith(f"wscompat replay: TLS handshake with 127.0.0.1:{tls_server.port} "
                          "failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert err.endswith("(--cafile names the CA that signed the server's certificate; "
                        "--insecure skips the check)\n") and err.count("\n") == 1
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    for flags in (["--cafile", str(cafile)], ["--insecure"]):
        code, out, err = await _replay_command(url, *flags, hixie75, "--timeout", "1")
        assert code == 0, [*flags, out[-2000:], err]
        assert re.search(r"^hixie-75 +30 +23 +0 +0 +7$", out, re.MULTILINE), out[-1000:]


async def test_tls_flags_are_checked_before_the_run(tmp_path: Path) -> None:
    cases = [
        (["ws://127.0.0.1:1/", "--insecure"], "--cafile and --insecure are for wss:// URLs"),
        (["wss://127.0.0.1:1/", "--cafile", str(tmp_path / "none.pem")],
         f"--cafile {tmp_path / 'none.pem'}: No such file or directory"),
        (["wss://127.0.0.1:1/", "--cafile", str(ROOT / "README.md")],
         f"--cafile {ROOT / 'README.md'}: [X509: NO_CERTIFICATE_OR_CRL_FOUND]"),
        (["wss://127.0.0.1:1/", "--cafile", "x", "--insecure"], "not allowed with argument"),
    ]
    for argv, words in cases:
        code, out, err = await _replay_command(*argv)
        assert code == 2 and out == "", argv
        assert words in err, (argv, err)


async def test_a_progress_bar_when_standard_error_is_a_terminal(start_server: Starter) -> None:
    server = await start_server(echo, select_subprotocol=lambda _, offered: offered[0])
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    os.set_blocking(controller, False)
    shown = bytearray()

    async def read_terminal() -> None:
        while True:
            await trio.lowlevel.wait_readable(controller)
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the command has ended and the terminal is closed
                return
            if not data:
                return
            shown.extend(data)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_terminal)
            code, out, _ = await _replay_command(
                f"ws://127.0.0.1:{server.port}/", str(ROOT / "vectors" / "hixie-76"),
                "--jobs", "2", stderr=terminal)
            os.close(terminal)
            terminal = -1
            with trio.move_on_after(5):
                while True:  # what the command wrote is read before the nursery ends
                    before = len(shown)
                    await trio.sleep(0.2)
                    if len(shown) == before:
                        break
            nursery.cancel_scope.cancel()
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert code == 0, out[-2000:]
    text = shown.decode(errors="replace")
    assert re.search(r"replay: +\d+%\|.*\| \d+/31 ", text), text[-1000:]
    assert "vector/s" in text
    assert "total " in out and "replay:" not in out  # the report alone on standard output
