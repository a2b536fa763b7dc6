#!/usr/bin/env python3
"""Fuzz the sniffer: it never raises, decides once and for good, and always decides by
its limit. Usage: ``python fuzzing/fuzz_sniff.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import atheris
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.protocol.sniff import Kind, sniff


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    limit = fdp.ConsumeIntInRange(1, 128)
    buffer = fdp.ConsumeBytes(200)
    decided: Kind | None = None
    kind = Kind.NEED_MORE
    for n in range(len(buffer) + 1):
        kind = sniff(buffer[:n], limit=limit)
        if not isinstance(kind, Kind):
            raise TypeError(f"not a Kind: {kind!r}")
        if kind is Kind.NEED_MORE:
            if decided is not None:
                raise AssertionError(f"{decided} at a prefix, undecided at {n} bytes")
        elif decided is None:
            decided = kind
        elif kind is not decided:
            raise AssertionError(f"{decided} at a prefix, {kind} at {n} bytes")
    if len(buffer) >= limit and kind is Kind.NEED_MORE:
        raise AssertionError(f"undecided after {len(buffer)} bytes, limit {limit}")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
