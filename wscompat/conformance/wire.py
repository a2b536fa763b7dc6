"""The conformance client's side of the wire, sans I/O.

Written from the documents, not on wscompat's own protocol code, so the client cannot
share a mistake with the server it judges: RFC 6455 (handshake, masking, frames), RFC
7692 (permessage-deflate, client side), draft-hixie-75 and -76 (their handshakes, the
MD5 challenge, ``0x00 text 0xFF`` and length-prefixed frames), and hybi-07/08 (the RFC
6455 handshake with versions 7 and 8 and ``Sec-WebSocket-Origin``). The client writes
malformed frames on purpose, so encoding never validates; parsing the server's octets
does, within fixed bounds, since the server under test may be hostile.

:class:`WireLog` keeps a bounded record of the exchange for the HTML report.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "BINARY", "CLOSE", "CONT", "OPCODE_NAMES", "PING", "PONG", "TEXT",
    "DeflateAgreement", "Deflater", "Frame", "FrameParser", "Handshake", "HandshakeError",
    "Head", "HixieFrame", "HixieParser", "Inflater", "ProtocolError", "Received", "Refused",
    "Target", "WireEntry", "WireLog", "accept_for", "agree", "apply_mask", "case_key",
    "check_hixie_answer", "check_hybi_response", "check_server_frame", "describe_frame",
    "encode_frame", "hixie76_answer", "hixie_request", "hybi_request", "omit_fields",
    "parse_extensions", "parse_head", "parse_url", "split_head", "valid_close_code",
]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPCODE_NAMES = {CONT: "CONT", TEXT: "TEXT", BINARY: "BINARY", CLOSE: "CLOSE", PING: "PING",
                PONG: "PONG"}
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16384
"""The most octets of a response head the client reads before giving up."""
MAX_FRAME = 2**30
"""The client gives up on a frame longer than this rather than buffer it."""
MAX_INFLATED = 2**26
"""The most octets one compressed message may inflate to."""
WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class ProtocolError(Exception):
    """The server broke the protocol; the client fails the connection."""


class HandshakeError(Exception):
    """The server's opening handshake is not one the client may accept."""


class Refused(HandshakeError):
    """The server answered the opening handshake with a status other than 101."""

    def __init__(self, status_line: str) -> None:
        super().__init__(f"handshake refused: {status_line!r}")
        self.status_line = status_line


# -- where to connect ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A ``ws://`` URL taken apart: where to connect and what the request says."""

    host: str
    port: int
    resource: str
    """The request-target: path and query, as in the URL."""

    @property
    def host_header(self) -> str:
        """``Host`` as sent: the port only when it is not 80, IPv6 literals bracketed."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == 80 else f"{name}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.host_header}"

    @property
    def location(self) -> str:
        """What hixie servers must answer in ``(Sec-)WebSocket-Location``."""
        return f"ws://{self.host_header}{self.resource}"


def parse_url(url: str) -> Target:
    """A ``ws://host[:port]/path`` URL; ValueError says what is wrong with another."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme == "wss":
        raise ValueError("wss:// is not supported: the client plays raw frames over TCP; "
                         "point it at the server's plain ws:// port")
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws://host:port/ URL")
    if parts.fragment:
        raise ValueError(f"{url!r} has a fragment, which WebSocket URLs cannot have")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.hostname, port or 80, resource)


# -- RFC 6455 frames -------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame as the client writes it; the runner always masks it, as clients must."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    closing: bool = False
    """This Close starts the client's closing handshake (Autobahn's ``sendClose``).
    A close frame sent as fuzz (3.7, the second Close of 7.1.2) leaves it False."""


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR with the repeated 4-octet key, done on integers so megabytes stay fast."""
    if not data:
        return b""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little"
    )


def encode_frame(frame: Frame, key: bytes) -> bytes:
    """The frame, masked with ``key``, exactly as given (reserved bits and opcodes too)."""
    n = len(frame.payload)
    b0 = (0x80 if frame.fin else 0) | (frame.rsv & 7) << 4 | frame.opcode & 0x0F
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + apply_mask(frame.payload, key)


@dataclass(frozen=True)
class Received:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes


class FrameParser:
    """Incremental parser of the server's frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data

    def next(self) -> Received | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        n, pos = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, pos = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, pos = int.from_bytes(buf[2:10], "big"), 10
            if n > MAX_FRAME:
                raise ProtocolError(f"server frame of {n} octets")
        masked = bool(buf[1] & 0x80)
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key, pos = bytes(buf[pos : pos + 4]), pos + 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos : pos + n])
        b0 = buf[0]
        del buf[: pos + n]
        if masked:
            payload = apply_mask(payload, key)
        return Received(bool(b0 & 0x80), b0 >> 4 & 7, b0 & 0x0F, masked, payload)


