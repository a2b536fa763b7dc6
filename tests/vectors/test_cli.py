"""``wscompat vectors check``: the whole corpus passes, failures come with a byte-level
diff, the JSON report has a stable shape, and the exit status tells CI what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wscompat.cli import main
from wscompat.drafts import Draft
from wscompat.vectors.format import vector_files

ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "vectors"
DRAFTS = [*(d.value for d in Draft), "rfc8441"]


def _copy(name: str, target: Path) -> dict[str, object]:
    """A corpus vector's JSON, to be changed and written to ``target``."""
    raw: dict[str, object] = json.loads((CORPUS / name).read_text(encoding="utf-8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    return raw


def test_check_passes_on_the_whole_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", str(CORPUS), "--bytewise"]) == 0
    out = capsys.readouterr().out
    count = len(vector_files([CORPUS]))
    assert f"{count} vectors through the sans-I/O core, whole and one byte at a time" in out
    for draft in DRAFTS:
        assert f"\n{draft} (" in out, draft  # one table per draft
    total = [line.split() for line in out.splitlines() if line.startswith("total ")]
    assert total == [["total", str(count), str(count), "0"]]
    assert "FAIL" not in out


def test_check_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", str(CORPUS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["command"] == "check" and report["ok"] is True
    assert set(report["summary"]) == {*DRAFTS, "total"}
    assert report["summary"]["total"]["fail"] == 0
    assert len(report["vectors"]) == report["summary"]["total"]["vectors"]
    first = report["vectors"][0]
    assert set(first) >= {"id", "draft", "name", "path", "status", "problem", "step", "diff"}
    assert {v["status"] for v in report["vectors"]} == {"pass"}


def test_a_broken_vector_fails_with_a_byte_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "rfc6455" / "broken.json"
    raw = _copy("rfc6455/frame-text-hello.json", target)
    steps = raw["steps"]
    assert isinstance(steps, list)
    steps[3] = {"expect": {"hex": "81 05 48 65 6c 6c 21"}}  # "Hell!" instead of "Hello"
    target.write_text(json.dumps(raw), encoding="utf-8")
    good = tmp_path / "rfc6455" / "good.json"
    good.write_text((CORPUS / "rfc6455/frame-text-hello.json").read_text(encoding="utf-8"))

    assert main(["vectors", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL rfc6455/broken step 4: server bytes differ at offset 6" in out
    assert "first difference at byte 6: expected 0x21, got 0x6f" in out
    assert "- 000000  81 05 48 65 6c 6c 21" in out
    assert "+ 000000  81 05 48 65 6c 6c 6f" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("rfc6455 ")]
    assert rows[-1] == ["rfc6455", "2", "1", "1"]  # the summary: 2 vectors, 1 pass, 1 fail

    assert main(["vectors", "check", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    broken = next(v for v in report["vectors"] if v["id"] == "rfc6455/broken")
    assert broken["status"] == "fail" and broken["step"] == 4
    assert broken["expected_hex"] == "81 05 48 65 6c 6c 21"
    assert broken["actual_hex"] == "81 05 48 65 6c 6c 6f"


def test_a_head_mismatch_is_shown_line_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "hixie-76" / "wrong-location.json"
    raw = _copy("hixie-76/handshake-draft-example.json", target)
    text = json.dumps(raw).replace("ws://example.com/demo", "ws://example.com/other")
    target.write_text(text, encoding="utf-8")
    assert main(["vectors", "check", str(target)]) == 1
    out = capsys.readouterr().out
    assert "- Sec-WebSocket-Location: ws://example.com/other\\r\\n" in out
    assert "+ Sec-WebSocket-Location: ws://example.com/demo\\r\\n" in out


def test_an_invalid_file_is_a_failure_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "hybi-07" / "bad.json"
    bad.parent.mkdir()
    bad.write_text('{"name": "x", "draft": "hybi-07", "source": "a hand-written test", '
                   '"provenance": {"kind": "handwritten", "date": "2026-12-01"}, '
                   '"steps": [{"sned": "GET"}], "end": {"eof": false}}', encoding="utf-8")
    (tmp_path / "hybi-07" / "not-json.json").write_text("{", encoding="utf-8")
    assert main(["vectors", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL hybi-07/bad: invalid vector: a step has exactly one of" in out
    assert "FAIL hybi-07/not-json: invalid vector" in out


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["vectors", "check", str(tmp_path)]) == 2  # an empty directory
    assert main(["replay", "ws://127.0.0.1:1/chat", str(CORPUS)]) == 2
    assert "has a path" in capsys.readouterr().err
    assert main(["replay", "http://127.0.0.1:1/", str(CORPUS)]) == 2
    assert main(["replay", "ws://127.0.0.1:1/", str(CORPUS), "--server-options", "{"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["vectors"])
    assert exc.value.code == 2


def test_check_as_a_command_anywhere(tmp_path: Path) -> None:
    """``wscompat vectors check`` with no path checks the corpus wscompat comes with
    (here the checkout's, wscompat being run from it), wherever it is run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "wscompat", "vectors", "check"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    count = len(vector_files([CORPUS]))
    assert [["total", str(count), str(count), "0"]] == [
        line.split() for line in done.stdout.splitlines() if line.startswith("total ")]


def test_options_go_anywhere_among_the_paths(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(CORPUS / "hixie-75"), str(CORPUS / "hixie-76")]
    assert main(["vectors", "check", paths[0], "--bytewise", paths[1], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bytewise"] is True
    assert report["summary"]["total"]["pass"] == len(vector_files(paths))
    assert set(report["summary"]) == {"hixie-75", "hixie-76", "total"}
