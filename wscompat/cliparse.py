"""Values the command lines take, parsed for argparse: byte counts such as ``64KiB``.

Shared by ``wscompat serve`` and the vector commands (``wscompat vectors check``,
``wscompat replay``), so a size is written the same way on every command line.
"""

from __future__ import annotations

import argparse

__all__ = ["BYTE_FORMS", "byte_count", "positive_byte_count"]

_UNITS = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "k": 2**10, "m": 2**20, "g": 2**30}
BYTE_FORMS = "a number of bytes (65536) or of KiB, MiB, GiB (64KiB, 16MiB; k, m, g for short)"


def byte_count(text: str) -> int:
    """``1048576``, ``64KiB``, ``16MiB`` (or ``k``, ``m``, ``g``): a number of bytes."""
    number = text.strip().lower()
    factor = 1
    for suffix, unit in _UNITS.items():
        if number.endswith(suffix):
            number, factor = number[: -len(suffix)], unit
            break
    try:
        size = int(float(number) * factor) if factor > 1 else int(number)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a byte count: give {BYTE_FORMS}"
        ) from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a byte count cannot be negative")
    return size


def positive_byte_count(text: str) -> int:
    """A byte count of at least 1, for sizes that have no "no limit" value."""
    size = byte_count(text)
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1 byte")
    return size
