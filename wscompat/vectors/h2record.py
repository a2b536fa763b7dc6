"""An HTTP/2 connection's bytes, both ways, turned into an ``rfc8441`` vector, sans-I/O.

``wscompat serve --record`` keeps every connection's bytes in order
(:class:`~wscompat.vectors.recording.Recording`); when the client's first bytes are the
HTTP/2 connection preface, the recording becomes a vector here. HPACK makes the bytes of
a header block depend on every block before it on the connection, so the vector keeps
what they decode to (docs/vectors.md, "WebSocket over HTTP/2"): each direction is read
frame by frame (``hyperframe``) and its header blocks decoded in order (``hpack``), with
the decoder state that connection built.

What becomes a step, in the order the bytes went:

- the client: HEADERS (with their CONTINUATION frames) as ``h2_request``, DATA payloads
  as ``h2_send`` (consecutive ones on a stream merged; END_STREAM as ``end_stream``, or
  ``h2_end_stream`` on an empty frame), RST_STREAM as ``h2_reset``, GOAWAY as
  ``h2_goaway``; its first SETTINGS as the vector's ``settings``;
- the server: its first SETTINGS as ``h2_expect_settings`` (the extended CONNECT's
  setting), the answer to an extended CONNECT with ``:status 200`` as
  ``h2_expect_headers`` (``date`` and ``server`` may vary), every other answer as
  ``h2_expect_status`` (a page's body is the server's own business), DATA on WebSocket
  streams as ``h2_expect_data``, END_STREAM, RST_STREAM and GOAWAY;
- the EOFs as ``send_eof`` and ``expect_eof``.

Frames that only keep the connection going (SETTINGS acknowledgements, WINDOW_UPDATE,
PING, PRIORITY, frame types HTTP/2 does not define) are left out: the replaying client's
HTTP/2 library sends its own. The end says the close code of each WebSocket stream, read
from the close frame the server sent on it. Secrets are redacted as in HTTP/1.1
recordings: the fields named in the redaction, the query's values in ``:path``, and
answer fields that echo a redacted one.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hpack
from hpack.exceptions import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from wscompat.drafts import Draft
from wscompat.protocol.framing.lengths import frame_end, hybi_header
from wscompat.vectors.corpus import SCHEMA_NAME
from wscompat.vectors.format import H2_SETTINGS, HTTP2_GENERATION

__all__ = ["H2_VARY", "PREFACE", "h2_vector", "is_h2"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What an HTTP/2 client sends first (RFC 9113 §3.4)."""
H2_VARY = ["date", "server"]
"""Fields of a WebSocket's answer that may differ from one server run to the next."""
MAX_TABLE = 2**20
"""The largest HPACK dynamic table the decoders follow (a connection's table is at most
what its SETTINGS_HEADER_TABLE_SIZE allows; the recording's bytes bound it anyway)."""
_NAMES = {code: name for name, (code, _, _) in H2_SETTINGS.items()}
_CONNECT_PROTOCOL = "SETTINGS_ENABLE_CONNECT_PROTOCOL"


def is_h2(start: bytes | bytearray) -> bool:
    """Whether a connection's first client bytes are (so far) the HTTP/2 preface."""
    size = min(len(start), len(PREFACE))
    return size > 0 and bytes(start[:size]) == PREFACE[:size]


