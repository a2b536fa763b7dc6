"""Test vectors: whole recorded exchanges kept as JSON data, checked offline.

A vector says what a client sends (in order, possibly in chunks and with pauses), what an
echo server must send back, which messages the application sees, and how the exchange
ends. :func:`check` runs one through the sans-I/O core with the echo application,
without sockets or clocks, and reports the first difference byte for byte. The format is
documented in ``docs/vectors.md``; the same files can be replayed against any server.

Vector files may come from anywhere, so :func:`load` bounds what one can cost before
building it: the file's size, the JSON values in it, the bytes its data expands to
(``{"repeat": ..., "count": ...}`` is measured, not multiplied out, until the whole
vector is known to fit), and each pause. A file over a limit is an invalid vector, like
any other mistake: :class:`VectorError` with the file and the reason.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wscompat.drafts import Draft, parse_drafts
from wscompat.options import ServerOptions, UpgradeRequest
from wscompat.protocol.connection import Phase, ServerConnection
from wscompat.protocol.framing import Message, State
from wscompat.protocol.handshake.origin import validate_patterns
from wscompat.vectors.expect import Match, match
from wscompat.vectors.provenance import ProvenanceError, check_provenance

__all__ = [
    "MAX_FILE_BYTES", "MAX_JSON_VALUES", "MAX_PAUSE", "MAX_VECTOR_BYTES", "LoadLimits", "Result",
    "Vector", "VectorError", "check", "decode_data", "load", "load_all", "vector_files",
]

DRAFT_DIRS = {d.value: d for d in Draft}
HTTP2_GENERATION = "rfc8441"
"""The ``draft`` of a vector of WebSocket over HTTP/2: its framing is RFC 6455's, and its
steps are HTTP/2's (:mod:`wscompat.vectors.h2peer`)."""
GENERATIONS = (*DRAFT_DIRS, HTTP2_GENERATION)
"""What a vector's ``draft`` may say, in the order reports list them."""

MAX_FILE_BYTES = 32 * 2**20
"""Bytes of one vector file. A recording (at most 4 MiB each way, written as spaced hex)
stays under it."""
MAX_JSON_VALUES = 100_000
"""Strings, objects, arrays and commas in one vector file, counted before it is parsed:
small JSON values cost the parser about 20 times their size, so their number is bounded
as well as the file's size."""
MAX_VECTOR_BYTES = 64 * 2**20
"""Bytes all of one vector's data (sends, expectations, binary events) expands to."""
MAX_PAUSE = 60.0
"""Seconds of one ``pause`` step."""


@dataclass(frozen=True)
class LoadLimits:
    """What one vector file may cost to load; every field is a bound, never "unlimited"."""

    file_bytes: int = MAX_FILE_BYTES
    json_values: int = MAX_JSON_VALUES
    vector_bytes: int = MAX_VECTOR_BYTES
    pause: float = MAX_PAUSE


class VectorError(ValueError):
    """A vector file does not follow the format, or is over a limit of :class:`LoadLimits`."""


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 3, 60, 60
_BRIEF.maxlist = _BRIEF.maxdict = 4


def _brief(value: Any) -> str:
    """A short repr of a piece of the file for an error message: a vector can be big."""
    return _BRIEF.repr(value)


EXPECTATIONS = frozenset({"expect", "expect_head", "expect_close", "expect_status", "expect_eof"})
"""Step kinds that compare server bytes."""
H2_CLIENT = frozenset({"h2_request", "h2_send", "h2_end_stream", "h2_reset", "h2_goaway",
                       "h2_frames"})
"""What the client of an HTTP/2 vector does."""
H2_EXPECTATIONS = frozenset({"h2_expect_headers", "h2_expect_status", "h2_expect_data",
                             "h2_expect_close", "h2_expect_end_stream", "h2_expect_reset",
                             "h2_expect_goaway", "h2_expect_settings"})
"""What an HTTP/2 vector expects of the server, stream by stream (or of the connection)."""
H2_SHARED = frozenset({"pause", "send_eof", "expect_eof"})
"""Steps of the TCP connection itself, the same in both forms."""
H2_CONNECTION = frozenset({"h2_goaway", "h2_frames", "h2_expect_goaway", "h2_expect_settings",
                           *H2_SHARED})
