"""The one exception tree of wscompat.

::

    WebSocketError
    ├── HandshakeRejected        the request was answered with an HTTP error, never upgraded
    ├── ProtocolViolation        the peer broke the framing rules; carries the close code
    │   └── MessageTooBig        a frame or message exceeded a configured limit (1009)
    ├── UnsupportedByDraft       the connection's draft cannot express this (binary on hixie…)
    └── ConnectionClosed         the connection is closed; carries code and reason
        ├── ConnectionClosedOK       closed with 1000, 1001, 1005 (no code) or a clean hixie close
        └── ConnectionClosedError    any other ending

Protocol errors carry the close code they map to, so the I/O layer never has to guess.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeRejected",
    "MessageTooBig",
    "ProtocolViolation",
    "UnsupportedByDraft",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base of every exception wscompat raises on purpose."""


class HandshakeRejected(WebSocketError):
    """The opening handshake failed; ``status`` is the HTTP status sent (or received).

    ``headers`` are the extra response headers the status needs (``Sec-WebSocket-Version``
    on a 426, ``Allow`` on a 405), so every rejection maps to one response in one place.
    """

    def __init__(
        self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers


class ProtocolViolation(WebSocketError):
    """The peer broke the protocol; ``code`` is the close code the connection fails with."""

    code: int = 1002

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class MessageTooBig(ProtocolViolation):
    """A frame or message is over the configured limit."""

    code = 1009


class UnsupportedByDraft(WebSocketError):
    """The operation cannot be expressed on this connection's draft."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; ``code`` is 1006 when no close code was exchanged."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """A normal ending."""


class ConnectionClosedError(ConnectionClosed):
    """An abnormal or erroneous ending."""


OK_CODES = frozenset({1000, 1001, 1005})


def closed_error(code: int, reason: str) -> ConnectionClosed:
    """The right ConnectionClosed subclass for a close code."""
    cls = ConnectionClosedOK if code in OK_CODES else ConnectionClosedError
    return cls(code, reason)
