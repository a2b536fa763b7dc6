"""wscompat behind a real HTTP-mode reverse proxy: haproxy (``mode http``) on loopback.

Each test writes an haproxy configuration into its temporary directory, starts
``haproxy -f <cfg> -db`` in front of a wscompat server running in the test's process,
waits until haproxy accepts connections, talks through it, and kills haproxy at the end
whatever happened. haproxy's traffic log (``option httplog``) goes to a file that the
tests read to tell a refusal by haproxy from a refusal by wscompat.

What haproxy 2.4 and later do with the WebSocket drafts, as these tests pin down:

* RFC 6455 and hybi-10 (version 8) clients pass through and are tunnelled after the 101.
* hixie-75 and hixie-76 requests are refused by haproxy itself with 400 before any
  backend is chosen: its HTTP/1 parser rejects an ``Upgrade: websocket`` request that
  has no 24-character ``Sec-WebSocket-Key``, and a 101 answer to one that has no
  ``Sec-WebSocket-Accept`` (502). ``option accept-invalid-http-request`` and
  ``accept-invalid-http-response`` do not turn that check off in haproxy 2.6.
* A hixie-76 request sent with ``Content-Length: 8`` (as Perl's Protocol::WebSocket
  sends) is forwarded as a request with a body: haproxy removes its ``Upgrade`` header,
  so wscompat answers 400.
* For upgrade requests it does forward, haproxy holds back every byte after the request
  head until the backend's 101 arrives. For hixie-76 those bytes are key3: a backend
  that waits for key3 before answering never gets it (the deadlock that
  ``hixie76_early_head`` avoids), while one that answers the head first does.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.sync.client import connect

import wscompat
from wscompat import Draft

from .legacy_helpers import (
    CLOSE_CODE,
    KEY1,
    KEY2,
    KEY3,
    MESSAGES,
    PERL_DRAFTS,
    Recorder,
    accepts,
    check_close,
    check_echoes,
    check_handshake,
    free_port,
    hixie76_answer,
    hixie_request,
    read_until,
    require_perl_websocket,
    run_perl_client,
)

pytestmark = pytest.mark.live

Starter = Callable[..., Awaitable[wscompat.Server]]

TEST_TIMEOUT = 60.0
START_TIMEOUT = 10.0
"""Seconds for haproxy to start accepting connections."""
STUCK_TIMEOUT = 2.0
"""How long a handshake that should not complete is given before we call it stuck."""

# Protocol reference §9.1 vector A: the hixie-76 example keys and their answer.
ANSWER = b"8jKS'y:G*Co,Wxa-"
HAPROXY_400_BODY = b"Your browser sent an invalid request."

CONFIG = """\
global
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 30s

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    server ws 127.0.0.1:{backend_port}
"""


# -- haproxy -----------------------------------------------------------------------------


@dataclass
class HAProxy:
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, *needles: str, timeout: float = 5.0) -> str:
        """The first log line containing every needle (haproxy logs when a stream ends)."""
        with trio.move_on_after(timeout):
            while True:
                for line in self.log().splitlines():
                    if all(n in line for n in needles):
                        return line
                await trio.sleep(0.05)
        raise AssertionError(f"no haproxy log line with {needles}; log:\n{self.log()}")


def _haproxy_binary() -> str:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.fail("haproxy is not installed; install the Debian package haproxy "
                    "(tests/run.sh does)", pytrace=False)
    return binary




@asynccontextmanager
async def run_haproxy(backend_port: int, workdir: Path, config_template: str = CONFIG
                      ) -> AsyncIterator[HAProxy]:
    """haproxy in front of ``backend_port``; killed and reaped on exit, always."""
    binary = _haproxy_binary()
    for attempt in range(5):  # the free port may be taken before haproxy binds it
        port = free_port()
        config = workdir / f"haproxy-{attempt}.cfg"
        config.write_text(config_template.format(port=port, backend_port=backend_port))
        log_path = workdir / f"haproxy-{attempt}.log"
        with log_path.open("wb") as log_file:
            process = await trio.lowlevel.open_process(
                [binary, "-f", str(config), "-db"],
                stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=log_file,
            )
        try:
            with trio.fail_after(START_TIMEOUT):
                while process.poll() is None and not await accepts(port):
                    await trio.sleep(0.05)
            await trio.sleep(0.1)  # a haproxy that lost the port to another listener exits
            if process.poll() is None:
                yield HAProxy(port, log_path)
                return
        finally:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await process.wait()
    pytest.fail(f"haproxy did not start; its output:\n{log_path.read_text(errors='replace')}")


# -- raw clients ---------------------------------------------------------------------------


def head_and_answer(data: bytes) -> bool:
    _, sep, rest = data.partition(b"\r\n\r\n")
    return bool(sep) and len(rest) >= 16


# -- RFC 6455 and hybi-10 pass through --------------------------------------------------------


def _websockets_round_trip(port: int, path: str) -> dict[str, Any]:
    """The ``websockets`` library's client, in a worker thread; every step has a timeout."""
    with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10, close_timeout=10,
                 max_size=2**21) as ws:
        received = []
        for message in MESSAGES:
            ws.send(message)
            received.append(ws.recv(timeout=10))
        ws.close(CLOSE_CODE, "bye through haproxy")
    assert ws.response is not None
    return {
        "received": received,
        "status": ws.response.status_code,
        "close_code": ws.close_code,
    }


