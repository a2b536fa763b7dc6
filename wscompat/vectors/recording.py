"""One connection's exchange, turned into a vector file, sans-I/O.

``wscompat serve --record DIR`` feeds a :class:`Recording` every byte the server receives
and sends, in order, and tells it when the handshake is done. The recording keeps the
handshake and the first N frames each way, and becomes a vector: the client's bytes as
``send`` steps (masks as the client chose them), the server's as expectations, its EOFs
as ``send_eof`` / ``expect_eof``.

Feeding costs time linear in the bytes kept: each chunk is appended, consecutive chunks
of one direction are one event, the end of the request head is searched for in the new
bytes only, and frame boundaries are asked for again only once the unfinished frame has
doubled (asking reads at most that frame's bytes). Everything else happens once, in
:meth:`Recording.vector`, which the recorder runs off the event loop.

Secrets are redacted from the request as the raw bytes have them, on every line form a
client can send (CRLF, bare LF, a lone CR, obs-fold continuation lines, which belong to
the field they continue): the header fields named in :class:`Redaction` become
``[redacted]``, as do the query's values and any user:password in a URL. The answer is
redacted to match: the fields that echo a redacted one (``Sec-WebSocket-Protocol``, the
hixie origin), the location's query, and an error body's quotes of a redacted value. A
server answers the redacted request the way the recording says, so the vector still
checks. Bytes after a refused request's head never reached the server's logic and are
left out; frames are kept as sent (``record_frames=0`` leaves them all out).
"""

from __future__ import annotations

import datetime
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.options import ServerOptions
from wscompat.protocol.framing.lengths import frame_end
from wscompat.protocol.handshake.detect import detect
from wscompat.protocol.http import HeadParser, Request
from wscompat.vectors.corpus import SCHEMA_NAME
from wscompat.vectors.expect import status_of
from wscompat.vectors.h2record import PREFACE, h2_vector, is_h2
from wscompat.vectors.provenance import today, wscompat_tool

__all__ = [
    "REDACTED", "REDACTED_TOKEN", "UNRECORDED_OPTIONS", "VECTOR_OPTIONS", "Recording",
    "Redaction", "frame_end", "guess_draft", "header_value", "redact", "vector_options",
]

REDACTED = "[redacted]"
_REDACTED = REDACTED.encode()
REDACTED_TOKEN = "redacted"
"""What a redacted subprotocol list becomes: a server refuses brackets in a token, and
answers the redacted request with this as its subprotocol, as the recording says."""
_TOKEN_FIELDS = frozenset({"sec-websocket-protocol", "websocket-protocol"})
MAX_BYTES = 4 * 2**20
"""Bytes kept per direction; past it the recording is cut (and says so)."""
HYBI_HEAD_VARY = ["Date", "Server"]
MIN_QUOTED_SECRET = 4
"""Bytes a redacted value needs before it is also replaced where an error body quotes
it: shorter ones would replace unrelated text (a ``1`` in ``HTTP/1.1``)."""
MAX_QUOTED_SECRETS = 256
"""Redacted values looked for in an error body; a request with more has the whole body
replaced instead, so the search stays bounded (a legitimate client sends a few)."""
PLAIN_WINDOW = 65536
"""Bytes of a request head searched for a sign of WebSocket (``record_plain``)."""

VECTOR_OPTIONS = (
    "drafts", "subprotocols", "max_head_size", "max_headers", "max_message_size",
    "max_frame_size", "secure", "allow_missing_origin", "hixie76_early_head", "hixie_binary",
    "origins", "compression", "compress_min_size", "compression_window_bits",
    "compression_level", "compression_memory_level",
)
"""Server options that change what a server answers, written into recorded vectors."""
UNRECORDED_OPTIONS = ("proxy_protocol",)
"""Options a vector may name that recordings never write: the recorder and the capture
importer leave the PROXY protocol header out, so what they keep is the connection as
the client made it, for a server without the option."""

