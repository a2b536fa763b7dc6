#!/usr/bin/env python3
"""Fuzz the vector file loader: ``wscompat.vectors.format.load`` raises only VectorError for a
file that is not a vector. Seed it with the vectors themselves (see README.md).
Usage: ``python fuzzing/fuzz_vectors_loader.py [libFuzzer flags] [corpus dir] [vectors/]``."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import atheris
import support

with atheris.instrument_imports(include=["wscompat"]):
    from wscompat.vectors.format import Vector, VectorError, load

WORK = Path(tempfile.mkdtemp(prefix="fuzz-vectors-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
FILE = WORK / "rfc6455" / "fuzzed.json"
FILE.parent.mkdir()


def TestOneInput(data: bytes) -> None:
    FILE.write_bytes(data)
    try:
        vector = load(FILE)
    except VectorError:
        return
    if not isinstance(vector, Vector):
        raise TypeError(f"load returned {vector!r}")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
