"""The close-code table, the byte-stream modes and their encodings (docs/gateway.md)."""

from __future__ import annotations

import pytest

from wscompat import Draft
from wscompat.gateway.translate import (
    backend_close,
    client_close,
    decode_stream,
    encode_stream,
    sendable,
    stream_mode,
)

HYBI = [Draft.HYBI07, Draft.HYBI08, Draft.RFC6455]


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999])
def test_sendable(code: int) -> None:
    assert sendable(code)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_not_sendable(code: int) -> None:
    assert not sendable(code)


@pytest.mark.parametrize(
    ("draft", "code", "reason", "by", "expected"),
    [
        (Draft.RFC6455, 4000, "bye", "peer", (4000, "bye")),
        (Draft.HYBI07, 1000, "", "peer", (1000, "")),
        (Draft.RFC6455, 1005, "", "peer", (1000, "")),
        (Draft.RFC6455, 1006, "connection lost", "peer", (1001, "client went away")),
        (Draft.RFC6455, 1011, "keepalive ping timeout", "local", (1001, "client went away")),
        (Draft.RFC6455, 1009, "too big", "local", (1001, "client went away")),
        (Draft.HIXIE76, 1000, "", "peer", (1000, "")),
        (Draft.HIXIE76, 1006, "connection lost", "peer", (1001, "client went away")),
        (Draft.HIXIE75, 1000, "", "peer", (1001, "client went away")),
        (Draft.RFC6455, None, None, "", (1001, "client went away")),
    ],
)
def test_what_the_backend_is_told(draft: Draft, code: int | None, reason: str | None,
                                  by: str, expected: tuple[int, str]) -> None:
    assert backend_close(draft, code, reason, by) == expected


@pytest.mark.parametrize(
    ("draft", "code", "by", "failure_code", "expected"),
    [
        (Draft.RFC6455, 4321, "peer", 1011, (4321, "bye")),
        (Draft.HYBI08, 1012, "peer", 1011, (1012, "bye")),
        (Draft.RFC6455, 1005, "peer", 1011, (1000, "")),
        (Draft.RFC6455, 1006, "peer", 1011, (1011, "backend failed")),
        (Draft.RFC6455, 1006, "peer", 1014, (1014, "backend failed")),
        (Draft.HYBI07, 1006, "peer", 1014, (1011, "backend failed")),
        (Draft.HYBI08, 1011, "timeout", 1014, (1011, "backend failed")),
        (Draft.RFC6455, 1002, "local", 1014, (1014, "backend failed")),
        (Draft.HIXIE76, 1006, "peer", 1014, (1011, "backend failed")),
    ],
)
def test_what_the_client_is_told(draft: Draft, code: int, by: str, failure_code: int,
                                 expected: tuple[int, str]) -> None:
    assert client_close(draft, code, "bye", by, failure_code=failure_code) == expected


@pytest.mark.parametrize(
    ("draft", "offered", "expected"),
    [
        (Draft.RFC6455, (), (None, "binary")),
        (Draft.RFC6455, ("base64", "binary"), ("base64", "base64")),
        (Draft.RFC6455, ("binary", "base64"), ("binary", "binary")),
        (Draft.HYBI08, ("chat", "binary"), ("binary", "binary")),
        (Draft.RFC6455, ("chat",), None),
        (Draft.HIXIE76, (), (None, "base64")),
        (Draft.HIXIE76, ("base64",), ("base64", "base64")),
        (Draft.HIXIE75, ("binary",), None),
    ],
)
def test_stream_modes(draft: Draft, offered: tuple[str, ...],
                      expected: tuple[str | None, str] | None) -> None:
    assert stream_mode(draft, offered) == expected


def test_stream_encodings() -> None:
    assert encode_stream(b"\x00\xff", "binary") == b"\x00\xff"
    assert encode_stream(b"\x00\xff", "base64") == "AP8="
    assert decode_stream("AP8=", "base64") == b"\x00\xff"
    assert decode_stream(b"\x00", "base64") == b"\x00"
    assert decode_stream("é", "binary") == "é".encode()
    with pytest.raises(ValueError, match="not base64"):
        decode_stream("AP8", "base64")
