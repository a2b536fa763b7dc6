"""``wscompat conform`` as a user runs it: a subprocess against real servers on loopback.

The command runs as ``python -m wscompat.conformance`` against ``wscompat serve`` and
against the ``websockets`` library's asyncio echo server (both subprocesses), on a few
cases of every kind, and its terminal report, its JSON and its exit status are checked
(0 when no case FAILED, 1 when one did or the server cannot be reached, 2 for a usage
error). Its HTML report is opened in headless Chromium: screenshots are taken and the
tables of the dumped DOM are compared with the JSON. A server that answers with markup
and control characters shows that the report escapes what servers say.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import wscompat
from tests.conftest import Starter

from .helpers import (
    Server,
    Tables,
    chromium,
    conform,
    free_port,
    png_summary,
    websockets_server,
    wscompat_server,
)

WSCOMPAT_EXPECTED = {
    "1.1.1": "OK", "1.2.8": "OK", "2.5": "OK", "5.19": "OK", "7.7.1": "OK",
    "12.1.1": "OK", "13.3.1": "UNIMPLEMENTED", "hixie-75.1": "OK", "hixie-75.3": "OK",
    "hixie-76.1": "OK", "hixie-76.17": "OK", "hixie-76.22": "OK", "hybi-07.1": "OK",
    "hybi-08.8": "OK",
}
"""13.3.1 asks for server_max_window_bits=8, which wscompat declines."""
WEBSOCKETS_EXPECTED = {
    "1.1.1": "OK", "7.1.5": "FAILED", "12.1.1": "UNIMPLEMENTED",
    "hixie-76.1": "UNIMPLEMENTED", "hybi-08.1": "UNIMPLEMENTED",
}
"""websockets answers 1002 to a Close between fragments (docs/conformance.md), its
server here has compression off, and it speaks neither hixie-76 nor version 8."""
WINDOW = (1280, 1024)


@pytest.fixture(scope="module")
def wscompat_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with wscompat_server(tmp_path_factory.mktemp("wscompat")) as running:
        yield running


@pytest.fixture(scope="module")
def websockets_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with websockets_server(tmp_path_factory.mktemp("websockets")) as running:
        yield running


def verdicts(document: dict[str, object]) -> dict[str, str]:
    cases = document["cases"]
    assert isinstance(cases, list)
    return {case["id"]: case["verdict"] for case in cases}


async def test_json_and_html_report_against_wscompat(wscompat_process: Server,
                                                     tmp_path: Path) -> None:
    report = tmp_path / "report"
    run = await conform(wscompat_process.url, "--cases", ",".join(WSCOMPAT_EXPECTED),
                        "--pause-scale", "0.2", "--json", "--html", str(report))
    assert run.status == 0, run.err + run.out
    document = run.json()
    assert verdicts(document) == WSCOMPAT_EXPECTED
    assert document["ok"] is True and document["exit_status"] == 0
    assert document["url"] == wscompat_process.url
    assert document["html"] == str(report / "index.html")
    everything = document["summary"]["all"]
    assert everything == {"OK": 13, "NON-STRICT": 0, "INFORMATIONAL": 0, "UNIMPLEMENTED": 1,
                          "FAILED": 0, "cases": 14}
    assert document["summary"]["hixie-76"]["OK"] == 3
    deflate = next(c for c in document["cases"] if c["id"] == "12.1.1")
    assert deflate["extensions"].startswith("permessage-deflate")

    # The index, in a browser: a screenshot with something on it, and its tables.
    shot = tmp_path / "index.png"
    await chromium(report / "index.html", tmp_path / "shot-index",
                   f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    width, height, octets = png_summary(shot)
    assert (width, height) == WINDOW
    assert octets > 20, "the screenshot is blank"
    assert shot.stat().st_size > 10_000
    dom = Tables(await chromium(report / "index.html", tmp_path / "dom-index", "--dump-dom"))
    header, *rows = dom.tables["cases"]
    assert header == ["Case", "Description", "Verdict", "Duration"]
    assert {row[0]: row[2] for row in rows} == WSCOMPAT_EXPECTED
    assert all(row[3].endswith(" s") and row[1] for row in rows)
    summary = {row[0]: row[1:] for row in dom.tables["summary"][1:]}
    assert summary["all"] == ["13", "0", "0", "1", "0", "14"]

    # One case page: the facts and the wire exchange, decoded.
    page = report / "cases" / "hixie-76.1.html"
    shot = tmp_path / "case.png"
    await chromium(page, tmp_path / "shot-case", f"--screenshot={shot}",
                   f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert png_summary(shot)[2] > 20
    dom = Tables(await chromium(page, tmp_path / "dom-case", "--dump-dom"))
    facts = {row[0]: row[1] for row in dom.tables["facts"]}
    assert facts["Verdict"] == "OK"
    exchange = dom.tables["exchange"]
    assert exchange[0] == ["#", "ms", "From", "What", "Payload"]
    what = [(row[2], row[3]) for row in exchange[1:]]
    assert what[:4] == [("client", "opening handshake"), ("client", "key3"),
                        ("server", "handshake answer"), ("server", "the challenge's answer")]
    assert ("client", "text frame 0x00 .. 0xFF, 13 octets") in what
    assert ("server", "text frame 0x00 .. 0xFF, 13 octets") in what
    answer = exchange[4][4]
    assert "38 6a 4b 53 27 79 3a 47 2a 43 6f 2c 57 78 61 2d" in answer  # 8jKS'y:G*Co,Wxa-
    assert "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5" in exchange[1][4]


async def test_terminal_report_against_wscompat(wscompat_process: Server) -> None:
    run = await conform(wscompat_process.url, "--cases", "1.1.*,hixie-76.17", "-v")
    assert run.status == 0, run.err + run.out
    lines = run.out.splitlines()
    assert lines[0].split() == ["case", "verdict", "time", "why"]
    rows = [line.split()[:2] for line in lines[1:10]]
    assert rows == [[f"1.1.{i}", "OK"] for i in range(1, 9)] + [["hixie-76.17", "OK"]]
    table = {line.split()[0]: line.split()[1:] for line in lines if line[:1].isalnum()}
    assert table["section"] == ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED",
                                "FAILED", "cases"]
    assert table["1"] == ["8", "0", "0", "0", "0", "8"]
    assert table["all"] == ["9", "0", "0", "0", "0", "9"]
    assert "9 cases in " in run.out and ", 0 FAILED (scaled sections 9, 12 and 13)" in run.out


async def test_against_the_websockets_server(websockets_process: Server) -> None:
    cases = ",".join(WEBSOCKETS_EXPECTED)
    run = await conform(websockets_process.url, "--cases", cases, "--json")
    assert run.status == 1, run.err + run.out
    document = run.json()
    assert verdicts(document) == WEBSOCKETS_EXPECTED
    assert document["ok"] is False and document["exit_status"] == 1
    failed = next(c for c in document["cases"] if c["id"] == "7.1.5")
    assert "close code 1002 is not one of [1000]" in failed["reason"]

    run = await conform(websockets_process.url, "--cases", cases)
    assert run.status == 1
    rows = {line.split()[0]: line.split()[1] for line in run.out.splitlines()[1:5]}
    assert rows == {k: v for k, v in WEBSOCKETS_EXPECTED.items() if v != "OK"}
    assert "5 cases in " in run.out and ", 1 FAILED" in run.out
    assert "case 7.1.5: Send a first fragment, then Close, then the last fragment." in run.out
    assert "  observed: events [], server Close 1002" in run.out


async def test_usage_errors_and_an_unreachable_server() -> None:
    port = free_port()  # nothing listens there
    run = await conform(f"ws://127.0.0.1:{port}/", "--cases", "1.1.1")
    assert run.status == 1
    assert f"cannot connect to 127.0.0.1 port {port}" in run.err
    for args, message in [
        (["ws://127.0.0.1:1/", "--cases", "99.*"], "no case matches 99.*"),
        (["wss://127.0.0.1:1/"], "wss:// is not supported"),
        (["http://127.0.0.1:1/"], "is not a ws://host:port/ URL"),
        (["--cases", "1.1.1"], "the URL of the server is missing"),
        (["ws://127.0.0.1:1/", "--pause-scale", "-1"], "is not a number of 0 or more"),
    ]:
        run = await conform(*args)
        assert run.status == 2, (args, run.err)
        assert message in run.err, (args, run.err)
    run = await conform("--list", "--cases", "hixie-76,7.9.1")
    assert run.status == 0
    ids = [line.split()[0] for line in run.out.splitlines()]
    assert ids == ["7.9.1", *(f"hixie-76.{n}" for n in range(1, 24))]


HOSTILE_TEXT = ("</td></tr></table><script>document.title='owned'</script>"
                "<img src=x onerror=alert(1)>\u202e\x1b[2J")
HOSTILE_REASON = "<b>bold</b>\x1b[31m"
LONG = bytes(range(256)) * 20


async def hostile(ws: wscompat.Connection) -> None:
    """Answers any message with markup, control characters and a long binary message."""
    await ws.receive()
    await ws.send(HOSTILE_TEXT)
    await ws.send(LONG)
    await ws.close(4000, HOSTILE_REASON)


async def test_what_a_server_says_is_escaped(start_server: Starter, tmp_path: Path) -> None:
    server = await start_server(hostile)
    report = tmp_path / "report"
    run = await conform(f"ws://127.0.0.1:{server.port}/", "--cases", "1.1.2", "--html",
                        str(report))
    assert run.status == 1, run.err + run.out
    assert "\x1b" not in run.out and "\\x1b[31m" in run.out
    with trio.fail_after(120):
        page = await chromium(report / "cases" / "1.1.2.html", tmp_path / "dom", "--dump-dom")
    dom = Tables(page)
    assert "script" not in dom.elements and "img" not in dom.elements
    assert "<title>Case 1.1.2: FAILED</title>" in page
    cells = [cell for row in dom.tables["exchange"] for cell in row]
    shown = "</td></tr></table><script>document.title='owned'</script><img src=x " \
            "onerror=alert(1)>\\u202e\\x1b[2J"
    assert shown in cells
    assert any("4096 more octets not shown (5120 in all)" in cell for cell in cells)
    assert any(HOSTILE_REASON.replace("\x1b", "\\x1b") in cell
               for cell in (row[1] for row in dom.tables["facts"]))