def check_server_frame(f: Received, *, compressed_ok: bool = False) -> str | None:
    """What is wrong with a server frame, if anything (RFC 6455 section 5). With
    ``compressed_ok`` (permessage-deflate agreed, RFC 7692 section 6), RSV1 may mark
    the first frame of a data message."""
    if f.masked:
        return "server sent a masked frame"
    if f.rsv and not (compressed_ok and f.rsv == 4 and f.opcode in (TEXT, BINARY)):
        return f"server frame has RSV bits {f.rsv}"
    if f.opcode not in OPCODE_NAMES:
        return f"server frame has reserved opcode {f.opcode}"
    if f.opcode >= CLOSE and (not f.fin or len(f.payload) > 125):
        return "server sent a fragmented or oversized control frame"
    return None


def valid_close_code(code: int) -> bool:
    return code in WIRE_CODES or 3000 <= code <= 4999


def describe_frame(opcode: int, *, fin: bool, rsv: int, masked: bool, size: int) -> str:
    """One line for the wire log: ``TEXT fin masked, 5 octets``."""
    name = OPCODE_NAMES.get(opcode, f"opcode {opcode}")
    flags = [name, "fin" if fin else "not fin"]
    if rsv:
        flags.append(f"rsv {rsv}")
    if masked:
        flags.append("masked")
    return f"{' '.join(flags)}, {size} octets"


# -- HTTP heads ------------------------------------------------------------------------


