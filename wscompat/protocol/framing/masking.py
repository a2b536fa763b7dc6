"""Masking keys for the frames a client sends.

RFC 6455 section 5.3 wants a new key for every frame, drawn from a strong source of
entropy, so that a script cannot choose the bytes an intermediary sees. The keys come
from ``os.urandom`` as before, but drawn 4 KiB at a time: one ``getrandom`` call per
1024 frames instead of one per frame, which was the largest single cost left on the
gateway's backend leg after the write itself. The pool never leaves the process, is
dropped in a forked child (so two workers never share keys), and every key is handed
out once. Framers run on one thread each (the I/O layer's), so the pool has no lock.
"""

from __future__ import annotations

import os

__all__ = ["POOL_BYTES", "mask_key"]

POOL_BYTES = 4096
"""Random bytes drawn at a time: 1024 keys."""

class _Pool:
    __slots__ = ("data", "pos")

    def __init__(self) -> None:
        self.data = b""
        self.pos = 0


_keys = _Pool()


def mask_key() -> bytes:
    """Four random bytes never handed out before."""
    keys = _keys
    pos = keys.pos
    if pos >= len(keys.data):
        keys.data, pos = os.urandom(POOL_BYTES), 0
    keys.pos = pos + 4
    return keys.data[pos : pos + 4]


def _forget() -> None:
    """A forked child starts a pool of its own rather than repeat its parent's keys."""
    _keys.data, _keys.pos = b"", 0


os.register_at_fork(after_in_child=_forget)
