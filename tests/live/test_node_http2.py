"""Node's built-in ``http2`` client opening WebSockets over HTTP/2 (RFC 8441).

``tests/peers/node/h2_client.js`` waits for the server's SETTINGS_ENABLE_CONNECT_PROTOCOL,
opens two extended CONNECT streams at once on one HTTP/2 session (over TLS with ALPN h2,
or cleartext with prior knowledge), echoes text and a 64 KiB binary message on each with
RFC 6455 frames it writes by hand, and closes with 1000. The server runs in the test's
process with a handler that records what it saw, so each test asserts on both ends: the
client's echoes and close, and the server's view that both WebSockets came over HTTP/2
on one TCP connection.
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import wscompat

from ..conftest import Starter
from .echo_recorder import HANDLER_TIMEOUT, Echoed, EchoRecorder

pytestmark = pytest.mark.live

CLIENT = Path(__file__).parents[1] / "peers" / "node" / "h2_client.js"
CLIENT_TIMEOUT = 60.0
"""The whole client run; the client gives up after 30 s itself, with a report."""

# What h2_client.js sends on every WebSocket, in this order.
TEXTS = ["Hello, wscompat over h2! ~ 0123456789", "中文字符 over h2", "😀🎉 over h2"]
BINARY = bytes(i % 251 for i in range(65536))
PATHS = ["/one", "/two?room=2"]


@dataclass
class Seen(Echoed):
    """The server's view of one WebSocket."""

    path: str
    http_version: str
    generation: str
    draft: wscompat.Draft
    secure: bool
    remote: tuple[str, int] | None
    origin: str | None
    subprotocol: str | None


class Recorder(EchoRecorder):
    """An echo handler that notes what each WebSocket looked like from the server."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    async def handler(self, ws: wscompat.Connection) -> None:
        seen = Seen(ws.path, ws.http_version, ws.generation, ws.draft, ws.secure, ws.remote,
                    ws.origin, ws.subprotocol)
        self.seen.append(seen)
        await self.echo(ws, seen)


def closed_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of the server's one-line logs of WebSockets that ended."""
    return [r.fields for r in caplog.records  # type: ignore[attr-defined]
            if getattr(r, "event", None) == "closed"]


def node_or_fail() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: these tests need Node.js (tests/run.sh installs "
                    "it with apt-get install npm)", pytrace=False)
    return node