_BLANK_LINE = re.compile(rb"\n\r?\n")
"""Where a request head ends, as the server's head parser decides it."""
_REQUEST_START = re.compile(rb"[A-Z]+ \S+ HTTP/")
_LINE_END = re.compile(rb"\r\n|\n|\r")
"""Every line end a recorded head may hold: the parser takes CRLF and bare LF, and refuses
a lone CR, but a refused head is recorded too."""
_WEBSOCKET_FIELD = re.compile(rb"(?im)^(?:upgrade|(?:sec-)?websocket-[-\w]*)[ \t]*:")
_QUERY = re.compile(rb"\?([^ \t]*)")
_USERINFO = re.compile(rb"(://)([^/?#@ \t]*)@")
_AUTHORITY = re.compile(rb"^([ \t]*[A-Za-z][-+.A-Za-z0-9]*://)([^/?# \t]*)")
_CONTENT_LENGTH = re.compile(rb"(?im)^(content-length[ \t]*:[ \t]*)[0-9]+")
_ECHOED = {
    "sec-websocket-origin": ("origin", "sec-websocket-origin"),
    "websocket-origin": ("origin", "sec-websocket-origin"),
    "sec-websocket-protocol": ("sec-websocket-protocol", "websocket-protocol"),
    "websocket-protocol": ("sec-websocket-protocol", "websocket-protocol"),
}
"""Answer fields and the request fields they repeat."""
_LOCATIONS = frozenset({"sec-websocket-location", "websocket-location", "location"})


@dataclass(frozen=True)
class Redaction:
    """What a recording leaves out: these header fields' values (lowercase names), and
    with ``query`` every value of the request target's query."""

    headers: frozenset[str]
    query: bool = True

    @classmethod
    def of(cls, options: ServerOptions) -> Redaction:
        return cls(frozenset(name.strip().lower() for name in options.record_redact),
                   options.record_redact_query)


DEFAULT_REDACTION = Redaction.of(ServerOptions())


@dataclass
class _Redacted:
    """A request head with its secrets replaced, what was replaced, and the values."""

    data: bytes
    names: list[str] = field(default_factory=list)
    secrets: set[bytes] = field(default_factory=set)

    def note(self, name: str) -> None:
        if name.lower() not in (n.lower() for n in self.names):
            self.names.append(name)


def redact(head: bytes, redaction: Redaction = DEFAULT_REDACTION) -> tuple[bytes, list[str]]:
    """The request head with its secrets replaced, and what was redacted."""
    redacted = _redact_request(head, redaction)
    return redacted.data, redacted.names


def _lines(data: bytes) -> list[tuple[bytes, bytes]]:
    """Each line of ``data`` and the end it had (empty for a last line without one)."""
    lines, pos = [], 0
    for end in _LINE_END.finditer(data):
        lines.append((data[pos : end.start()], end.group()))
        pos = end.end()
    if pos < len(data):
        lines.append((data[pos:], b""))
    return lines


def _field_name(line: bytes) -> tuple[bytes, str] | None:
    """The name of the field on ``line`` as written, and lowercased; None without a colon."""
    name, colon, _ = line.partition(b":")
    if not colon:
        return None
    return name, name.strip(b" \t").decode("latin-1").lower()


def _marker(field_name: str) -> bytes:
    """What a redacted field's value becomes."""
    return REDACTED_TOKEN.encode() if field_name in _TOKEN_FIELDS else _REDACTED


def _pieces(value: bytes) -> set[bytes]:
    """A redacted value and its parts (list items, cookie values, credentials after
    their scheme): what an answer might quote, long enough to look for."""
    value = value.strip(b" \t")
    found = {value}
    for part in re.split(rb"[ \t,;]+", value):
        found.update((part, part.partition(b"=")[2]))
    return {piece for piece in found if len(piece) >= MIN_QUOTED_SECRET}


def _redact_url(text: bytes, redaction: Redaction, redacted: _Redacted) -> bytes:
    """``text`` with the user:password of any URL in it, and (``redaction.query``) every
    query value, replaced. Parameters keep their names; one without ``=`` is all value."""

    def userinfo(match: re.Match[bytes]) -> bytes:
        if not match[2]:
            return match[0]
        redacted.secrets.update(_pieces(match[2]))
        redacted.note("URL credentials")
        return match[1] + _REDACTED + b"@"

    def query(match: re.Match[bytes]) -> bytes:
        parts = re.split(rb"([&;])", match[1])
        for index in range(0, len(parts), 2):
            name, equals, value = parts[index].partition(b"=")
            secret = value if equals else name
            if secret:
                redacted.secrets.update(_pieces(secret))
                redacted.note("query values")
                parts[index] = name + b"=" + _REDACTED if equals else _REDACTED
        return b"?" + b"".join(parts)

    text = _USERINFO.sub(userinfo, text)
    return _QUERY.sub(query, text) if redaction.query else text


def _redact_request(head: bytes, redaction: Redaction) -> _Redacted:
    redacted = _Redacted(b"")
    out: list[bytes] = []
    hiding = False  # the field that continuation lines continue is redacted
    for index, (original, end) in enumerate(_lines(head)):
        line = original
        if index == 0:
            line = _redact_url(line, redaction, redacted)
        elif line[:1] in (b" ", b"\t"):
            # A continuation, of a redacted field or itself shaped like one (a lenient
            # reader would take it for a field of its own).
            inner = _field_name(line)
            if (hiding or (inner is not None and inner[1] in redaction.headers)) and (
                line.strip(b" \t")
            ):
                redacted.secrets.update(_pieces(line))
                line = line[: len(line) - len(line.lstrip(b" \t"))] + _REDACTED
        else:
            name = _field_name(line)
            hiding = name is not None and name[1] in redaction.headers
            if name is not None and hiding:
                redacted.secrets.update(_pieces(line[len(name[0]) + 1 :]))
                redacted.note(name[0].strip(b" \t").decode("latin-1"))
                line = name[0] + b": " + _marker(name[1])
        out.append(line + end)
    redacted.data = b"".join(out)
    return redacted


def _redact_answer(text: bytes, redaction: Redaction, request: _Redacted) -> bytes:
    """The server's text (a response head, and an error's body) redacted to match the
    request: what the server would have answered to the redacted request."""
    head_end = text.find(b"\r\n\r\n")
    head, body = (text, b"") if head_end < 0 else (text[: head_end + 4], text[head_end + 4 :])
    out: list[bytes] = []
    for index, (original, end) in enumerate(_lines(head)):
        line = original
        name = _field_name(line) if index else None
        if name is not None:
            key = name[1]
            if key in redaction.headers or any(
                echoed in redaction.headers for echoed in _ECHOED.get(key, ())
            ):
                line = name[0] + b": " + _marker(key)
            elif key in _LOCATIONS:
                value = _redact_url(line[len(name[0]) + 1 :], redaction, _Redacted(b""))
                if "host" in redaction.headers:
                    value = _AUTHORITY.sub(lambda m: m[1] + _REDACTED, value, count=1)
                line = name[0] + b":" + value
        out.append(line + end)
    head = b"".join(out)
    scrubbed = body
    if len(request.secrets) > MAX_QUOTED_SECRETS:
        scrubbed = _REDACTED + b"\n" if body else body
    else:
        for secret in sorted(request.secrets, key=len, reverse=True):
            scrubbed = scrubbed.replace(secret, _REDACTED)
    if scrubbed != body:
        head = _CONTENT_LENGTH.sub(lambda m: m[1] + str(len(scrubbed)).encode(), head, count=1)
    return head + scrubbed


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
    recheck_at: int = 0
    """Length the data must reach before frame boundaries are looked for again."""

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


Event = tuple[str, int, int]