@dataclass
class _Reader:
    """One direction: its frames as they complete, header blocks decoded in order."""

    side: str
    buffer: bytearray = field(default_factory=bytearray)
    skip: int = 0
    """Preface bytes still to pass over."""
    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)
    block: tuple[int, bool, bytearray] | None = None
    """A header block waiting for its CONTINUATION frames: stream, END_STREAM, bytes."""
    raw_block = False
    """The header block going on is on a stream no client opens: kept as raw frames."""
    raw_fragment: bytearray = field(default_factory=bytearray)
    """The client's part of such a block so far: decoded once whole, for its secrets."""
    raw_end = False
    """END_STREAM on the HEADERS frame that began it."""
    block_frames: bytearray = field(default_factory=bytearray)
    """The frames of the header block going on, as they came."""
    broken: str = ""

    def __post_init__(self) -> None:
        self.decoder.max_allowed_table_size = MAX_TABLE

    def feed(self, data: bytes) -> list[tuple[str, int, Any]]:
        """What ``data`` completes: ``("headers", stream, (fields, end_stream))``,
        ``("data", stream, (bytes, end_stream))``, ``("reset" | "goaway", stream, code)``
        and ``("settings", 0, {code: value})``."""
        if self.broken:
            return []
        if self.skip:
            taken = min(self.skip, len(data))
            data, self.skip = data[taken:], self.skip - taken
        self.buffer += data
        out: list[tuple[str, int, Any]] = []
        try:
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                raw = bytes(self.buffer[: 9 + length])
                frame.parse_body(memoryview(raw[9:]))
                del self.buffer[: 9 + length]
                if isinstance(frame, HeadersFrame | PushPromiseFrame | ContinuationFrame):
                    self.block_frames += raw
                out.extend(self._misplaced(frame, raw) or self._frame(frame))
        except (HyperframeError, HPACKError, ValueError) as exc:
            self.broken = f"the {self.side}'s bytes stop being HTTP/2 here ({exc})"
        return out

    def _misplaced(self, frame: Frame, raw: bytes) -> list[tuple[str, int, Any]]:
        """A frame of a stream on a stream no client opens (0, or even), which a vector's
        steps cannot name: the client's as ``("raw", 0, bytes)`` (an ``h2_frames``
        step), the server's as ``("misplaced", stream, type)``; empty for any other
        frame. Its header block is not decoded: the server refuses the frame."""
        continuation = isinstance(frame, ContinuationFrame) and self.raw_block
        if not continuation and not (
                isinstance(frame, HeadersFrame | DataFrame | RstStreamFrame)
                and frame.stream_id % 2 == 0):
            return []
        if self.side != "client":
            if isinstance(frame, HeadersFrame | ContinuationFrame):
                self.raw_block = "END_HEADERS" not in frame.flags
                if not self.raw_block:
                    self.block_frames.clear()
            return [("misplaced", frame.stream_id, type(frame).__name__)]
        if not isinstance(frame, HeadersFrame | ContinuationFrame):
            return [("raw", 0, raw)]
        # The client's header block goes as raw frames too, but only once it is whole:
        # decoded, it may hold a field to redact, which the raw bytes would carry.
        if isinstance(frame, HeadersFrame):
            self.raw_fragment = bytearray(frame.data)
            self.raw_end = "END_STREAM" in frame.flags
        else:
            self.raw_fragment += frame.data
        self.raw_block = "END_HEADERS" not in frame.flags
        if self.raw_block:
            return []
        frames = bytes(self.block_frames)
        self.block_frames.clear()
        fragment, self.raw_fragment = bytes(self.raw_fragment), bytearray()
        try:
            fields: tuple[tuple[str, str], ...] | None = self._decoded(fragment)
        except (HPACKError, ValueError):
            fields = None  # not HPACK: nothing in it can be told apart, let alone kept
        return [("raw_headers", frame.stream_id, (fields, self.raw_end, frames))]

    def _frame(self, frame: Frame) -> list[tuple[str, int, Any]]:
        sid = frame.stream_id
        if self.block is not None and not isinstance(frame, ContinuationFrame):
            raise ValueError("a header block is cut off by another frame")
        if isinstance(frame, HeadersFrame | PushPromiseFrame):
            self.block = (sid, "END_STREAM" in frame.flags, bytearray(frame.data))
            return self._block_done(frame)
        if isinstance(frame, ContinuationFrame):
            if self.block is None or self.block[0] != sid:
                raise ValueError("CONTINUATION without its HEADERS")
            self.block[2].extend(frame.data)
            return self._block_done(frame)
        if isinstance(frame, DataFrame):
            return [("data", sid, (bytes(frame.data), "END_STREAM" in frame.flags))]
        if isinstance(frame, RstStreamFrame):
            return [("reset", sid, frame.error_code)]
        if isinstance(frame, GoAwayFrame):
            return [("goaway", 0, frame.error_code)]
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            return [("settings", 0, dict(frame.settings))]
        return []  # acknowledgements, windows, pings, priorities, unknown types

    def _decoded(self, block: bytes) -> tuple[tuple[str, str], ...]:
        """A whole header block's fields, decoded in order (HPACK keeps state)."""
        return tuple((_text(name), _text(value))
                     for name, value in self.decoder.decode(block, raw=True))

    def _block_done(self, frame: Frame) -> list[tuple[str, int, Any]]:
        if "END_HEADERS" not in frame.flags:
            return []
        assert self.block is not None
        sid, end, block = self.block
        self.block = None
        fields = self._decoded(bytes(block))
        frames = bytes(self.block_frames)
        self.block_frames.clear()
        if isinstance(frame, PushPromiseFrame):
            return []  # a push the client never asked for: its block still counts
        if not fields and self.side == "client":
            # An empty header list: no HTTP/2 library sends one, and its block holds
            # nothing HPACK remembers, so the frames go as they came.
            return [("raw", 0, frames)]
        return [("headers", sid, (fields, end))]


