"""``wscompat probe`` as a real process against real servers on loopback: wscompat,
the ``websockets`` server and Node's ``ws`` server."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Server, TLSFiles, run_tool

DRAFTS = ("hixie-75", "hixie-76", "hybi-07", "hybi-08", "rfc6455")


def probe_json(url: str, *flags: str) -> tuple[int, dict[str, Any]]:
    done = run_tool("probe", url, "--json", "--timeout", "2", *flags)
    assert done.stderr == "", done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def supported(report: dict[str, Any]) -> set[str]:
    return {name for name, answer in report["drafts"].items() if answer["supported"]}


def test_every_row_yes_against_wscompat(wscompat_server: Server) -> None:
    status, report = probe_json(wscompat_server.url)
    assert status == 0
    assert set(report["drafts"]) == set(DRAFTS)
    assert supported(report) == set(DRAFTS)
    for name, answer in report["drafts"].items():
        assert answer["status"] == 101, name
        assert answer["error"] is None, name
    port = wscompat_server.port
    hixie75, hixie76 = report["drafts"]["hixie-75"], report["drafts"]["hixie-76"]
    assert hixie75["echoed"] == {"WebSocket-Origin": f"http://127.0.0.1:{port}",
                                 "WebSocket-Location": f"ws://127.0.0.1:{port}/"}
    assert hixie76["echoed"]["Sec-WebSocket-Location"] == f"ws://127.0.0.1:{port}/"
    assert hixie76["early_head"] is True
    for name in ("hixie-76", "hybi-07", "hybi-08", "rfc6455"):
        assert report["drafts"][name]["closing"] == "answered", name
    assert "Sec-WebSocket-Accept" in report["drafts"]["rfc6455"]["echoed"]
    assert report["policy_file"]["supported"] is True
    assert report["policy_file"]["allow"] == ['allow-access-from domain="*" to-ports="*"']
    for name, answer in report["compression"].items():
        assert answer["supported"] is True, name
        assert answer["extensions"].startswith(name), name
    assert report["subprotocol"]["subprotocol"] == "wscompat-probe"
    refusal = report["refusals"]["unknown-version"]
    assert (refusal["status"], refusal["versions"]) == (426, [13, 8, 7])
    assert report["refusals"]["plain-get"]["status"] == 426
    tls = report["tls"]
    assert tls["supported"] is True
    assert tls["version"].startswith("TLSv1.")
    assert tls["verified"] is False  # ws:// URL: the certificate is not what is asked


def test_table_against_wscompat(wscompat_server: Server) -> None:
    done = run_tool("probe", wscompat_server.url, "--timeout", "2")
    assert done.returncode == 0, done.stderr
    rows = {line[:25].strip(): line[25:].split() for line in done.stdout.splitlines()[3:]
            if line and not line.startswith("speaks")}
    for question in (*DRAFTS, "hixie-76 via HTTP proxy", "Flash policy file",
                     "permessage-deflate", "x-webkit-deflate-frame", "deflate-frame",
                     "subprotocol echo", "TLS on this port"):
        assert rows[question][0] == "yes", (question, done.stdout)
    assert rows["unknown version (99)"][0] == "426"
    assert "13, 8, 7" in " ".join(rows["unknown version (99)"])
    assert "101 head sent before key3" in done.stdout
    assert done.stdout.rstrip().endswith("speaks: hixie-75, hixie-76, hybi-07, hybi-08, rfc6455")


def test_wss_url_checks_the_certificate(wscompat_server: Server, tls_files: TLSFiles) -> None:
    url = f"wss://127.0.0.1:{wscompat_server.port}/"
    status, report = probe_json(url, "--cafile", str(tls_files.ca))
    assert status == 0
    assert supported(report) == set(DRAFTS)
    assert report["drafts"]["hixie-76"]["echoed"]["Sec-WebSocket-Location"] == url
    assert report["tls"]["supported"] is True
    assert report["tls"]["verified"] is True
    # Without the CA, nothing is spoken: every TLS handshake fails on the certificate.
    status, report = probe_json(url)
    assert status == 1
    assert supported(report) == set()
    assert "certificate verify failed" in report["tls"]["error"]
    assert "certificate verify failed" in report["drafts"]["rfc6455"]["error"]


def test_hixie76_that_waits_for_key3(late_hixie_server: Server) -> None:
    status, report = probe_json(late_hixie_server.url)
    assert status == 0
    assert supported(report) == {"hixie-76", "rfc6455"}
    hixie76 = report["drafts"]["hixie-76"]
    assert hixie76["early_head"] is False
    assert hixie76["seconds"] >= 1.0  # half the 2 s timeout waited before key3 went
    for name in ("hixie-75", "hybi-07", "hybi-08"):
        assert report["drafts"][name]["status"] == 426, name
    assert report["refusals"]["unknown-version"]["versions"] == [13]
    assert "hybi-07 is not enabled" in report["drafts"]["hybi-07"]["body"]
    done = run_tool("probe", late_hixie_server.url, "--timeout", "2")
    assert re.search(r"\nhixie-76 via HTTP proxy +no +no answer until key3 came\n", done.stdout)
    assert re.search(r"\nhybi-07 +no +426 Upgrade Required: hybi-07 is not enabled on this "
                     r"server\n", done.stdout), done.stdout


def test_websockets_speaks_rfc6455_only(websockets_server: Server) -> None:
    status, report = probe_json(websockets_server.url, "--timeout", "1")
    assert status == 0
    assert supported(report) == {"rfc6455"}
    for name in ("hixie-75", "hixie-76", "hybi-07", "hybi-08"):
        answer = report["drafts"][name]
        assert answer["status"] == 400, (name, answer)
        assert answer["status_line"] == "HTTP/1.1 400 Bad Request", name
        assert answer["error"] == "refused", name
        assert "Failed to open a WebSocket connection" in answer["body"], name
    assert report["drafts"]["hixie-76"]["early_head"] is False
    assert report["compression"]["permessage-deflate"]["supported"] is True
    assert report["compression"]["x-webkit-deflate-frame"]["supported"] is False
    assert report["subprotocol"]["subprotocol"] == "chat"
    assert report["policy_file"]["supported"] is False
    assert report["tls"]["supported"] is False


def test_node_ws_speaks_rfc6455_and_hybi08(node_server: Server) -> None:
    status, report = probe_json(node_server.url)
    assert status == 0
    assert supported(report) == {"rfc6455", "hybi-08"}
    for name in ("hixie-75", "hixie-76", "hybi-07"):
        assert report["drafts"][name]["status"] == 400, name
    assert report["refusals"]["unknown-version"]["versions"] == [13, 8]
    assert report["compression"]["permessage-deflate"]["supported"] is True
    assert report["compression"]["deflate-frame"]["supported"] is False
    assert report["policy_file"]["error"] == "answered HTTP/1.1 400 Bad Request"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them) and never
    answers anything."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def test_bounded_in_time(silent_port: int) -> None:
    """Four questions at a time, drafts first, each cut at its timeout; the deadline
    ends the probe with the last questions unasked."""
    began = time.monotonic()
    done = run_tool("probe", f"ws://127.0.0.1:{silent_port}/", "--json", "--timeout", "0.5",
                    "--deadline", "1.3")
    took = time.monotonic() - began
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert supported(report) == set()
    for name, answer in report["drafts"].items():
        assert answer["error"] == "no answer within 0.5 s", name
        assert 0.5 <= answer["seconds"] < 0.9, name
    assert report["tls"]["error"] == "not asked within the probe's deadline (1.3 s)"
    assert 1.3 <= report["seconds"] < 1.6
    assert took < 10  # the interpreter's start included


def test_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        done = run_tool("probe", f"ws://127.0.0.1:{port}/", "--timeout", "2")
    assert done.returncode == 1
    assert f"cannot connect to 127.0.0.1 port {port}: Connection refused" in done.stdout
    assert done.stdout.rstrip().endswith("speaks: no draft")


def test_usage_errors() -> None:
    for args in (("http://127.0.0.1/",), ("ws://127.0.0.1/", "--timeout", "0"),
                 ("ws://127.0.0.1/", "--cafile", "ca.pem")):
        done = run_tool("probe", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == ""
        assert "error:" in done.stderr
