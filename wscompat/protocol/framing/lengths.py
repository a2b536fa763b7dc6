"""Where frames end, for every draft: the one place that reads frame lengths.

The framers' fast paths, the recorder (which cuts a byte stream into frames for a
vector) and the vector tools all ask these functions; none parses a length of its own.
Each takes a buffer and an offset and never copies: it reads only the header bytes.
"""

from __future__ import annotations

from wscompat.drafts import Draft

__all__ = ["frame_end", "hixie_frame_end", "hybi_frame_end", "hybi_header", "hybi_header_bytes"]

_U16 = 0xFFFF


def hybi_header(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """``(header size, payload length)`` of the hybi frame at ``pos``, mask included;
    None while the header is incomplete. The first two bytes are ``data[pos:pos + 2]``."""
    if pos + 2 > len(data):
        return None
    second = data[pos + 1]
    length = second & 0x7F
    size = 6 if second & 0x80 else 2
    if length == 126:
        if pos + 4 > len(data):
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        size += 2
    elif length == 127:
        if pos + 10 > len(data):
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        size += 8
    return size, length


def hybi_frame_end(data: bytes | bytearray, pos: int) -> int | None:
    """The offset just past the hybi frame at ``pos``, or None if it is incomplete."""
    header = hybi_header(data, pos)
    if header is None:
        return None
    end = pos + header[0] + header[1]
    return end if end <= len(data) else None


def hixie_frame_end(data: bytes | bytearray, pos: int) -> int | None:
    """The offset just past the hixie frame at ``pos``, or None if it is incomplete.

    High bit clear: a sentinel frame running to the next 0xFF. High bit set: a length in
    7-bit groups (high bit: more follow), then that many bytes.
    """
    if pos >= len(data):
        return None
    if data[pos] & 0x80 == 0:
        end = data.find(b"\xff", pos + 1)
        return None if end < 0 else end + 1
    length, index = 0, pos + 1
    while True:
        if index >= len(data):
            return None
        byte = data[index]
        length, index = length * 128 + (byte & 0x7F), index + 1
        if not byte & 0x80:
            break
    return index + length if index + length <= len(data) else None


def frame_end(draft: Draft, data: bytes | bytearray, pos: int) -> int | None:
    """The offset just past the frame of ``draft`` starting at ``pos``, or None."""
    if draft is Draft.HIXIE75 or draft is Draft.HIXIE76:
        return hixie_frame_end(data, pos)
    return hybi_frame_end(data, pos)


def hybi_header_bytes(first: int, length: int, mask: int = 0) -> bytes:
    """A hybi frame header: ``first`` (FIN, RSV, opcode) and the length; ``mask`` 0x80
    sets the MASK bit (the key that must follow is not included)."""
    if length < 126:
        return bytes((first, mask | length))
    if length <= _U16:
        return bytes((first, mask | 126, length >> 8, length & 0xFF))
    return bytes((first, mask | 127)) + length.to_bytes(8, "big")