class Recording:
    """A connection's bytes both ways, in order, until it ends."""

    def __init__(self, frames: int = 10, started: datetime.datetime | None = None) -> None:
        self.frames = max(frames, 0)
        self.client = _Side()
        self.server = _Side()
        self.events: list[Event] = []
        """("client" | "server", start, end) byte ranges, consecutive ones of a direction
        merged, and ("client_eof" | "server_eof", 0, 0)."""
        self.draft: Draft | None = None
        self.close_code: int | None = None
        self.started = started
        """When the connection began (UTC), for the description."""
        self.head_end: int | None = None
        """Offset just past the request head's blank line, once it has come."""
        self._head_searched = 0
        self._client_eof = False
        self._server_eof = False

    # -- feeding ------------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        self._add("client", self.client, data)
        if self.head_end is None:
            blank = _BLANK_LINE.search(self.client.data, max(self._head_searched - 2, 0))
            if blank is not None:
                self.head_end = blank.end()
            self._head_searched = len(self.client.data)

    def sent(self, data: bytes) -> None:
        self._add("server", self.server, data)

    def received_eof(self) -> None:
        if not (self._client_eof or self._server_eof):
            self._client_eof = True
            self.events.append(("client_eof", 0, 0))

    def sent_eof(self) -> None:
        if not self._server_eof:
            self._server_eof = True
            self.events.append(("server_eof", 0, 0))

    def opened(self, draft: Draft, leftover: int) -> None:
        """The handshake is done; the last ``leftover`` client bytes are frames."""
        self.draft = draft
        self.client.frames_from = len(self.client.data) - leftover
        self.server.frames_from = len(self.server.data)
        self._count(self.client)
        self._count(self.server)

    def _add(self, kind: str, side: _Side, data: bytes) -> None:
        if self._server_eof:
            return  # after the server closed, nothing changes what it said
        kept = side.add(data)
        if kept is None:
            return
        last = self.events[-1] if self.events else None
        if last is not None and last[0] == kind and last[2] == kept[0]:
            self.events[-1] = (kind, last[1], kept[1])
        else:
            self.events.append((kind, *kept))
        self._count(side)

    def _count(self, side: _Side, *, final: bool = False) -> None:
        """Find the ends of the frames kept so far; at the frame count, drop the rest.

        ``frame_end`` reads at most the unfinished frame's bytes, so it is asked again
        only once they have doubled (``final``: now): linear in all, however the frame
        is dribbled.
        """
        if self.draft is None or side.frames_from is None or side.limit is not None:
            return
        if not final and len(side.data) < side.recheck_at:
            return
        pos = side.frame_ends[-1] if side.frame_ends else side.frames_from
        while len(side.frame_ends) < self.frames:
            end = frame_end(self.draft, side.data, pos)
            if end is None:
                side.recheck_at = len(side.data) + max(len(side.data) - pos, 1)
                return
            side.frame_ends.append(end)
            pos = end
        side.limit = pos
        side.cut = side.cut or len(side.data) > pos
        del side.data[pos:]

    # -- what is kept -------------------------------------------------------------------

    @property
    def truncated(self) -> bool:
        return self.client.cut or self.server.cut

    @property
    def size(self) -> int:
        """Bytes held, both ways."""
        return len(self.client.data) + len(self.server.data)

    @property
    def _h2(self) -> bool:
        """The client sent the whole HTTP/2 preface. A connection that ended within it
        is read as the HTTP/1.1 request its first line is, by both worth_keeping() and
        vector(), so they agree on whether a vector is made."""
        data = self.client.data
        return len(data) >= len(PREFACE) and is_h2(data[: len(PREFACE)])

    def worth_keeping(self, *, plain: bool = True) -> bool:
        """Whether the exchange makes a vector, decided cheaply: a complete HTTP request
        head, not refused for load (503), and unless ``plain``, a WebSocket request (an
        ``Upgrade`` or ``Sec-WebSocket-*`` / ``WebSocket-*`` field)."""
        if self._h2:
            return True  # HTTP/2: h2_vector decides once the frames are decoded
        if self.head_end is None or not _REQUEST_START.match(self.client.data):
            return False
        if status_of(bytes(self.server.data[:1024])) == 503:
            return False
        return plain or _WEBSOCKET_FIELD.search(
            self.client.data, 0, min(self.head_end, PLAIN_WINDOW)) is not None

    # -- the vector ---------------------------------------------------------------------

    def vector(self, options: ServerOptions | None = None,
               redaction: Redaction | None = None, *,
               keep_refused_rest: bool = False) -> dict[str, Any] | None:
        """The vector, or None when the connection was not an HTTP exchange (TLS, a Flash
        policy request, nothing at all), was refused for load, or (without
        ``options.record_plain``) was a plain HTTP request. ``keep_refused_rest`` keeps
        the client's bytes after a refused head, which the recorder leaves out and an
        import of a capture keeps."""
        plain = options is None or options.record_plain
        if redaction is None:
            redaction = DEFAULT_REDACTION if options is None else Redaction.of(options)
        if self._h2:
            return self._h2_vector(options, redaction, plain=plain)
        if self.head_end is None or not self.worth_keeping(plain=plain):
            return None
        self._count(self.client, final=True)
        self._count(self.server, final=True)
        status = status_of(bytes(self.server.data[:1024]))
        refused = status is not None and status != 101
        request = _redact_request(bytes(self.client.data[: self.head_end]), redaction)
        client = _shown(self.client, self.head_end, request.data,
                        keep_rest=keep_refused_rest or not refused)
        text_end = self.server.data.find(b"\r\n\r\n") + 4
        if refused or text_end < 4:
            text_end = len(self.server.data) if refused else 0
        answer = _redact_answer(bytes(self.server.data[:text_end]), redaction, request)
        server = _shown(self.server, text_end, answer, keep_rest=True)
        head = request.data
        draft = self.draft or guess_draft(head)
        steps = self._steps(client, server, draft, status)
        end: dict[str, Any]
        if refused:
            end = {"status": status}
        elif self.truncated:
            end = {"eof": False}
        else:
            end = {"eof": self._server_eof}
            if self.close_code is not None and self.draft is not None:
                end = {"close_code": self.close_code, **end}
        request_line = _lines(head)[0][0] if head else b""
        target = " ".join(request_line.decode("latin-1").split(" ")[:2])
        if status == 101:
            name = (f"{target}: {draft.value} handshake, {len(client.side.frame_ends)} "
                    f"frames in, {len(server.side.frame_ends)} out")
        else:
            name = f"{target}: " + (f"answered {status}" if status else "no answer")
        agent = header_value(head, "User-Agent")
        when = f" on {self.started.strftime('%Y-%m-%d %H:%M UTC')}" if self.started else ""
        kept = f"the first {self.frames} frames each way" if self.frames else "no frames"
        description = [f"Recorded by wscompat serve --record{when}, keeping the handshake "
                       f"and {kept}."]
        if self.truncated:
            description.append("The connection went on; the rest was left out.")
        if request.names:
            description.append(f"{', '.join(request.names)} redacted.")
        vector: dict[str, Any] = {
            "$schema": f"../{SCHEMA_NAME}",  # the recorder writes it there
            "name": name,
            "draft": draft.value,
            "source": f"recorded from {agent}" if agent else
                      "recorded from a client that sent no User-Agent",
            "provenance": self.provenance(agent),
            "description": " ".join(description),
        }
        chosen = vector_options(options) if options is not None else {}
        if chosen:
            vector["options"] = chosen
        vector["steps"] = steps
        vector["end"] = end
        return vector

    def _h2_vector(self, options: ServerOptions | None, redaction: Redaction, *,
                   plain: bool) -> dict[str, Any] | None:
        """The connection as an ``rfc8441`` vector (:mod:`wscompat.vectors.h2record`)."""
        sides = {"client": self.client.data, "server": self.server.data}
        events = [(kind, b"" if kind.endswith("_eof") else bytes(sides[kind][start:end]))
                  for kind, start, end in self.events]
        return h2_vector(events, started=self.started, truncated=self.truncated,
                         redact_fields=redaction.headers, redact_query=redaction.query,
                         provenance=self.provenance, plain=plain,
                         options=vector_options(options) if options is not None else None)

    def provenance(self, agent: str | None) -> dict[str, Any]:
        """Recorded by this wscompat on the day the connection began; the client is
        known by its User-Agent only (a person may name it, as ``source`` says)."""
        provenance: dict[str, Any] = {
            "kind": "recorded",
            "date": self.started.strftime("%Y-%m-%d") if self.started else today(),
            "tool": wscompat_tool("serve --record"),
        }
        if agent and agent.strip():
            provenance["client"] = {"user_agent": agent}
        return provenance

    def _steps(self, client: _Shown, server: _Shown, draft: Draft,
               status: int | None) -> list[dict[str, Any]]:
        spans: list[list[Any]] = []  # [kind, start, end] in the redacted sides
        for kind, was_start, was_end in self.events:
            if kind.endswith("_eof"):
                if not self.truncated:
                    spans.append([kind, 0, 0])
                continue
            at = client.at if kind == "client" else server.at
            start, end = at(was_start), at(was_end)
            if start >= end:
                continue  # past the frames kept, or after a refused request's head
            if spans and spans[-1][0] == kind and spans[-1][2] == start:
                spans[-1][2] = end
            else:
                spans.append([kind, start, end])
        steps: list[dict[str, Any]] = []
        for kind, start, end in spans:
            if kind == "client_eof":
                steps.append({"send_eof": True})
            elif kind == "server_eof":
                steps.append({"expect_eof": True})
            elif kind == "client":
                steps.append({"send": _data(client.side, start, end, client.text_end)})
            elif (start == 0 and status == 101 and server.text_end >= 4
                  and draft not in (Draft.HIXIE75, Draft.HIXIE76)):
                head = server.side.data[: server.text_end].decode("latin-1")
                steps.append({"expect_head": head, "vary": HYBI_HEAD_VARY})
                if end > server.text_end:
                    steps.append({"expect": _data(server.side, server.text_end, end, 0)})
            else:
                steps.append({"expect": _data(server.side, start, end, server.text_end)})
        return steps


