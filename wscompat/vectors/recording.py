"""One connection's exchange, turned into a vector file, sans-I/O.

``wscompat serve --record DIR`` feeds a :class:`Recording` every byte the server receives
and sends, in order, and tells it when the handshake is done. The recording keeps the
handshake and the first N frames each way, and becomes a vector: the client's bytes as
``send`` steps (masks as the client chose them), the server's as expectations, its EOFs
as ``send_eof`` / ``expect_eof``. Credentials are redacted from the request: ``Cookie``,
``Authorization`` and ``Proxy-Authorization`` values become ``[redacted]``, which
changes nothing in an echo server's answer, so the vector still checks.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field, fields
from typing import Any

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.options import ServerOptions
from wscompat.protocol.framing.lengths import frame_end
from wscompat.protocol.handshake.detect import detect
from wscompat.protocol.http import HeadParser, Request
from wscompat.vectors.expect import status_of

__all__ = ["REDACTED", "Recording", "frame_end", "redact", "vector_options"]

REDACTED = "[redacted]"
REDACTED_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
MAX_BYTES = 4 * 2**20
"""Bytes kept per direction; past it the recording is cut (and says so)."""
HYBI_HEAD_VARY = ["Date", "Server"]

VECTOR_OPTIONS = (
    "drafts", "subprotocols", "max_head_size", "max_headers", "max_message_size",
    "max_frame_size", "secure", "allow_missing_origin", "hixie76_early_head", "hixie_binary",
    "origins", "compression", "compress_min_size", "compression_window_bits",
    "compression_level", "compression_memory_level",
)
"""Server options that change what a server answers, written into recorded vectors."""


def redact(head: bytes) -> tuple[bytes, list[str]]:
    """The request head with credential values replaced, and the headers redacted."""
    lines, redacted = head.split(b"\r\n"), []
    for index, line in enumerate(lines[1:], 1):
        name, colon, _ = line.partition(b":")
        key = name.strip().decode("latin-1")
        if colon and key.lower() in REDACTED_HEADERS:
            lines[index] = name + b": " + REDACTED.encode()
            redacted.append(key)
    return b"\r\n".join(lines), redacted


def vector_options(options: ServerOptions) -> dict[str, Any]:
    """The options that shape a server's answers, where they differ from the defaults,
    in the vector format (drafts as names)."""
    defaults = ServerOptions()
    known = {f.name for f in fields(ServerOptions)}
    out: dict[str, Any] = {}
    for name in VECTOR_OPTIONS:
        if name not in known:
            continue
        value = getattr(options, name)
        if value == getattr(defaults, name):
            continue
        if name == "drafts":
            value = [d.value for d in Draft if d in value]
        elif isinstance(value, (list, tuple, frozenset, set)):
            value = list(value)
        out[name] = value
    return out


@dataclass
class _Side:
    """One direction of the byte stream, and where its frames start and end."""

    data: bytearray = field(default_factory=bytearray)
    frames_from: int | None = None
    """Offset of the first frame; None while the handshake is still going on."""
    frame_ends: list[int] = field(default_factory=list)
    limit: int | None = None
    """Offset past the last byte kept, once the frame count is reached (or MAX_BYTES)."""
    cut: bool = False
    """Bytes were left out."""

    def add(self, chunk: bytes) -> tuple[int, int] | None:
        """Keep what fits; the kept byte range, or None when nothing was kept."""
        if self.limit is not None:
            self.cut = self.cut or bool(chunk)
            return None
        start = len(self.data)
        room = MAX_BYTES - start
        if len(chunk) > room:
            chunk, self.cut = chunk[:room], True
        self.data += chunk
        return (start, len(self.data)) if chunk else None


class Recording:
    """A connection's bytes both ways, in order, until it ends."""

    def __init__(self, frames: int = 10, started: datetime.datetime | None = None) -> None:
        self.frames = frames
        self.client = _Side()
        self.server = _Side()
        self.events: list[tuple[str, int, int]] = []
        """("client" | "server", start, end) byte ranges and ("client_eof" | "server_eof")."""
        self.draft: Draft | None = None
        self.close_code: int | None = None
        self.started = started
        """When the connection began (UTC), for the description."""

    # -- feeding ------------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        self._add("client", self.client, data)

    def sent(self, data: bytes) -> None:
        self._add("server", self.server, data)

    def received_eof(self) -> None:
        self._eof("client_eof")

    def sent_eof(self) -> None:
        self._eof("server_eof")

    def opened(self, draft: Draft, leftover: int) -> None:
        """The handshake is done; the last ``leftover`` client bytes are frames."""
        self.draft = draft
        self.client.frames_from = len(self.client.data) - leftover
        self.server.frames_from = len(self.server.data)
        self._count(self.client)
        self._count(self.server)

    def _add(self, kind: str, side: _Side, data: bytes) -> None:
        if any(k == "server_eof" for k, _, _ in self.events):
            return  # after the server closed, nothing changes what it said
        kept = side.add(data)
        if kept is not None:
            self.events.append((kind, *kept))
            self._count(side)

    def _eof(self, kind: str) -> None:
        if not any(k in (kind, "server_eof") for k, _, _ in self.events):
            self.events.append((kind, 0, 0))

    def _count(self, side: _Side) -> None:
        if self.draft is None or side.frames_from is None or side.limit is not None:
            return
        pos = side.frame_ends[-1] if side.frame_ends else side.frames_from
        while len(side.frame_ends) < self.frames:
            end = frame_end(self.draft, side.data, pos)
            if end is None:
                return
            side.frame_ends.append(end)
            pos = end
        side.limit = pos
        side.cut = len(side.data) > pos
        del side.data[pos:]

    # -- the vector ---------------------------------------------------------------------

    @property
    def truncated(self) -> bool:
        return self.client.cut or self.server.cut

    def vector(self, options: ServerOptions | None = None) -> dict[str, Any] | None:
        """The vector, or None when the connection was not an HTTP exchange (TLS,
        a Flash policy request, nothing at all)."""
        head_end = self.client.data.find(b"\r\n\r\n")
        if head_end < 0 or not re.match(rb"[A-Z]+ \S+ HTTP/", self.client.data):
            return None
        status = status_of(bytes(self.server.data))
        if status == 503:
            return None  # refused for load (max_connections), not for what was sent
        head, redacted = redact(bytes(self.client.data[: head_end + 4]))
        client, events = self._redacted(head, head_end + 4)
        draft = self.draft or _guess_draft(head)
        steps = self._steps(client, events, len(head), draft, status)
        end: dict[str, Any]
        if status is not None and status != 101:
            end = {"status": status}
        elif self.truncated:
            end = {"eof": False}
        else:
            end = {"eof": any(k == "server_eof" for k, _, _ in self.events)}
            if self.close_code is not None and self.draft is not None:
                end = {"close_code": self.close_code, **end}
        target = " ".join(head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2])
        if status == 101:
            name = (f"{target}: {draft.value} handshake, {len(self.client.frame_ends)} "
                    f"frames in, {len(self.server.frame_ends)} out")
        else:
            name = f"{target}: " + (f"answered {status}" if status else "no answer")
        agent = _header(head, "User-Agent")
        when = f" on {self.started.strftime('%Y-%m-%d %H:%M UTC')}" if self.started else ""
        description = [f"Recorded by wscompat serve --record{when}, keeping the handshake "
                       f"and the first {self.frames} frames each way."]
        if self.truncated:
            description.append("The connection went on; the rest was left out.")
        if redacted:
            description.append(f"{', '.join(redacted)} redacted.")
        vector: dict[str, Any] = {
            "$schema": "../schema.json",
            "name": name,
            "draft": draft.value,
            "source": f"recorded from {agent}" if agent else
                      "recorded from a client that sent no User-Agent",
            "description": " ".join(description),
        }
        chosen = vector_options(options) if options is not None else {}
        if chosen:
            vector["options"] = chosen
        vector["steps"] = steps
        vector["end"] = end
        return vector

    def _redacted(self, head: bytes, head_size: int) -> tuple[_Side, list[tuple[str, int, int]]]:
        """The client side with the redacted head in place of the real one, and the
        events with client offsets moved to match."""
        shift = len(head) - head_size

        def moved(offset: int) -> int:
            return offset + shift if offset >= head_size else min(offset, len(head))

        client = _Side(bytearray(head) + self.client.data[head_size:],
                       frame_ends=[moved(e) for e in self.client.frame_ends])
        events = [(k, moved(a), moved(b)) if k == "client" else (k, a, b)
                  for k, a, b in self.events]
        return client, events

    def _steps(self, client: _Side, events: list[tuple[str, int, int]], head_size: int,
               draft: Draft, status: int | None) -> list[dict[str, Any]]:
        spans: list[list[Any]] = []  # [kind, start, end], consecutive bytes merged
        for kind, start, end in events:
            if kind.endswith("_eof") and self.truncated:
                continue  # the close happened after the part that was kept
            if spans and spans[-1][0] == kind and kind in ("client", "server"):
                spans[-1][2] = end
            else:
                spans.append([kind, start, end])
        server_text = self.server.data.find(b"\r\n\r\n") + 4
        if status is not None and status != 101:
            server_text = len(self.server.data)  # an error response is all text
        steps: list[dict[str, Any]] = []
        for kind, start, end in spans:
            if kind == "client_eof":
                steps.append({"send_eof": True})
            elif kind == "server_eof":
                steps.append({"expect_eof": True})
            elif kind == "client":
                steps.append({"send": _data(client, start, end, head_size)})
            elif (start == 0 and status == 101 and server_text >= 4
                  and draft not in (Draft.HIXIE75, Draft.HIXIE76)):
                head = self.server.data[:server_text].decode("latin-1")
                steps.append({"expect_head": head, "vary": HYBI_HEAD_VARY})
                if end > server_text:
                    steps.append({"expect": _data(self.server, server_text, end, 0)})
            else:
                steps.append({"expect": _data(self.server, start, end, server_text)})
        return steps