def _text(value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")


@dataclass
class _Stream:
    """What the recording knows of one stream."""

    request: dict[str, str] = field(default_factory=dict)
    websocket: bool = False
    """An extended CONNECT answered 200: its DATA is RFC 6455 frames."""
    plain: bool = False
    """Answered with an ``h2_expect_status``: its body and end are that step's."""
    server_data: bytearray = field(default_factory=bytearray)


@dataclass
class _Builder:
    """The steps, as the two directions' frames come in order."""

    redact_fields: frozenset[str]
    redact_query: bool
    steps: list[dict[str, Any]] = field(default_factory=list)
    streams: dict[int, _Stream] = field(default_factory=dict)
    settings: dict[str, int] | None = None
    server_settings_seen: bool = False
    notes: list[str] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)
    agent: str | None = None

    def stream(self, sid: int) -> _Stream:
        return self.streams.setdefault(sid, _Stream())

    def client(self, kind: str, sid: int, value: Any) -> None:
        last = self.steps[-1] if self.steps else {}
        if kind == "settings":
            if self.settings is None:
                self.settings = self._settings(value, "the client")
            elif "later" not in " ".join(self.notes):
                self.notes.append("The client's later SETTINGS are left out.")
        elif kind == "headers":
            fields, end = value
            stream = self.stream(sid)
            shown = self._redacted(fields)
            if not stream.request:
                stream.request = dict(shown)
                agent = stream.request.get("user-agent")
                if agent and self.agent is None:
                    self.agent = agent
            step: dict[str, Any] = {"h2_request": [list(f) for f in shown], "stream": sid}
            if end:
                step["end_stream"] = True
            self.steps.append(step)
        elif kind == "data":
            data, end = value
            if "h2_send" in last and last["stream"] == sid and not last.get("end_stream"):
                last["h2_send"] += data
                if end:
                    last["end_stream"] = True
            elif data:
                step = {"h2_send": bytearray(data), "stream": sid}
                if end:
                    step["end_stream"] = True
                self.steps.append(step)
            elif end:
                self.steps.append({"h2_end_stream": True, "stream": sid})
        elif kind == "reset":
            self.steps.append({"h2_reset": value, "stream": sid})
        elif kind == "goaway":
            self.steps.append({"h2_goaway": value})
        elif kind == "raw_headers":
            self.client("raw", 0, self._raw_block(sid, *value))
        elif kind == "raw":
            if "h2_frames" in last:
                last["h2_frames"] += value
            else:
                self.steps.append({"h2_frames": bytearray(value)})
            note = ("The client's frames that a vector's steps cannot name (on streams no "
                    "client opens, or an empty header list) are kept as raw h2_frames.")
            if note not in self.notes:
                self.notes.append(note)

    def _raw_block(self, sid: int, fields: tuple[tuple[str, str], ...] | None, end: bool,
                   frames: bytes) -> bytes:
        """A client's header block on a stream no client opens, as the vector keeps it:
        the frames as they came, unless a field in it is one to redact. Then the block
        is made again, the redacted list encoded literally in one HEADERS frame: a
        secret never reaches the vector, even in raw frames, and the server still sees
        a header block where none may be. An undecodable block goes as it came (it
        holds no field to find)."""
        if fields is None:
            return frames
        shown = self._redacted(fields)
        if shown == list(fields):
            return frames
        again = HeadersFrame(sid)
        again.flags.add("END_HEADERS")
        if end:
            again.flags.add("END_STREAM")
        # Never indexed: the block adds nothing to the server's HPACK table, which the
        # replayer's own encoder could not know of.
        again.data = hpack.Encoder().encode(
            [hpack.NeverIndexedHeaderTuple(name, value) for name, value in shown],
            huffman=False)
        note = (f"The client's header block on stream {sid} is made again with its "
                "redacted fields.")
        if note not in self.notes:
            self.notes.append(note)
        return bytes(again.serialize())

    def server(self, kind: str, sid: int, value: Any) -> None:
        last = self.steps[-1] if self.steps else {}
        if kind == "misplaced":
            self.notes.append(f"The server's {value} on stream {sid} is left out.")
            return
        if kind == "settings":
            if not self.server_settings_seen:
                self.server_settings_seen = True
                said = self._settings(value, "the server")
                self.steps.append({"h2_expect_settings": {
                    _CONNECT_PROTOCOL: said.get(_CONNECT_PROTOCOL, 0)}})
            return
        stream = self.stream(sid) if sid else None
        if kind == "headers" and stream is not None:
            fields, end = value
            status = dict(fields).get(":status", "")
            extended = (stream.request.get(":method") == "CONNECT"
                        and ":protocol" in stream.request)
            if extended and status == "200" and not stream.websocket:
                stream.websocket = True
                self.steps.append({"h2_expect_headers": [list(f) for f in
                                                         self._redacted(fields, answer=True)],
                                   "stream": sid, "vary": H2_VARY})
                if end:
                    self.steps.append({"h2_expect_end_stream": True, "stream": sid})
            elif status.isdigit() and not status.startswith("1") and not stream.plain:
                stream.plain = True
                self.steps.append({"h2_expect_status": int(status), "stream": sid})
            elif not stream.plain:
                self.notes.append(f"Headers on stream {sid} with :status {status!r} are "
                                  "left out.")
        elif kind == "data" and stream is not None:
            data, end = value
            if stream.plain:
                return
            stream.server_data += data
            if data:
                if "h2_expect_data" in last and last["stream"] == sid:
                    last["h2_expect_data"] += data
                else:
                    self.steps.append({"h2_expect_data": bytearray(data), "stream": sid})
            if end:
                self.steps.append({"h2_expect_end_stream": True, "stream": sid})
        elif kind == "reset":
            self.steps.append({"h2_expect_reset": value, "stream": sid})
        elif kind == "goaway":
            self.steps.append({"h2_expect_goaway": value})

    def _settings(self, values: dict[int, int], who: str) -> dict[str, int]:
        known = {}
        for code, value in values.items():
            name = _NAMES.get(code)
            _, low, high = H2_SETTINGS.get(name or "", (0, 0, -1))
            if name is None or not low <= value <= high:
                self.notes.append(f"{who.capitalize()}'s SETTINGS carried {code:#x} = "
                                  f"{value}, which a vector cannot say; it is left out.")
            else:
                known[name] = value
        return known

    def _redacted(self, fields: Iterable[tuple[str, str]], *,
                  answer: bool = False) -> list[tuple[str, str]]:
        from wscompat.vectors.recording import (  # noqa: PLC0415 (it imports this)
            REDACTED,
            REDACTED_TOKEN,
            Redaction,
            _redact_url,
            _Redacted,
        )

        out = []
        for name, value in fields:
            key = name.lower()
            if key in self.redact_fields:
                if not answer and name not in self.redacted:
                    self.redacted.append(name)
                marker = REDACTED_TOKEN if "protocol" in key else REDACTED
                out.append((name, marker))
            elif key == ":path" and not answer:
                seen = _Redacted(b"")
                path = _redact_url(value.encode(), Redaction(frozenset(), self.redact_query),
                                   seen)
                self.redacted.extend(n for n in seen.names if n not in self.redacted)
                out.append((name, path.decode("utf-8", "replace")))
            else:
                out.append((name, value))
        return out


