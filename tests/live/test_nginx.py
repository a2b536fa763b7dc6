"""wscompat behind nginx as an HTTP reverse proxy, on loopback.

Each test writes an nginx configuration into its temporary directory (``daemon off``,
one worker, pid file, logs and every temp path in that directory), starts
``nginx -c <conf> -p <dir>`` in a process group of its own in front of a wscompat server
running in the test's process, waits until nginx has written its pid file and accepts
connections, talks through it, and at the end stops the whole group (master and worker),
reaps the master and checks that no process of the group is left, whatever happened.

The proxy configuration is the usual one for WebSockets::

    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection "upgrade";
    proxy_set_header Host $http_host;

What nginx 1.22 does with the drafts, as these tests pin down:

* It forwards the request head, then holds back every byte after it until the backend's
  101 arrives. For hixie-76 those bytes are key3: with ``hixie76_early_head`` (the
  default) wscompat answers the head first, key3 then passes and the 16-byte answer
  follows; without it, the handshake never completes: once wscompat's
  ``handshake_timeout`` closes the backend connection, nginx answers 502, then parses
  the held key3 as a pipelined request and answers 400.
* In the 101 it relays, nginx keeps the backend's status line byte for byte, inserts
  ``Server`` and ``Date`` after it, writes its own ``Connection: upgrade`` (lower case)
  and then the backend's other headers (``Upgrade: WebSocket``, ...) in their order.
  hixie-76 and RFC 6455 clients accept that. A hixie-75 client does not: it compares the
  first 85 bytes of the response literally, and they now differ from byte 44 on.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.sync.client import connect as websockets_connect

import wscompat
from wscompat import Draft, HandshakeRejected
from wscompat.trio.client import connect

from .legacy_helpers import (
    KEY1,
    KEY2,
    KEY3,
    MESSAGES,
    Recorder,
    accepts,
    free_port,
    header,
    hixie76_answer,
    hixie_request,
    parse_head,
    read_until,
)

pytestmark = pytest.mark.live

Starter = Callable[..., Awaitable[wscompat.Server]]

NGINX = "/usr/sbin/nginx"
TEST_TIMEOUT = 60.0
START_TIMEOUT = 10.0
"""Seconds for nginx to write its pid file and accept connections."""
STOP_TIMEOUT = 5.0
"""Seconds for each step of stopping nginx (SIGTERM, then SIGKILL) and for its group
to be gone."""
STUCK_TIMEOUT = 1.5
"""How long a handshake that should not complete is given before we call it stuck."""
IO_TIMEOUT = 5.0
"""Seconds for a reply that should come (well under TEST_TIMEOUT, for clearer failures)."""
NO_EARLY_HEAD_HANDSHAKE_TIMEOUT = 3.0

ORIGIN = "http://example.com"
# Protocol reference §9.1 vector A: the hixie-76 example keys and their answer.
ANSWER = b"8jKS'y:G*Co,Wxa-"
# What a hixie-75 client compares literally with the start of the response.
HIXIE75_PREFIX = (
    b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
)
HIXIE75_STATUS_LINE = b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
HIXIE76_STATUS_LINE = "HTTP/1.1 101 WebSocket Protocol Handshake"
HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
BINARY_MESSAGES = [b"\x00\xff\x80 binary \xfe", bytes(range(256)) * 280]

CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
lock_file {dir}/nginx.lock;
error_log {dir}/error.log info;

events {{
    worker_connections 64;
}}

http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_read_timeout 10s;
        }}
    }}
}}
"""


# -- nginx ---------------------------------------------------------------------------------


@dataclass
class Nginx:
    port: int
    workdir: Path

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    async def wait_for_log(self, name: str, *needles: str, timeout: float = IO_TIMEOUT) -> str:
        """The first line of log ``name`` containing every needle (the access log line
        is written when the proxied connection ends)."""
        with trio.move_on_after(timeout):
            while True:
                for line in self.log(name).splitlines():
                    if all(n in line for n in needles):
                        return line
                await trio.sleep(0.05)
        raise AssertionError(f"no line with {needles} in nginx's {name}:\n{self.log(name)}")


def nginx_binary() -> str:
    binary = shutil.which("nginx") or (NGINX if os.access(NGINX, os.X_OK) else None)
    if binary is None:
        pytest.fail("nginx is not installed; install the Debian package nginx-light "
                    "(tests/run.sh does)", pytrace=False)
    return binary


