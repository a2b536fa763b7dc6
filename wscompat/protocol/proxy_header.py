"""The PROXY protocol header that a TCP-mode proxy puts before a connection's first byte.

A proxy that copies bytes (haproxy ``mode tcp``, nginx ``stream``, most cloud load
balancers) hides the client: the server sees the proxy's address. With ``send-proxy``
(version 1, one text line) or ``send-proxy-v2`` (binary) it first sends the client's
address, and a server told to expect that reads it before the handshake. The addresses
themselves are parsed by the ``proxy-protocol`` library; this module finds where the
header ends in a stream, bounds it, and says what it means for the connection.

Sans-I/O: :func:`parse_proxy_header` takes the bytes received so far.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proxyprotocol import ProxyProtocolIncompleteError
from proxyprotocol.result import ProxyResult, is_ipv4, is_ipv6
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

__all__ = [
    "V1_MAX", "V2_MAX", "ProxyHeader", "ProxyHeaderError", "ProxyHeaderReader",
    "leading_header_size", "parse_proxy_header",
]

V1_PREFIX = b"PROXY "
V1_MAX = 107
"""The longest version 1 line, CRLF included (the specification's own bound)."""
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_MAX = 16 + 0xFFFF
"""A version 2 header: 16 bytes, then at most 65,535 of addresses and TLVs."""


class ProxyHeaderError(ValueError):
    """The connection does not begin with a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """What a complete header says."""

    size: int
    """Bytes it took: the connection's own data begins after them."""
    source: tuple[str, int] | None
    """The client's address and port; None when the proxy speaks for itself (version
    2 ``LOCAL``, as in its health checks; version 1 ``UNKNOWN``) or the client is not
    on TCP/IP: the connection keeps the address it came from."""


def parse_proxy_header(data: bytes | bytearray) -> ProxyHeader | None:
    """The header at the start of ``data``, or None while it is incomplete.

    Raises ProxyHeaderError as soon as ``data`` cannot begin one: anything else first,
    a version 1 line longer than :data:`V1_MAX`, or a header the library cannot read.
    """
    if not data:
        return None
    head = bytes(data[:16])
    if head[:1] == b"P" and V1_PREFIX.startswith(head[:6]):
        end = bytes(data[:V1_MAX]).find(b"\r\n")
        if end < 0:
            if len(data) >= V1_MAX:
                raise ProxyHeaderError(f"a PROXY protocol line longer than {V1_MAX} bytes")
            return None
        return _header(ProxyProtocolV1(), bytes(data[: end + 2]))
    if head[:1] == b"\r" and V2_SIGNATURE.startswith(head[:12]):
        if len(head) < 16:
            return None
        size = 16 + int.from_bytes(head[14:16], "big")
        if len(data) < size:
            return None
        return _header(ProxyProtocolV2(), bytes(data[:size]))
    raise ProxyHeaderError("no PROXY protocol header")


def leading_header_size(data: bytes) -> int:
    """The bytes of the whole header ``data`` begins with; 0 when it begins otherwise
    (for the vector tools, which keep a connection as the client made it)."""
    try:
        header = parse_proxy_header(data)
    except ProxyHeaderError:
        return 0
    return 0 if header is None else header.size


class ProxyHeaderReader:
    """Takes a connection's first bytes, read by read, until its header is whole: the
    one place the server's connection and the recorder learn where it ends."""

    __slots__ = ("header", "received")

    def __init__(self) -> None:
        self.received = b""
        """Every byte fed while the header is not whole yet."""
        self.header: ProxyHeader | None = None

    def feed(self, data: bytes) -> bytes | None:
        """The bytes that follow the header once it is whole, None while it is not.
        ProxyHeaderError when the connection cannot begin with one (``received`` then
        holds what came)."""
        self.received += data
        header = parse_proxy_header(self.received)
        if header is None:
            return None
        self.header = header
        rest, self.received = self.received[header.size :], b""
        return rest


def _header(version: ProxyProtocolV1 | ProxyProtocolV2, raw: bytes) -> ProxyHeader:
    try:
        result = version.unpack(raw)
    except ProxyProtocolIncompleteError:
        raise ProxyHeaderError("an incomplete PROXY protocol header") from None
    except (ValueError, struct.error, IndexError, KeyError) as exc:
        raise ProxyHeaderError(f"an invalid PROXY protocol header: {exc}") from None
    return ProxyHeader(len(raw), _source(result))


def _source(result: ProxyResult) -> tuple[str, int] | None:
    if not result.proxied:
        return None
    if is_ipv4(result) or is_ipv6(result):
        address, port = result.source
        return (str(address), int(port))
    return None
