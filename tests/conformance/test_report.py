"""The reports' shapes without a server: the summary table, the JSON document, and the
HTML pages' escaping and bounds (the browser tests in test_cli.py open real ones)."""

from __future__ import annotations

from pathlib import Path

from wscompat.conformance.cases import Event, autobahn
from wscompat.conformance.report import RunInfo, file_name, summary, to_json, write_html
from wscompat.conformance.verdict import Observation, Result, judge
from wscompat.conformance.wire import WireLog

INFO = RunInfo("ws://127.0.0.1:9/<x>", "2026-01-01T00:00:00+00:00", 1.5, False, 1.0,
               ("1.1.*",), "0.1.0")


def results() -> list[Result]:
    cases = {case.id: case for case in autobahn()}
    echoed = Observation(events=[Event.message("")], closed_by_client=True,
                         close_received=True, close_code=1000, clean=True,
                         server_dropped=True)
    log = WireLog(max_entries=3, keep=8)
    for n in range(5):
        log.add(n / 1000, "server", "<b>frame</b>", b"\x00<script>" * 4, text=n % 2 == 0)
    silent = Observation(dropped_by_client=True, wire=log)
    return [judge(cases["1.1.1"], echoed), judge(cases["1.1.2"], silent)]


def test_summary_and_json() -> None:
    done = results()
    lines = summary(done).splitlines()
    assert lines[1].split() == ["1", "1", "0", "0", "0", "1", "2"]
    assert lines[2].split() == ["all", "1", "0", "0", "0", "1", "2"]
    document = to_json(done, INFO, status=1)
    assert document["ok"] is False and document["exit_status"] == 1
    assert [c["verdict"] for c in document["cases"]] == ["OK", "FAILED"]
    assert document["summary"]["all"]["cases"] == 2
    assert document["settings"] == {"full": False, "pause_scale": 1.0, "cases": ["1.1.*"],
                                    "http2": False}


def test_pages_escape_and_cut(tmp_path: Path) -> None:
    index = write_html(results(), INFO, tmp_path / "out", status=1)
    assert index == tmp_path / "out" / "index.html"
    assert "ws://127.0.0.1:9/&lt;x&gt;" in index.read_text()
    page = (tmp_path / "out" / "cases" / "1.1.2.html").read_text()
    assert "<script" not in page and "<b>frame" not in page
    assert "&lt;b&gt;frame&lt;/b&gt;" in page
    assert page.count("28 more octets not shown (36 in all)") == 3
    assert "2 more entries not recorded (the log keeps the first 3)" in page
    assert "\\x00&lt;script" in page  # text: the NUL spelled out
    assert file_name("a/../b c") == "a_.._b_c.html"
