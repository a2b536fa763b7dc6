#!/usr/bin/env python3
"""Fuzz the vector file loader: ``wscompat.vectors.format.load`` raises only VectorError for a
file that is not a vector, and a vector it returns keeps within the load limits (small
ones here, so that inputs of a few KiB reach them). Seed it with the vectors themselves
(see README.md).
Usage: ``python fuzzing/fuzz_vectors_loader.py [libFuzzer flags] [corpus dir] [vectors/]``."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import atheris
import support

with atheris.instrument_imports(include=["wscompat"]):
    from wscompat.vectors.format import LoadLimits, Vector, VectorError, load

LIMITS = LoadLimits(file_bytes=65536, json_values=2000, vector_bytes=16384, pause=1.0)

WORK = Path(tempfile.mkdtemp(prefix="fuzz-vectors-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
FILE = WORK / "rfc6455" / "fuzzed.json"
FILE.parent.mkdir()


def TestOneInput(data: bytes) -> None:
    FILE.write_bytes(data)
    try:
        vector = load(FILE, LIMITS)
    except VectorError:
        return
    if not isinstance(vector, Vector):
        raise TypeError(f"load returned {vector!r}")
    size = sum(len(step.data) for step in vector.steps)
    size += sum(len(e) for e in vector.events or () if isinstance(e, bytes))
    if size > LIMITS.vector_bytes:
        raise AssertionError(f"a vector of {size} bytes was loaded")
    if any(not 0 <= step.seconds <= LIMITS.pause for step in vector.steps):
        raise AssertionError("a pause over the limit was loaded")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
