"""Opening handshake of draft-hixie-75 (Chrome 4-5, Safari 5.0.0, early web-socket-js).

There is no key and no proof: the server answers with a fixed 85-byte prefix that
clients compare literally, then echoes the origin and the location it was reached at.
"""

from __future__ import annotations

from wscompat.protocol.http import Request

__all__ = ["PREFIX", "response_head"]

PREFIX = (
    b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
)


def requested_subprotocol(request: Request) -> str | None:
    """hixie-75 carries one opaque subprotocol string in ``WebSocket-Protocol``."""
    return request.headers.get("WebSocket-Protocol")


def response_head(origin: str, location: str, subprotocol: str | None) -> bytes:
    lines = [f"WebSocket-Origin: {origin}\r\n", f"WebSocket-Location: {location}\r\n"]
    if subprotocol is not None:
        lines.append(f"WebSocket-Protocol: {subprotocol}\r\n")
    lines.append("\r\n")
    return PREFIX + "".join(lines).encode("latin-1")
