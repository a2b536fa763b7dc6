"""Opening handshake of hybi-07, hybi-08 and RFC 6455 (``Sec-WebSocket-Version`` 7, 8, 13).

The three differ on the wire only in the version number and where the origin is sent
(``Sec-WebSocket-Origin`` before hybi-11); the response is the same for all of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from wscompat.errors import HandshakeRejected
from wscompat.protocol.http import Request, response

__all__ = ["GUID", "accept_key", "check_key", "response_head"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
"""RFC 7230 token: what RFC 6455 §4.1 makes every subprotocol name (§11.5)."""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a key, hashed as sent (never decoded and re-encoded)."""
    digest = hashlib.sha1((key + GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


def check_key(request: Request) -> str:
    """Return the request's key if it is the base64 of exactly 16 bytes; else reject (400)."""
    keys = request.headers.get_all("Sec-WebSocket-Key")
    if not keys:
        raise HandshakeRejected(400, "missing Sec-WebSocket-Key")
    if len(keys) > 1:
        raise HandshakeRejected(400, "more than one Sec-WebSocket-Key")
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("latin-1"), validate=True)
    except (binascii.Error, ValueError):
        raise HandshakeRejected(400, "Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise HandshakeRejected(400, "Sec-WebSocket-Key must encode 16 bytes")
    return key


def response_head(
    key: str, subprotocol: str | None = None, extensions: str | None = None
) -> bytes:
    """The 101 response. Optional headers are omitted, never sent empty (Safari fails on it)."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    return response(101, headers)


def offered_subprotocols(request: Request) -> list[str]:
    """The client's subprotocol list, in its order of preference, across repeated headers.

    Each one must be a token, since the one chosen is echoed: anything else is a 400.
    """
    offered = [
        item.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for item in value.split(",")
        if item.strip()
    ]
    if not all(_TOKEN.fullmatch(item) for item in offered):
        raise HandshakeRejected(400, "Sec-WebSocket-Protocol offers a subprotocol that is not "
                                "a token")
    return offered