"""HTTP/2 steps of the connection as a whole: they take no ``stream``."""


@dataclass(frozen=True)
class Step:
    kind: str  # send, send_eof, pause, or one of EXPECTATIONS
    data: bytes = b""
    chunks: tuple[int, ...] = ()
    seconds: float = 0.0
    code: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    vary: tuple[str, ...] = ()
    stream: int = 0
    """The HTTP/2 stream of an ``h2_*`` step (0: the connection)."""
    end_stream: bool = False
    """An ``h2_request`` or ``h2_send`` that ends the client's side of its stream."""
    settings: tuple[tuple[str, int], ...] = ()
    """The SETTINGS values an ``h2_expect_settings`` step expects, by RFC name."""

    def match(self, received: bytes | bytearray, *, eof: bool, checked: int = 0) -> Match:
        """Compare server bytes not yet accounted for with this expectation (``checked``:
        as :func:`wscompat.vectors.expect.match`)."""
        return match(self.kind, received, expected=self.data, code=self.code,
                     headers=self.headers, vary=self.vary, eof=eof, checked=checked)


@dataclass(frozen=True)
class Vector:
    path: Path
    name: str
    draft: Draft
    source: str
    description: str
    steps: tuple[Step, ...]
    events: tuple[str | bytes, ...] | None
    end: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    """Where it came from, as data (:mod:`wscompat.vectors.provenance`)."""
    http2: bool = False
    """WebSocket over HTTP/2 (RFC 8441): ``h2_*`` steps, RFC 6455 framing (``draft``)."""
    event_streams: tuple[int, ...] = ()
    """With ``http2``: the stream of each of ``events``."""
    settings: tuple[tuple[str, int], ...] = ()
    """With ``http2``: what the client's SETTINGS in its connection preface say, by RFC
    name, besides the ``h2`` library's defaults."""

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"

    @property
    def generation(self) -> str:
        """What the file's ``draft`` says: ``rfc8441`` over HTTP/2, else the draft."""
        return HTTP2_GENERATION if self.http2 else self.draft.value


def decode_data(spec: Any, limit: int = MAX_VECTOR_BYTES) -> bytes:
    """Bytes from a data spec: a string (UTF-8), ``{"hex": ...}``, ``{"repeat": hex,
    "count": n}``, or a list of these concatenated; VectorError past ``limit`` bytes,
    found before any of them is made."""
    size = _data_size(spec)
    if size > limit:
        raise VectorError(f"data of {size} bytes, more than the limit of {limit}")
    return _decode(spec)


def _data_size(spec: Any) -> int:
    """The bytes a data spec stands for, found without expanding its repeats; raises
    VectorError for anything that is not a data spec."""
    if isinstance(spec, str):
        return len(spec.encode("utf-8"))
    if isinstance(spec, list):
        return sum(_data_size(item) for item in spec)
    if isinstance(spec, dict):
        if set(spec) == {"hex"}:
            return len(_hex(spec["hex"]))
        if set(spec) == {"repeat", "count"}:
            pattern, count = _repeat(spec)
            return len(pattern) * count
    raise VectorError(f"not a data spec: {_brief(spec)}")


def _decode(spec: Any) -> bytes:
    if isinstance(spec, str):
        return spec.encode("utf-8")
    if isinstance(spec, list):
        return b"".join(_decode(item) for item in spec)
    if set(spec) == {"hex"}:
        return _hex(spec["hex"])
    pattern, count = _repeat(spec)
    return pattern * count


def _hex(text: Any) -> bytes:
    if not isinstance(text, str):
        raise VectorError(f"hex is a string of hex digits, not {_brief(text)}")
    return bytes.fromhex(text)


def _repeat(spec: dict[str, Any]) -> tuple[bytes, int]:
    pattern, count = _hex(spec["repeat"]), spec["count"]
    if not pattern:
        raise VectorError("repeat needs at least one byte of hex")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise VectorError(f"count is a whole number from 0, not {_brief(count)}")
    return pattern, count


