"""``wscompat client``, ``probe`` and ``conform`` with ``--http2`` (RFC 8441), as real
processes against real servers on loopback: wscompat with its defaults (HTTP/2 on,
cleartext and TLS on one port), wscompat with ``--http2 off``, and wscompat with an
origin policy."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server, TLSFiles, run_tool, start, start_wscompat

TEXT = "héllo 中文 😀"


@pytest.fixture(scope="module")
def no_h2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_wscompat(tmp_path_factory.mktemp("no-h2") / "serve.log", "--http2", "off")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_wscompat(tmp_path_factory.mktemp("strict") / "serve.log",
                            "--origins", "http://good.example")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hypercorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """hypercorn serving tests/trio/hypercorn_echo.py over cleartext HTTP/2 (and
    HTTP/1.1). Its asyncio worker: the trio worker dies on the probe's CONNECT without
    ``:protocol`` (an UnboundLocalError in hypercorn), which the asyncio one logs."""
    argv = [sys.executable, "-m", "hypercorn", "--worker-class", "asyncio",
            "--bind", "127.0.0.1:0", "tests.trio.hypercorn_echo:app"]
    server = start("hypercorn", argv, tmp_path_factory.mktemp("hypercorn") / "server.log",
                   r"Running on http://127\.0\.0\.1:(\d+)")
    yield server
    server.stop()


def wss(server: Server) -> str:
    return f"wss://127.0.0.1:{server.port}/"


# -- client ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_client_over_http2(wscompat_server: Server, tls_files: TLSFiles, scheme: str) -> None:
    url = wss(wscompat_server) if scheme == "wss" else wscompat_server.url
    tls = ["--cafile", str(tls_files.ca)] if scheme == "wss" else []
    binary = "00ff" * 20000  # 40,000 bytes: more than one DATA frame, within argv's limit
    done = run_tool("client", url, "--http2", *tls, "-v", "--send", TEXT, "--expect", TEXT,
                    "--send-binary", binary, "--expect-binary", binary, "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"< {TEXT}\n< [binary, 40000 bytes] 00 ff 00 ff")
    err = done.stderr.splitlines()
    how = "TLS, ALPN h2" if scheme == "wss" else "prior knowledge"
    assert any(line.startswith(f"* HTTP/2 ({how}), the server's SETTINGS: ")
               and "ENABLE_CONNECT_PROTOCOL=1" in line for line in err), err
    port = wscompat_server.port
    scheme_field = "https" if scheme == "wss" else "http"
    for line in ("> :method: CONNECT", "> :protocol: websocket", f"> :scheme: {scheme_field}",
                 "> :path: /", f"> :authority: 127.0.0.1:{port}",
                 "> sec-websocket-version: 13", "< :status: 200"):
        assert line in err, (line, err)
    assert f"* connected to {url} (rfc6455 over HTTP/2)" in err
    assert "* closed by the client: 1000" in err


def test_client_refused_over_http2(strict_server: Server) -> None:
    done = run_tool("client", strict_server.url, "--http2", "--origin", "http://evil.example",
                    "--send", "x", "--timeout", "5")
    assert done.returncode == 1
    assert done.stderr.startswith("wscompat client: refused: HTTP/2 403 "), done.stderr
    assert "http://evil.example" in done.stderr
    ok = run_tool("client", strict_server.url, "--http2", "--origin", "http://good.example",
                  "--send", "x", "--expect", "x", "--timeout", "5")
    assert (ok.returncode, ok.stdout) == (0, "< x\n"), ok.stderr


def test_client_against_a_server_without_http2(no_h2_server: Server) -> None:
    done = run_tool("client", no_h2_server.url, "--http2", "--send", "x", "--timeout", "5")
    assert done.returncode == 1
    assert "does not speak HTTP/2" in done.stderr, done.stderr
    plain = run_tool("client", no_h2_server.url, "--send", "x", "--expect", "x")
    assert plain.returncode == 0, plain.stderr


def test_client_http2_is_rfc6455_only(wscompat_server: Server) -> None:
    done = run_tool("client", wscompat_server.url, "--http2", "--draft", "76")
    assert done.returncode == 2
    assert "HTTP/2 carries RFC 6455 only" in done.stderr


# -- probe -----------------------------------------------------------------------------


def probe_json(url: str, *flags: str) -> tuple[int, dict[str, Any]]:
    done = run_tool("probe", url, "--http2", "--json", "--timeout", "5", *flags)
    assert done.stderr == "", done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_probe_over_http2(wscompat_server: Server, tls_files: TLSFiles, scheme: str) -> None:
    url = wss(wscompat_server) if scheme == "wss" else wscompat_server.url
    tls = ["--cafile", str(tls_files.ca)] if scheme == "wss" else []
    status, report = probe_json(url, *tls)
    assert status == 0
    connection = report["http2"]
    assert connection["supported"] and connection["extended_connect"] is True
    assert connection["how"] == ("TLS, ALPN h2" if scheme == "wss" else "prior knowledge")
    assert connection["settings"]["ENABLE_CONNECT_PROTOCOL"] == 1
    rfc8441 = report["drafts"]["rfc8441"]
    assert rfc8441["supported"] and rfc8441["status"] == 200
    assert rfc8441["closing"] == "answered"
    assert rfc8441["stream_end"] == "END_STREAM"
    assert all(answer["supported"] for answer in report["compression"].values())
    assert report["subprotocol"]["subprotocol"] == "wscompat-probe"  # the first offered
    refusals = report["refusals"]
    assert refusals["unknown-version"]["status"] == 400
    assert refusals["unknown-version"]["versions"] == [13]
    assert refusals["no-protocol"]["status"] >= 400
    assert refusals["plain-get"]["supported"] is True
    streams = report["streams"]
    assert streams["supported"] and streams["stream_ids"] == [1, 3]
    assert "policy_file" not in report and "tls" not in report


def test_probe_table_over_http2(wscompat_server: Server) -> None:
    done = run_tool("probe", wscompat_server.url, "--http2", "--timeout", "5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"wscompat probe {wscompat_server.url}: 10 questions, one HTTP/2 "
                        "connection each, 5 s per question")
    rows = {line.split("  ")[0]: line for line in lines[3:] if line}
    assert "extended CONNECT enabled" in rows["HTTP/2 (prior knowledge)"]
    assert "200 OK; close answered; then END_STREAM" in rows["rfc8441"]
    assert "streams 1, 3 open at once" in rows["two WebSockets, one connection"]
    assert lines[-1] == "speaks: rfc8441"


def test_probe_over_http2_against_a_server_without_it(no_h2_server: Server) -> None:
    status, report = probe_json(no_h2_server.url)
    assert status == 1
    assert report["http2"]["supported"] is False
    assert "does not speak HTTP/2" in report["http2"]["error"]
    assert report["drafts"]["rfc8441"]["supported"] is False


def test_probe_and_client_over_http2_against_hypercorn(hypercorn_server: Server) -> None:
    status, report = probe_json(hypercorn_server.url, "--timeout", "2")
    assert status == 0
    assert report["http2"]["extended_connect"] is True
    rfc8441 = report["drafts"]["rfc8441"]
    assert rfc8441["supported"] and rfc8441["status"] == 200
    # hypercorn answers the close frame but never ends its side of the stream.
    assert rfc8441["closing"] == "answered"
    assert rfc8441["stream_end"] == "not seen within the timeout"
    assert report["compression"]["permessage-deflate"]["supported"] is True
    assert report["subprotocol"]["subprotocol"] == "wscompat-probe"
    assert report["refusals"]["unknown-version"]["status"] == 400
    assert report["streams"]["supported"] is True
    done = run_tool("client", hypercorn_server.url, "--http2", "--send", TEXT, "--expect",
                    TEXT, "--timeout", "2", "-v")
    assert (done.returncode, done.stdout) == (0, f"< {TEXT}\n"), done.stderr
    assert done.stderr.splitlines()[-2:] == [
        "* the server answered the close but did not end the HTTP/2 stream within 2 s: reset",
        "* closed by the client: 1000"], done.stderr
    assert hypercorn_server.process.poll() is None


# -- conform ---------------------------------------------------------------------------


CASES = "1.1.1,1.2.8,2.5,3.1,5.19,6.4.1,7.5.1,7.7.1,9.1.1,12.1.1,13.3.1"


def test_conform_over_http2(wscompat_server: Server, tmp_path: Path) -> None:
    done = run_tool("conform", wscompat_server.url, "--http2", "--cases", CASES, "--json",
                    "--html", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["settings"]["http2"] is True
    verdicts = {case["id"]: case["verdict"] for case in report["cases"]}
    assert verdicts == dict.fromkeys(CASES.split(","), "OK") | {
        "13.3.1": "UNIMPLEMENTED"}  # server_max_window_bits=8, which wscompat declines
    observed = {case["id"]: case["observed"] for case in report["cases"]}
    assert "the HTTP/2 stream closed by the server" in observed["1.1.1"]
    index = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "cases over HTTP/2 (RFC 8441)" in index


def test_conform_table_over_http2(wscompat_server: Server) -> None:
    done = run_tool("conform", wscompat_server.url, "--http2", "--cases",
                    "1.1.*,hixie-76.1,hybi-08.1")
    assert done.returncode == 0, done.stderr
    assert "8 cases over HTTP/2 in " in done.stdout  # the older drafts' cases are left out
    assert "hixie-76" not in done.stdout and "hybi-08" not in done.stdout


def test_conform_over_http2_needs_rfc6455_cases(wscompat_server: Server) -> None:
    done = run_tool("conform", wscompat_server.url, "--http2", "--cases", "hixie-76.*,hybi-07")
    assert done.returncode == 2
    assert "have no HTTP/2 form" in done.stderr


def test_conform_over_http2_against_a_server_without_it(no_h2_server: Server) -> None:
    done = run_tool("conform", no_h2_server.url, "--http2", "--cases", "1.1.1")
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"wscompat conform: cannot open WebSockets over HTTP/2 on 127.0.0.1 port "
        f"{no_h2_server.port}: the server answered in HTTP/1.1"), done.stderr
