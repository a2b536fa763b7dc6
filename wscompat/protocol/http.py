"""Request heads in, response bytes out: the HTTP/1.1 that a WebSocket handshake needs.

Heads are parsed by h11, which keeps every byte after the blank line untouched: hixie-76
puts its 8-byte key3 there without a Content-Length, and an HTTP library that swallowed
or reinterpreted it would break that draft. Responses are written by hand, byte for byte,
because legacy clients compare the status line and the first headers literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import h11

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


class Headers:
    """Header fields in arrival order, looked up case-insensitively, values as sent.

    Lookups go through an index of lowercased names, built on the first lookup: a
    handshake asks a dozen questions of the same head, and lowercasing every key on
    every question was the largest cost of the handshake path.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)
        self._index: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self._items:
                index.setdefault(key.lower(), []).append(value)
            self._index = index
        return index

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
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __hash__(self) -> int:
        return hash(tuple(self._items))

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


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
        return self.headers.get("Origin") or self.headers.get("Sec-WebSocket-Origin")


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
    than ``max_headers`` fields, and 400 for anything h11 refuses to parse.
    """

    def __init__(self, *, max_size: int = 16384, max_headers: int = 100) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
        self._max_size = max_size
        self._max_headers = max_headers
        self._fed = 0
        self._tail = b""
        self.request: Request | None = None
        self.leftover = b""

    def feed(self, data: bytes) -> Request | None:
        if self.request is not None:
            self.leftover += data
            return self.request
        if not data:  # h11 reads an empty chunk as end of stream
            return None
        if self._head_size(data) > self._max_size:
            raise HandshakeRejected(431, "request head too large")
        self._fed += len(data)
        self._h11.receive_data(data)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = 431 if exc.error_status_hint == 431 else 400
            raise HandshakeRejected(status, _describe(exc)) from None
        if event is h11.NEED_DATA:
            return None
        assert isinstance(event, h11.Request), event
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()]
        if len(raw) > self._max_headers:
            raise HandshakeRejected(431, f"more than {self._max_headers} header fields")
        self.request = Request(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            http_version=event.http_version.decode("ascii"),
            headers=Headers(raw),
        )
        # h11 has not consumed anything past the head: that is key3, or early frames.
        self.leftover = self._h11.trailing_data[0]
        return self.request

    def _head_size(self, data: bytes) -> int:
        """Bytes of head once ``data`` is added: up to the blank line if it is in sight.

        The head is sized from the bytes, before h11 parses them (h11 bounds only an
        incomplete head), so that a head over the limit is a 431 whether it came in one
        read or many, and even when it is malformed as well. A head whose first byte is
        a control character or a space is left to h11, which refuses it (400) as soon as
        it sees that byte, whatever follows.
        """
        if self._fed == 0 and data[0] < 0x21:
            return 0
        window = self._tail + data
        end = _BLANK_LINE.search(window)
        self._tail = window[-2:]
        if end is None:
            return self._fed + len(data)
        return self._fed - (len(window) - len(data)) + end.end()


_BLANK_LINE = re.compile(rb"\n\r?\n")
"""Where h11 ends a request head."""


def _describe(exc: h11.RemoteProtocolError) -> str:
    text = str(exc)
    if "buffer too long" in text.lower():
        return "request head too large"
    return f"malformed request head: {text}"


def response(
    status: int,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    reason: str | None = None,
) -> bytes:
    """Serialize a response head (plus body) exactly as given: no headers are added."""
    phrase = REASONS.get(status, "Unknown") if reason is None else reason
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
