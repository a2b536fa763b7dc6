"""The PROXY protocol header: versions 1 and 2 as the specification's examples give them,
fed whole and a byte at a time, and everything else refused as soon as it shows."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wscompat.protocol.proxy_header import (
    V1_MAX,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
    parse_proxy_header,
)

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def v2(command: int, family: int, addresses: bytes, tlvs: bytes = b"") -> bytes:
    body = addresses + tlvs
    return SIGNATURE + bytes([0x20 | command, family]) + len(body).to_bytes(2, "big") + body


def ipv4_addresses(source: str, dest: str, sport: int, dport: int) -> bytes:
    return (ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(dest).packed
            + struct.pack(">HH", sport, dport))


V2_TCP4 = v2(1, 0x11, ipv4_addresses("198.51.100.9", "10.0.0.1", 40000, 443))
V2_TCP6 = v2(1, 0x21, ipaddress.IPv6Address("2001:db8::7").packed
             + ipaddress.IPv6Address("2001:db8::1").packed + struct.pack(">HH", 1234, 80))
# A TLV of type 0x02 (the authority: the name the client asked for).
V2_WITH_TLV = v2(1, 0x11, ipv4_addresses("192.0.2.1", "192.0.2.2", 1, 2),
                 b"\x02\x00\x0bexample.com")
V2_LOCAL = v2(0, 0x00, b"")

HEADERS = [
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n", ("192.0.2.7", 56324)),
    (b"PROXY TCP6 2001:db8::5 2001:db8::1 65535 8080\r\n", ("2001:db8::5", 65535)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None),
    (V2_TCP4, ("198.51.100.9", 40000)),
    (V2_TCP6, ("2001:db8::7", 1234)),
    (V2_WITH_TLV, ("192.0.2.1", 1)),
    (V2_LOCAL, None),
]


@pytest.mark.parametrize(("raw", "source"), HEADERS, ids=range(len(HEADERS)))
def test_a_header_whole_and_a_byte_at_a_time(raw: bytes, source: tuple[str, int] | None
                                              ) -> None:
    assert parse_proxy_header(raw + REQUEST) == ProxyHeader(len(raw), source)
    for cut in range(len(raw)):
        assert parse_proxy_header(raw[:cut]) is None, cut


@pytest.mark.parametrize("data", [
    REQUEST,  # a client that came straight, not through the proxy
    b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
    b"PRI * HTTP/2.0\r\n",
    b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 443\r\n",
    b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n",
    b"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 192.0.2.7\r\n",
    b"PROXY " + b"1" * V1_MAX,  # no line end within the longest line there can be
    SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
    SIGNATURE + b"\x21\x11\x00\x02ab",  # addresses cut short of their family's size
    SIGNATURE + b"\x2f\x11\x00\x0c" + bytes(12),  # an unknown command
], ids=["http", "tls", "h2", "port", "address", "family", "short", "long", "v3",
        "cut", "command"])
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(data)


def test_the_refusal_comes_with_the_first_wrong_byte() -> None:
    """A client without the header is told at once, not after the header's length."""
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(b"G")
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(b"PROXX")
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(b"\r\n\r\nX")


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_none_or_the_error(data: bytes) -> None:
    try:
        header = parse_proxy_header(data)
    except ProxyHeaderError:
        return
    assert header is None or 0 < header.size <= len(data)


@given(st.sampled_from([raw for raw, _ in HEADERS]), st.binary(max_size=64))
def test_what_follows_the_header_is_not_read(raw: bytes, rest: bytes) -> None:
    header = parse_proxy_header(raw + rest)
    assert header is not None and header.size == len(raw)


@pytest.mark.parametrize(("raw", "source"), HEADERS, ids=range(len(HEADERS)))
def test_the_reader_takes_the_header_read_by_read(raw: bytes, source: tuple[str, int] | None
                                                  ) -> None:
    reader = ProxyHeaderReader()
    data = raw + REQUEST
    for byte in data[: len(raw) - 1]:
        assert reader.feed(bytes([byte])) is None
    assert reader.feed(data[len(raw) - 1 :]) == REQUEST
    assert reader.header == ProxyHeader(len(raw), source)


def test_the_reader_keeps_what_came_when_there_is_no_header() -> None:
    reader = ProxyHeaderReader()
    with pytest.raises(ProxyHeaderError):
        reader.feed(REQUEST[:5])
    assert reader.received == REQUEST[:5] and reader.header is None