def split_head(buf: bytes) -> tuple[bytes, bytes] | None:
    """The head up to its blank line, and what follows; None until the blank line is
    in. HandshakeError when the head is over :data:`MAX_HEAD` octets."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise HandshakeError(f"response head over {MAX_HEAD} octets")
        return None
    return buf[: end + 4], buf[end + 4 :]


@dataclass(frozen=True)
class Head:
    """A response head: the status line and the header fields as received."""

    status_line: str
    headers: tuple[tuple[str, str], ...]

    @property
    def status(self) -> int | None:
        parts = self.status_line.split(" ", 2)
        ok = len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit()
        return int(parts[1]) if ok else None

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    def first_lines(self) -> list[str]:
        return [self.status_line, *(f"{n}: {v}" for n, v in self.headers)]


def parse_head(head: bytes) -> Head:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return Head(lines[0], tuple(headers))


# -- the RFC 6455 and hybi-07/08 handshake ---------------------------------------------


@dataclass(frozen=True)
class Handshake:
    """How a hybi-family client opens: RFC 6455 (13) by default; hybi-07 and -08 send
    versions 7 and 8 and ``Sec-WebSocket-Origin``; ``offer`` is the
    ``Sec-WebSocket-Extensions`` value offered (sections 12 and 13)."""

    version: int = 13
    origin_header: str = "Origin"
    offer: str | None = None


def case_key(case_id: str) -> str:
    """The ``Sec-WebSocket-Key`` of a case: fixed, so reruns write the same octets."""
    return base64.b64encode(hashlib.sha256(f"{case_id}/key".encode()).digest()[:16]).decode()


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def hybi_request(target: Target, key: str, handshake: Handshake) -> bytes:
    lines = [
        f"GET {target.resource} HTTP/1.1", f"Host: {target.host_header}",
        "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {handshake.version}",
        f"{handshake.origin_header}: {target.origin}",
    ]
    if handshake.offer is not None:
        lines.append(f"Sec-WebSocket-Extensions: {handshake.offer}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def check_hybi_response(head: Head, key: str, handshake: Handshake) -> DeflateAgreement | None:
    """Accept the server's 101 as RFC 6455 section 4.1 says a client must, and return
    the permessage-deflate agreed, if any; HandshakeError otherwise."""
    if head.status != 101:
        raise Refused(head.status_line)
    if (head.get("Upgrade") or "").lower() != "websocket":
        raise HandshakeError("response lacks Upgrade: websocket")
    if "upgrade" not in [t.strip().lower() for t in (head.get("Connection") or "").split(",")]:
        raise HandshakeError("response lacks Connection: Upgrade")
    if head.values("Sec-WebSocket-Accept") != [accept_for(key)]:
        raise HandshakeError("wrong Sec-WebSocket-Accept")
    if head.get("Sec-WebSocket-Protocol") is not None:
        raise HandshakeError("the server chose a subprotocol the client did not offer")
    answered = ", ".join(head.values("Sec-WebSocket-Extensions")) or None
    if answered is None:
        return None
    if handshake.offer is None:
        raise HandshakeError(f"the server agreed extensions the client did not offer: "
                             f"{answered!r}")
    return agree(handshake.offer, answered)


# -- permessage-deflate, client side (RFC 7692) ----------------------------------------


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def parse_extensions(value: str) -> list[tuple[str, dict[str, str | None]]]:
    """``name; param[=value], ...`` into (name, params); ValueError on a repeated
    parameter or a malformed element."""
    found: list[tuple[str, dict[str, str | None]]] = []
    for element in value.split(","):
        parts = [p.strip() for p in element.split(";")]
        if not _TOKEN.match(parts[0]):
            raise ValueError(f"malformed extension {element.strip()!r}")
        params: dict[str, str | None] = {}
        for part in parts[1:]:
            name, eq, raw = part.partition("=")
            name = name.strip()
            if not _TOKEN.match(name) or name in params:
                raise ValueError(f"malformed or repeated parameter {part!r}")
            params[name] = raw.strip().strip('"') if eq else None
        found.append((parts[0], params))
    return found


@dataclass(frozen=True)
class DeflateAgreement:
    """What the server's answer fixes (RFC 7692 section 7). The client also keeps to
    its own ``client_no_context_takeover`` hint when every offer carried it."""

    client_no_context_takeover: bool = False
    client_max_window_bits: int = 15
    server_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    header: str = "permessage-deflate"
    """The answer as the server wrote it."""


def _bits(name: str, value: str | None) -> int:
    if value is None or not value.isdigit() or not 8 <= int(value) <= 15:
        raise HandshakeError(f"permessage-deflate answer: {name}={value} is not 8-15")
    return int(value)


def agree(offer: str, answer: str) -> DeflateAgreement:
    """Check the server's ``Sec-WebSocket-Extensions`` against what was offered (one
    or more permessage-deflate offers) and return what it fixes."""
    try:
        offers = parse_extensions(offer)
        answered = parse_extensions(answer)
    except ValueError as exc:
        raise HandshakeError(f"extensions answer {answer!r}: {exc}") from None
    if len(answered) != 1 or answered[0][0] != "permessage-deflate":
        raise HandshakeError(f"the server agreed extensions the client did not offer: "
                             f"{answer!r}")
    params = answered[0][1]
    mine = [p for name, p in offers if name == "permessage-deflate"]
    known = {"client_no_context_takeover", "client_max_window_bits",
             "server_no_context_takeover", "server_max_window_bits"}
    if set(params) - known:
        raise HandshakeError(f"permessage-deflate answer has unknown parameters: "
                             f"{sorted(set(params) - known)}")
    for flag in ("client_no_context_takeover", "server_no_context_takeover"):
        if flag in params and params[flag] is not None:
            raise HandshakeError(f"permessage-deflate answer: {flag} takes no value")
    if "client_max_window_bits" in params and not any("client_max_window_bits" in p
                                                      for p in mine):
        raise HandshakeError("permessage-deflate answer sets client_max_window_bits, "
                             "which the client did not offer")
    if all("server_no_context_takeover" in p for p in mine) and (
            "server_no_context_takeover" not in params):
        raise HandshakeError("permessage-deflate answer drops the server_no_context_takeover "
                             "the client asked for")
    server_bits = (_bits("server_max_window_bits", params["server_max_window_bits"])
                   if "server_max_window_bits" in params else 15)
    limits = [int(p["server_max_window_bits"] or 15) for p in mine
              if "server_max_window_bits" in p]
    if len(limits) == len(mine) and server_bits > max(limits):
        raise HandshakeError(f"permessage-deflate answer: server_max_window_bits="
                             f"{server_bits} is over the {max(limits)} asked for")
    hinted = all("client_no_context_takeover" in p for p in mine)
    return DeflateAgreement(
        client_no_context_takeover="client_no_context_takeover" in params or hinted,
        client_max_window_bits=(_bits("client_max_window_bits",
                                      params["client_max_window_bits"])
                                if "client_max_window_bits" in params else 15),
        server_no_context_takeover="server_no_context_takeover" in params,
        server_max_window_bits=server_bits,
        header=answer,
    )


_TAIL = b"\x00\x00\xff\xff"


class Deflater:
    """Compresses the client's messages as the agreement allows. zlib cannot keep a
    256-octet window, so ``client_max_window_bits=8`` gets stored blocks, which refer
    to nothing before them."""

    def __init__(self, agreement: DeflateAgreement) -> None:
        self._fresh = agreement.client_no_context_takeover
        bits = agreement.client_max_window_bits
        self._level = 0 if bits == 8 else 6
        self._wbits = -max(bits, 9)
        self._z = self._new()

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(self._level, zlib.DEFLATED, self._wbits)

    def compress(self, message: bytes) -> bytes:
        if self._fresh:
            self._z = self._new()
        data = self._z.compress(message) + self._z.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4] if data.endswith(_TAIL) else data


class Inflater:
    """Inflates the server's compressed messages. One stream with a 32 KiB window
    reads every server's output, whatever window or context takeover it agreed."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(-15)

    def inflate(self, payload: bytes) -> bytes:
        try:
            data = self._z.decompress(payload + _TAIL, MAX_INFLATED)
        except zlib.error as exc:
            raise ProtocolError(f"server sent compressed data that does not inflate: "
                                f"{exc}") from None
        if self._z.unconsumed_tail:
            raise ProtocolError(f"server message inflates to over {MAX_INFLATED} octets")
        return data