async def test_rfc6455_client_through_haproxy(start_server: Starter, tmp_path: Path) -> None:
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_haproxy(server.port, tmp_path) as proxy:
            result = await trio.to_thread.run_sync(
                _websockets_round_trip, proxy.port, "/via-haproxy", abandon_on_cancel=True
            )
            seen = await recorder.only()
            line = await proxy.wait_for_log("be/ws", " 101 ")
    assert result["status"] == 101
    assert result["received"] == MESSAGES
    assert result["close_code"] == CLOSE_CODE
    assert seen.draft is Draft.RFC6455
    assert seen.messages == MESSAGES
    assert seen.close_code == CLOSE_CODE
    assert '"GET /via-haproxy HTTP/1.1"' in line


@pytest.mark.parametrize("perl_draft", ["draft-ietf-hybi-10", "draft-ietf-hybi-17"],
                         ids=["hybi-10", "hybi-17"])
async def test_perl_hybi_client_through_haproxy(
    start_server: Starter, tmp_path: Path, perl_draft: str
) -> None:
    await require_perl_websocket()
    draft = PERL_DRAFTS[perl_draft]
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_haproxy(server.port, tmp_path) as proxy:
            run = await run_perl_client(proxy.port, perl_draft, MESSAGES, path="/perl")
            seen = await recorder.only()
    assert not run.errors, run
    assert run.returncode == 0, run
    check_handshake(run, draft, proxy.port, "/perl")
    check_echoes(run)
    check_close(run, draft)
    assert seen.draft is draft
    assert seen.messages == MESSAGES


# -- hixie drafts: what haproxy does with them ------------------------------------------------


@pytest.mark.parametrize("draft", [Draft.HIXIE75, Draft.HIXIE76], ids=["hixie-75", "hixie-76"])
async def test_haproxy_refuses_hixie_upgrades_itself(
    start_server: Starter, tmp_path: Path, draft: Draft
) -> None:
    """haproxy answers 400 without choosing a backend: wscompat never sees the request."""
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_haproxy(server.port, tmp_path) as proxy:
            stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            async with stream:
                request = hixie_request(proxy.port, "/hixie", draft)
                await stream.send_all(request + (KEY3 if draft is Draft.HIXIE76 else b""))
                data, _ = await read_until(stream, lambda d: HAPROXY_400_BODY in d, 5)
            line = await proxy.wait_for_log("fe/<NOSRV>")
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert HAPROXY_400_BODY in data
    assert " 400 " in line
    assert "PR--" in line, "refused by the proxy while parsing the request"
    assert recorder.seen == []