def _event(spec: Any, *, http2: bool = False) -> tuple[str | bytes, int]:
    """An event and its stream (1 unless an HTTP/2 vector names another)."""
    stream = 1
    if http2 and isinstance(spec, dict) and "stream" in spec:
        spec = dict(spec)
        stream = _stream(spec.pop("stream"))
    if isinstance(spec, dict) and set(spec) == {"text"}:
        return str(spec["text"]), stream
    if isinstance(spec, dict) and set(spec) == {"binary"}:
        return _decode(spec["binary"]), stream
    raise VectorError(f"an event is {{'text': str}} or {{'binary': data}}"
                      f"{' (and a stream)' if http2 else ''}, not {_brief(spec)}")


_STEP_KEYS = {"send", "send_eof", "pause", *EXPECTATIONS}
_EXTRA_KEYS = {"chunks": "send", "headers": "expect_status", "vary": "expect_head"}
_DATA_KEYS = ("send", "expect", "expect_head", "h2_send", "h2_expect_data", "h2_frames")
"""Step keys whose value is a data spec."""


def _data_specs(raw: dict[str, Any]) -> Iterator[Any]:
    """Every data spec of a vector's steps and events, to measure before decoding any."""
    for spec in raw["steps"] if isinstance(raw["steps"], list) else ():
        if isinstance(spec, dict):
            yield from (spec[key] for key in _DATA_KEYS if key in spec)
    for event in raw.get("events") or ():
        if isinstance(event, dict) and "binary" in event:
            yield event["binary"]


