"""What both compression extensions share: the sync-flush tail, bounded inflation, and the
error for data that does not inflate.

Both extensions plug into the ``websockets`` frame pipeline (``Extension.decode`` and
``encode``), which turns a ``ProtocolError`` into close 1002 and ``PayloadTooBig`` into
1009. Corrupt compressed data raises :class:`CorruptCompressedData`, a ``ProtocolError``
the hybi framer closes with 1007 instead: the frames were well formed, their content was
not (the same class of error as invalid UTF-8; Node's ``ws`` uses 1007 too).
"""

from __future__ import annotations

import zlib

from websockets.exceptions import PayloadTooBig, ProtocolError

__all__ = ["CORRUPT_DATA_CODE", "EMPTY_BLOCK", "CorruptCompressedData", "inflate"]

EMPTY_BLOCK = b"\x00\x00\xff\xff"
"""The end of a sync flush: removed by the sender, appended again by the receiver."""

CORRUPT_DATA_CODE = 1007


class CorruptCompressedData(ProtocolError):
    """Compressed data that zlib refuses; the connection closes with 1007."""


def inflate(decoder: zlib._Decompress, data: bytes, max_size: int | None) -> bytes:
    """Inflate ``data``, never producing more than ``max_size`` bytes.

    Asking zlib for one byte more than allowed tells "exactly at the limit" from "over
    it" without inflating the rest, so a small frame cannot expand past the limit in
    memory (a compression bomb costs at most ``max_size + 1`` bytes).
    """
    try:
        if max_size is None:
            return decoder.decompress(data)
        out = decoder.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise CorruptCompressedData(f"corrupt compressed data: {exc}") from exc
    if len(out) > max_size:
        raise PayloadTooBig(None, max_size)
    return out
