"""Opening handshake of draft-hixie-76, which is also draft-ietf-hybi-00.

Clients send two keys whose digits, divided by their count of spaces, give two 32-bit
numbers; with the 8 bytes after the head (key3) they form the 16-byte challenge whose
MD5 the server appends, raw, after its response head. Only ASCII digits and 0x20 spaces
count: anything looser would accept keys no browser could have produced.

A key is valid only if its number divided by its spaces fits in 32 bits, so its number
is below 2^32 times its spaces: its digits, leading zeros aside, are at most as many as
those of 4,294,967,295 times its spaces (10 digits for 1 or 2 spaces, 11 for the 3 to 12
spaces a client inserts, §4.1). A key with more digits is refused (400) before any of
them is read as a number: a 5,000-digit key costs one scan of its characters, not the
conversion of a number Python refuses to convert past 4,300 digits.
"""

from __future__ import annotations

import hashlib
import re
import struct

from wscompat.errors import HandshakeRejected
from wscompat.protocol.http import Request

__all__ = ["KEY3_SIZE", "PART_MAX", "answer", "key_number", "parse_keys", "response_head"]

KEY3_SIZE = 8
PART_MAX = 0xFFFFFFFF
"""The largest number a key may encode: it is sent as 32 bits."""
_NOT_DIGIT = re.compile(r"[^0-9]")


def key_number(key: str) -> int:
    """The 32-bit number a key encodes; HandshakeRejected (400) for an invalid key."""
    digits = _NOT_DIGIT.sub("", key)
    if not digits:
        raise HandshakeRejected(400, "hixie-76 key has no digits")
    spaces = key.count(" ")
    if spaces == 0:
        raise HandshakeRejected(400, "hixie-76 key has no spaces")
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(PART_MAX * spaces)):
        raise HandshakeRejected(400, "hixie-76 key is out of range")
    number = int(significant)
    if number % spaces:
        raise HandshakeRejected(400, "hixie-76 key is not a multiple of its spaces")
    part = number // spaces
    if part > PART_MAX:
        raise HandshakeRejected(400, "hixie-76 key is out of range")
    return part


def parse_keys(request: Request) -> tuple[int, int]:
    """Both key numbers, checked before key3 is waited for, so a bad key fails at once."""
    parts = []
    for name in ("Sec-WebSocket-Key1", "Sec-WebSocket-Key2"):
        values = request.headers.get_all(name)
        if len(values) != 1:
            raise HandshakeRejected(400, f"need exactly one {name}")
        parts.append(key_number(values[0]))
    return parts[0], parts[1]


def answer(part1: int, part2: int, key3: bytes) -> bytes:
    """The 16 raw bytes that follow the response head."""
    if len(key3) != KEY3_SIZE:
        raise ValueError("key3 must be 8 bytes")
    challenge = struct.pack(">II", part1, part2) + key3
    return hashlib.md5(challenge).digest()


def requested_subprotocol(request: Request) -> str | None:
    """One opaque string, not a list: it may legitimately contain commas or spaces."""
    return request.headers.get("Sec-WebSocket-Protocol")


def response_head(origin: str, location: str, subprotocol: str | None) -> bytes:
    lines = [
        "HTTP/1.1 101 WebSocket Protocol Handshake\r\n",
        "Upgrade: WebSocket\r\n",
        "Connection: Upgrade\r\n",
        f"Sec-WebSocket-Origin: {origin}\r\n",
        f"Sec-WebSocket-Location: {location}\r\n",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
