from __future__ import annotations

import pytest

from wscompat.protocol.sniff import POLICY_REQUEST, Kind, sniff


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", Kind.NEED_MORE),
        (b"G", Kind.NEED_MORE),
        (b"GET", Kind.NEED_MORE),
        (b"GET ", Kind.HTTP),
        (b"GET / HTTP/1.1\r\n", Kind.HTTP),
        (b"OPTIONS * HTTP/1.1\r\n", Kind.HTTP),
        (b"\x16\x03\x01\x02\x00", Kind.TLS),
        (b"\x80\x2e\x01", Kind.TLS),
        (POLICY_REQUEST, Kind.POLICY),
        (b"<policy-file-request/>", Kind.POLICY),
        (b"<policy-file-request />", Kind.POLICY),
        (b"<policy-file-req", Kind.NEED_MORE),
        (b"<policy-file-request ", Kind.NEED_MORE),
        (b"<policy-file-request/", Kind.NEED_MORE),
        (b"<html>", Kind.GARBAGE),
        (b"<policy-file-request x", Kind.GARBAGE),
        (b"\x00\xff", Kind.GARBAGE),
        (b"GET\r\n", Kind.GARBAGE),
        (b"\r\n", Kind.GARBAGE),
    ],
)
def test_sniff_table(data: bytes, kind: Kind) -> None:
    assert sniff(data) is kind


def test_every_prefix_of_a_request_is_need_more_or_http() -> None:
    request = b"GET /chat HTTP/1.1\r\n"
    for n in range(1, len(request) + 1):
        assert sniff(request[:n]) in (Kind.NEED_MORE, Kind.HTTP)


def test_every_prefix_of_the_policy_request_needs_more() -> None:
    for n in range(1, len(POLICY_REQUEST) - 2):
        assert sniff(POLICY_REQUEST[:n]) is Kind.NEED_MORE


def test_a_dribbling_peer_is_garbage_at_the_limit() -> None:
    assert sniff(b"<policy-file-request" + b" " * 100, limit=64) is Kind.GARBAGE
    assert sniff(b"A" * 19, limit=64) is Kind.NEED_MORE
    assert sniff(b"A" * 21, limit=64) is Kind.GARBAGE


def test_a_limit_shorter_than_the_http2_preface_decides_at_the_limit() -> None:
    # A prefix of the preface may still become it, but not past the limit.
    assert sniff(b"PRI * HT", limit=16) is Kind.NEED_MORE
    assert sniff(b"P", limit=1) is Kind.GARBAGE
    assert sniff(b"PRI * HTTP/2.0\r\n", limit=16) is Kind.GARBAGE