def _close_code(data: bytes | bytearray) -> int | None:
    """The code of the first close frame in a server's RFC 6455 frames (1005: empty)."""
    pos = 0
    while True:
        end = frame_end(Draft.RFC6455, data, pos)
        header = hybi_header(data, pos)
        if end is None or header is None:
            return None
        if data[pos] & 0x0F == 8:
            payload = data[pos + header[0] : end]
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        pos = end


REPEAT_FROM = 1024
"""Bytes of DATA from which a recording looks for a repeated pattern to write as one."""
MAX_PERIOD = 4096
"""The longest pattern looked for (a 251-byte pattern under a 4-byte mask repeats every
1004 bytes)."""
_PROBE = 16


def _run_end(data: bytes, start: int, period: int) -> int:
    """Where the bytes from ``start`` stop repeating with ``period``: the largest ``end``
    with ``data[start + period:end] == data[start:end - period]`` (a binary search, each
    probe one comparison of slices)."""
    low, high = start + period, len(data)
    while low < high:
        middle = (low + high + 1) // 2
        if data[start + period : middle] == data[start : middle - period]:
            low = middle
        else:
            high = middle - 1
    return low


def _data(value: bytes | bytearray) -> Any:
    """A data spec: readable text when the bytes are printable ASCII; a ``repeat`` for a
    stretch of at least REPEAT_FROM bytes of a repeated pattern (starting within the
    first 16 bytes, after a frame header), with hex before and after it; else hex. It
    expands to exactly the bytes."""
    data = bytes(value)
    if data and all(32 <= b < 127 for b in data):
        return data.decode("ascii")
    if len(data) >= REPEAT_FROM:
        for start in range(_PROBE):
            at = data.find(data[start : start + _PROBE], start + 1, start + MAX_PERIOD
                           + _PROBE)
            period = at - start
            if at < 0:
                continue
            end = _run_end(data, start, period)
            count = (end - start) // period
            if count * period < REPEAT_FROM:
                continue
            tail = start + count * period
            parts: list[Any] = [{"hex": data[:start].hex(" ")}] if start else []
            parts.append({"repeat": data[start:at].hex(" "), "count": count})
            if tail < len(data):
                parts.append({"hex": data[tail:].hex(" ")})
            return parts
    return {"hex": data.hex(" ")}


