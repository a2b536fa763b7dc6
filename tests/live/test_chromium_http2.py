"""Headless Chromium opening a WebSocket over HTTP/2 (RFC 8441) to the port it loaded
its page from.

Chromium sends a WebSocket over HTTP/2 only on an HTTP/2 connection it already holds to
that exact host and port, one whose SETTINGS enabled the extended CONNECT. So the page
must come from wscompat itself over https (ALPN h2): the test navigates a fresh Chromium
to ``https://127.0.0.1:PORT/`` (wscompat's small 426 page) through the DevTools
protocol, then evaluates ``SCRIPT`` in that page, which opens two WebSockets to
``wss://`` the same host and port, echoes text (ASCII, CJK, emoji) and a 64 KiB binary
message, and returns what it saw. The server's handler records its own side, which
proves where each WebSocket arrived: ``ws.http_version == "2"``. Served over HTTP/1.1
only (``http2=False``), the same page falls back to HTTP/1.1 upgrades.

The certificate is trusted by its key's hash (``--ignore-certificate-errors-spki-list``),
as in test_chromium_tls; DevTools listens on a port Chromium picks and writes to
``DevToolsActivePort`` in the profile, and wscompat's own client talks to it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import wscompat

from ..conftest import Starter
from .echo_recorder import Echoed, EchoRecorder
from .test_chromium import (
    BINARY,
    CHROMIUM_FLAGS,
    CLOSE_CODE,
    CLOSE_REASON,
    TEXTS,
    chromium_path,
    stop,
    tail,
)
from .test_chromium_tls import spki_hash

pytestmark = pytest.mark.live

TEST_TIMEOUT = 90.0
"""Everything a test does, Chromium's start-up included (a loaded machine is slow)."""
STEP_TIMEOUT = 45.0
"""One DevTools step: Chromium's start, the page's load, or the script's run."""

# Evaluated in the page wscompat served; resolves to the report the test asserts on.
# The texts and the binary pattern are those of test_chromium.py (TEXTS, BINARY).
SCRIPT = r"""
(async () => {
  const TEXTS = ["Hello, wscompat! ~ ASCII 0123456789", "\u4e2d\u6587\u5b57\u7b26",
                 "\ud83d\ude00\ud83c\udf89"];
  const binary = new Uint8Array(65536);
  for (let i = 0; i < binary.length; i++) binary[i] = i % 251;
  const base = "wss://" + location.host;
  const navigation = performance.getEntriesByType("navigation")[0];
  const report = {page: location.href, pageProtocol: navigation.nextHopProtocol, errors: []};

  const bytesOf = (data) =>
    typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data);
  const same = (a, b) => a.length === b.length && a.every((byte, i) => byte === b[i]);
  const compare = (expected, data) => {
    const entry = {kind: typeof data === "string" ? "text" :
                         data instanceof ArrayBuffer ? "binary" : "other",
                   byteLength: bytesOf(data).length};
    if (typeof data === "string") {
      entry.text = data;
      entry.utf16Length = data.length;
    }
    entry.ok = entry.kind === (typeof expected === "string" ? "text" : "binary") &&
      same(bytesOf(expected), bytesOf(data));
    return entry;
  };

  // Sends `outgoing` one message at a time, each after the last one's echo; closes with
  // 1000 itself when `closeAfter` (else waits for the server's close).
  const run = (path, outgoing, closeAfter) => new Promise((resolve) => {
    const result = {opened: false, echoes: []};
    const timer = setTimeout(() => {
      report.errors.push("timed out on " + path);
      resolve(result);
    }, 30000);
    const ws = new WebSocket(base + path);
    ws.binaryType = "arraybuffer";
    const sendNext = () => ws.send(outgoing[result.echoes.length]);
    ws.onopen = () => {
      result.opened = true;
      result.protocol = ws.protocol;
      result.extensions = ws.extensions;
      sendNext();
    };
    ws.onmessage = (event) => {
      const index = result.echoes.length;
      if (index >= outgoing.length) {
        report.errors.push("extra message on " + path);
        return;
      }
      result.echoes.push(compare(outgoing[index], event.data));
      if (result.echoes.length < outgoing.length) sendNext();
      else if (closeAfter) ws.close(1000, "done");
    };
    ws.onerror = () => report.errors.push("error event on " + path);
    ws.onclose = (event) => {
      clearTimeout(timer);
      result.close = {code: event.code, reason: event.reason, wasClean: event.wasClean};
      resolve(result);
    };
  });

  try {
    // Two WebSockets at once: over HTTP/2 both are streams of the page's connection.
    const [echo, second] = await Promise.all([
      run("/", [...TEXTS, binary.buffer], false),
      run("/second?n=2", [TEXTS[1]], true),
    ]);
    report.echo = echo;
    report.second = second;
  } catch (error) {
    report.errors.push(String(error));
  }
  return report;
})()
"""