# -- hixie-75 and hixie-76 -------------------------------------------------------------


def hixie_request(
    draft: Literal["hixie-75", "hixie-76"], target: Target, *, key1: str = "", key2: str = "",
    content_length: bool = False, omit: tuple[str, ...] = (),
) -> bytes:
    """The request head, in the order the drafts' examples give; ``omit`` leaves out
    header fields by name (refusal cases). hixie-76's key3 is not part of it."""
    fields = [("Upgrade", "WebSocket"), ("Connection", "Upgrade"),
              ("Host", target.host_header), ("Origin", target.origin)]
    if draft == "hixie-76":
        fields += [("Sec-WebSocket-Key1", key1), ("Sec-WebSocket-Key2", key2)]
        if content_length:
            fields.append(("Content-Length", "8"))
    lines = [f"GET {target.resource} HTTP/1.1"]
    lines += [f"{n}: {v}" for n, v in fields if n.lower() not in {o.lower() for o in omit}]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HIXIE75_PREFIX = (b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
                  b"Connection: Upgrade\r\n")
"""The 85 octets a hixie-75 client compares literally (section 4.1)."""


def check_hixie_answer(draft: Literal["hixie-75", "hixie-76"], head: bytes,
                       target: Target) -> str | None:
    """What is wrong with a hixie server's 101 head, as the draft's client checks it:
    hixie-75 compares its first 85 octets literally, hixie-76 the status code and the
    exact values of Upgrade and Connection; both want the origin and the location the
    request implies, and no subprotocol, since none was asked for."""
    parsed = parse_head(head)
    prefix = "Sec-" if draft == "hixie-76" else ""
    if draft == "hixie-75" and not head.startswith(HIXIE75_PREFIX):
        return "the answer does not start with the 85 octets hixie-75 clients compare"
    if draft == "hixie-76":
        if parsed.status != 101:
            return f"status line {parsed.status_line!r}"
        for name, value in (("Upgrade", "WebSocket"), ("Connection", "Upgrade")):
            if parsed.values(name) != [value]:
                return f"{name} is {parsed.values(name)}, not exactly [{value!r}]"
    for name, value in (("WebSocket-Origin", target.origin),
                        ("WebSocket-Location", target.location)):
        if parsed.values(prefix + name) != [value]:
            return f"{prefix}{name} is {parsed.values(prefix + name)}, not [{value!r}]"
    if parsed.get(prefix + "WebSocket-Protocol") is not None:
        return f"{prefix}WebSocket-Protocol answered, though none was asked for"
    return None


