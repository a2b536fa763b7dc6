"""HTTP/2 vectors (``"draft": "rfc8441"``): the form loads and is bounded, the loader and
the schema refuse the same mistakes, a wrong expectation fails where it should, the
corpus's HTTP/2 vectors replay over real sockets against wscompat (cleartext with prior
knowledge and TLS with ALPN h2) and fail against a server without HTTP/2, the recorder
turns an HTTP/2 connection into a vector, and the recordings of Node.js and Chromium
are what they say (made afresh in the live tests)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import ssl
from pathlib import Path
from typing import Any

import dpkt  # type: ignore[import-untyped]
import hpack
import jsonschema  # type: ignore[import-untyped]
import pytest
import trio
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wscompat.cli import echo
from wscompat.options import ServerOptions
from wscompat.vectors.export import pcapng_bytes
from wscompat.vectors.format import (
    HTTP2_GENERATION,
    LoadLimits,
    Vector,
    VectorError,
    check,
    load,
    load_all,
    server_options,
)
from wscompat.vectors.h2check import h2_pieces
from wscompat.vectors.h2record import PREFACE, h2_vector
from wscompat.vectors.recording import Recording
from wscompat.vectors.replay import ReplaySettings, replay_all, replay_vector
from wscompat.vectors.report import Outcome
from wscompat.vectors.show import render_text

from ..conftest import Starter
from . import h2_recordings

ROOT = Path(__file__).parents[2] / "vectors"
SCHEMA = json.loads((ROOT / "schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
H2 = sorted((v for v in load_all([ROOT]) if v.http2), key=lambda v: v.id)
EXAMPLE = ROOT / "rfc8441" / "rfc-example.json"
FAST = {"timeout": 5.0, "settle": 0.2, "jobs": 4}
"""Replay settings for a server expected to answer every vector (margins for a loaded
machine)."""

CONNECT = [[":method", "CONNECT"], [":protocol", "websocket"], [":scheme", "http"],
           [":path", "/"], [":authority", "127.0.0.1"], ["sec-websocket-version", "13"]]
GOOD: dict[str, Any] = {
    "$schema": "../schema.json",
    "name": "hand-written HTTP/2 echo",
    "draft": "rfc8441",
    "source": "RFC 8441 §4 and RFC 6455 §5.7 (a test of the format)",
    "provenance": {"kind": "specification", "date": "2026-12-06",
                   "documents": ["RFC 8441", "RFC 6455"]},
    "options": {"compression": "off"},
    "settings": {"SETTINGS_INITIAL_WINDOW_SIZE": 1024},
    "steps": [
        {"h2_expect_settings": {"SETTINGS_ENABLE_CONNECT_PROTOCOL": 1}},
        {"h2_request": CONNECT},
        {"h2_expect_headers": [[":status", "200"]], "vary": ["date"]},
        {"h2_send": {"hex": "81 85 37 fa 21 3d 7f 9f 4d 51 58"}},
        {"h2_expect_data": {"hex": "81 05 48 65 6c 6c 6f"}},
        {"h2_send": {"hex": "88 82 00 00 00 00 03 e8"}, "end_stream": True},
        {"h2_expect_close": 1000},
        {"h2_expect_end_stream": True},
    ],
    "events": [{"text": "Hello", "stream": 1}],
    "end": {"close_codes": {"1": 1000}, "eof": False},
}


def _write(tmp_path: Path, raw: dict[str, Any], name: str = "one") -> Path:
    path = tmp_path / "rfc8441" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return path


# -- loading ----------------------------------------------------------------------------


def test_the_corpus_has_the_rfc_example_and_two_recordings() -> None:
    assert [v.id for v in H2] == ["rfc8441/recorded-chromium", "rfc8441/recorded-node",
                                  "rfc8441/rfc-example"]
    for vector in H2:
        assert vector.generation == HTTP2_GENERATION == vector.path.parent.name
        assert vector.steps[0].kind == "h2_expect_settings"
        assert vector.steps[0].settings == (("SETTINGS_ENABLE_CONNECT_PROTOCOL", 1),)


def test_the_rfc_example_loads_as_the_rfc_prints_it() -> None:
    vector = load(EXAMPLE)
    assert vector.http2 and vector.draft.value == "rfc6455"  # RFC 6455 framing
    request = vector.steps[1]
    assert request.kind == "h2_request" and request.stream == 1
    assert request.headers == (
        (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
        (":path", "/chat"), (":authority", "server.example.com"),
        ("sec-websocket-protocol", "chat, superchat"),
        ("sec-websocket-extensions", "permessage-deflate"), ("sec-websocket-version", "13"),
        ("origin", "http://www.example.com"))
    assert vector.steps[2].headers == ((":status", "200"), ("sec-websocket-protocol", "chat"))
    assert [s.end_stream for s in vector.steps if s.kind == "h2_send"] == [False, True]
    assert vector.events == ("Hello",) and vector.event_streams == (1,)
    assert vector.end == {"close_codes": {"1": 1000}, "eof": False}


def test_a_hand_written_vector_checks_whole_and_bytewise(tmp_path: Path) -> None:
    vector = load(_write(tmp_path, GOOD))
    assert vector.settings == (("SETTINGS_INITIAL_WINDOW_SIZE", 1024),)
    assert [s.stream for s in vector.steps] == [0, 1, 1, 1, 1, 1, 1, 1]
    for bytewise in (False, True):
        result = check(vector, bytewise=bytewise)
        assert result.ok, result.problem


def test_flow_control_cuts_a_large_message_and_nothing_is_lost(tmp_path: Path) -> None:
    """64 KiB each way against a client window of 1 KiB: the server's DATA comes in
    many frames, the client's waits for WINDOW_UPDATEs; the expectation is the bytes."""
    raw = copy.deepcopy(GOOD)
    head = "82 ff 00 00 00 00 00 01 00 00 00 00 00 00"
    raw["steps"][3] = {"h2_send": [{"hex": head}, {"repeat": "5a", "count": 65536}]}
    raw["steps"][4] = {"h2_expect_data": [{"hex": "82 7f 00 00 00 00 00 01 00 00"},
                                          {"repeat": "5a", "count": 65536}]}
    raw["events"] = [{"binary": {"repeat": "5a", "count": 65536}}]
    vector = load(_write(tmp_path, raw))
    assert check(vector).ok, check(vector).problem
    pieces = h2_pieces(vector)
    assert sum(len(p.data) for p in pieces if p.side == "server") > 65536