@dataclass
class Seen(Echoed):
    """The server's view of one WebSocket."""

    path: str
    http_version: str
    generation: str
    secure: bool
    remote: tuple[str, int] | None
    origin: str | None
    extensions: str | None


class Recorder(EchoRecorder):
    """``/`` echoes the four messages and closes 4000 "bye"; others echo until the page
    closes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Seen] = {}

    async def handler(self, ws: wscompat.Connection) -> None:
        seen = Seen(ws.path, ws.http_version, ws.generation, ws.secure, ws.remote, ws.origin,
                    ws.extensions)
        self.seen[ws.path] = seen
        if ws.path == "/":
            await self.echo(ws, seen, rounds=len(TEXTS) + 1, close=(CLOSE_CODE, CLOSE_REASON))
        else:
            await self.echo(ws, seen)


class DevTools:
    """A DevTools protocol session over a WebSocket: one command at a time (events,
    which nothing here asks for, are passed over)."""

    def __init__(self, ws: wscompat.Connection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None, *, tolerant: bool = False,
                   ) -> dict[str, Any]:
        """The command's result; an error fails the test, or is ``{}`` if ``tolerant``."""
        ident = next(self._ids)
        command: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        await self._ws.send(json.dumps(command))
        while True:
            message = await self._ws.receive()
            assert isinstance(message, str), message
            answer = json.loads(message)
            if answer.get("id") == ident:
                if "error" in answer:
                    if tolerant:
                        return {}
                    pytest.fail(f"DevTools {method} failed: {answer['error']}", pytrace=False)
                result: dict[str, Any] = answer["result"]
                return result

    async def evaluate(self, expression: str, session: str, *, tolerant: bool = False,
                       ) -> Any:
        """The value of ``expression`` in the page (a promise is awaited); with
        ``tolerant``, None where it could not run (a page being replaced)."""
        evaluated = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session, tolerant=tolerant,
        )
        if tolerant and (not evaluated or "exceptionDetails" in evaluated):
            return None
        assert "exceptionDetails" not in evaluated, evaluated
        return evaluated["result"].get("value")


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path, extra_flags: list[str]) -> AsyncIterator[DevTools]:
    """A fresh headless Chromium on about:blank, and a DevTools session to it; the
    browser's process group is killed on leaving."""
    profile = tmp_path / "profile"
    profile.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        env.pop(name, None)
    log = tmp_path / "chromium.log"
    command = [chromium_path(), *CHROMIUM_FLAGS, *extra_flags, "--remote-debugging-port=0",
               f"--user-data-dir={profile}", "about:blank"]
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
        try:
            # Chromium writes its DevTools port and the browser's path once it listens.
            active = profile / "DevToolsActivePort"
            with trio.move_on_after(STEP_TIMEOUT) as waited:
                while True:
                    lines = active.read_text().splitlines() if active.exists() else []
                    if len(lines) >= 2:
                        break
                    if process.poll() is not None:
                        pytest.fail(f"Chromium exited with status {process.returncode}; its "
                                    f"output ends with:\n{tail(log)}", pytrace=False)
                    await trio.sleep(0.1)
            if waited.cancelled_caught:
                pytest.fail(f"Chromium opened no DevTools port in {STEP_TIMEOUT:g} s; its "
                            f"output ends with:\n{tail(log)}", pytrace=False)
            port, path = lines[0], lines[1]
            # DevTools refuses WebSocket handshakes that carry an Origin: send none.
            async with wscompat.connect(f"ws://127.0.0.1:{port}{path}", origin=None,
                                        max_message_size=2**24) as ws:
                yield DevTools(ws)
        finally:
            await stop(process)


async def run_script(tmp_path: Path, port: int, flags: list[str]) -> dict[str, Any]:
    """Load https://127.0.0.1:PORT/ in Chromium, run SCRIPT there, return its report."""
    url = f"https://127.0.0.1:{port}/"
    async with chromium(tmp_path, flags) as devtools:
        created = await devtools.call("Target.createTarget", {"url": "about:blank"})
        attached = await devtools.call("Target.attachToTarget",
                                       {"targetId": created["targetId"], "flatten": True})
        session = attached["sessionId"]
        with trio.fail_after(STEP_TIMEOUT):
            navigated = await devtools.call("Page.navigate", {"url": url}, session=session)
            assert "errorText" not in navigated, navigated
            # Polled rather than awaited as an event, which about:blank's load could be.
            loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
            while not await devtools.evaluate(loaded, session, tolerant=True):
                await trio.sleep(0.1)
        with trio.fail_after(STEP_TIMEOUT):
            report: dict[str, Any] = await devtools.evaluate(SCRIPT, session)
    return report