def _whole_number(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise VectorError(f"{what} is a whole number from {low} to {high}, not {_brief(value)}")


def _pause(value: Any, limit: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= limit:
        return float(value)  # NaN fails the comparison, as infinity does
    raise VectorError(f"pause is a number of seconds from 0 to {limit:g}, not {_brief(value)}")


def _step(spec: Any, limits: LoadLimits) -> Step:
    if not isinstance(spec, dict) or len(set(spec) & _STEP_KEYS) != 1:
        raise VectorError(f"a step has exactly one of {sorted(_STEP_KEYS)}: {_brief(spec)}")
    for extra, owner in _EXTRA_KEYS.items():
        if extra in spec and owner not in spec:
            raise VectorError(f"{extra} belong to a {owner} step")
    unknown = set(spec) - _STEP_KEYS - set(_EXTRA_KEYS)
    if unknown:
        raise VectorError(f"unknown step keys {sorted(unknown)}")
    if "send" in spec:
        data = _decode(spec["send"])
        chunks = spec.get("chunks", [])
        if not isinstance(chunks, list):
            raise VectorError(f"chunks is a list of sizes, not {_brief(chunks)}")
        sizes = tuple(_whole_number(n, "a chunk", 1, len(data)) for n in chunks)
        if sum(sizes) > len(data):
            raise VectorError(f"chunks add up to {sum(sizes)} bytes, more than the "
                              f"{len(data)} sent")
        return Step("send", data, chunks=sizes)
    if "expect_head" in spec:
        head = _decode(spec["expect_head"])
        if not head.endswith(b"\r\n\r\n"):
            raise VectorError("expect_head is a whole HTTP head ending with a blank line")
        vary = tuple(str(name) for name in spec.get("vary", ()))
        return Step("expect_head", head, vary=vary)
    if "expect_close" in spec:
        return Step("expect_close",
                    code=_whole_number(spec["expect_close"], "expect_close", 1000, 4999))
    if "expect_status" in spec:
        headers = tuple((str(k), str(v)) for k, v in dict(spec.get("headers", {})).items())
        return Step("expect_status",
                    code=_whole_number(spec["expect_status"], "expect_status", 100, 599),
                    headers=headers)
    if "expect" in spec:
        return Step("expect", _decode(spec["expect"]))
    if "pause" in spec:
        return Step("pause", seconds=_pause(spec["pause"], limits.pause))
    if spec.get("expect_eof") is True:
        return Step("expect_eof")
    if spec.get("send_eof") is True:
        return Step("send_eof")
    raise VectorError(f"unknown step {_brief(spec)}")


MAX_STREAM = 2**31 - 1
MAX_H2_CODE = 2**32 - 1
MAX_FIELDS = 1000
"""Fields in one header list of an HTTP/2 vector."""
MAX_FIELD_LIST_BYTES = 2**18
"""The size of one header list as HTTP/2 counts it (RFC 9113 §6.5.2: each field's name
and value in bytes, plus 32), 256 KiB."""
H2_SETTINGS = {
    "SETTINGS_HEADER_TABLE_SIZE": (0x1, 0, 2**32 - 1),
    "SETTINGS_ENABLE_PUSH": (0x2, 0, 1),
    "SETTINGS_MAX_CONCURRENT_STREAMS": (0x3, 0, 2**32 - 1),
    "SETTINGS_INITIAL_WINDOW_SIZE": (0x4, 0, 2**31 - 1),
    "SETTINGS_MAX_FRAME_SIZE": (0x5, 2**14, 2**24 - 1),
    "SETTINGS_MAX_HEADER_LIST_SIZE": (0x6, 0, 2**32 - 1),
    "SETTINGS_ENABLE_CONNECT_PROTOCOL": (0x8, 0, 1),
}
"""The SETTINGS a vector may name (RFC 9113 §6.5.2, RFC 8441 §3): code, lowest and
highest value allowed."""
_H2_KEYS = H2_CLIENT | H2_EXPECTATIONS | H2_SHARED
_H2_EXTRA = {
    "stream": _H2_KEYS - H2_CONNECTION,
    "end_stream": frozenset({"h2_request", "h2_send"}),
    "vary": frozenset({"h2_expect_headers"}),
    "headers": frozenset({"h2_expect_status"}),
}
"""Keys an HTTP/2 step may have besides its kind, and the kinds that take each."""


def _stream(value: Any) -> int:
    """A client stream's number: odd, as every stream a client opens is."""
    number = _whole_number(value, "stream", 1, MAX_STREAM)
    if number % 2 == 0:
        raise VectorError(f"stream {number} is even: a client's streams are odd")
    return number


def _field_list(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    """A header list: ``[[name, value], ...]`` in order, names as sent (lowercase in
    HTTP/2), pseudo-header fields (``:method``) included. An empty name is malformed
    HTTP/2, which a vector may send; an empty list is sent as ``h2_frames``."""
    if not isinstance(value, list) or not value:
        raise VectorError(f"{what} is a list of [name, value] pairs, not {_brief(value)}")
    if len(value) > MAX_FIELDS:
        raise VectorError(f"{what} has {len(value)} fields, more than the limit of "
                          f"{MAX_FIELDS}")
    fields = []
    size = 0
    for item in value:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(part, str) for part in item)):
            raise VectorError(f"a field of {what} is a [name, value] pair of strings, not "
                              f"{_brief(item)}")
        size += len(item[0].encode("utf-8", "replace")) + len(
            item[1].encode("utf-8", "replace")) + 32
        if size > MAX_FIELD_LIST_BYTES:
            raise VectorError(f"{what} is over {MAX_FIELD_LIST_BYTES} bytes as HTTP/2 counts "
                              "a header list")
        fields.append((item[0], item[1]))
    return tuple(fields)


def settings_of(value: Any, what: str) -> tuple[tuple[str, int], ...]:
    """SETTINGS by their RFC names (``{"SETTINGS_ENABLE_CONNECT_PROTOCOL": 1}``), each
    value within what the RFCs allow."""
    if not isinstance(value, dict) or not value:
        raise VectorError(f"{what} is an object of SETTINGS names and values, not "
                          f"{_brief(value)}")
    out = []
    for name, number in value.items():
        if name not in H2_SETTINGS:
            raise VectorError(f"{what}: unknown setting {_brief(name)} (one of "
                              f"{', '.join(H2_SETTINGS)})")
        _, low, high = H2_SETTINGS[name]
        out.append((name, _whole_number(number, f"{what}: {name}", low, high)))
    return tuple(out)


def _h2_step(spec: Any, limits: LoadLimits) -> Step:
    """One step of an HTTP/2 vector (docs/vectors.md, "WebSocket over HTTP/2")."""
    if not isinstance(spec, dict) or len(set(spec) & _H2_KEYS) != 1:
        raise VectorError(f"a step of an {HTTP2_GENERATION} vector has exactly one of "
                          f"{sorted(_H2_KEYS)}: {_brief(spec)}")
    [kind] = set(spec) & _H2_KEYS
    unknown = set(spec) - {kind} - set(_H2_EXTRA)
    if unknown:
        raise VectorError(f"unknown step keys {sorted(unknown)}")
    for extra, owners in _H2_EXTRA.items():
        if extra in spec and kind not in owners:
            raise VectorError(f"{extra} does not belong to a {kind} step")
    if kind in H2_SHARED:
        return _step(spec, limits)
    value = spec[kind]
    stream = 0 if kind in H2_CONNECTION else _stream(spec.get("stream", 1))
    end_stream = spec.get("end_stream", False)
    if not isinstance(end_stream, bool):
        raise VectorError(f"end_stream is true or false, not {_brief(end_stream)}")
    if kind in ("h2_request", "h2_expect_headers"):
        vary = spec.get("vary", [])
        if not isinstance(vary, list) or not all(isinstance(v, str) and v for v in vary):
            raise VectorError(f"vary is a list of field names, not {_brief(vary)}")
        return Step(kind, headers=_field_list(value, kind), stream=stream,
                    end_stream=end_stream, vary=tuple(vary))
    if kind in ("h2_send", "h2_expect_data", "h2_frames"):
        return Step(kind, _decode(value), stream=stream, end_stream=end_stream)
    if kind == "h2_expect_status":
        headers = spec.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in
                                                    headers.values()):
            raise VectorError(f"headers is an object of field names and values, not "
                              f"{_brief(headers)}")
        return Step(kind, code=_whole_number(value, kind, 100, 599), stream=stream,
                    headers=tuple((str(k), v) for k, v in headers.items()))
    if kind == "h2_expect_close":
        return Step(kind, code=_whole_number(value, kind, 1000, 4999), stream=stream)
    if kind == "h2_expect_settings":
        return Step(kind, settings=settings_of(value, kind))
    if kind in ("h2_reset", "h2_goaway", "h2_expect_reset", "h2_expect_goaway"):
        return Step(kind, code=_whole_number(value, f"{kind} (an HTTP/2 error code)", 0,
                                             MAX_H2_CODE), stream=stream)
    if value is not True:
        raise VectorError(f"{kind} is true, not {_brief(value)}")
    return Step(kind, stream=stream)


