"""Provenance: every corpus vector says where it came from, in agreement with its
``source`` sentence; the loader and the schema refuse the same malformed provenance; the
recorder writes it."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

import wscompat
from wscompat.vectors.format import VectorError, load, load_all
from wscompat.vectors.provenance import KINDS
from wscompat.vectors.recording import Recording

ROOT = Path(__file__).parents[2] / "vectors"
SCHEMA = json.loads((ROOT / "schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
VECTORS = list(load_all([ROOT]))


def test_every_kind_is_in_the_corpus_but_imports() -> None:
    kinds = {v.provenance["kind"] for v in VECTORS}
    assert kinds == set(KINDS) - {"imported"}


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_provenance_agrees_with_the_source(vector: Any) -> None:
    p, source = vector.provenance, vector.source
    datetime.date.fromisoformat(p["date"])
    if p["kind"] == "recorded":
        assert source.startswith("recorded from ")
        assert f"{p['client']['name']} {p['client']['version']}" in source
        assert p["date"] in source  # the day the client was recorded
        assert p["tool"] == {"name": "wscompat", "version": "0.1.0", "command": "serve --record"}
    elif p["kind"] == "reconstructed":
        assert "reconstructed" in source.lower()
    else:
        assert "recorded" not in source.lower() and "reconstructed" not in source.lower()
    if p["kind"] == "specification":
        assert any(d.startswith(("RFC ", "draft-")) for d in p["documents"])
    if source.startswith("unofficial:"):
        assert p["kind"] == "handwritten"
    for document in p.get("documents", ()):
        assert document.split()[0] in source, document


GOOD: dict[str, Any] = {
    "name": "provenance", "draft": "rfc6455", "source": "a test of the provenance rules",
    "provenance": {"kind": "handwritten", "date": "2026-12-01"},
    "steps": [{"send": "x"}], "end": {"eof": True},
}


def _bad() -> list[tuple[str, dict[str, Any]]]:
    cases = [
        ("missing", None),
        ("not an object", "recorded"),
        ("unknown kind", {"kind": "guessed", "date": "2026-12-01"}),
        ("no date", {"kind": "handwritten"}),
        ("date not a day", {"kind": "handwritten", "date": "2026-13-01"}),
        ("date as a time", {"kind": "handwritten", "date": "2026-12-01T10:00"}),
        ("unknown key", {"kind": "handwritten", "date": "2026-12-01", "by": "me"}),
        ("recorded without tool", {"kind": "recorded", "date": "2026-12-01"}),
        ("imported without capture", {"kind": "imported", "date": "2026-12-01",
                                      "tool": {"name": "wscompat"}}),
        ("specification without documents", {"kind": "specification", "date": "2026-12-01"}),
        ("empty documents", {"kind": "reconstructed", "date": "2026-12-01", "documents": []}),
        ("blank document", {"kind": "specification", "date": "2026-12-01",
                            "documents": ["  "]}),
        ("empty client", {"kind": "handwritten", "date": "2026-12-01", "client": {}}),
        ("client key", {"kind": "handwritten", "date": "2026-12-01",
                        "client": {"browser": "x"}}),
        ("capture format", {"kind": "imported", "date": "2026-12-01",
                            "tool": {"name": "wscompat"},
                            "capture": {"file": "a.cap", "format": "snoop"}}),
        ("capture digest", {"kind": "imported", "date": "2026-12-01",
                            "tool": {"name": "wscompat"},
                            "capture": {"file": "a.pcap", "format": "pcap", "sha256": "abc"}}),
    ]
    out = []
    for label, value in cases:
        raw = copy.deepcopy(GOOD)
        if value is None:
            del raw["provenance"]
        else:
            raw["provenance"] = value
        out.append((label, raw))
    return out


def test_the_good_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD))
    assert VALIDATOR.is_valid(GOOD)
    assert load(path).provenance == GOOD["provenance"]


@pytest.mark.parametrize(("label", "raw"), _bad(), ids=[c[0] for c in _bad()])
def test_loader_and_schema_refuse_the_same_provenance(
    tmp_path: Path, label: str, raw: dict[str, Any]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    assert not VALIDATOR.is_valid(raw), label
    with pytest.raises(VectorError, match="provenance"):
        load(path)


def test_the_recorder_writes_provenance() -> None:
    started = datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.UTC)
    recording = Recording(10, started)
    recording.received(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: probe/1.0\r\n\r\n")
    recording.sent(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
    recording.sent_eof()
    vector = recording.vector()
    assert vector is not None
    assert vector["provenance"] == {
        "kind": "recorded", "date": "2026-12-01",
        "tool": {"name": "wscompat", "version": wscompat.__version__,
                 "command": "serve --record"},
        "client": {"user_agent": "probe/1.0"},
    }
    assert VALIDATOR.is_valid(vector)
