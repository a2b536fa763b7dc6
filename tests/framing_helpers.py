"""Client-side frame builders for tests: deterministic masks, any fragmentation, any
split of the bytes into reads."""

from __future__ import annotations

from wscompat.protocol.framing.lengths import hybi_header


def mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
    key: bytes = b"\x37\xfa\x21\x3d", masked: bool = True,
) -> bytes:
    """A client-to-server hybi frame with the shortest length encoding."""
    first = (0x80 if fin else 0) | rsv | opcode
    flag = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = bytes([first, flag | n])
    elif n < 65536:
        head = bytes([first, flag | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, flag | 127]) + n.to_bytes(8, "big")
    return head + (key + mask(payload, key) if masked else payload)


def frames_of(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Each whole hybi frame at the start of ``data``: (first byte, mask key or b"",
    payload unmasked); an incomplete frame at the end is left out."""
    out = []
    pos = 0
    while (header := hybi_header(data, pos)) is not None:
        head, length = header
        if pos + head + length > len(data):
            break
        key = data[pos + head - 4 : pos + head] if data[pos + 1] & 0x80 else b""
        payload = data[pos + head : pos + head + length]
        out.append((data[pos], key, mask(payload, key) if key else payload))
        pos += head + length
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length): how TCP might deliver it."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces
