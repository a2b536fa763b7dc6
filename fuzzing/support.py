"""What every harness shares: this checkout's wscompat, fuzz bytes cut into reads, and
the entry point. It imports nothing from wscompat itself, so that each harness imports
wscompat inside ``atheris.instrument_imports`` and gets it instrumented."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # fuzz this checkout, not an installed copy

INSTRUMENTED = ["wscompat", "websockets"]
"""Packages whose code coverage guides the fuzzer: wscompat and the parsers it builds on."""


def cut_points(fdp: Any) -> list[int]:
    """Up to 8 raw cut offsets, consumed before the payload so that the payload is the
    rest of the input and keeps its shape under mutation."""
    return [fdp.ConsumeIntInRange(0, 0xFFFF) for _ in range(fdp.ConsumeIntInRange(0, 8))]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length): how TCP might deliver it."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


def mutate(fdp: Any, data: bytes, rounds: int = 4) -> bytes:
    """Up to ``rounds`` byte edits (replace, delete, insert, truncate) chosen by the input."""
    buf = bytearray(data)
    for _ in range(fdp.ConsumeIntInRange(0, rounds)):
        if not buf:
            break
        op = fdp.ConsumeIntInRange(0, 3)
        at = fdp.ConsumeIntInRange(0, len(buf) - 1)
        if op == 0:
            buf[at] = fdp.ConsumeIntInRange(0, 255)
        elif op == 1:
            del buf[at]
        elif op == 2:
            buf[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
        else:
            del buf[at:]
    return bytes(buf)


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer on ``test_one_input`` with the command line's libFuzzer flags."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