def h2_vector(events: Sequence[tuple[str, bytes]], *, started: datetime.datetime | None,
              truncated: bool, redact_fields: Iterable[str], redact_query: bool,
              provenance: Callable[[str | None], dict[str, Any]],
              options: dict[str, Any] | None = None,
              plain: bool = True) -> dict[str, Any] | None:
    """The ``rfc8441`` vector of a connection: ``events`` are ``("client" | "server",
    bytes)`` in the order they went, and ``("client_eof" | "server_eof", b"")``;
    ``provenance`` makes the provenance from the client's user-agent. None when the
    client's bytes are not HTTP/2, no request was made, or (unless ``plain``) no
    request was an extended CONNECT."""
    client, server = _Reader("client", skip=len(PREFACE)), _Reader("server")
    build = _Builder(frozenset(name.lower() for name in redact_fields), redact_query)
    started_h2 = False
    for kind, data in events:
        if kind == "client":
            if not started_h2:
                if not is_h2(data):
                    return None
                started_h2 = True
            for item in client.feed(data):
                build.client(*item)
        elif kind == "server":
            for item in server.feed(data):
                build.server(*item)
        elif kind == "client_eof":
            build.steps.append({"send_eof": True})
        elif kind == "server_eof" and not truncated:
            build.steps.append({"expect_eof": True})
    extended = [s for s in build.streams.values()
                if s.request.get(":method") == "CONNECT" and ":protocol" in s.request]
    if not build.streams or not (plain or extended):
        return None
    for reader in (client, server):
        if reader.broken:
            build.notes.append(reader.broken.capitalize() + "; the rest is left out.")
    server_eof = any(kind == "server_eof" for kind, _ in events)
    codes = {}
    for sid, stream in sorted(build.streams.items()):
        code = _close_code(stream.server_data) if stream.websocket else None
        if code is not None:
            codes[str(sid)] = code
    end: dict[str, Any] = {"close_codes": codes} if codes and not truncated else {}
    end["eof"] = server_eof and not truncated
    websockets = [s for s in build.streams.values() if s.websocket]
    paths = ", ".join(sorted({s.request.get(":path", "?") for s in websockets}))
    others = len(build.streams) - len(websockets)
    name = (f"HTTP/2: {len(websockets)} WebSocket stream{'s' if len(websockets) != 1 else ''}"
            + (f" ({paths})" if paths else "")
            + (f" beside {others} other request{'s' if others != 1 else ''}" if others else ""))
    when = f" on {started.strftime('%Y-%m-%d %H:%M UTC')}" if started else ""
    description = [f"Recorded by wscompat serve --record{when} over HTTP/2: header lists as "
                   "decoded (HPACK), DATA payloads as sent (RFC 6455 frames, the client's "
                   "masks), every stream from a fresh connection; SETTINGS "
                   "acknowledgements, WINDOW_UPDATE, PING and PRIORITY frames left out."]
    if truncated:
        description.append("The connection went on; the rest was left out.")
    description += build.notes
    if build.redacted:
        said = ", ".join(build.redacted)
        description.append(f"{said[:1].upper()}{said[1:]} redacted.")
    agent = build.agent
    vector: dict[str, Any] = {
        "$schema": f"../{SCHEMA_NAME}",
        "name": name,
        "draft": HTTP2_GENERATION,
        "source": f"recorded from {agent}" if agent else
                  "recorded from a client that sent no user-agent",
        "provenance": provenance(agent),
        "description": " ".join(description),
    }
    if options:
        vector["options"] = options
    if build.settings:
        vector["settings"] = build.settings
    vector["steps"] = [_finished(step) for step in build.steps]
    vector["end"] = end
    return vector


def _finished(step: dict[str, Any]) -> dict[str, Any]:
    """A step with its bytes as a data spec."""
    for key in ("h2_send", "h2_expect_data", "h2_frames"):
        if key in step:
            return {**step, key: _data(step[key])}
    return step
