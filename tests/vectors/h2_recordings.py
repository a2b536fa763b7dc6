"""Recording real HTTP/2 WebSocket clients with ``wscompat serve --record``.

Node's ``http2`` client (tests/peers/node/h2_client.js) speaks cleartext HTTP/2 with prior
knowledge straight to a recording server. Chromium sends a WebSocket over HTTP/2 only on
an https connection with ALPN h2, and the recorder sees the bytes on the socket, which
TLS would hide: so Chromium talks to a TLS terminator (:func:`tls_terminator`, ALPN h2
only) that hands the decrypted bytes, unchanged, to the recording server over cleartext
HTTP/2, as a TLS terminating proxy in front of a server does. HPACK state and every
frame are the client's own; the server answers them as it would over TLS.

``python -m tests.vectors.h2_recordings DIR`` records both into ``DIR/rfc8441/`` under
the corpus's names (``recorded-node.json``, ``recorded-chromium.json``), with the source
and provenance naming the client and its version, as the corpus's recordings do;
tests/vectors/test_http2_vectors.py records them afresh and checks them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import trio
import trustme

import wscompat
from wscompat.cli import echo
from wscompat.protocol.connection import UpgradeRequest

from ..live.test_chromium_http2 import STEP_TIMEOUT, chromium
from ..live.test_chromium_tls import spki_hash

ROOT = Path(__file__).parents[2]
NODE_CLIENT = ROOT / "tests" / "peers" / "node" / "h2_client.js"
TIMEOUT = 60.0
"""One recording, a browser's start included."""
NODE_PATHS = ("/node", "/node-second")
KEPT_IN_THE_OPEN = ("Cookie", "Set-Cookie", "Authorization", "Proxy-Authorization",
                    "X-Api-Key", "X-Auth-Token")
"""Redacted as by default, but for the subprotocols: these clients offer made-up ones
(chat, superchat), which the vector keeps, as the corpus's other recordings do."""


def first_offered(_: UpgradeRequest, offered: Sequence[str]) -> str | None:
    """As ``wscompat serve`` without ``--subprotocols``: the first subprotocol offered."""
    return offered[0] if offered else None

# Run in the page wscompat served (through the terminator): one WebSocket over the
# page's HTTP/2 connection, a subprotocol offered, a text with CJK and emoji, a small
# binary message, and the page's own close.
CHROMIUM_SCRIPT = r"""
(async () => {
  const navigation = performance.getEntriesByType("navigation")[0];
  const report = {pageProtocol: navigation.nextHopProtocol, echoes: []};
  const ws = new WebSocket("wss://" + location.host + "/chromium", ["chat", "superchat"]);
  ws.binaryType = "arraybuffer";
  const opened = await new Promise((resolve) => {
    ws.onopen = () => resolve(true);
    ws.onerror = () => resolve(false);
  });
  report.opened = opened;
  if (!opened) return report;
  report.protocol = ws.protocol;
  report.extensions = ws.extensions;
  const next = () => new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); });
  ws.send("Hello over HTTP/2 ~ \u4e2d\u6587 \ud83d\ude00");
  report.echoes.push(await next());
  ws.send(new Uint8Array([0, 1, 2, 3, 127, 128, 250, 255]).buffer);
  report.echoes.push(Array.from(new Uint8Array(await next())));
  const closed = new Promise((resolve) => {
    ws.onclose = (e) => resolve({code: e.code, reason: e.reason, wasClean: e.wasClean});
  });
  ws.close(1000, "done");
  report.close = await closed;
  return report;
})()
"""
CHROMIUM_TEXT = "Hello over HTTP/2 ~ \u4e2d\u6587 \U0001f600"
CHROMIUM_BINARY = [0, 1, 2, 3, 127, 128, 250, 255]


def only_file(directory: Path) -> Path:
    """The one vector the recorder wrote under ``directory/rfc8441``."""
    found = sorted((directory / "rfc8441").glob("*.json"))
    assert len(found) == 1, found
    return found[0]


async def wait_for_file(directory: Path) -> Path:
    """The recorder writes once the connection has ended, in a worker thread."""
    with trio.fail_after(TIMEOUT):
        while not list((directory / "rfc8441").glob("*.json")):
            await trio.sleep(0.05)
    await trio.sleep(0.2)  # one connection: any second file would be a fault, seen here
    return only_file(directory)


def recording(directory: Path) -> dict[str, Any]:
    """The options of a recording echo server, as ``wscompat serve --record DIR``."""
    return {"record_dir": str(directory), "record_redact": KEPT_IN_THE_OPEN,
            "select_subprotocol": first_offered}