_ALLOWED_KEYS = {
    "$schema", "name", "draft", "source", "provenance", "description", "steps", "events", "end",
    "options", "settings",
}
_END_KEYS = {"close_code", "status", "eof"}
_H2_END_KEYS = {"close_codes", "eof"}


def _h2_end(end: dict[str, Any]) -> dict[str, Any]:
    """An HTTP/2 vector's end: ``eof``, and ``close_codes``, the code each WebSocket
    stream ended with (``{"1": 1000}``)."""
    if not end or set(end) - _H2_END_KEYS:
        raise VectorError(f"the end of an {HTTP2_GENERATION} vector takes "
                          f"{sorted(_H2_END_KEYS)}")
    if "eof" in end and not isinstance(end["eof"], bool):
        raise VectorError(f"eof is true or false, not {_brief(end['eof'])}")
    codes = end.get("close_codes", {})
    if not isinstance(codes, dict):
        raise VectorError(f"close_codes maps streams to close codes, not {_brief(codes)}")
    for stream, code in codes.items():
        if not (isinstance(stream, str) and stream.isascii() and stream.isdigit()
                and stream[0] != "0"):
            raise VectorError(f"a stream of close_codes is a number in a string, not "
                              f"{_brief(stream)}")
        _stream(int(stream))
        _whole_number(code, "a close code", 1000, 4999)
    return end


def load(path: str | Path, limits: LoadLimits = LoadLimits()) -> Vector:
    """The vector in ``path``; VectorError naming the file and the reason for anything
    else, a file over ``limits`` included."""
    path = Path(path)
    try:
        raw = json.loads(_read(path, limits), parse_constant=_not_json)
    except (OSError, ValueError, OverflowError, RecursionError) as exc:  # JSON, UTF-8
        raise VectorError(f"{path}: {exc}") from None
    try:
        return _parse(path, raw, limits)
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise VectorError(f"{path}: {exc}") from None


_READ_SIZE = 2**20
"""Bytes read from a vector file at a time: ``read(n)`` sets n bytes aside first."""