# -- validation -------------------------------------------------------------------------


def _with(change: dict[str, Any] | None = None, *, step: int | None = None,
          value: Any = None, drop: str | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    if step is not None:
        raw["steps"][step] = value
    if change:
        raw.update(change)
    if drop:
        del raw[drop]
    return raw


MISTAKES: list[tuple[str, dict[str, Any], str, bool]] = [
    # (case, vector, what the loader says, whether the schema can say it too)
    ("even stream", _with(step=1, value={"h2_request": CONNECT, "stream": 2}),
     "stream 2 is even", True),
    ("stream 0", _with(step=1, value={"h2_request": CONNECT, "stream": 0}),
     "stream is a whole number from 1", True),
    ("stream past 2^31", _with(step=1, value={"h2_request": CONNECT, "stream": 2**31 + 1}),
     "stream is a whole number from 1 to 2147483647", True),
    ("an HTTP/1.1 step", _with(step=1, value={"send": "GET / HTTP/1.1\r\n\r\n"}),
     "has exactly one of", True),
    ("two kinds", _with(step=1, value={"h2_request": CONNECT, "h2_end_stream": True}),
     "has exactly one of", True),
    ("unknown key", _with(step=1, value={"h2_request": CONNECT, "weight": 3}),
     "unknown step keys ['weight']", True),
    ("end_stream on an expectation", _with(step=4, value={"h2_expect_data": "x",
                                                          "end_stream": True}),
     "end_stream does not belong to a h2_expect_data step", True),
    ("stream on a connection step", _with(step=0, value={
        "h2_expect_settings": {"SETTINGS_ENABLE_CONNECT_PROTOCOL": 1}, "stream": 1}),
     "stream does not belong", True),
    ("a field not a pair", _with(step=1, value={"h2_request": [[":method"]]}),
     "is a [name, value] pair of strings", True),
    ("a field of three", _with(step=1, value={"h2_request": [["a", "b", "c"]]}),
     "is a [name, value] pair of strings", True),
    ("a field of a number", _with(step=1, value={"h2_request": [["a", 1]]}),
     "is a [name, value] pair of strings", True),
    ("no fields", _with(step=1, value={"h2_request": []}),
     "list of [name, value] pairs", True),
    ("fields as an object", _with(step=1, value={"h2_request": {":method": "GET"}}),
     "list of [name, value] pairs", True),
    ("too many fields", _with(step=1, value={"h2_request": [["x-a", "b"]] * 1001}),
     "has 1001 fields, more than the limit of 1000", True),
    ("a header list too large", _with(step=1, value={"h2_request": [["x-a", "b" * 300000]]}),
     "is over 262144 bytes as HTTP/2 counts a header list", False),
    ("status out of range", _with(step=2, value={"h2_expect_status": 700}),
     "h2_expect_status is a whole number from 100 to 599", True),
    ("negative error code", _with(step=5, value={"h2_reset": -1}),
     "an HTTP/2 error code", True),
    ("end_stream not a boolean", _with(step=3, value={"h2_send": "x", "end_stream": 1}),
     "end_stream is true or false", True),
    ("unknown setting", _with({"settings": {"SETTINGS_WEIGHT": 1}}),
     "unknown setting", True),
    ("setting out of range", _with({"settings": {"SETTINGS_MAX_FRAME_SIZE": 100}}),
     "SETTINGS_MAX_FRAME_SIZE is a whole number from 16384", True),
    ("empty settings", _with({"settings": {}}), "object of SETTINGS names", True),
    ("expect_settings as a list", _with(step=0, value={"h2_expect_settings": [1]}),
     "object of SETTINGS names", True),
    ("an HTTP/1.1 end", _with({"end": {"close_code": 1000}}),
     "the end of an rfc8441 vector takes", True),
    ("close code of an even stream", _with({"end": {"close_codes": {"2": 1000}}}),
     "stream 2 is even", True),
    ("close code out of range", _with({"end": {"close_codes": {"1": 999}}}),
     "a close code is a whole number from 1000", True),
    ("event on an even stream", _with({"events": [{"text": "Hello", "stream": 2}]}),
     "stream 2 is even", True),
    ("data too large", _with(step=3, value={"h2_send": {"repeat": "00", "count": 10**9}}),
     "bytes, more than the limit of 67108864", False),
    ("a compression mode the server does not know", _with({"options": {"compression": "x"}}),
     "options: compression must be one of", False),
    ("close codes keyed by a non-ASCII digit", _with({"end": {"close_codes": {"²": 1000}}}),
     "a stream of close_codes is a number in a string", True),
    ("a send after send_eof", {**_with(), "steps": [*GOOD["steps"][:2], {"send_eof": True},
                                                    {"h2_send": "x"}]},
     "nothing can be sent after send_eof", False),
]


@pytest.mark.parametrize(("raw", "message", "schema_too"),
                         [case[1:] for case in MISTAKES], ids=[case[0] for case in MISTAKES])
def test_the_loader_refuses_with_a_clear_error(tmp_path: Path, raw: dict[str, Any],
                                               message: str, schema_too: bool) -> None:
    path = _write(tmp_path, raw)
    with pytest.raises(VectorError, match=None) as refused:
        load(path)
    assert message in str(refused.value)
    assert not list(VALIDATOR.iter_errors(GOOD))
    assert bool(list(VALIDATOR.iter_errors(raw))) is schema_too


def test_settings_and_stream_events_belong_to_http2_only(tmp_path: Path) -> None:
    plain = json.loads((ROOT / "rfc6455" / "frame-text-hello.json").read_text())
    for change, message in (({"settings": {"SETTINGS_ENABLE_PUSH": 0}}, "settings belong"),
                            ({"events": [{"text": "Hello", "stream": 1}]}, "an event is")):
        raw = {**plain, **change}
        with pytest.raises(VectorError) as refused:
            load(_write(tmp_path, raw))
        assert message in str(refused.value)
        assert list(VALIDATOR.iter_errors(raw))


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with pytest.raises(VectorError) as refused:
        load(path, LoadLimits(file_bytes=100))
    assert "the file is larger than the limit of 100 bytes" in str(refused.value)


# -- what a wrong vector says -----------------------------------------------------------


@pytest.mark.parametrize(("step", "value", "problem"), [
    (4, {"h2_expect_data": {"hex": "81 05 48 65 6c 6c 21"}}, "stream 1: DATA differs at offset 6"),
    (2, {"h2_expect_headers": [[":status", "201"]]}, ":status: '200', expected '201'"),
    (2, {"h2_expect_headers": [[":status", "200"], ["sec-websocket-protocol", "chat"]]},
     "missing field sec-websocket-protocol"),
    (0, {"h2_expect_settings": {"SETTINGS_ENABLE_CONNECT_PROTOCOL": 0}},
     "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, expected 0"),
    (6, {"h2_expect_close": 1001}, "close code 1000, expected 1001"),
    (7, {"h2_expect_reset": 8}, "END_STREAM, expected RST_STREAM CANCEL (8)"),
    (2, {"h2_expect_status": 400}, "status 200, expected 400"),
])
def test_a_wrong_expectation_fails_at_its_step(tmp_path: Path, step: int, value: Any,
                                                problem: str) -> None:
    vector = load(_write(tmp_path, _with(step=step, value=value)))
    result = check(vector)
    assert not result.ok and result.step == step + 1
    assert problem in result.problem, result.problem


def test_a_wrong_end_or_event_fails(tmp_path: Path) -> None:
    for change, problem in (({"end": {"close_codes": {"1": 1001}}},
                             "stream 1: close code 1000, expected 1001"),
                            ({"end": {"close_codes": {"3": 1000}}},
                             "stream 3 opened no WebSocket"),
                            ({"events": [{"text": "Hi"}]}, "application saw"),
                            ({"end": {"eof": True}}, "server closed: False")):
        result = check(load(_write(tmp_path, _with(change))))
        assert not result.ok and problem in result.problem, (change, result.problem)


def test_an_unexpected_answer_after_the_last_step_fails(tmp_path: Path) -> None:
    raw = _with()
    raw["steps"] = raw["steps"][:5]  # the echo expected, the close not sent
    raw["steps"].append({"h2_send": {"hex": "81 80 00 00 00 00"}})  # an empty text
    raw["events"] = [{"text": "Hello"}, {"text": ""}]
    raw["end"] = {"eof": False}
    result = check(load(_write(tmp_path, raw)))
    assert not result.ok
    assert "unexpected 2 bytes of DATA on stream 1 after the last expectation" in result.problem


# -- replay over real sockets -----------------------------------------------------------


async def _replay_corpus(start_server: Starter, *, secure: bool, ca: trustme.CA | None = None,
                         http2: bool = True) -> list[Outcome]:
    outcomes: list[Outcome] = []
    groups: dict[str, list[Vector]] = {}
    for vector in H2:
        groups.setdefault(json.dumps(vector.options, sort_keys=True), []).append(vector)
    client = None
    for group in groups.values():
        options = server_options(group[0])
        extra: dict[str, Any] = {"http2": http2}
        if secure:
            assert ca is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            extra["ssl_context"] = context
            client = ssl.create_default_context()
            ca.configure_trust(client)
        server = await start_server(echo, options=dataclasses.replace(options, **extra))
        settings = ReplaySettings("127.0.0.1", server.port, secure, ssl_context=client,
                                  server_options=group[0].options,
                                  **FAST)  # type: ignore[arg-type]
        outcomes += await replay_all(group, settings)
    return outcomes


def _failures(outcomes: list[Outcome]) -> str:
    return "\n".join(f"{o.id} [{o.status}] step {o.step}: {o.problem}\n  " + "\n  ".join(o.diff)
                     for o in outcomes if o.status != "expected")


async def test_every_http2_vector_replays_over_cleartext_h2(start_server: Starter) -> None:
    with trio.fail_after(60):
        outcomes = await _replay_corpus(start_server, secure=False)
    assert [o.id for o in outcomes] == [v.id for v in H2]
    assert all(o.status == "expected" for o in outcomes), _failures(outcomes)
    assert {o.draft for o in outcomes} == {"rfc8441"}


async def test_every_http2_vector_replays_over_tls_with_alpn_h2(start_server: Starter) -> None:
    with trio.fail_after(60):
        outcomes = await _replay_corpus(start_server, secure=True, ca=trustme.CA())
    assert all(o.status == "expected" for o in outcomes), _failures(outcomes)


async def test_a_server_without_http2_is_different(start_server: Starter) -> None:
    """With HTTP/2 off the preface is no request wscompat serves: every vector fails,
    saying the answer is no HTTP/2 (or that the server closed without one)."""
    with trio.fail_after(60):
        outcomes = await _replay_corpus(start_server, secure=False, http2=False)
    assert outcomes and all(o.status == "different" for o in outcomes), outcomes
    for outcome in outcomes:
        assert ("no HTTP/2" in outcome.problem
                or "without answering the HTTP/2 preface" in outcome.problem), outcome.problem


async def test_over_tls_a_server_offering_only_http11_is_different(
    start_server: Starter,
) -> None:
    with trio.fail_after(60):
        outcomes = await _replay_corpus(start_server, secure=True, ca=trustme.CA(),
                                        http2=False)
    assert outcomes and all(o.status == "different" for o in outcomes)
    assert all("ALPN" in o.problem or "no HTTP/2" in o.problem for o in outcomes), outcomes


async def test_a_wrong_vector_replays_as_different_with_a_diff(start_server: Starter,
                                                               tmp_path: Path) -> None:
    wrong = load(_write(tmp_path, _with(step=4, value={
        "h2_expect_data": {"hex": "81 05 48 65 6c 6c 21"}})))
    server = await start_server(echo, options=server_options(wrong))
    settings = ReplaySettings("127.0.0.1", server.port, server_options=wrong.options,
                              **FAST)  # type: ignore[arg-type]
    with trio.fail_after(30):
        outcome = await replay_vector(wrong, settings)
    assert outcome.status == "different" and outcome.step == 5, outcome.problem
    assert "DATA differs at offset 6" in outcome.problem
    assert any(line.startswith("+ ") and "6f" in line for line in outcome.diff), outcome.diff


async def test_a_silent_server_is_no_answer(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        with trio.move_on_after(10):
            while await stream.receive_some(65536):
                pass

    listeners = await nursery.start(trio.serve_tcp, silent, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(20):
        outcome = await replay_vector(load(EXAMPLE), ReplaySettings(
            "127.0.0.1", port, timeout=0.5, server_options={"compression": "off"}))
    assert outcome.status == "no_answer"
    assert "no HTTP/2 SETTINGS from the server within 0.5 s" in outcome.problem


# -- show and export --------------------------------------------------------------------


def test_show_decodes_header_lists_and_frames() -> None:
    text = render_text([load(EXAMPLE)])
    assert "draft rfc8441 (WebSocket over HTTP/2, RFC 6455 frames)" in text
    assert ":protocol: websocket" in text and "← SETTINGS with" in text
    assert 'text (final, masked 37 fa 21 3d, 5 bytes): "Hello"' in text
    assert "close (final, unmasked, 2 bytes): code 1000" in text
    assert "the application sees close code 1000 on stream 1" in text


def test_export_writes_the_http2_bytes_of_a_run() -> None:
    """A capture of an HTTP/2 vector holds what each side put on the wire against
    wscompat: the preface first, then frames; dpkt reads it back to the same bytes."""
    vector = load(EXAMPLE)
    pieces = h2_pieces(vector)
    sides: dict[str, bytearray] = {"client": bytearray(), "server": bytearray()}
    reader = dpkt.pcapng.Reader(io.BytesIO(pcapng_bytes(vector)))
    for _, frame in reader:
        segment = dpkt.ethernet.Ethernet(frame).data.data
        sides["client" if segment.sport == 50000 else "server"] += segment.data
    client = b"".join(p.data for p in pieces if p.side == "client")
    server = b"".join(p.data for p in pieces if p.side == "server")
    assert bytes(sides["client"]) == client and client.startswith(PREFACE)
    assert bytes(sides["server"]) == server and server[3] == 0x4  # a SETTINGS frame first


# -- recording --------------------------------------------------------------------------


def _recorded(vector: Vector, **options: Any) -> dict[str, Any] | None:
    """Feed a recording what each side of the vector's offline run sent, in order."""
    recording = Recording()
    for piece in h2_pieces(vector):
        if piece.side == "client" and piece.data:
            recording.received(piece.data)
        elif piece.side == "server" and piece.data:
            recording.sent(piece.data)
        elif piece.eof:
            (recording.received_eof if piece.side == "client" else recording.sent_eof)()
    return recording.vector(ServerOptions(**options))


def test_the_recorder_turns_an_http2_run_back_into_its_vector(tmp_path: Path) -> None:
    example = load(EXAMPLE)
    raw = _recorded(example, record_redact=(), compression="off")
    assert raw is not None and raw["draft"] == "rfc8441"
    assert raw["options"] == {"compression": "off"}
    vector = load(_write(tmp_path, raw))
    assert check(vector).ok and check(vector, bytewise=True).ok, check(vector).problem
    assert [s.kind for s in vector.steps] == [s.kind for s in example.steps]
    assert vector.steps[1].headers == example.steps[1].headers
    for mine, theirs in zip(vector.steps, example.steps, strict=False):
        if mine.kind in ("h2_send", "h2_expect_data"):
            assert mine.data == theirs.data
    assert vector.end == example.end == {"close_codes": {"1": 1000}, "eof": False}


def test_the_recorder_redacts_as_over_http11(tmp_path: Path) -> None:
    raw = _with(step=1, value={"h2_request": [
        *CONNECT[:3], [":path", "/room?token=s3cr3t"], *CONNECT[4:],
        ["cookie", "session=abcdef"], ["sec-websocket-protocol", "chat"]]})
    raw["steps"][2] = {"h2_expect_headers": [[":status", "200"],
                                             ["sec-websocket-protocol", "chat"]]}
    recorded = _recorded(load(_write(tmp_path, raw)))
    assert recorded is not None
    text = json.dumps(recorded)
    assert "s3cr3t" not in text and "abcdef" not in text
    fields = dict(map(tuple, recorded["steps"][1]["h2_request"]))
    assert fields[":path"] == "/room?token=[redacted]"
    assert fields["cookie"] == "[redacted]" and fields["sec-websocket-protocol"] == "redacted"
    assert ["sec-websocket-protocol", "redacted"] in recorded["steps"][2]["h2_expect_headers"]
    assert "Query values, cookie, sec-websocket-protocol redacted." in recorded["description"]


def test_the_recorder_leaves_other_connections(tmp_path: Path) -> None:
    not_h2 = Recording()
    not_h2.received(b"\x16\x03\x01\x02\x00")  # a TLS ClientHello
    assert not not_h2.worth_keeping() and not_h2.vector(ServerOptions()) is None
    plain = _with(step=1, value={"h2_request": [[":method", "GET"], [":scheme", "http"],
                                                [":path", "/"], [":authority", "x"]],
                                 "end_stream": True})
    plain["steps"] = [*plain["steps"][:2], {"h2_expect_status": 426}]
    plain["events"], plain["end"] = [], {"eof": False}
    vector = load(_write(tmp_path, plain))
    assert check(vector).ok, check(vector).problem
    assert _recorded(vector) is None  # a plain request: kept only with record_plain
    kept = _recorded(vector, record_plain=True)
    assert kept is not None and kept["steps"][2] == {"h2_expect_status": 426, "stream": 1}
    assert h2_vector([("client", b"GET / HTTP/1.1\r\n\r\n")], started=None, truncated=False,
                     redact_fields=(), redact_query=True, provenance=lambda _: {}) is None


def test_recorded_vectors_name_their_clients() -> None:
    by_id = {v.id: v for v in H2}
    node, browser = by_id["rfc8441/recorded-node"], by_id["rfc8441/recorded-chromium"]
    assert node.provenance["client"]["name"] == "Node.js"
    assert browser.provenance["client"]["name"] == "Chromium"
    assert "HeadlessChrome" in browser.provenance["client"]["user_agent"]
    for vector in (node, browser):
        assert vector.provenance["kind"] == "recorded"
        assert vector.source.startswith(f"recorded from {vector.provenance['client']['name']}")
        requests = [dict(s.headers) for s in vector.steps if s.kind == "h2_request"]
        connects = [r for r in requests if r.get(":method") == "CONNECT"]
        assert connects and all(r[":protocol"] == "websocket" for r in connects)
    # Chromium loaded its page over the same connection first, and said how it wanted
    # the connection: a larger HPACK table, no push, a large window.
    assert dict(browser.settings)["SETTINGS_ENABLE_PUSH"] == 0
    assert next(dict(s.headers)[":method"] for s in browser.steps if s.kind == "h2_request") \
        == "GET"
    assert browser.end["close_codes"] == {"5": 1000}
    assert node.end["close_codes"] == {"1": 1000, "3": 1000}


def _shape(vector: Vector) -> dict[int, list[tuple[str, Any]]]:
    """Per stream, what happened in order but for DATA: the header lists' names and
    pseudo-header values (ports differ from run to run), the ends and resets. Where
    DATA is cut and how its steps interleave with other streams' depends on timing, and
    an END_STREAM may ride on the last DATA or come alone: DATA is compared by its total
    size each way (:func:`_data`), and an END_STREAM is one item however it came."""
    shape: dict[int, list[tuple[str, Any]]] = {}
    for step in vector.steps:
        if not step.stream:
            continue
        items = shape.setdefault(step.stream, [])
        if step.kind in ("h2_request", "h2_expect_headers"):
            items.append((step.kind, tuple(
                (n, v if n.startswith(":") and n != ":authority" else "")
                for n, v in step.headers)))
        elif step.kind not in ("h2_send", "h2_expect_data"):
            items.append((step.kind.replace("h2_end_stream", "client end"),
                          step.code or True))
        if step.end_stream:
            items.append(("client end", True))
    return shape


def _data(vector: Vector, kind: str) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for step in vector.steps:
        if step.kind == kind:
            sizes[step.stream] = sizes.get(step.stream, 0) + len(step.data)
    return sizes


@pytest.mark.live
async def test_node_recorded_afresh_matches_the_corpus(tmp_path: Path) -> None:
    with trio.fail_after(120):
        path, report = await h2_recordings.record_node(tmp_path)
    assert report["errors"] == [] and report["enableConnectProtocol"] is True
    fresh, stored = load(path), load(ROOT / "rfc8441" / "recorded-node.json")
    assert check(fresh).ok and check(fresh, bytewise=True).ok, check(fresh).problem
    assert _shape(fresh) == _shape(stored)
    for kind in ("h2_send", "h2_expect_data"):
        assert _data(fresh, kind) == _data(stored, kind)
    assert fresh.end == stored.end


@pytest.mark.live
async def test_chromium_recorded_afresh_matches_the_corpus(tmp_path: Path) -> None:
    (tmp_path / "browser").mkdir()
    with trio.fail_after(180):
        path, report = await h2_recordings.record_chromium(tmp_path / "out", tmp_path / "browser")
    assert report["pageProtocol"] == "h2" and report["opened"] is True, report
    assert report["echoes"] == [h2_recordings.CHROMIUM_TEXT, h2_recordings.CHROMIUM_BINARY]
    assert report["protocol"] == "chat" and report["close"]["code"] == 1000
    fresh, stored = load(path), load(ROOT / "rfc8441" / "recorded-chromium.json")
    assert check(fresh).ok and check(fresh, bytewise=True).ok, check(fresh).problem
    connect = [dict(s.headers) for s in fresh.steps
               if s.kind == "h2_request" and dict(s.headers)[":method"] == "CONNECT"]
    assert len(connect) == 1 and connect[0][":path"] == "/chromium"
    assert connect[0]["sec-websocket-protocol"] == "chat, superchat"
    stored_connect = next(dict(s.headers) for s in stored.steps if s.kind == "h2_request"
                          and dict(s.headers)[":method"] == "CONNECT")
    assert set(connect[0]) == set(stored_connect)
    assert fresh.settings == stored.settings
    assert list(fresh.end["close_codes"].values()) == [1000]


async def test_serve_record_writes_a_replayed_http2_vector_back(start_server: Starter,
                                                                tmp_path: Path) -> None:
    """Over real sockets: the RFC example replayed (cleartext, prior knowledge) against
    ``wscompat serve --record`` comes back as a file that checks and says the same."""
    example = load(EXAMPLE)
    server = await start_server(echo, options=dataclasses.replace(
        server_options(example), record_dir=str(tmp_path / "out"), record_redact=()))
    settings = ReplaySettings("127.0.0.1", server.port, server_options=example.options,
                              **FAST)  # type: ignore[arg-type]
    with trio.fail_after(30):
        outcome = await replay_vector(example, settings)
        assert outcome.status == "expected", outcome.problem
        path = await h2_recordings.wait_for_file(tmp_path / "out")
    recorded = load(path)
    assert recorded.http2 and recorded.options == {"compression": "off"}
    assert check(recorded).ok and check(recorded, bytewise=True).ok, check(recorded).problem
    requests = [s for s in recorded.steps if s.kind == "h2_request"]
    assert [s.headers for s in requests] == [example.steps[1].headers]
    sent = b"".join(s.data for s in recorded.steps if s.kind == "h2_send")
    assert sent == b"".join(s.data for s in example.steps if s.kind == "h2_send")
    answered = b"".join(s.data for s in recorded.steps if s.kind == "h2_expect_data")
    assert answered == bytes.fromhex("81 05 48 65 6c 6c 6f 88 02 03 e8")
    assert recorded.end["close_codes"] == {"1": 1000}


# -- any file at all --------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)
"""Any JSON value."""


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, the root aside."""
    found: list[tuple[Any, ...]] = []
    children = (value.items() if isinstance(value, dict) else
                enumerate(value) if isinstance(value, list) else ())
    for key, child in children:
        found.append((*path, key))
        found.extend(_paths(child, (*path, key)))
    return found


PLACES = _paths(GOOD)
KEYS = ["stream", "end_stream", "vary", "headers", "settings", "close_codes", "h2_send",
        "h2_expect_settings", "h2_frames", "h2_goaway", "events", "eof", "1", "01", "²"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(PLACES), value=JSON | st.sampled_from(KEYS),
       key=st.sampled_from(KEYS), add=st.booleans())
def test_any_change_to_a_vector_loads_or_is_refused(tmp_path: Path, place: tuple[Any, ...],
                                                    value: Any, key: str, add: bool) -> None:
    """Replace any value of a good vector by any JSON value, or add any key beside it:
    the loader takes it or refuses it with a VectorError, and what it takes, the
    offline check runs to a result."""
    raw = copy.deepcopy(GOOD)
    parent = raw
    for part in place[:-1]:
        parent = parent[part]
    if add and isinstance(parent, dict):
        parent[key] = value
    else:
        parent[place[-1]] = value
    try:
        vector = load(_write(tmp_path, raw))
    except VectorError:
        return
    check(vector)
    check(vector, bytewise=True)


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") \
        + payload


FRAMES = st.one_of(
    st.builds(lambda sid, end, fields: _frame(1, 0x4 | end, sid, hpack.Encoder().encode(fields)),
              st.integers(0, 9), st.integers(0, 1),
              st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=4)),
    st.builds(lambda sid, end, data: _frame(0, end, sid, data), st.integers(0, 9),
              st.integers(0, 1), st.binary(max_size=40)),
    st.builds(_frame, st.integers(0, 12), st.integers(0, 255), st.integers(0, 9),
              st.binary(max_size=30)),
    st.binary(max_size=20),
)
"""HTTP/2 frames, well formed or not, and bytes that are none."""


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exchange=st.lists(st.tuples(st.booleans(), FRAMES), max_size=12), plain=st.booleans())
def test_any_http2_connection_records_as_a_vector_that_loads_and_checks(
    tmp_path: Path, exchange: list[tuple[bool, bytes]], plain: bool
) -> None:
    """Whatever follows the preface either way, the recording is no file or a valid
    vector, which the offline check runs to a result."""
    recording = Recording()
    recording.received(PREFACE)
    for client, data in exchange:
        (recording.received if client else recording.sent)(data)
    recording.sent_eof()
    raw = recording.vector(ServerOptions(record_plain=plain))
    if raw is None:
        return
    assert not list(VALIDATOR.iter_errors(raw))
    vector = load(_write(tmp_path, raw))
    check(vector)
    check(vector, bytewise=True)


def test_frames_no_step_can_name_are_recorded_raw(tmp_path: Path) -> None:
    """DATA on stream 2, which no client opens, answered GOAWAY PROTOCOL_ERROR: it is
    sent as raw frames, and recorded back as the same raw frames."""
    raw = _with()
    misplaced = {"hex": "00 00 01 00 00 00 00 00 02 78"}
    raw["steps"] = [*raw["steps"][:3], {"h2_frames": misplaced},
                    {"h2_expect_goaway": 1}, {"expect_eof": True}]
    raw["events"], raw["end"] = [], {"eof": True}
    vector = load(_write(tmp_path, raw))
    assert check(vector).ok and check(vector, bytewise=True).ok, check(vector).problem
    recorded = _recorded(vector, compression="off")
    assert recorded is not None
    assert {"h2_frames": misplaced["hex"]} in [
        {"h2_frames": s["h2_frames"]["hex"]} for s in recorded["steps"] if "h2_frames" in s]
    assert "kept as raw h2_frames" in recorded["description"]
    again = load(_write(tmp_path, recorded, "again"))
    assert [s.kind for s in again.steps] == [s.kind for s in vector.steps]
    assert check(again).ok, check(again).problem


SECRET = "Zq7SECRETx9"


def _raw_block_recording(block_fields: list[tuple[str, str]], *, split: bool
                         ) -> tuple[dict[str, Any], bytes]:
    """A client that opens a WebSocket on stream 1, then sends a header block on
    stream 2 (which no client opens), literal HPACK, whole or as HEADERS plus
    CONTINUATION; the vector recorded and the block's frames as sent."""
    opening = hpack.Encoder().encode([(":method", "CONNECT"), (":protocol", "websocket"),
                                      (":scheme", "http"), (":path", "/"),
                                      (":authority", "x")])
    block = hpack.Encoder().encode(block_fields, huffman=False)
    if split:
        cut = len(block) // 2
        frames = _frame(1, 0x1, 2, block[:cut]) + _frame(9, 0x4, 2, block[cut:])
    else:
        frames = _frame(1, 0x5, 2, block)
    recording = Recording()
    recording.received(PREFACE + _frame(4, 0, 0, b"") + _frame(1, 0x4, 1, opening))
    recording.received(frames)
    recording.sent(_frame(4, 0, 0, b""))
    recording.received_eof()
    recording.sent_eof()
    vector = recording.vector(ServerOptions())
    assert vector is not None
    return vector, frames


@pytest.mark.parametrize("split", [False, True], ids=["headers", "continuation"])
def test_a_secret_in_a_header_block_kept_raw_is_redacted(split: bool) -> None:
    """A header block on a stream no client opens is kept as raw frames; when a field in
    it is one to redact, the block is made again with the field redacted, so the secret
    is in the vector neither as text nor as hex, and the frames still decode."""
    vector, frames = _raw_block_recording(
        [(":method", "GET"), (":path", f"/x?token={SECRET}"), (":scheme", "http"),
         (":authority", "x"), ("authorization", f"Bearer {SECRET}"),
         ("cookie", f"session={SECRET}")], split=split)
    text = json.dumps(vector)
    secret = SECRET.encode()
    for form in (SECRET, secret.hex(), " ".join(f"{b:02x}" for b in secret)):
        assert form not in text
    (raw,) = [bytes.fromhex(s["h2_frames"]["hex"]) for s in vector["steps"]
              if "h2_frames" in s]
    assert raw != frames
    assert raw[3:5] == b"\x01\x05" and int.from_bytes(raw[5:9], "big") == 2
    fields = [(n.decode(), v.decode()) for n, v in hpack.Decoder().decode(raw[9:], raw=True)]
    assert ("authorization", "[redacted]") in fields and ("cookie", "[redacted]") in fields
    assert "made again with its redacted fields" in vector["description"]


def test_a_header_block_kept_raw_with_nothing_to_redact_goes_as_it_came() -> None:
    vector, frames = _raw_block_recording(
        [(":method", "GET"), (":path", "/x"), (":scheme", "http"), (":authority", "x")],
        split=True)
    (raw,) = [bytes.fromhex(s["h2_frames"]["hex"]) for s in vector["steps"]
              if "h2_frames" in s]
    assert raw == frames


def test_a_connection_that_ends_within_the_preface_is_read_as_http11() -> None:
    """The preface cut short (a client that gave up, or a scanner) is the HTTP/1.1 request
    its first line is, to worth_keeping() and vector() alike: they agree."""
    recording = Recording()
    recording.received(PREFACE[:19])
    recording.received_eof()
    recording.sent_eof()
    options = ServerOptions(record_plain=True)
    assert recording.worth_keeping(plain=True)
    vector = recording.vector(options)
    assert vector is not None and vector["draft"] != "rfc8441"