def _data(side: _Side, start: int, end: int, text_end: int) -> Any:
    """A data spec for ``side.data[start:end]``: what lies before ``text_end`` (a head)
    as text, then each frame as one hex item."""
    pieces: list[Any] = []
    pos = start
    if pos < text_end:
        pieces.append(_text(bytes(side.data[pos : min(end, text_end)])))
        pos = min(end, text_end)
    for cut in [*(e for e in side.frame_ends if pos < e < end), end]:
        if pos < cut:
            pieces.append({"hex": bytes(side.data[pos:cut]).hex(" ")})
            pos = cut
    return pieces[0] if len(pieces) == 1 else pieces


def _text(data: bytes) -> Any:
    """Text when the bytes read as text (JSON escapes keep CR LF visible), else hex."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": data.hex(" ")}
    if any(ord(c) < 0x20 and c not in "\r\n\t" for c in text):
        return {"hex": data.hex(" ")}
    return text


def _request(head: bytes) -> Request | None:
    """The head as the server parsed it; None for one it refused as malformed."""
    try:
        return HeadParser(max_size=len(head) + 1, max_headers=len(head)).feed(head)
    except HandshakeRejected:
        return None


def _header(head: bytes, name: str) -> str | None:
    request = _request(head)
    return None if request is None else request.headers.get(name)


def _guess_draft(head: bytes) -> Draft:
    """The draft a request was meant as, for the directory its vector is filed in: the
    server's own detection when it decides, else the nearest draft by its headers (a
    refused request: an unknown version, a missing key, a malformed head)."""
    request = _request(head)
    if request is None:
        return Draft.RFC6455
    try:
        draft = detect(request, frozenset(Draft))
    except HandshakeRejected:
        draft = None
    if draft is not None:
        return draft
    headers = request.headers
    version = headers.get("Sec-WebSocket-Version")
    if version is not None:
        return {"7": Draft.HYBI07, "8": Draft.HYBI08}.get(version.strip(), Draft.RFC6455)
    if "Sec-WebSocket-Key1" in headers or "Sec-WebSocket-Key2" in headers:
        return Draft.HIXIE76
    if "Sec-WebSocket-Key" in headers or "Upgrade" not in headers:
        return Draft.RFC6455
    return Draft.HIXIE75