@dataclass
class _Shown:
    """One direction as the vector shows it: redacted, where each recorded offset lands
    in it, and where its text (the head) ends."""

    side: _Side
    at: Callable[[int], int]
    text_end: int


def _shown(side: _Side, text_end: int, text: bytes, *, keep_rest: bool) -> _Shown:
    """``side`` with its first ``text_end`` bytes replaced by ``text`` (and without the
    bytes after them unless ``keep_rest``)."""
    rest = side.data[text_end:] if keep_rest else bytearray()
    new = _Side(bytearray(text) + rest)
    shift, total = len(text) - text_end, len(new.data)

    def moved(offset: int) -> int:
        return min(offset + shift if offset >= text_end else min(offset, len(text)), total)

    new.frame_ends = [e for e in map(moved, side.frame_ends) if len(text) < e <= total]
    return _Shown(new, moved, len(text))


def _data(side: _Side, start: int, end: int, text_end: int) -> Any:
    """A data spec for ``side.data[start:end]``: what lies before ``text_end`` (a head)
    as text, then each frame as one hex item."""
    pieces: list[Any] = []
    pos = start
    if pos < text_end:
        pieces.append(_text(bytes(side.data[pos : min(end, text_end)])))
        pos = min(end, text_end)
    ends = side.frame_ends
    index = bisect_right(ends, pos)
    cuts: Iterable[int] = [*ends[index : bisect_right(ends, end - 1, index)], end]
    for cut in cuts:
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


def header_value(head: bytes, name: str) -> str | None:
    request = _request(head)
    return None if request is None else request.headers.get(name)


def guess_draft(head: bytes) -> Draft:
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