def _pid_written(pid_file: Path, pid: int) -> bool:
    """nginx writes its pid file only once its listening sockets are bound."""
    try:
        return pid_file.read_text().strip() == str(pid)
    except OSError:
        return False


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


async def stop_nginx(process: trio.Process) -> None:
    """Stop nginx's process group: SIGTERM (the master reaps its worker and exits), SIGKILL
    if anything lingers; reap the master and check that the group is empty."""
    group = process.pid  # started with start_new_session: the master leads the group
    with trio.CancelScope(shield=True):
        _signal_group(group, signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
        if process.returncode is None or _group_alive(group):
            _signal_group(group, signal.SIGKILL)
            with trio.move_on_after(STOP_TIMEOUT):
                await process.wait()
        with trio.move_on_after(STOP_TIMEOUT):
            while _group_alive(group):
                await trio.sleep(0.05)
    left_behind = _group_alive(group)
    if left_behind:
        _signal_group(group, signal.SIGKILL)
    assert process.returncode is not None, f"the nginx master {group} did not exit"
    assert not left_behind, f"a process of nginx's group {group} is still there"


@asynccontextmanager
async def run_nginx(backend_port: int, workdir: Path, config_template: str = CONFIG
                    ) -> AsyncIterator[Nginx]:
    """nginx in front of ``backend_port``; its whole process group is stopped on exit."""
    binary = nginx_binary()
    output = ""
    for attempt in range(5):  # the free port may be taken before nginx binds it
        rundir = workdir / f"nginx-{attempt}"
        rundir.mkdir()
        port = free_port()
        config = rundir / "nginx.conf"
        config.write_text(config_template.format(dir=rundir, port=port,
                                                 backend_port=backend_port))
        stderr_path = rundir / "stderr.log"
        with stderr_path.open("wb") as stderr_file:
            process = await trio.lowlevel.open_process(
                [binary, "-e", str(rundir / "startup.log"), "-c", str(config), "-p", str(rundir)],
                stdin=subprocess.DEVNULL, stdout=stderr_file, stderr=stderr_file,
                start_new_session=True,
            )
        try:
            ready = False
            with trio.move_on_after(START_TIMEOUT):
                while process.poll() is None and not ready:
                    ready = _pid_written(rundir / "nginx.pid", process.pid) and (
                        await accepts(port)
                    )
                    if not ready:
                        await trio.sleep(0.05)
            if ready:
                yield Nginx(port, rundir)
                return
            exited = process.poll() is not None
        finally:
            await stop_nginx(process)
        output = "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')}"
            for path in sorted(rundir.glob("*.log"))
        )
        if not exited or "Address already in use" not in output:
            break  # only a lost port is worth another attempt
    pytest.fail(f"nginx did not start; its output:\n{output}", pytrace=False)


# -- raw clients ---------------------------------------------------------------------------


def has_head(data: bytes) -> bool:
    return b"\r\n\r\n" in data


def split_head(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, header fields (in order, names as sent) and the bytes after the head."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data!r}"
    status, fields = parse_head(head.decode("latin-1"))
    return status, fields, rest


def first_difference(a: bytes, b: bytes) -> int:
    """The offset of the first byte where ``a`` and ``b`` differ."""
    pairs = enumerate(zip(a, b, strict=False))
    return next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))


def check_nginx_headers(fields: list[tuple[str, str]]) -> None:
    """The two headers nginx inserts right after the status line of every response."""
    assert [name for name, _ in fields[:2]] == ["Server", "Date"], fields
    assert fields[0][1].startswith("nginx"), fields
    assert HTTP_DATE.fullmatch(fields[1][1]), fields


# -- hixie-76 -----------------------------------------------------------------------------------


