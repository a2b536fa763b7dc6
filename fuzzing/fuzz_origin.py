#!/usr/bin/env python3
"""Fuzz the origin policy with arbitrary origins and pattern lists, raw or made from real
ones with edits: matching never raises, a check raises only a 403, validating patterns
raises only ValueError, and the answers agree with each other (a valid pattern admits
itself with each ``*`` filled in; a malformed origin is admitted by nothing; a
well-formed one is admitted by ``*`` and by itself in any case).
Usage: ``python fuzzing/fuzz_origin.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import atheris
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.errors import HandshakeRejected
    from wscompat.protocol.handshake.origin import (
        check_origin,
        origin_allowed,
        parse_origin,
        validate_patterns,
    )

SEEDS = [
    "https://app.example", "http://localhost:8080", "https://*.app.example",
    "https://*.*.*.example.com", "http://[::1]:9000", "http://127.0.0.1", "null", "*",
    "https://xn--bcher-kva.example.", "wss://a.b.c:443", "chrome-extension://abc",
]
MAX_REASON = 400
"""A refusal quotes a malformed origin in part; a well-formed one is at most ~300 bytes."""


@dataclass(frozen=True)
class Policy:
    origins: tuple[str, ...] | None
    allow_missing_origin: bool


def text_from(fdp: Any) -> str:
    """Raw text, or a real origin or pattern with byte edits (read as Latin-1, so every
    byte value can appear), sometimes repeated to a few KiB."""
    kind = fdp.ConsumeIntInRange(0, 2)
    if kind == 0:
        return str(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300)))
    seed = fdp.PickValueInList(SEEDS).encode()
    text = support.mutate(fdp, seed).decode("latin-1")
    if kind == 2:
        text = text[:8] + text[8:] * fdp.ConsumeIntInRange(1, 400)
    return text


def check_matching(origin: str, patterns: tuple[str, ...]) -> None:
    admitted = origin_allowed(origin, patterns)
    if not isinstance(admitted, bool):
        raise TypeError(f"origin_allowed returned {admitted!r}")
    parsed = parse_origin(origin)
    if parsed is None:
        if origin != "null" and admitted:
            raise AssertionError(f"malformed {origin!r} admitted by {patterns!r}")
        return
    if not origin_allowed(origin, ("*",)):
        raise AssertionError(f"{origin!r} not admitted by *")
    if not origin_allowed(origin, (origin,)) or not origin_allowed(origin.upper(), (origin,)):
        raise AssertionError(f"{origin!r} not admitted by itself")


def check_patterns(patterns: tuple[str, ...]) -> None:
    try:
        valid = validate_patterns(patterns)
    except ValueError as exc:
        if not str(exc).startswith("origin pattern "):
            raise AssertionError(f"undocumented error {exc!r}") from None
        return
    if valid != patterns:
        raise AssertionError(f"validate_patterns changed {patterns!r} to {valid!r}")
    for pattern in patterns:
        if pattern in ("*", "null"):
            continue
        filled = pattern.replace("*", "x")
        if not origin_allowed(filled, patterns):
            raise AssertionError(f"{filled!r} not admitted by its pattern {pattern!r}")


def check_refusal(origin: str | None, policy: Policy) -> None:
    try:
        check_origin(origin, policy)
    except HandshakeRejected as exc:
        if exc.status != 403 or len(exc.reason) > MAX_REASON:
            raise AssertionError(f"undocumented refusal {exc!r}") from None


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    patterns = tuple(text_from(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4)))
    missing_ok = fdp.ConsumeBool()
    no_list = fdp.ConsumeBool()
    origin = text_from(fdp)
    check_patterns(patterns)
    check_matching(origin, patterns)
    check_refusal(origin, Policy(None if no_list else patterns, missing_ok))
    check_refusal(None, Policy(None if no_list else patterns, missing_ok))


if __name__ == "__main__":
    support.fuzz(TestOneInput)