def omit_fields(head: bytes, names: tuple[str, ...]) -> bytes:
    """``head`` without the header fields named (refusal cases)."""
    drop = {n.lower() for n in names}
    lines = head.split(b"\r\n")
    kept = [line for line in lines
            if line.split(b":", 1)[0].strip().decode("latin-1").lower() not in drop
            or b":" not in line]
    return b"\r\n".join(kept)


def hixie76_answer(key1: str, key2: str, key3: bytes) -> bytes | None:
    """The 16 octets a hixie-76 server owes (section 5.2), or None when the keys give
    no valid challenge (no digits, no spaces, not divisible, over 32 bits)."""
    numbers = []
    for key in (key1, key2):
        digits = "".join(c for c in key if "0" <= c <= "9")
        spaces = key.count(" ")
        if not digits or not spaces or int(digits) % spaces:
            return None
        number = int(digits) // spaces
        if number >= 2**32:
            return None
        numbers.append(number)
    challenge = numbers[0].to_bytes(4, "big") + numbers[1].to_bytes(4, "big") + key3
    return hashlib.md5(challenge).digest()


@dataclass(frozen=True)
class HixieFrame:
    """One hixie frame: ``text`` (type 0x00 up to 0xFF), ``sentinel`` (another type
    below 0x80, up to 0xFF), or ``length`` (type 0x80 and up, 7-bit length groups);
    ``0xFF 0x00`` is a ``length`` frame of type 0xFF and length 0, hixie-76's close."""

    kind: Literal["text", "sentinel", "length"]
    type: int
    payload: bytes

    @property
    def is_close(self) -> bool:
        return self.kind == "length" and self.type == 0xFF and not self.payload

    def describe(self) -> str:
        if self.is_close:
            return "0xFF 0x00 (the closing frame in hixie-76)"
        if self.kind == "text":
            return f"text frame 0x00 .. 0xFF, {len(self.payload)} octets"
        return f"{self.kind} frame of type 0x{self.type:02X}, {len(self.payload)} octets"


class HixieParser:
    """Incremental parser of hixie frames, bounded: a frame over ``limit`` octets is a
    ProtocolError rather than a buffer without end."""

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def next(self) -> HixieFrame | None:
        buf = self._buf
        if not buf:
            return None
        kind = buf[0]
        if kind < 0x80:
            end = buf.find(b"\xff", 1)
            if end < 0:
                if len(buf) > self.limit:
                    raise ProtocolError(f"hixie frame with no end over {self.limit} octets")
                return None
            payload = bytes(buf[1:end])
            del buf[: end + 1]
            return HixieFrame("text" if kind == 0 else "sentinel", kind, payload)
        length, pos = 0, 1
        while True:
            if pos >= len(buf):
                return None
            b = buf[pos]
            pos += 1
            length = length * 128 + (b & 0x7F)
            if length > self.limit:
                raise ProtocolError(f"hixie frame declares over {self.limit} octets")
            if not b & 0x80:
                break
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return HixieFrame("length", kind, payload)


# -- the wire log ----------------------------------------------------------------------


Side = Literal["client", "server", "note"]


@dataclass(frozen=True)
class WireEntry:
    """One thing on the wire (or a note about it). ``data`` holds at most the log's
    ``keep`` octets of a payload of ``size``."""

    at: float
    side: Side
    what: str
    data: bytes = b""
    size: int = 0
    text: bool = False
    """Show ``data`` as text (handshake heads, text payloads that are UTF-8)."""


@dataclass
class WireLog:
    """A case's exchange in order, bounded in entries and in octets per entry so a
    case of megabytes or thousands of frames keeps a readable, finite log."""

    max_entries: int = 400
    keep: int = 1024
    entries: list[WireEntry] = field(default_factory=list)
    dropped: int = 0

    def add(self, at: float, side: Side, what: str, data: bytes = b"", *,
            text: bool = False) -> None:
        if len(self.entries) >= self.max_entries:
            self.dropped += 1
            return
        self.entries.append(WireEntry(round(at, 6), side, what, data[: self.keep], len(data),
                                      text))
