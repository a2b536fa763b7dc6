"""A vector's exchange as bytes on the wire, and those bytes cut and named per draft.

``vectors show`` and ``vectors export`` both need the exchange a vector describes as
what each side puts on the wire, in order: :func:`pieces` gives it, step by step. Most
steps are exact bytes; two expectations allow any of several answers, and stand here
for a representative one (``expect_status``: a response head with the status and the
named headers; ``expect_close``: a close frame with the code), marked as such.

:class:`Cutter` reads one direction of a connection as it goes: the HTTP head, the
8 key bytes a hixie-76 client sends after it and the 16 the server answers with, then
frames of the vector's draft (:mod:`wscompat.protocol.framing.lengths` finds where each
ends), or the body of a refused handshake. Each :class:`Part` has one line for a reader
(a head has one per header line). Nothing here validates: a reserved opcode or an
unmasked client frame is named, not refused, since vectors show such bytes on purpose.
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass

from wscompat.drafts import Draft
from wscompat.protocol.framing.lengths import frame_end, hybi_header, hybi_header_bytes
from wscompat.vectors.expect import status_of
from wscompat.vectors.format import Step, Vector
from wscompat.vectors.report import printable

__all__ = ["Cutter", "Part", "Piece", "pieces"]

PREVIEW_CHARS = 60
"""Characters of a text payload shown on a frame's line."""
PREVIEW_BYTES = 16
"""Bytes of a binary payload shown on a frame's line, as hex."""
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
_HIXIE = (Draft.HIXIE75, Draft.HIXIE76)


@dataclass(frozen=True)
class Piece:
    """What one step puts on the wire: bytes from one side, an EOF, or a pause."""

    step: int
    """The step's number, from 1."""
    kind: str
    """The step's kind (``send``, ``expect``, …)."""
    side: str
    """``client`` or ``server`` (empty for a pause)."""
    data: bytes = b""
    eof: bool = False
    pause: float = 0.0
    stands_for: str = ""
    """For a representative answer: what the vector actually allows."""
    vary: tuple[str, ...] = ()
    chunks: tuple[int, ...] = ()


def _status_head(step: Step) -> bytes:
    try:
        reason = http.HTTPStatus(step.code).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {step.code} {reason}".rstrip(),
             *(f"{name}: {value}" for name, value in step.headers), "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace")


def _close_frame(draft: Draft, code: int) -> bytes:
    if draft in _HIXIE:
        return b"\xff\x00"
    body = b"" if code == 1005 else code.to_bytes(2, "big")
    return hybi_header_bytes(0x88, len(body)) + body


def pieces(vector: Vector) -> list[Piece]:
    """The vector's steps as wire pieces, in order. An HTTP/2 vector holds no bytes of its
    own (HPACK's output depends on the connection): its pieces are what it puts on the
    wire against wscompat's HTTP/2 session, offline."""
    if vector.http2:
        from wscompat.vectors.h2check import h2_pieces  # noqa: PLC0415 (it imports this)

        return h2_pieces(vector)
    out: list[Piece] = []
    for number, step in enumerate(vector.steps, 1):
        kind = step.kind
        if kind == "send":
            out.append(Piece(number, kind, "client", step.data, chunks=step.chunks))
        elif kind == "send_eof":
            out.append(Piece(number, kind, "client", eof=True))
        elif kind == "pause":
            out.append(Piece(number, kind, "", pause=step.seconds))
        elif kind == "expect_eof":
            out.append(Piece(number, kind, "server", eof=True))
        elif kind == "expect_status":
            named = "".join(f", {name}: {value}" for name, value in step.headers)
            out.append(Piece(number, kind, "server", _status_head(step),
                             stands_for=f"any HTTP response with status {step.code}{named}"))
        elif kind == "expect_close":
            out.append(Piece(number, kind, "server", _close_frame(vector.draft, step.code),
                             stands_for=f"a close frame with code {step.code}, any reason"))
        else:  # expect, expect_head
            out.append(Piece(number, kind, "server", step.data, vary=step.vary))
    return out


@dataclass(frozen=True)
class Part:
    """One thing on the wire, named for a reader."""

    kind: str
    """``head``, ``key3``, ``challenge``, ``frame``, ``body`` or ``unfinished``."""
    data: bytes
    lines: tuple[str, ...]