async def test_haproxy_strips_upgrade_from_perl_hybi00_request(
    start_server: Starter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Perl's hybi-00 request has Content-Length: 8, so haproxy forwards key3 as a body
    and removes ``Upgrade``; wscompat then refuses a request that is no longer an upgrade."""
    await require_perl_websocket()
    caplog.set_level(logging.INFO, logger="wscompat.server")
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_haproxy(server.port, tmp_path) as proxy:
            run = await run_perl_client(proxy.port, "draft-ietf-hybi-00", ["never sent"])
            line = await proxy.wait_for_log("be/ws", '"GET / HTTP/1.1"')
    assert run.returncode != 0
    [error] = run.errors
    assert error["stage"] == "handshake"
    assert "HTTP/1.1 400 " in error["message"]
    assert " 400 " in line, "the 400 came from the backend"
    assert any("rejected 400 missing Upgrade: websocket" in r.getMessage()
               for r in caplog.records), caplog.text
    assert recorder.seen == []


# -- the key3 hold-back, shown with a stand-in backend --------------------------------------


@dataclass
class BackendReport:
    with_head: bytes = b""
    key3: bytes = b""
    key3_after_head_sent: bool = False
    done: trio.Event = field(default_factory=trio.Event)


async def _stand_in_hixie76_backend(
    stream: trio.SocketStream, report: BackendReport, *, early_head: bool
) -> None:
    """A minimal hixie-76 server that answers the way haproxy 2.4+ lets through (its 101
    carries a dummy ``Sec-WebSocket-Accept``). ``early_head`` sends the 101 head before
    key3 arrives, as wscompat does by default; otherwise it waits for key3 first."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        head += chunk
    head, _, report.with_head = head.partition(b"\r\n\r\n")
    response = (
        b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n"
        b"Sec-WebSocket-Location: ws://127.0.0.1/holdback\r\n"
        b"Sec-WebSocket-Accept: not-checked-by-haproxy\r\n\r\n"
    )
    if early_head:
        await stream.send_all(response)
    # Waits longer than the client does, so the client gives up while this end still
    # waits (and no 502 for a vanished backend can reach the client first).
    key3, eof = await read_until(stream, lambda d: len(d) >= 8, STUCK_TIMEOUT + 1.5)
    report.key3 = report.with_head + key3
    report.key3_after_head_sent = early_head and len(report.key3) >= 8
    if len(report.key3) >= 8 and not eof:
        answer = hixie76_answer(KEY1, KEY2, report.key3[:8])
        await stream.send_all(answer if early_head else response + answer)
    report.done.set()


@pytest.mark.parametrize("early_head", [True, False], ids=["early-head", "head-after-key3"])
async def test_haproxy_holds_key3_until_the_101(tmp_path: Path, early_head: bool) -> None:
    """The mechanism ``hixie76_early_head`` exists for, on the real proxy. The request
    carries an extra ``Sec-WebSocket-Key`` only so that haproxy 2.4+ forwards it."""
    report = BackendReport()
    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            backend_port = int(listeners[0].socket.getsockname()[1])

            async def serve_one(stream: trio.SocketStream) -> None:
                async with stream:
                    await _stand_in_hixie76_backend(stream, report, early_head=early_head)

            await nursery.start(trio.serve_listeners, serve_one, listeners)
            async with run_haproxy(backend_port, tmp_path) as proxy:
                stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
                async with stream:
                    request = hixie_request(proxy.port, "/holdback", Draft.HIXIE76,
                                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
                    started = time.monotonic()
                    await stream.send_all(request + KEY3)  # head and key3 in one write
                    data, _ = await read_until(stream, head_and_answer, STUCK_TIMEOUT)
                    waited = time.monotonic() - started
                    await report.done.wait()  # stay connected until the backend is done
            nursery.cancel_scope.cancel()

    assert report.with_head == b"", "haproxy never forwards key3 together with the head"
    if early_head:
        head, _, answer = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert answer == ANSWER, "key3 reached the backend once the 101 head had passed"
        assert report.key3_after_head_sent
    else:
        assert data == b"", f"nothing may come back while key3 is held; got {data!r}"
        assert report.key3 == b"", "key3 stays in haproxy while the backend waits for it"
        assert waited >= STUCK_TIMEOUT - 0.1


# -- RFC 8441 through haproxy's HTTP/2 frontend ---------------------------------------------

H2_FRONTEND = CONFIG.replace("    bind 127.0.0.1:{port}\n", "    bind 127.0.0.1:{port} proto h2\n")


@pytest.mark.parametrize(("server_line", "reached_as"), [
    ("", ("1.1", "rfc6455")),
    (" proto h2", ("2", "rfc8441")),
], ids=["to-http11", "to-http2"])
async def test_an_rfc8441_client_through_haproxy(
    start_server: Starter, tmp_path: Path, server_line: str, reached_as: tuple[str, str]
) -> None:
    """haproxy's HTTP/2 frontend (cleartext, ``proto h2``) advertises extended CONNECT,
    so wscompat's client opens an RFC 8441 stream through it. haproxy turns it into an
    HTTP/1.1 upgrade to wscompat, or, with ``proto h2`` on the server line, passes it on
    as RFC 8441 on an HTTP/2 connection (docs/deployment.md)."""
    seen: list[tuple[str, str]] = []

    async def handler(ws: wscompat.Connection) -> None:
        seen.append((ws.http_version, ws.generation))
        async for message in ws:
            await ws.send(message)

    config = H2_FRONTEND.replace("server ws 127.0.0.1:{backend_port}",
                                 "server ws 127.0.0.1:{backend_port}" + server_line)
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(handler)
        async with run_haproxy(server.port, tmp_path, config) as proxy:
            url = f"ws://127.0.0.1:{proxy.port}/over-h2"
            async with wscompat.connect(url, http2=True) as ws:
                assert ws.http_version == "2"
                for message in ("hello", "中文 😀", bytes(range(256)) * 300):
                    await ws.send(message)
                    assert await ws.receive() == message
    assert seen == [reached_as]
