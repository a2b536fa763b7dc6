"""How messages, subprotocols and closes cross between a client's draft and the backend.

Sans-I/O: the bridge asks, these functions answer from data alone.

Closes. hixie has no close codes, hybi-07/08 predate the codes registered after RFC
6455, and a backend closes for reasons of its own; :func:`backend_close` and
:func:`client_close` are the table of docs/gateway.md:

- A close frame's code passes through both ways when it is one that may be sent
  (1000-1003, 1007-1014, 3000-4999); a close frame without a code (1005) becomes 1000.
- A client that goes without a close frame (TCP closed, reset, a hixie-75 client
  leaving, which is the only way it ever leaves, a keepalive timeout, a protocol error
  the gateway failed it for) reaches the backend as 1001, going away.
- A backend that goes without a close frame (reset, vanished mid-message, keepalive
  timeout, a protocol error it made) reaches the client as ``failure_code``: 1011 by
  default; 1014 (bad gateway) on request, for RFC 6455 clients only, since the code
  was registered years after the browsers of hybi-07/08 and early RFC 6455 shipped.
- hixie clients get their draft's close whatever the code: ``0xFF 0x00`` on hixie-76,
  TCP closed on hixie-75.

Binary messages for text-only hixie clients follow :data:`HixieBinary`: ``error`` fails
the pair (the backend gets 1003, unsupported data), ``base64`` sends the bytes as base64
text, ``drop`` leaves the message out.

Byte-stream backends (tcp://, unix:) follow websockify: a client that offers the
``binary`` subprotocol, or none on a draft that has binary messages, gets the stream in
binary messages; one that offers ``base64``, and every hixie client (which cannot send
binary), gets it as base64 text.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Literal

from wscompat.drafts import Draft

__all__ = [
    "HixieBinary", "StreamMode", "backend_close", "client_close", "decode_stream",
    "encode_stream", "sendable", "stream_mode",
]

HixieBinary = Literal["error", "base64", "drop"]
StreamMode = Literal["binary", "base64"]
FAILURE_CODES = (1011, 1014)
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
HIXIE = (Draft.HIXIE75, Draft.HIXIE76)


def sendable(code: int) -> bool:
    """A code that may be put in a close frame (RFC 6455 §7.4 and the IANA registry)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def backend_close(
    draft: Draft, code: int | None, reason: str | None, closed_by: str
) -> tuple[int, str]:
    """What the backend is told when the client's side ended with ``code``."""
    if draft is Draft.HIXIE75:
        return GOING_AWAY, "client went away"
    if closed_by == "peer" and code is not None:
        if sendable(code):
            return code, reason or ""
        if code == 1005:
            return 1000, ""
    return GOING_AWAY, "client went away"


def client_close(
    draft: Draft, code: int | None, reason: str | None, closed_by: str, *,
    failure_code: int = 1011,
) -> tuple[int, str]:
    """What the client is told when the backend's side ended with ``code``."""
    if closed_by == "peer" and code is not None:
        if sendable(code):
            return code, reason or ""
        if code == 1005:
            return 1000, ""
    return failure(draft, failure_code), "backend failed"


def failure(draft: Draft, failure_code: int) -> int:
    """The code a backend failure closes this client with (1014 only on RFC 6455)."""
    return failure_code if draft is Draft.RFC6455 else 1011


def stream_mode(
    draft: Draft, offered: Sequence[str]
) -> tuple[str | None, StreamMode] | None:
    """The subprotocol to answer and how the stream travels, for a client of ``draft``
    that offered ``offered``; None when it offered only subprotocols a byte stream
    cannot speak."""
    binary = draft not in HIXIE
    if not offered:
        return None, "binary" if binary else "base64"
    for name in offered:
        if name == "binary" and binary:
            return name, "binary"
        if name == "base64":
            return name, "base64"
    return None


def encode_stream(data: bytes, mode: StreamMode) -> str | bytes:
    """Stream bytes as the message the client gets."""
    return base64.b64encode(data).decode("ascii") if mode == "base64" else data


def decode_stream(message: str | bytes, mode: StreamMode) -> bytes:
    """A client's message as stream bytes; ValueError for text that is not base64 in
    base64 mode. Text in binary mode is sent as its UTF-8 bytes."""
    if isinstance(message, bytes):
        return message
    if mode == "binary":
        return message.encode()
    try:
        return base64.b64decode(message, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a message that is not base64") from None