class Cutter:
    """One direction of a connection of ``draft``, cut into parts as bytes arrive."""

    def __init__(self, draft: Draft, side: str) -> None:
        self.draft = draft
        self.side = side
        self.buffer = bytearray()
        self.phase = "head"
        self.status: int | None = None
        self.message = 0
        """The opcode of the fragmented hybi message going on (0: none)."""

    def feed(self, data: bytes) -> list[Part]:
        """The parts completed by ``data``."""
        self.buffer += data
        parts: list[Part] = []
        while self.buffer:
            part = self._next()
            if part is None:
                break
            parts.append(part)
            del self.buffer[: len(part.data)]
        return parts

    def rest(self) -> list[Part]:
        """What is left unfinished when the bytes stop (and forgets it)."""
        if not self.buffer:
            return []
        data = bytes(self.buffer)
        self.buffer.clear()
        what = "head" if self.phase == "head" else "frame" if self.phase == "frames" else "part"
        return [Part("unfinished", data, (f"{len(data)} bytes of an unfinished {what}: "
                                          f"{_hex(data)}",))]

    def _next(self) -> Part | None:
        data = bytes(self.buffer)
        if self.phase == "head":
            return self._head(data)
        if self.phase == "key3":
            return self._fixed(data, 8, "key3", "key3, the 8 bytes after the head")
        if self.phase == "challenge":
            return self._fixed(data, 16, "challenge", "the 16-byte answer to the keys")
        if self.phase == "body":
            return Part("body", data, (f"body, {len(data)} bytes: "
                                       f"{printable(data.decode('latin-1'), 200)}",))
        end = frame_end(self.draft, data, 0)
        if end is None:
            return None
        frame = data[:end]
        if self.draft in _HIXIE:
            return Part("frame", frame, (_hixie_frame(self.draft, frame),))
        fin, opcode = frame[0] >> 7, frame[0] & 0x0F
        line = _hybi_frame(frame, self.message if opcode == 0 else opcode)
        if opcode in (0, 1, 2):  # a continuation carries on the message's type
            self.message = 0 if fin else self.message if opcode == 0 else opcode
        return Part("frame", frame, (line,))

    def _head(self, data: bytes) -> Part | None:
        blank = _BLANK_LINE.search(data)
        if blank is None:
            return None
        head = data[: blank.end()]
        lines = tuple(printable(line) for line in
                      head.decode("latin-1").replace("\r\n", "\n").split("\n")[:-2])
        hixie76 = self.draft is Draft.HIXIE76
        if self.side == "client":
            self.phase = "key3" if hixie76 else "frames"
        else:
            self.status = status_of(head)
            if self.status != 101:
                self.phase = "body"
            else:
                self.phase = "challenge" if hixie76 else "frames"
        return Part("head", head, lines)

    def _fixed(self, data: bytes, size: int, kind: str, label: str) -> Part | None:
        if len(data) < size:
            return None
        self.phase = "frames"
        return Part(kind, data[:size], (f"{label}: {_hex(data[:size])}",))


def _hex(data: bytes, limit: int = 64) -> str:
    shown = data[:limit].hex(" ")
    return shown + (f" … ({len(data)} bytes)" if len(data) > limit else "")


def _preview(payload: bytes, text: bool) -> str:
    if text:
        try:
            decoded = payload.decode("utf-8")
        except UnicodeDecodeError:
            return f"{_hex(payload, PREVIEW_BYTES)} (not UTF-8)"
        quoted = printable(decoded, PREVIEW_CHARS).replace('"', '\\"')
        return f'"{quoted}"'
    return _hex(payload, PREVIEW_BYTES) if payload else "empty"


def _hybi_frame(frame: bytes, message: int) -> str:
    """The frame's line; ``message`` is the opcode of the message it belongs to."""
    header = hybi_header(frame, 0)
    assert header is not None  # the frame is whole
    size, length = header
    first, second = frame[0], frame[1]
    fin, rsv, opcode = first >> 7, (first >> 4) & 7, first & 0x0F
    masked = bool(second & 0x80)
    payload = frame[size:]
    if masked:
        mask = frame[size - 4 : size]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    name = _OPCODES.get(opcode, f"opcode {opcode:#x} (reserved)")
    notes = ["final" if fin else "not final"]
    if rsv:
        notes.append(f"RSV{'/'.join(str(i + 1) for i in range(3) if rsv & (4 >> i))} set"
                     + (" (compressed)" if rsv == 4 else ""))
    notes.append(f"masked {frame[size - 4 : size].hex(' ')}" if masked else "unmasked")
    notes.append(f"{length} bytes")
    if opcode == 8:
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            reason = _preview(payload[2:], True) if payload[2:] else "no reason"
            shown = f"code {code}, {reason}"
        else:
            shown = "no code" if not payload else f"{_hex(payload)} (not a code)"
    else:
        shown = _preview(payload, message == 1 and not rsv)
    return f"{name} ({', '.join(notes)}): {shown}"


def _hixie_frame(draft: Draft, frame: bytes) -> str:
    kind = frame[0]
    if kind & 0x80 == 0:
        payload = frame[1:-1]
        if kind == 0:
            return f"text ({len(payload)} bytes, 00 … ff): {_preview(payload, True)}"
        return (f"frame of type {kind:#04x} (00 … ff style, discarded): "
                f"{_preview(payload, True)}")
    if frame == b"\xff\x00":
        return ("closing handshake (ff 00)" if draft is Draft.HIXIE76 else
                "frame of type 0xff, length 0 (hixie-75 has no closing frame)")
    index = 1
    while frame[index] & 0x80:
        index += 1
    length = len(frame) - index - 1
    return f"frame of type {kind:#04x}, {length} bytes by length (discarded)"