def _read(path: Path, limits: LoadLimits) -> str:
    pieces, size = [], 0
    with path.open("rb") as file:
        while piece := file.read(_READ_SIZE):
            size += len(piece)
            if size > limits.file_bytes:
                raise VectorError(f"the file is larger than the limit of {limits.file_bytes} "
                                  "bytes")
            pieces.append(piece)
    data = b"".join(pieces)
    del pieces
    text = data.decode("utf-8")
    if _json_values(text, limits.json_values) > limits.json_values:
        raise VectorError(f"more than {limits.json_values} JSON values (strings, objects, "
                          "arrays and commas)")
    return text


_JSON_TOKEN = re.compile(r'[\[{,"]')
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _json_values(text: str, limit: int) -> int:
    """Strings, objects, arrays and commas in ``text`` (a bound on the values a parser
    would build), counted up to ``limit + 1``. Linear: each string is skipped whole."""
    count, pos = 0, 0
    while count <= limit:
        token = _JSON_TOKEN.search(text, pos)
        if token is None:
            break
        count, pos = count + 1, token.end()
        if token.group() == '"':
            string = _JSON_STRING.match(text, token.start())
            if string is None:
                break  # unterminated: the parser says where
            pos = string.end()
    return count


def _not_json(constant: str) -> Any:
    raise VectorError(f"{constant} is not a JSON number")


def _parse(path: Path, raw: Any, limits: LoadLimits) -> Vector:
    if not isinstance(raw, dict):
        raise VectorError("a vector is a JSON object")
    unknown = set(raw) - _ALLOWED_KEYS
    if unknown:
        raise VectorError(f"unknown keys {sorted(unknown)}")
    for key in ("name", "draft", "source", "provenance", "steps", "end"):
        if key not in raw:
            raise VectorError(f"missing {key!r}")
    if not str(raw["source"]).strip():
        raise VectorError("source must name where the vector comes from")
    try:
        provenance = check_provenance(raw["provenance"])
    except ProvenanceError as exc:
        raise VectorError(str(exc)) from None
    if raw["draft"] not in GENERATIONS:
        raise VectorError(f"draft is one of {sorted(GENERATIONS)}, not {raw['draft']!r}")
    http2 = raw["draft"] == HTTP2_GENERATION
    draft = Draft.RFC6455 if http2 else DRAFT_DIRS[raw["draft"]]
    if not isinstance(raw["end"], dict):
        raise VectorError(f"end is an object, not {_brief(raw['end'])}")
    end = dict(raw["end"])
    if http2:
        _h2_end(end)
    elif "settings" in raw:
        raise VectorError(f"settings belong to an {HTTP2_GENERATION} vector")
    elif not end or set(end) - _END_KEYS:
        raise VectorError(f"end takes {sorted(_END_KEYS)}")
    size = sum(_data_size(spec) for spec in _data_specs(raw))
    if size > limits.vector_bytes:
        raise VectorError(f"the data expands to {size} bytes, more than the limit of "
                          f"{limits.vector_bytes}")
    if "events" in raw and not isinstance(raw["events"], list):
        raise VectorError(f"events is a list, not {_brief(raw['events'])}")
    pairs = None if "events" not in raw else [_event(e, http2=http2) for e in raw["events"]]
    events = None if pairs is None else tuple(event for event, _ in pairs)
    options = dict(raw.get("options", {}))
    unknown_options = set(options) - ServerOptions.names()
    if unknown_options:
        raise VectorError(f"unknown server options {sorted(unknown_options)}")
    for name, value in options.items():
        _check_option(name, value)
    _check_options_together(options)
    if not isinstance(raw["steps"], list):
        raise VectorError(f"steps is a list, not {_brief(raw['steps'])}")
    parse = _h2_step if http2 else _step
    steps = tuple(parse(s, limits) for s in raw["steps"])
    if not steps:
        raise VectorError("a vector has at least one step")
    kinds = [step.kind for step in steps]
    sending = H2_CLIENT if http2 else {"send"}
    if "send_eof" in kinds and sending & set(kinds[kinds.index("send_eof"):]):
        raise VectorError("nothing can be sent after send_eof")
    return Vector(
        path=path,
        name=str(raw["name"]),
        draft=draft,
        source=str(raw["source"]),
        description=str(raw.get("description", "")),
        steps=steps,
        events=events,
        end=end,
        options=options,
        provenance=provenance,
        http2=http2,
        settings=settings_of(raw["settings"], "settings") if "settings" in raw else (),
        event_streams=() if pairs is None or not http2 else tuple(s for _, s in pairs),
    )


