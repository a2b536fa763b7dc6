"""Request heads in, response bytes out: the HTTP/1.1 that a WebSocket handshake needs.

A head is read up to its blank line and only then parsed, the header fields by llhttp
(through httptools), so every byte after the blank line stays untouched: hixie-76 puts its
8-byte key3 there without a Content-Length, and an HTTP library that swallowed or
reinterpreted it would break that draft. Responses are written by hand, byte for byte,
because legacy clients compare the status line and the first headers literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from wscompat.errors import HandshakeRejected

__all__ = ["HeadParser", "Headers", "Request", "RequestView", "error_response", "response"]

REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _phrase(status: int) -> str:
    """The reason phrase of ``status``: the table's, else the standard one."""
    phrase = REASONS.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
    return phrase


class Headers:
    """Header fields in arrival order, looked up case-insensitively, values as sent.

    Lookups go through an index of lowercased names, built on the first lookup: a
    handshake asks a dozen questions of the same head, and lowercasing every key on
    every question was the largest cost of the handshake path.
    """

    __slots__ = ("_index", "_items", "_packed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] | None = list(items)
        self._index: dict[str, list[str]] | None = None
        self._packed = ""

    @property
    def _fields(self) -> list[tuple[str, str]]:
        items = self._items
        if items is None:
            # Names hold no colon and values no CR or LF (the parser refuses both), so
            # the first ": " of each line is where its name ends.
            items = self._items = [
                (name, value)
                for name, _, value in (line.partition(": ") for line in self._packed.split("\r\n"))
            ]
            self._packed = ""
        return items

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self._fields:
                index.setdefault(key.lower(), []).append(value)
            self._index = index
        return index

    def compact(self) -> None:
        """Keep the fields as one string until they are asked for again: an open
        connection keeps its request for the application, which rarely looks at it,
        and a string per name and per value, each in a tuple, cost about 1 KiB per
        idle connection. The lookup index goes too (it is rebuilt when needed)."""
        self._index = None
        items = self._items
        if not items:
            return
        packed = "\r\n".join(f"{name}: {value}" for name, value in items)
        if packed.count("\r\n") == len(items) - 1 and not any(":" in n for n, _ in items):
            self._packed, self._items = packed, None  # else fields made by hand: kept

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``."""
        values = self._lookup().get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._lookup().get(name.lower(), ()))

    def joined(self, name: str) -> str | None:
        """All values of a list-valued header joined with ``", "``, or None when absent."""
        values = self.get_all(name)
        return ", ".join(values) if values else None

    def count(self, name: str) -> int:
        return len(self.get_all(name))

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of every ``name`` header, lowercased."""
        return [t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(tuple(self._fields))

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


@dataclass(frozen=True)
class Request:
    """A parsed request head. ``target`` is the request-target exactly as received."""

    method: str
    target: str
    http_version: str
    headers: Headers = field(default_factory=Headers)

    @property
    def origin(self) -> str | None:
        """``Origin``, falling back to the ``Sec-WebSocket-Origin`` of hybi-04..10."""
        origin = self.headers.get("Origin")  # an empty one is not a missing one
        return origin if origin is not None else self.headers.get("Sec-WebSocket-Origin")


class RequestView:
    """The parts of the request behind a handshake that applications ask for."""

    request: Request

    @property
    def path(self) -> str:
        """The request-target with its query, as the client sent it."""
        return self.request.target

    @property
    def headers(self) -> Headers:
        return self.request.headers

    @property
    def origin(self) -> str | None:
        """``Origin``, or the ``Sec-WebSocket-Origin`` that hybi-07 and hybi-08 send."""
        return self.request.origin


class HeadParser:
    """Feed bytes until a request head is complete; ``leftover`` holds what followed it.

    Raises HandshakeRejected with 431 when the head is over ``max_size`` bytes or has more
    than ``max_headers`` fields, and 400 for a head that is not well-formed HTTP/1.x.

    The head is buffered until its blank line, then parsed whole: the outcome depends on
    the bytes, not on how they were cut into reads, and nothing after the blank line is
    ever shown to a parser.
    """

    __slots__ = ("_buffer", "_max_headers", "_max_size", "leftover", "request")

    def __init__(self, *, max_size: int = 16384, max_headers: int = 100) -> None:
        self._max_size = max_size
        self._max_headers = max_headers
        self._buffer = bytearray()
        self.request: Request | None = None
        self.leftover = b""

    def feed(self, data: bytes) -> Request | None:
        if self.request is not None:
            self.leftover += data
            return self.request
        if not data:
            return None
        buffer = self._buffer
        if buffer:
            searched = len(buffer) - 2  # the blank line may have begun in the last read
            buffer += data
            window: bytes | bytearray = buffer
        else:
            if data[0] < 0x21:
                # No request line starts with a control character, a space or an empty
                # line: refused at once, whatever follows and however long it is.
                raise HandshakeRejected(400, "malformed request head: illegal request line")
            searched = 0
            window = data  # the whole head in one read: parsed without a copy
        blank = _BLANK_LINE.search(window, max(searched, 0))
        size = len(window) if blank is None else blank.end()
        if size > self._max_size:
            raise HandshakeRejected(431, "request head too large")
        if blank is None:
            if window is data:
                buffer += data
            return None
        self.request = _parse(window, size, self._max_headers)
        self.leftover = bytes(window[size:])  # key3, or early frames: untouched
        self._buffer = bytearray()
        return self.request


_BLANK_LINE = re.compile(rb"\n\r?\n")
"""Where a request head ends: lines may end in CRLF or a bare LF."""

_REQUEST_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
"""method SP request-target SP HTTP-version (RFC 9112 §3), the target any visible ASCII."""

_NEVER_IN_A_HEAD = re.compile(rb"[\x00\x0b\x0c]|\r(?!\n)|\n[ \t]")
"""Refused wherever they appear: NUL, VT and FF (which are in no request line or field
name and, being whitespace or NUL, in no field value either), a CR that does not end a
line, and a line that starts with a space or a tab (obs-fold, RFC 9112 §5.2)."""

_LLHTTP_REQUEST_LINE = b"GET / HTTP/1.1\r\n"
"""What llhttp is shown in place of the real request line, checked above by a regex: llhttp
knows only its own list of methods and parses the target; here any token is a method (an
unknown one is the handshake's 405, not a 400) and the target is taken as received."""


class _Fields:
    """httptools' callbacks: the header fields in arrival order, and the end of the head."""

    __slots__ = ("complete", "items")

    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.items.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


QUOTED_MAX = 64
"""Bytes of a peer's request line quoted back in a 400: enough to recognise it."""


def _quoted(data: bytes) -> str:
    """``data`` as an escaped literal, cut at ``QUOTED_MAX`` bytes: an error body must
    not echo kilobytes of what the peer sent."""
    if len(data) <= QUOTED_MAX:
        return repr(data)
    return f"{data[:QUOTED_MAX]!r}... ({len(data)} bytes)"


def _malformed(why: str) -> HandshakeRejected:
    return HandshakeRejected(400, f"malformed request head: {why}")


def _parse(data: bytes | bytearray, end: int, max_headers: int) -> Request:
    """The request in ``data[:end]``, a whole head that ends with its blank line.

    The request line is one regex; the header fields are llhttp's (through httptools),
    with the two leniencies that h11, the parser before it, had as well: bare-LF line
    ends, and control characters other than NUL, CR, LF, VT and FF inside field values.
    """
    bad = _NEVER_IN_A_HEAD.search(data, 0, end)
    if bad is not None:
        what = "a line folded onto the one before" if bad[0][0] == 0x0A else "a stray byte"
        raise _malformed(f"{what} at offset {bad.start()}")
    eol = data.index(b"\n", 0, end)
    line = data[: eol - 1] if data[eol - 1] == 0x0D else data[:eol]
    request_line = _REQUEST_LINE.fullmatch(line)
    if request_line is None:
        raise _malformed(f"illegal request line: {_quoted(bytes(line))}")
    fields = _Fields()
    parser = httptools.HttpRequestParser(fields)
    parser.set_dangerous_leniencies(lenient_headers=True, lenient_optional_cr_before_lf=True)
    try:
        parser.feed_data(_LLHTTP_REQUEST_LINE)
        with memoryview(data) as view:
            parser.feed_data(view[eol + 1 : end])
    except httptools.HttpParserUpgrade:
        pass  # Upgrade with Connection: upgrade ends the message at the head, as wanted
    except httptools.HttpParserError as exc:
        raise _malformed(str(exc) or type(exc).__name__) from None
    if not fields.complete:  # cannot happen: the head ends with a blank line
        raise _malformed("incomplete header fields")
    method, target, version = request_line.groups()
    headers = Headers(
        [(n.decode("latin-1"), v.decode("latin-1").rstrip(" \t")) for n, v in fields.items]
    )
    _check_fields(headers, version)
    if len(headers) > max_headers:
        raise HandshakeRejected(431, f"more than {max_headers} header fields")
    return Request(
        method=method.decode("ascii"),
        target=target.decode("ascii"),
        http_version=version.decode("ascii"),
        headers=headers,
    )


def _check_fields(headers: Headers, version: bytes) -> None:
    """What RFC 9112 refuses beyond the syntax, and llhttp lets through.

    Host is mandatory in HTTP/1.1 and never repeated (RFC 9112 §3.2). A Transfer-Encoding
    other than a single ``chunked``, and a Content-Length of more than 20 digits, are
    refused as h11 refused them. llhttp itself refuses a repeated Content-Length and one
    beside a Transfer-Encoding (RFC 9112 §6.3), which no handshake sends.
    """
    hosts = headers.count("Host")
    if hosts > 1:
        raise _malformed("more than one Host header")
    if hosts == 0 and version == b"1.1":
        raise _malformed("no Host header in an HTTP/1.1 request")
    codings = headers.get_all("Transfer-Encoding")
    if codings and (len(codings) > 1 or codings[0].lower() != "chunked"):
        raise _malformed("a Transfer-Encoding other than chunked")
    if any(len(length) > 20 for length in headers.get_all("Content-Length")):
        raise _malformed("a Content-Length of more than 20 digits")


def response(
    status: int,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    reason: str | None = None,
) -> bytes:
    """Serialize a response head (plus body) exactly as given: no headers are added."""
    phrase = _phrase(status) if reason is None else reason
    lines = [f"HTTP/1.1 {status} {phrase}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body


def error_response(
    status: int,
    message: str,
    headers: Iterable[tuple[str, str]] = (),
    *,
    content_type: str = "text/plain; charset=utf-8",
) -> bytes:
    """A closing error response whose body is the one-line reason."""
    body = (message.rstrip("\n") + "\n").encode()
    all_headers = [
        *headers,
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    return response(status, all_headers, body)