async def run_client(url: str, *args: str) -> dict[str, Any]:
    """Run h2_client.js to its end and return its JSON report."""
    command = [node_or_fail(), str(CLIENT), url, *args]
    with trio.fail_after(CLIENT_TIMEOUT):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                      stdin=subprocess.DEVNULL, check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"h2_client.js exited {done.returncode}:\n{out}\n{err}"
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def tls_server_context(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate for 127.0.0.1 from a fresh CA, and the CA's file for the client."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file


def assert_echoed(result: dict[str, Any], path: str) -> None:
    """The client's side of one WebSocket: every echo intact, the close answered."""
    assert result["errors"] == [], result
    assert result["path"] == path
    assert result["status"] == 200
    echoes = result["echoes"]
    assert [e["ok"] for e in echoes] == [True] * 4, echoes
    assert [e["kind"] for e in echoes] == ["text", "text", "text", "binary"], echoes
    assert [e["text"] for e in echoes[:3]] == TEXTS
    assert [e["byteLength"] for e in echoes] == [*(len(t.encode()) for t in TEXTS), len(BINARY)]
    assert result["close"] == {"code": 1000, "reason": "done"}
    # The server ended the stream after the closing handshake, without a reset.
    assert result["streamEnded"] is True
    assert result["rstCode"] is None


def assert_one_h2_connection(seen: list[Seen], *, secure: bool) -> None:
    """The server's side: both WebSockets over HTTP/2, from one client port."""
    assert sorted(s.path for s in seen) == sorted(PATHS)
    for s in seen:
        assert (s.http_version, s.generation, s.draft) == ("2", "rfc8441", wscompat.Draft.RFC6455)
        assert s.secure is secure
        assert s.messages == [*TEXTS, BINARY]
        assert [type(m) for m in s.messages] == [str, str, str, bytes]
        assert (s.close_code, s.close_reason, s.closed_by) == (1000, "done", "peer")
    remotes = {s.remote for s in seen}
    assert len(remotes) == 1, remotes  # one TCP connection carried both streams
    assert next(iter(remotes)) is not None


async def run_both_paths(recorder: Recorder, url: str, *args: str) -> dict[str, Any]:
    """h2_client.js on both ``PATHS`` at once: each end saw every echo and the close,
    over one HTTP/2 connection (ALPN h2 for https, h2c with prior knowledge for http)."""
    report = await run_client(url, *args, "--path", PATHS[0], "--path", PATHS[1])
    assert report["errors"] == [], report
    secure = url.startswith("https:")
    assert report["alpn"] == ("h2" if secure else "h2c")
    assert report["enableConnectProtocol"] is True
    assert len(report["results"]) == 2
    for result, path in zip(report["results"], PATHS, strict=True):
        assert_echoed(result, path)
    await recorder.wait_ended(2)
    assert_one_h2_connection(recorder.seen, secure=secure)
    return report


async def test_node_h2_over_tls(start_server: Starter, tmp_path: Path) -> None:
    context, ca_file = tls_server_context(tmp_path)
    recorder = Recorder()
    server = await start_server(recorder.handler, ssl_context=context)
    report = await run_both_paths(recorder, f"https://127.0.0.1:{server.port}",
                                  "--ca", str(ca_file))
    assert [result["subprotocol"] for result in report["results"]] == [None, None]
    assert [s.origin for s in recorder.seen] == [None, None]


async def test_node_h2_cleartext_prior_knowledge(
    start_server: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wscompat.server")
    recorder = Recorder()
    server = await start_server(recorder.handler)
    await run_both_paths(recorder, f"http://127.0.0.1:{server.port}")

    # Each WebSocket gets its log line, as over HTTP/1.1, timed from its own start.
    with trio.fail_after(HANDLER_TIMEOUT):
        while len(closed := closed_logs(caplog)) < 2:
            await trio.sleep(0.05)
    for fields in closed:
        assert (fields["draft"], fields["transport"], fields["close"]) == (
            "rfc8441", "plain", 1000)
        assert fields["bytes_in"] > len(BINARY) and fields["bytes_out"] > len(BINARY)
        assert 0 <= fields["duration"] < CLIENT_TIMEOUT
    # The query is left out of logs unless log_query is set.
    assert sorted(f["path"].partition("?")[0] for f in closed) == ["/one", "/two"]


async def test_node_h2_subprotocol_and_origin(start_server: Starter, tmp_path: Path) -> None:
    context, ca_file = tls_server_context(tmp_path)
    recorder = Recorder()
    server = await start_server(recorder.handler, ssl_context=context,
                                subprotocols=["superchat"], origins=["https://app.example"])
    common = ["--ca", str(ca_file), "--protocol", "chat, superchat"]
    url = f"https://127.0.0.1:{server.port}"
    report = await run_both_paths(recorder, url, *common, "--origin", "https://app.example")
    assert [result["subprotocol"] for result in report["results"]] == ["superchat"] * 2
    assert [(s.origin, s.subprotocol) for s in recorder.seen] == [
        ("https://app.example", "superchat")
    ] * 2

    # The origin policy refuses over HTTP/2 with the status HTTP/1.1 gives (403), and
    # the handler never runs.
    refused = await run_client(url, *common, "--origin", "https://evil.example")
    assert refused["errors"] == [], refused
    [result] = refused["results"]
    assert result["errors"] == [], result
    assert result["status"] == 403
    assert "origin" in result["body"].lower(), result
    assert result["echoes"] == []
    assert len(recorder.seen) == 2


async def test_node_h2_reset_leaves_the_other_stream(start_server: Starter) -> None:
    """A stream reset in mid-exchange ends its WebSocket alone: the other one, paused
    in mid-exchange until the reset is done, then finishes on the same connection."""
    recorder = Recorder()
    server = await start_server(recorder.handler)
    url = f"http://127.0.0.1:{server.port}"
    report = await run_client(url, "--path", PATHS[0], "--path", PATHS[1], "--reset", PATHS[0])

    assert report["errors"] == [], report
    aborted, finished = report["results"]
    assert aborted["errors"] == [], aborted
    assert aborted["reset"] is True
    assert [e["ok"] for e in aborted["echoes"]] == [True]
    assert_echoed(finished, PATHS[1])

    await recorder.wait_ended(2)
    by_path = {s.path: s for s in recorder.seen}
    assert by_path[PATHS[0]].messages == TEXTS[:1]
    assert by_path[PATHS[0]].close_code == 1006  # no closing handshake: the stream is gone
    assert by_path[PATHS[1]].messages == [*TEXTS, BINARY]
    assert (by_path[PATHS[1]].close_code, by_path[PATHS[1]].closed_by) == (1000, "peer")
    assert by_path[PATHS[0]].remote == by_path[PATHS[1]].remote

    # The server goes on serving new HTTP/2 connections.
    again = await run_client(url)
    assert again["errors"] == [], again
    assert_echoed(again["results"][0], "/")
    await recorder.wait_ended(3)
    assert recorder.seen[2].http_version == "2"