async def test_hixie76_client_through_nginx(start_server: Starter, tmp_path: Path) -> None:
    """wscompat's hixie-76 client (which checks the MD5 answer and the echoed location and
    origin) echoes every message through nginx and closes with 0xFF 0x00."""
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_nginx(server.port, tmp_path) as proxy:
            url = f"ws://127.0.0.1:{proxy.port}/hixie76?via=nginx"
            received: list[str | bytes] = []
            async with connect(url, draft=Draft.HIXIE76, origin=ORIGIN,
                               open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT) as ws:
                assert ws.draft is Draft.HIXIE76
                for message in MESSAGES:
                    await ws.send(message)
                    with trio.fail_after(IO_TIMEOUT):
                        received.append(await ws.receive())
            seen = await recorder.only()
            line = await proxy.wait_for_log("access.log", '"GET /hixie76?via=nginx HTTP/1.1" 101 ')
    assert received == MESSAGES
    assert (ws.close_code, ws.stats.closed_by) == (1000, "local"), "server answered 0xFF 0x00"
    assert seen.draft is Draft.HIXIE76
    assert seen.path == "/hixie76?via=nginx"
    assert seen.messages == MESSAGES, "every message arrived, in order"
    assert (seen.close_code, seen.closed_by) == (1000, "peer")
    assert seen.header("Host") == f"127.0.0.1:{proxy.port}", "the location names nginx"
    assert seen.header("Connection") == "upgrade", "nginx's own Connection header"
    assert seen.header("Origin") == ORIGIN
    assert line.startswith("127.0.0.1 ")


async def test_hixie76_head_passes_nginx_before_key3(
    start_server: Starter, tmp_path: Path
) -> None:
    """With ``hixie76_early_head`` (the default) the 101 head reaches the client through
    nginx before the client has sent key3; key3 then reaches wscompat, whose answer is
    the MD5 the draft defines, recomputed here."""
    recorder = Recorder()
    text = "raw frame 中文 😀"
    assert hixie76_answer(KEY1, KEY2, KEY3) == ANSWER, "the reference vector itself"
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_nginx(server.port, tmp_path) as proxy:
            stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            async with stream:
                await stream.send_all(hixie_request(proxy.port, "/early", Draft.HIXIE76))
                head, eof = await read_until(stream, has_head, IO_TIMEOUT)
                assert has_head(head), f"no 101 head before key3 (eof={eof}): {head!r}"
                await stream.send_all(KEY3)
                answer, _ = await read_until(stream, lambda d: len(d) >= 16, IO_TIMEOUT)
                frame = b"\x00" + text.encode() + b"\xff"
                await stream.send_all(frame)
                echo, _ = await read_until(stream, lambda d: len(d) >= len(frame), IO_TIMEOUT)
                await stream.send_all(b"\xff\x00")
                close, eof = await read_until(stream, lambda d: False, IO_TIMEOUT)
            seen = await recorder.only()

    status, fields, rest = split_head(head)
    assert status == HIXIE76_STATUS_LINE
    assert rest == b"", "nothing but the head before key3 is sent"
    check_nginx_headers(fields)
    assert fields[2:] == [
        ("Connection", "upgrade"),
        ("Upgrade", "WebSocket"),
        ("Sec-WebSocket-Origin", ORIGIN),
        ("Sec-WebSocket-Location", f"ws://127.0.0.1:{proxy.port}/early"),
    ]
    assert answer == hixie76_answer(KEY1, KEY2, KEY3) == ANSWER
    assert echo == frame
    assert close == b"\xff\x00", "the server answers the closing handshake and nothing else"
    assert eof, "and the connection is closed"
    assert seen.draft is Draft.HIXIE76
    assert seen.messages == [text]
    assert (seen.close_code, seen.closed_by) == (1000, "peer")


