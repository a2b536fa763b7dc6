"""pcap and pcapng captures in, TCP connections out: the packet side of ``vectors import``.

``dpkt`` reads the file (classic pcap in either byte order and time resolution, or
pcapng) and decodes each packet's link layer, IPv4 or IPv6, and TCP; the segments go
to :class:`~wscompat.vectors.capture.TcpStreams` in capture order. Link layers read:
Ethernet (what ``tcpdump -i lo`` writes on Linux), BSD loopback (null), Linux cooked
captures (``-i any``, v1 and v2) and raw IP. Packets of other protocols, and IP
fragments, are passed over; a file that is not a capture is a :class:`CaptureError`.
"""

from __future__ import annotations

import datetime
import socket
from pathlib import Path
from typing import Any, BinaryIO

import dpkt  # type: ignore[import-untyped]

from wscompat.vectors.capture import Exchange, TcpStreams

__all__ = ["PCAPNG_MAGIC", "CaptureError", "read_capture"]

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                b"\xa1\xb2\x3c\x4d"}
_DLT_NULL, _DLT_EN10MB, _DLT_RAW, _DLT_RAW_BSD = 0, 1, 12, 14
_DLT_LOOP, _LINKTYPE_RAW, _DLT_LINUX_SLL, _LINKTYPE_LINUX_SLL2 = 108, 101, 113, 276


class CaptureError(ValueError):
    """The file is not a capture this reader understands."""


def capture_format(head: bytes) -> str | None:
    """``pcapng``, ``pcap`` or None, from a file's first four bytes."""
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    return "pcap" if head[:4] in _PCAP_MAGICS else None


def read_capture(path: Path, port: int | None = None) -> tuple[str, list[Exchange]]:
    """The file's format and the HTTP connections in it (to ``port`` only, if given)."""
    streams = TcpStreams()
    with path.open("rb") as file:
        kind = capture_format(file.read(4))
        if kind is None:
            raise CaptureError(f"{path}: not a pcap or pcapng capture")
        file.seek(0)
        for when, packet in _packets(file, kind, path):
            _add(streams, when, packet)
    return kind, streams.exchanges(port)


def _packets(file: BinaryIO, kind: str, path: Path) -> Any:
    """``(timestamp, decoded link-layer packet)`` for each packet of the file."""
    try:
        reader = dpkt.pcapng.Reader(file) if kind == "pcapng" else dpkt.pcap.Reader(file)
        link = reader.datalink()
        decode = _DECODERS.get(link)
        if decode is None:
            raise CaptureError(f"{path}: link type {link} is not one this reader decodes "
                               "(Ethernet, loopback, Linux cooked or raw IP)")
        for timestamp, data in reader:
            yield timestamp, decode(data)
    except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, ValueError) as exc:
        if isinstance(exc, CaptureError):
            raise
        raise CaptureError(f"{path}: a damaged capture ({exc})") from None


def _raw_ip(data: bytes) -> Any:
    version = data[0] >> 4 if data else 0
    if version == 4:
        return dpkt.ip.IP(data)
    return dpkt.ip6.IP6(data) if version == 6 else None


def _link_payload(frame: Any) -> Any:
    return getattr(frame, "data", None)


_DECODERS: dict[int, Any] = {
    _DLT_EN10MB: lambda data: _link_payload(dpkt.ethernet.Ethernet(data)),
    _DLT_NULL: lambda data: _link_payload(dpkt.loopback.Loopback(data)),
    _DLT_LOOP: lambda data: _link_payload(dpkt.loopback.Loopback(data)),
    _DLT_LINUX_SLL: lambda data: _link_payload(dpkt.sll.SLL(data)),
    _LINKTYPE_LINUX_SLL2: lambda data: _link_payload(dpkt.sll2.SLL2(data)),
    _DLT_RAW: _raw_ip,
    _DLT_RAW_BSD: _raw_ip,
    _LINKTYPE_RAW: _raw_ip,
}


def _add(streams: TcpStreams, timestamp: float, ip: Any) -> None:
    if isinstance(ip, dpkt.ip.IP):
        if ip.mf or ip.offset:
            return  # a fragment: loopback and local captures have none
        family = socket.AF_INET
    elif isinstance(ip, dpkt.ip6.IP6):
        family = socket.AF_INET6
    else:
        return
    tcp = ip.data
    if not isinstance(tcp, dpkt.tcp.TCP):
        return
    flags = tcp.flags
    when = datetime.datetime.fromtimestamp(float(timestamp), datetime.UTC)
    streams.add(
        when,
        (socket.inet_ntop(family, ip.src), tcp.sport),
        (socket.inet_ntop(family, ip.dst), tcp.dport),
        tcp.seq,
        syn=bool(flags & dpkt.tcp.TH_SYN), ack=bool(flags & dpkt.tcp.TH_ACK),
        fin=bool(flags & dpkt.tcp.TH_FIN), rst=bool(flags & dpkt.tcp.TH_RST),
        payload=bytes(tcp.data),
    )