async def record_node(directory: Path) -> tuple[Path, dict[str, Any]]:
    """Node's http2 client, cleartext with prior knowledge, two WebSockets on one
    session; the file and the client's report."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (tests/run.sh installs it)"
    async with trio.open_nursery() as nursery:
        server: wscompat.Server = await nursery.start(
            lambda task_status: wscompat.serve(echo, "127.0.0.1", 0, task_status=task_status,
                                               **recording(directory)))
        args = [arg for path in NODE_PATHS for arg in ("--path", path)]
        with trio.fail_after(TIMEOUT):
            done = await trio.run_process(
                [node, str(NODE_CLIENT), f"http://127.0.0.1:{server.port}", *args],
                capture_stdout=True, capture_stderr=True, stdin=subprocess.DEVNULL,
                check=False)
        out = done.stdout.decode()
        assert done.returncode == 0, f"h2_client.js: {out}\n{done.stderr.decode()}"
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        path = await wait_for_file(directory)
        nursery.cancel_scope.cancel()
    return path, report


@contextlib.asynccontextmanager
async def tls_terminator(backend_port: int) -> AsyncIterator[tuple[int, str]]:
    """A TLS listener (ALPN h2 only) relaying each connection's bytes, both ways and
    unchanged, to ``backend_port``; its port and the Chromium flag trusting its
    certificate."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(["h2"])
    flag = f"--ignore-certificate-errors-spki-list={spki_hash(cert.cert_chain_pems[0].bytes())}"

    async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            if isinstance(sink, trio.abc.HalfCloseableStream):
                await sink.send_eof()
            else:
                await sink.aclose()

    async def relay(client: trio.SSLStream[trio.SocketStream]) -> None:
        backend = await trio.open_tcp_stream("127.0.0.1", backend_port)
        async with backend, client, trio.open_nursery() as pair:
            pair.start_soon(pipe, client, backend)
            pair.start_soon(pipe, backend, client)

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        tls = [trio.SSLListener(listener, context, https_compatible=True)
               for listener in listeners]
        nursery.start_soon(trio.serve_listeners, relay, tls)
        yield port, flag
        nursery.cancel_scope.cancel()


async def record_chromium(directory: Path, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """Headless Chromium loading a page over h2 and opening its WebSocket on the same
    connection; the file and the page's report. The browser is stopped to end the
    connection, so the recording ends with the client's EOF."""
    async with trio.open_nursery() as nursery:
        server: wscompat.Server = await nursery.start(
            lambda task_status: wscompat.serve(echo, "127.0.0.1", 0, task_status=task_status,
                                               **recording(directory)))
        async with tls_terminator(server.port) as (port, flag):
            url = f"https://127.0.0.1:{port}/"
            async with chromium(scratch, [flag]) as devtools:
                created = await devtools.call("Target.createTarget", {"url": "about:blank"})
                attached = await devtools.call("Target.attachToTarget",
                                               {"targetId": created["targetId"],
                                                "flatten": True})
                session = attached["sessionId"]
                with trio.fail_after(STEP_TIMEOUT):
                    await devtools.call("Page.navigate", {"url": url}, session=session)
                    loaded = (f"location.href === {json.dumps(url)} && "
                              "document.readyState === 'complete'")
                    while not await devtools.evaluate(loaded, session, tolerant=True):
                        await trio.sleep(0.1)
                with trio.fail_after(STEP_TIMEOUT):
                    report: dict[str, Any] = await devtools.evaluate(CHROMIUM_SCRIPT, session)
            path = await wait_for_file(directory)
        nursery.cancel_scope.cancel()
    return path, report


def version_of(command: list[str]) -> str:
    """The version a program prints (``v20.1.0`` → ``20.1.0``; Chromium's second word)."""
    out = subprocess.run(command, capture_output=True, text=True, timeout=30,
                         check=True).stdout.split()
    word = out[1] if out[0] == "Chromium" else out[0]
    return word.removeprefix("v")


def corpus_text(raw: dict[str, Any]) -> str:
    """A vector as the corpus writes one: a key per line, a step per line."""
    lines = []
    for key, value in raw.items():
        if key == "steps":
            steps = ",\n".join(f"    {json.dumps(step, ensure_ascii=False)}" for step in value)
            lines.append(f'  "steps": [\n{steps}\n  ]')
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def named(path: Path, client: str, version: str, how: str, *, agent: str | None = None,
          ) -> dict[str, Any]:
    """The recording with the client named, as a person names a corpus recording."""
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    date = raw["provenance"]["date"]
    raw["source"] = (f"recorded from {client} {version} ({how}) with wscompat serve "
                     f"--record, {date}")
    who: dict[str, str] = {"name": client, "version": version}
    if agent:
        who["user_agent"] = agent
    raw["provenance"]["client"] = who
    return raw


async def record_all(directory: Path, scratch: Path) -> None:
    """Record Node and Chromium into ``directory/rfc8441/`` under the corpus's names."""
    from ..live.test_chromium import chromium_path  # noqa: PLC0415

    out = directory / "rfc8441"
    out.mkdir(parents=True, exist_ok=True)
    node_dir, chromium_dir = scratch / "node", scratch / "chromium"
    path, _ = await record_node(node_dir)
    node = named(path, "Node.js", version_of(["node", "--version"]),
                 "its http2 module as the client, cleartext HTTP/2 with prior knowledge, "
                 "tests/peers/node/h2_client.js")
    (out / "recorded-node.json").write_text(corpus_text(node), encoding="utf-8")
    (scratch / "browser").mkdir(exist_ok=True)
    path, _ = await record_chromium(chromium_dir, scratch / "browser")
    raw = json.loads(path.read_text(encoding="utf-8"))
    agent = raw["provenance"].get("client", {}).get("user_agent")
    browser = named(path, "Chromium", version_of([chromium_path(), "--version"]),
                    "headless, WebSocket API, over HTTP/2 with ALPN through a TLS "
                    "terminator", agent=agent)
    (out / "recorded-chromium.json").write_text(corpus_text(browser), encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "vectors")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    scratch = Path("/tmp") / f"h2-recordings-{stamp}"
    scratch.mkdir()
    trio.run(record_all, target, scratch)
