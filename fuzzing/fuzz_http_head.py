#!/usr/bin/env python3
"""Fuzz the request head parser: only HandshakeRejected (400 or 431) escapes, and the
outcome does not depend on how the bytes are cut into reads.
Usage: ``python fuzzing/fuzz_http_head.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import atheris
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.errors import HandshakeRejected
    from wscompat.protocol.http import HeadParser, Request

Outcome = tuple[Request | None, bytes, int | None]


def parse(pieces: list[bytes], max_size: int, max_headers: int) -> Outcome:
    parser = HeadParser(max_size=max_size, max_headers=max_headers)
    try:
        request = None
        for piece in pieces:
            request = parser.feed(piece)
        return request, parser.leftover if request is not None else b"", None
    except HandshakeRejected as exc:
        if exc.status not in (400, 431):
            raise AssertionError(f"status {exc.status}") from exc
        return None, b"", exc.status


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    max_size = fdp.PickValueInList([64, 256, 1024, 16384])
    max_headers = fdp.PickValueInList([1, 5, 100])
    cuts = support.cut_points(fdp)
    head = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole = parse([head], max_size, max_headers)
    pieces = parse(support.split(head, cuts), max_size, max_headers)
    if pieces != whole:
        raise AssertionError(f"whole {whole!r}, in pieces {pieces!r}")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