async def start_tls(start_server: Starter, recorder: Recorder, **options: Any,
                    ) -> tuple[wscompat.Server, list[str]]:
    """A TLS server for 127.0.0.1 and the Chromium flag that trusts its certificate."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = await start_server(recorder.handler, ssl_context=context, **options)
    flag = f"--ignore-certificate-errors-spki-list={spki_hash(cert.cert_chain_pems[0].bytes())}"
    return server, [flag]


def assert_page_saw(report: dict[str, Any], recorder: Recorder) -> None:
    """The browser's side: both WebSockets opened, every echo intact, the closes."""
    assert report["errors"] == [], report
    echo, second = report["echo"], report["second"]
    assert echo["opened"] is True and second["opened"] is True, report
    assert echo["extensions"] == (recorder.seen["/"].extensions or "")
    echoes = echo["echoes"]
    assert [e["ok"] for e in echoes] == [True] * 4, echoes
    assert [e["kind"] for e in echoes] == ["text", "text", "text", "binary"], echoes
    assert [e["text"] for e in echoes[:3]] == TEXTS
    assert [e["byteLength"] for e in echoes] == [*(len(t.encode()) for t in TEXTS),
                                                 len(BINARY)]
    assert echoes[2]["utf16Length"] == 4  # two emoji, each a surrogate pair
    assert echo["close"] == {"code": CLOSE_CODE, "reason": CLOSE_REASON, "wasClean": True}
    assert [e["ok"] for e in second["echoes"]] == [True], second
    assert second["close"] == {"code": 1000, "reason": "done", "wasClean": True}


def assert_server_saw(recorder: Recorder, port: int, *, http_version: str) -> None:
    """The server's side: what arrived, over which HTTP, and who closed."""
    assert set(recorder.seen) == {"/", "/second?n=2"}
    first, second = recorder.seen["/"], recorder.seen["/second?n=2"]
    for seen in (first, second):
        assert seen.http_version == http_version
        assert seen.generation == ("rfc8441" if http_version == "2" else "rfc6455")
        assert seen.secure is True
        assert seen.origin == f"https://127.0.0.1:{port}"  # the page wscompat served
    assert [type(m) for m in first.messages] == [str, str, str, bytes]
    assert first.messages == [*TEXTS, BINARY]
    assert (first.close_code, first.close_reason, first.closed_by) == (
        CLOSE_CODE, CLOSE_REASON, "local")
    assert second.messages == [TEXTS[1]]
    assert (second.close_code, second.close_reason, second.closed_by) == (1000, "done", "peer")


async def test_chromium_websocket_over_h2(
    start_server: Starter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wscompat.server")
    recorder = Recorder()
    server, flags = await start_tls(start_server, recorder)
    with trio.fail_after(TEST_TIMEOUT):
        report = await run_script(tmp_path, server.port, flags)
        await recorder.wait_ended(2)

    assert report["page"] == f"https://127.0.0.1:{server.port}/"
    assert report["pageProtocol"] == "h2"  # the page itself came over HTTP/2
    assert_page_saw(report, recorder)
    assert_server_saw(recorder, server.port, http_version="2")
    # Both WebSockets were streams of one TCP connection: the page's, whose GET / the
    # server answered with its page (logged as a 426, from the same client port).
    remote = recorder.seen["/"].remote
    assert remote is not None and recorder.seen["/second?n=2"].remote == remote
    lines = [record.getMessage() for record in caplog.records]
    assert f"{remote[0]}:{remote[1]} / rejected 426 not a WebSocket request" in lines, lines


async def test_chromium_falls_back_to_http11(start_server: Starter, tmp_path: Path) -> None:
    recorder = Recorder()
    server, flags = await start_tls(start_server, recorder, http2=False)
    with trio.fail_after(TEST_TIMEOUT):
        report = await run_script(tmp_path, server.port, flags)
        await recorder.wait_ended(2)

    assert report["pageProtocol"] == "http/1.1"  # no h2 in ALPN
    assert_page_saw(report, recorder)
    assert_server_saw(recorder, server.port, http_version="1.1")
    # An HTTP/1.1 upgrade takes a connection of its own.
    assert recorder.seen["/"].remote != recorder.seen["/second?n=2"].remote
