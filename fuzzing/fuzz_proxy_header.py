#!/usr/bin/env python3
"""Fuzz the PROXY protocol header reader: only ProxyHeaderError escapes, and a prefix
once decided (a header, or the error) stays decided as more bytes come. Half of the
inputs are version 2 headers built around fuzzed fields, so that the library's address
and TLV parsing is reached, not only the signature check. Usage:
``python fuzzing/fuzz_proxy_header.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import atheris
import support

with atheris.instrument_imports(include=[*support.INSTRUMENTED, "proxyprotocol"]):
    from wscompat.protocol.proxy_header import (
        V2_MAX,
        ProxyHeader,
        ProxyHeaderError,
        parse_proxy_header,
    )

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _decide(data: bytes) -> ProxyHeader | str | None:
    try:
        return parse_proxy_header(data)
    except ProxyHeaderError:
        return "error"


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        command_family = fdp.ConsumeBytes(2).ljust(2, b"\x00")
        body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
        buffer = (SIGNATURE + bytes([0x20 | command_family[0] & 0x0F, command_family[1]])
                  + len(body).to_bytes(2, "big") + body + fdp.ConsumeBytes(20))
    else:
        buffer = fdp.ConsumeBytes(300)
    decided: ProxyHeader | str | None = None
    for n in range(len(buffer) + 1):
        outcome = _decide(buffer[:n])
        if decided is None:
            decided = outcome
        elif outcome != decided:
            raise AssertionError(f"{decided!r} at a prefix, {outcome!r} at {n} bytes")
        if isinstance(outcome, ProxyHeader) and not 0 < outcome.size <= n:
            raise AssertionError(f"a header of {outcome.size} bytes in {n}")
    if decided is None and len(buffer) > V2_MAX:
        raise AssertionError(f"undecided after {len(buffer)} bytes")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