def vector_files(paths: Iterable[str | Path]) -> list[Path]:
    """The given files, and every ``*.json`` under the given directories (sorted), the
    schema excepted. Raises FileNotFoundError for a path that does not exist."""
    found: list[Path] = []
    for path in paths:
        root = Path(path)
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(f for f in sorted(root.rglob("*.json"))
                         if f.name != "schema.json" and f.is_file())
        else:
            raise FileNotFoundError(f"no such file or directory: {root}")
    return found


def load_all(
    paths: Iterable[str | Path], limits: LoadLimits = LoadLimits()
) -> Iterator[Vector]:
    """Every vector under the given files and directories, sorted by path."""
    for file in vector_files(paths):
        yield load(file, limits)


# -- offline check ------------------------------------------------------------------------


@dataclass
class Result:
    vector: Vector
    ok: bool
    problem: str = ""
    expected: bytes = b""
    """The bytes the failing step expected (exact and head expectations only)."""
    actual: bytes = b""
    """The server's bytes from where the failing step started reading."""
    step: int = 0
    """The failing step, counted from 1; 0 when the end of the exchange differs."""
    offset: int = 0
    """Where in the server's whole output the difference starts."""


class _EchoSession:
    """A whole server connection without I/O: the protocol connection and the echo
    application, driven exactly as the trio server drives them."""

    def __init__(self, options: ServerOptions) -> None:
        self.proto = ServerConnection(options.settings)
        self.out = bytearray()
        self.eof = False
        self.events: list[str | bytes] = []
        self.status: int | None = None

    @property
    def close_code(self) -> int | None:
        return self.proto.close_code

    @property
    def opened(self) -> bool:
        return self.proto.framer is not None

    def feed(self, data: bytes) -> None:
        if self.eof:
            return
        self.proto.receive_data(data)
        self._pump()

    def feed_eof(self) -> None:
        if self.opened and not self.eof:
            self.proto.receive_eof()
            self._pump()
        self.eof = True

    def _pump(self) -> None:
        proto = self.proto
        if proto.phase is Phase.DECIDE:
            proto.accept(proto.choose_subprotocol(proto.upgrade_request()))
        elif proto.phase is Phase.PLAIN:
            proto.answer_health(serving=True)  # a server the vector runs on is serving
        for event in proto.events():
            if isinstance(event, Message):
                self.events.append(event.data)
                if proto.state is State.OPEN:
                    if isinstance(event.data, str):
                        proto.send_text(event.data)
                    else:
                        proto.send_binary(event.data)
        self.out += proto.data_to_send()
        if proto.phase in (Phase.REFUSED, Phase.TLS):
            self.status = proto.rejection.status if proto.rejection else None
            self.eof = True
        elif proto.eof_wanted:
            self.eof = True


_LIST_OPTIONS = {"drafts", "subprotocols", "origins"}
_NOT_DATA = {"select_subprotocol", "process_request", "ssl_context", "record_dir"}
_NUMBER_OR_NULL = {"max_frame_size", "idle_timeout", "ping_interval", "max_message_size",
                   "max_connections"}
_DEFAULTS = ServerOptions()


def _check_option(name: str, value: Any) -> None:
    """JSON types for the options a vector may set, so a hand-written file gets a clear
    error here rather than a failure deep inside the server."""
    if name in _NOT_DATA:
        raise VectorError(f"option {name} cannot be set from a vector")
    if name in _LIST_OPTIONS:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        wanted = "a list of strings"
    elif name in _NUMBER_OR_NULL:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        wanted = "a number or null"
    else:
        default = getattr(_DEFAULTS, name)
        if isinstance(default, bool):
            ok, wanted = isinstance(value, bool), "true or false"
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            wanted = "a number"
        else:
            ok, wanted = isinstance(value, str), "a string"
    if isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise VectorError(f"option {name} must be {wanted}, not {_brief(value)}")
    if name == "drafts":
        try:
            parse_drafts(",".join(value))
        except ValueError as exc:
            raise VectorError(f"option drafts: {exc}") from None
    if name == "origins":
        try:
            validate_patterns(tuple(value))
        except ValueError as exc:
            raise VectorError(f"option origins: {exc}") from None


