"""The vector format: the JSON Schema holds for every vector, the loader and the schema
refuse the same mistakes, and the newer steps (``expect_head`` with ``vary``,
``send_eof``) mean what docs/vectors.md says."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from wscompat.drafts import Draft
from wscompat.options import ServerOptions
from wscompat.vectors.expect import match
from wscompat.vectors.format import VectorError, check, load, vector_files
from wscompat.vectors.recording import UNRECORDED_OPTIONS, VECTOR_OPTIONS

ROOT = Path(__file__).parents[2] / "vectors"
SCHEMA = json.loads((ROOT / "schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FILES = vector_files([ROOT])

REQUEST = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
ANSWER = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
GOOD: dict[str, Any] = {
    "$schema": "../schema.json",
    "name": "hand-written",
    "draft": "rfc6455",
    "source": "RFC 6455 §1.3 (a test of the format)",
    "provenance": {"kind": "specification", "date": "2026-12-01", "documents": ["RFC 6455"]},
    "steps": [{"send": REQUEST}, {"expect_head": ANSWER, "vary": ["Date", "Server"]}],
    "end": {"eof": False},
}


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_every_vector_follows_the_schema(path: Path) -> None:
    errors = sorted(VALIDATOR.iter_errors(json.loads(path.read_text(encoding="utf-8"))),
                    key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_every_draft_has_at_least_15_vectors_with_a_source() -> None:
    vectors = [load(path) for path in FILES]
    for draft in Draft:
        mine = [v for v in vectors if v.draft is draft]
        assert len(mine) >= 15, (draft, len(mine))
        assert all(v.source.strip() for v in mine)


def test_captures_and_reconstructions_say_so() -> None:
    """Recorded vectors name the client and version; browser requests rebuilt from
    documented headers are marked as reconstructed."""
    vectors = [load(path) for path in FILES]
    recorded = [v for v in vectors if v.path.stem.startswith("recorded-")]
    clients = {"websockets", "websocket-client", "chromium", "perl-hixie-75",
               "perl-hybi-00", "perl-hybi-10", "perl-hybi-17"}
    assert {v.path.stem.removeprefix("recorded-") for v in recorded} >= clients
    for vector in recorded:
        assert vector.source.startswith("recorded from "), vector.id
        assert any(ch.isdigit() for ch in vector.source), f"{vector.id}: no version"
    for stem in ("hixie-75/handshake-chrome4", "hixie-76/handshake-safari5",
                 "hybi-07/handshake-firefox6", "hybi-08/handshake-chrome14"):
        vector = load(ROOT / f"{stem}.json")
        assert "reconstructed" in vector.source.lower(), stem


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []

    def case(label: str, **changes: Any) -> None:
        vector = copy.deepcopy(GOOD)
        for key, value in changes.items():
            if value is None:
                vector.pop(key, None)
            else:
                vector[key] = value
        cases.append((label, vector))

    case("no source", source=None)
    case("no draft", draft=None)
    case("unknown draft", draft="hybi-10")
    case("unknown key", comment="x")
    case("empty end", end={})
    case("unknown end", end={"closed": True})
    case("no steps", steps=[])
    case("misspelt step", steps=[{"sned": REQUEST}])
    case("two kinds in a step", steps=[{"send": REQUEST, "expect": ANSWER}])
    case("bad hex", steps=[{"send": {"hex": "zz"}}])
    case("vary on expect", steps=[{"send": REQUEST}, {"expect": ANSWER, "vary": ["Date"]}])
    case("head without blank line", steps=[{"send": REQUEST}, {"expect_head": "HTTP/1.1 101"}])
    case("chunks on expect", steps=[{"expect": "x", "chunks": [1]}])
    case("unknown option", options={"max_mesage_size": 64})
    case("bad event", events=[{"txt": "a"}])
    return cases


@pytest.mark.parametrize(("label", "raw"), _mutations(), ids=[c[0] for c in _mutations()])
def test_loader_and_schema_refuse_the_same_mistakes(
    tmp_path: Path, label: str, raw: dict[str, Any]
) -> None:
    path = tmp_path / "rfc6455" / "bad.json"
    path.parent.mkdir()
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert not VALIDATOR.is_valid(raw), label
    with pytest.raises(VectorError):
        load(path)


def test_the_good_example_is_valid_and_passes(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD), encoding="utf-8")
    assert VALIDATOR.is_valid(GOOD)
    assert check(load(path)).ok


# -- expect_head and vary ------------------------------------------------------------


HEAD = ANSWER.encode()
WITH_DATE = HEAD.replace(b"\r\nUpgrade", b"\r\nDate: Sun, 01 Mar 2026 10:00:00 GMT\r\nUpgrade", 1)


def test_varying_headers_may_appear_anywhere_or_not_at_all() -> None:
    for got in (HEAD, WITH_DATE, WITH_DATE[:-2] + b"Server: other/1.0\r\n\r\n"):
        found = match("expect_head", got + b"rest", expected=HEAD, vary=["date", "Server"])
        assert found.ok and found.consumed == len(got), got


def test_other_headers_must_match_in_order() -> None:
    swapped = HEAD.replace(b"Upgrade: websocket\r\nConnection: Upgrade",
                           b"Connection: Upgrade\r\nUpgrade: websocket")
    extra = HEAD[:-2] + b"X-Extra: 1\r\n\r\n"
    missing = HEAD.replace(b"Connection: Upgrade\r\n", b"")
    for got, words in ((swapped, "in another order"), (extra, "unexpected header 'X-Extra"),
                       (missing, "missing header 'Connection"),
                       (WITH_DATE, "unexpected header 'Date")):
        found = match("expect_head", got, expected=HEAD, vary=["Server"])
        assert found.done and words in found.problem, (got, found)


def test_a_head_still_arriving_is_undecided_until_eof() -> None:
    assert not match("expect_head", HEAD[:20], expected=HEAD).done
    found = match("expect_head", HEAD[:20], expected=HEAD, eof=True)
    assert found.done and found.problem


def test_exact_expectations_tell_waiting_from_differing() -> None:
    assert not match("expect", b"\x81\x05He", expected=b"\x81\x05Hello").done
    wrong = match("expect", b"\x81\x05Hx", expected=b"\x81\x05Hello")
    assert wrong.problem == "server bytes differ at offset 3" and wrong.offset == 3
    closed = match("expect", b"\x81\x05He", expected=b"\x81\x05Hello", eof=True)
    assert "closed after 4 of 7 bytes" in closed.problem


def test_send_eof_is_the_clients_half_close(tmp_path: Path) -> None:
    """hixie-75 closes by closing TCP: after send_eof the server closes too."""
    raw: dict[str, Any] = {
        "name": "half-close", "draft": "hixie-75", "source": "draft-hixie-75 §4.3 (format test)",
        "provenance": {"kind": "handwritten", "date": "2026-12-01"},
        "steps": [
            {"send": "GET /demo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
                     "Host: example.com\r\nOrigin: http://example.com\r\n\r\n"},
            {"expect": "HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
                       "Connection: Upgrade\r\nWebSocket-Origin: http://example.com\r\n"
                       "WebSocket-Location: ws://example.com/demo\r\n\r\n"},
            {"send_eof": True},
            {"expect_eof": True},
        ],
        "end": {"close_code": 1000, "eof": True},
    }
    path = tmp_path / "half-close.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert check(load(path)).ok
    raw["steps"] = [*raw["steps"][:3], {"send": {"hex": "00 ff"}}]
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(VectorError, match="after send_eof"):
        load(path)
    without_eof = {**raw, "steps": [*raw["steps"][:2], {"expect_eof": True}]}
    path.write_text(json.dumps(without_eof), encoding="utf-8")
    assert "close the connection" in check(load(path)).problem


def test_schema_options_are_server_options_and_recordable() -> None:
    """The options a vector may name exist in ServerOptions, and recordings write only
    options the schema allows."""
    allowed = set(SCHEMA["properties"]["options"]["properties"])
    assert allowed <= ServerOptions.names()
    assert set(VECTOR_OPTIONS) | set(UNRECORDED_OPTIONS) == allowed
    assert not set(VECTOR_OPTIONS) & set(UNRECORDED_OPTIONS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drafts": 5}, "drafts must be a list of strings"),
        ({"drafts": ["rfc6455", "hybi-09"]}, "unknown draft"),
        ({"max_message_size": "big"}, "max_message_size must be a number or null"),
        ({"secure": "yes"}, "secure must be true or false"),
        ({"max_queue": True}, "max_queue must be a number"),
        ({"ssl_context": None}, "cannot be set from a vector"),
    ],
)
def test_badly_typed_options_are_refused_clearly(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    path = tmp_path / "rfc6455" / "typed.json"
    path.parent.mkdir()
    path.write_text(json.dumps({
        "name": "typed", "draft": "rfc6455", "source": "written for this test",
        "provenance": {"kind": "handwritten", "date": "2026-12-01"},
        "steps": [{"send": "x"}], "end": {"eof": True}, "options": options,
    }))
    with pytest.raises(VectorError, match=message):
        load(path)