async def test_hixie76_without_early_head_is_stuck_behind_nginx(
    start_server: Starter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The negative control: a server that waits for key3 before answering never gets it
    through nginx, even though the client sends head and key3 in one write. Nothing comes
    back; once ``handshake_timeout`` closes the backend connection, nginx answers 502,
    then reads the key3 it held as the next pipelined request and answers that with 400."""
    caplog.set_level("INFO", logger="wscompat.server")
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(
            recorder.handler, hixie76_early_head=False,
            handshake_timeout=NO_EARLY_HEAD_HANDSHAKE_TIMEOUT,
        )
        async with run_nginx(server.port, tmp_path) as proxy:
            stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            async with stream:
                started = time.monotonic()
                await stream.send_all(hixie_request(proxy.port, "/late", Draft.HIXIE76) + KEY3)
                stuck, eof = await read_until(stream, bool, STUCK_TIMEOUT)
                waited = time.monotonic() - started
                assert stuck == b"", f"nothing may come back while nginx holds key3: {stuck!r}"
                assert not eof
                later, eof = await read_until(
                    stream, lambda d: False, NO_EARLY_HEAD_HANDSHAKE_TIMEOUT + IO_TIMEOUT
                )
                ended = time.monotonic() - started
            error = await proxy.wait_for_log("error.log", "upstream prematurely closed")
            line = await proxy.wait_for_log("access.log", '"GET /late HTTP/1.1" 502 ')
            pipelined = await proxy.wait_for_log("error.log", "pipelined request line")
            key3_line = await proxy.wait_for_log("access.log", f'"{KEY3.decode()}" 400 ')

    assert waited >= STUCK_TIMEOUT - 0.1
    assert eof
    bad_gateway, sep, rest = later.partition(b"</html>\r\n")
    assert sep, later
    assert bad_gateway.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), later
    assert b"\r\nConnection: keep-alive\r\n" in bad_gateway, later
    assert rest.startswith(b"HTTP/1.1 400 Bad Request\r\n"), "key3, parsed as a request"
    assert b"\r\nConnection: close\r\n" in rest, later
    assert f'request: "{KEY3.decode()}"' in pipelined
    assert "client sent invalid method" in pipelined
    assert key3_line.startswith("127.0.0.1 ")
    assert ended >= NO_EARLY_HEAD_HANDSHAKE_TIMEOUT - 0.1, "ended by wscompat's timeout"
    assert "while reading response header from upstream" in error
    assert any(r.getMessage().endswith(" handshake timed out") for r in caplog.records), (
        caplog.text
    )
    assert recorder.seen == [], "the handshake never completed"
    assert line.startswith("127.0.0.1 ")


# -- RFC 6455 -------------------------------------------------------------------------------


def _websockets_round_trip(port: int, path: str) -> dict[str, Any]:
    """The ``websockets`` library's sync client, in a worker thread; every step bounded."""
    sent: list[str | bytes] = [*MESSAGES, *BINARY_MESSAGES]
    received = []
    with websockets_connect(f"ws://127.0.0.1:{port}{path}", open_timeout=IO_TIMEOUT,
                            close_timeout=IO_TIMEOUT, max_size=2**21) as ws:
        for message in sent:
            ws.send(message)
            received.append(ws.recv(timeout=IO_TIMEOUT))
        ws.close(1000, "bye through nginx")
    assert ws.response is not None
    return {
        "sent": sent,
        "received": received,
        "status": ws.response.status_code,
        "server": ws.response.headers.get("Server", ""),
        "close_code": ws.close_code,
    }


async def test_rfc6455_client_through_nginx(start_server: Starter, tmp_path: Path) -> None:
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_nginx(server.port, tmp_path) as proxy:
            result = await trio.to_thread.run_sync(
                _websockets_round_trip, proxy.port, "/rfc6455", abandon_on_cancel=True
            )
            seen = await recorder.only()
            line = await proxy.wait_for_log("access.log", '"GET /rfc6455 HTTP/1.1" 101 ')
    assert result["status"] == 101
    assert result["server"].startswith("nginx"), "the answer came through nginx"
    assert result["received"] == result["sent"], "text as text, binary as binary"
    assert result["close_code"] == 1000
    assert seen.draft is Draft.RFC6455
    assert seen.messages == result["sent"]
    assert (seen.close_code, seen.close_reason) == (1000, "bye through nginx")
    assert seen.header("Host") == f"127.0.0.1:{proxy.port}"
    assert line.startswith("127.0.0.1 ")


# -- hixie-75 ------------------------------------------------------------------------------


async def test_hixie75_client_fails_through_nginx(start_server: Starter, tmp_path: Path) -> None:
    """A strict hixie-75 client cannot connect through nginx.

    draft-hixie-75 clients compare the first 85 bytes of the response with a fixed
    prefix (status line, ``Upgrade: WebSocket``, ``Connection: Upgrade``). nginx relays
    wscompat's status line unchanged but puts ``Server`` and ``Date`` after it, so the
    comparison fails at byte 44. wscompat's hixie-75 client, which makes that comparison,
    fails the handshake (HandshakeRejected with status 101); wscompat itself accepted the
    request as hixie-75 and sees the client hang up, which is hixie-75's only close.
    """
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        async with run_nginx(server.port, tmp_path) as proxy:
            url = f"ws://127.0.0.1:{proxy.port}/hixie75"
            with pytest.raises(HandshakeRejected) as rejected:
                async with connect(url, draft=Draft.HIXIE75, origin=ORIGIN,
                                   open_timeout=IO_TIMEOUT):
                    pass
            seen = await recorder.only()
            line = await proxy.wait_for_log("access.log", '"GET /hixie75 HTTP/1.1" 101 ')
    assert rejected.value.status == 101, "a 101 answer the client must fail"
    assert rejected.value.reason == "response does not start with the hixie-75 prefix"
    assert seen.draft is Draft.HIXIE75
    assert seen.messages == []
    assert (seen.close_code, seen.closed_by) == (1000, "peer")
    assert line.startswith("127.0.0.1 ")


async def test_hixie75_response_as_relayed_by_nginx(
    start_server: Starter, tmp_path: Path
) -> None:
    """Exactly what a hixie-75 client receives through nginx, next to what wscompat sends
    when reached directly.

    Directly, the response starts with the 85-byte prefix hixie-75 clients require.
    Through nginx, the status line is kept byte for byte but is followed by ``Server``,
    ``Date``, nginx's ``Connection: upgrade`` and then wscompat's ``Upgrade: WebSocket``
    and the rest of its headers: the first 44 bytes (the status line) match and byte 44
    on does not. The upgrade itself did happen: a frame sent after the head is echoed
    through nginx's tunnel, so only the literal prefix comparison breaks hixie-75.
    """
    assert len(HIXIE75_PREFIX) == 85
    recorder = Recorder()
    text = "hixie-75 through the tunnel ✓"
    frame = b"\x00" + text.encode() + b"\xff"
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        direct_stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with direct_stream:
            await direct_stream.send_all(hixie_request(server.port, "/direct", Draft.HIXIE75))
            direct, _ = await read_until(direct_stream, has_head, IO_TIMEOUT)
        async with run_nginx(server.port, tmp_path) as proxy:
            stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            async with stream:
                await stream.send_all(hixie_request(proxy.port, "/proxied", Draft.HIXIE75))
                relayed, _ = await read_until(stream, has_head, IO_TIMEOUT)
                await stream.send_all(frame)
                echo, _ = await read_until(stream, lambda d: len(d) >= len(frame), IO_TIMEOUT)
            with trio.fail_after(IO_TIMEOUT):
                while len(recorder.seen) < 2 or not recorder.seen[1].finished.is_set():
                    await trio.sleep(0.05)

    assert direct.startswith(HIXIE75_PREFIX), direct
    status, fields, rest = split_head(relayed)
    assert (status + "\r\n").encode() == HIXIE75_STATUS_LINE, "the status line is kept"
    assert len(HIXIE75_STATUS_LINE) == 44
    assert first_difference(relayed, HIXIE75_PREFIX) == 44, "the 85-byte comparison fails"
    check_nginx_headers(fields)
    assert fields[2:] == [
        ("Connection", "upgrade"),
        ("Upgrade", "WebSocket"),
        ("WebSocket-Origin", ORIGIN),
        ("WebSocket-Location", f"ws://127.0.0.1:{proxy.port}/proxied"),
    ]
    assert header(fields, "Sec-WebSocket-Accept") is None
    assert rest == b""
    assert echo == frame, "after the head, nginx tunnels the hixie-75 frames both ways"
    direct_seen, proxied_seen = recorder.seen
    assert direct_seen.draft is proxied_seen.draft is Draft.HIXIE75
    assert proxied_seen.path == "/proxied"
    assert proxied_seen.messages == [text]
    assert (proxied_seen.close_code, proxied_seen.closed_by) == (1000, "peer")


# -- HTTP/2: no extended CONNECT ---------------------------------------------------------------

H2_CONFIG = CONFIG.replace("        listen 127.0.0.1:{port};\n",
                           "        listen 127.0.0.1:{port} http2;\n")


async def test_an_rfc8441_client_is_refused_by_nginx_http2(
    start_server: Starter, tmp_path: Path
) -> None:
    """nginx speaks HTTP/2 (here cleartext, ``listen … http2``) but its SETTINGS do not
    offer extended CONNECT, so an RFC 8441 client cannot open a WebSocket through it:
    wscompat's client says so and never sends the CONNECT. A browser falls back to an
    HTTP/1.1 upgrade on a connection of its own, which nginx passes (docs/deployment.md);
    the server sees no connection at all."""
    seen: list[str] = []

    async def handler(ws: wscompat.Connection) -> None:
        seen.append(ws.generation)

    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(handler)
        async with run_nginx(server.port, tmp_path, H2_CONFIG) as nginx:
            with pytest.raises(HandshakeRejected, match="extended CONNECT") as refused:
                async with wscompat.connect(f"ws://127.0.0.1:{nginx.port}/over-h2",
                                            http2=True):
                    pass
    assert refused.value.status == 0
    assert seen == []