def _check_options_together(options: dict[str, Any]) -> None:
    """The options as the server takes them: a value of the right type the server still
    refuses (a compression mode it does not know, a window of 3 bits) is the vector's
    error, said here, rather than an exception when it is checked or replayed."""
    given = dict(options)
    if "drafts" in given:
        given["drafts"] = parse_drafts(",".join(given["drafts"]))
    try:
        built = ServerOptions(**given)
        _ = built.settings, built.h2_settings, built.compression_settings()
    except (ValueError, TypeError) as exc:
        raise VectorError(f"options: {exc}") from None


def server_options(vector: Vector) -> ServerOptions:
    """The vector's ``options`` as ServerOptions (``drafts`` given as a list of names).

    Without ``subprotocols`` the echo application accepts the first one offered, as
    ``wscompat serve`` does.
    """
    options: dict[str, Any] = {"select_subprotocol": _first_offered, **vector.options}
    if "subprotocols" in options:
        del options["select_subprotocol"]
    if "drafts" in options:
        options["drafts"] = parse_drafts(",".join(options["drafts"]))
    return ServerOptions(**options)


def _first_offered(_: UpgradeRequest, offered: Sequence[str]) -> str | None:
    return offered[0] if offered else None


def check(vector: Vector, *, bytewise: bool = False) -> Result:
    """Run a vector offline; with ``bytewise`` every send arrives one byte at a time."""
    if vector.http2:
        from wscompat.vectors.h2check import check_h2  # noqa: PLC0415 (it imports this)

        return check_h2(vector, bytewise=bytewise)
    options = server_options(vector)
    session = _EchoSession(options)
    read = 0  # server bytes accounted for, and dropped from session.out
    for number, step in enumerate(vector.steps, 1):
        if step.kind == "send":
            for piece in _pieces(step, bytewise):
                session.feed(piece)
        elif step.kind == "send_eof":
            session.feed_eof()
        elif step.kind in EXPECTATIONS:
            pending = session.out
            found = step.match(pending, eof=session.eof)
            if not found.done:
                problem = ("expected the server to close the connection"
                           if step.kind == "expect_eof" else
                           f"the server sent only {len(pending)} more bytes and then waited")
                return _failure(vector, step, number, offset=read, problem=problem,
                                pending=bytes(pending))
            if found.problem:
                return _failure(vector, step, number, offset=read + found.offset,
                                problem=found.problem, pending=bytes(pending))
            read += found.consumed
            del pending[: found.consumed]  # cheap at the front of a bytearray
    if vector.steps and vector.steps[-1].kind != "expect_eof" and session.out:
        return Result(vector, False, "unexpected bytes after the last expectation",
                      b"", bytes(session.out), step=len(vector.steps), offset=read)
    return _check_end(vector, session)


def _failure(vector: Vector, step: Step, number: int, *, offset: int, problem: str,
             pending: bytes) -> Result:
    expected = step.data if step.kind in ("expect", "expect_head") else b""
    return Result(vector, False, problem, expected, pending, step=number, offset=offset)


def _pieces(step: Step, bytewise: bool) -> Iterator[bytes]:
    data = step.data
    if bytewise:
        yield from (data[i : i + 1] for i in range(len(data)))
        return
    pos = 0
    for size in step.chunks:
        yield data[pos : pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


def _check_end(vector: Vector, session: _EchoSession) -> Result:
    if vector.events is not None and tuple(session.events) != vector.events:
        return Result(vector, False, f"application saw {_short(session.events)}, "
                      f"expected {_short(list(vector.events))}")
    end = vector.end
    if "status" in end and session.status != end["status"]:
        return Result(vector, False, f"status {session.status}, expected {end['status']}")
    if "close_code" in end:
        if session.close_code is None and session.opened and not session.eof:
            session.feed_eof()
        if session.close_code != end["close_code"]:
            return Result(
                vector, False, f"close code {session.close_code}, expected {end['close_code']}"
            )
    if "eof" in end and session.eof != end["eof"]:
        return Result(vector, False, f"server closed: {session.eof}, expected {end['eof']}")
    return Result(vector, True)


def _short(events: list[str | bytes]) -> str:
    return repr([e if len(e) <= 40 else f"<{type(e).__name__} of {len(e)}>" for e in events])
