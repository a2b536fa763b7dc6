"""``wscompat vectors export --pcap``: a vector as a pcapng capture that Wireshark opens.

The capture holds one synthetic TCP connection over Ethernet between 127.0.0.1 (the
client, port 50000) and 127.0.0.1 (the server, port 80, where Wireshark's HTTP dissector
finds the upgrade and hands the rest to its WebSocket one): SYN, SYN/ACK, ACK, then
each step's bytes in order as segments of at most :data:`SEGMENT` bytes, each acknowledged,
with sequence and acknowledgement numbers as a real stack would count them, and a FIN
and its ACK where the vector has a ``send_eof`` or an ``expect_eof``: a connection the
vector leaves open stays open in the capture, so that importing the file gives the
vector's steps back. Timestamps start at midnight UTC of the
vector's provenance date and advance a millisecond a packet, pauses included as
written, so the same vector always makes the same file.

Expectations that allow several answers are written as one of them: ``expect_status``
as a head with the status and the named headers, ``expect_close`` as a close frame with
the code and no reason. The file's comment says so, and names the vector and its source.

Packets are built with ``dpkt`` (which computes the checksums); the pcapng blocks
(section header, interface description, enhanced packets) are written here.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import dpkt  # type: ignore[import-untyped]

from wscompat.vectors.format import Vector
from wscompat.vectors.wire import pieces

__all__ = ["CLIENT", "SEGMENT", "SERVER", "pcapng_bytes"]

CLIENT = ("127.0.0.1", 50000)
SERVER = ("127.0.0.1", 80)
SEGMENT = 16384
"""Largest TCP payload per packet (loopback's MTU is larger; any size reads the same)."""
_ISN = {"client": 1_000_000, "server": 5_000_000}
_MAC = {"client": b"\x02\x00\x00\x00\x00\x01", "server": b"\x02\x00\x00\x00\x00\x02"}
_TICK = 1000
"""Microseconds from one packet to the next."""
_SNAPLEN = 262144
_BOM = 0x1A2B3C4D
_OPT_COMMENT, _SHB_USERAPPL, _IF_NAME = 1, 4, 2


def _option(code: int, value: bytes) -> bytes:
    padding = b"\x00" * (-len(value) % 4)
    return struct.pack("<HH", code, len(value)) + value + padding


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def _options(*options: bytes) -> bytes:
    return b"".join(options) + struct.pack("<HH", 0, 0) if options else b""


@dataclass
class _Connection:
    """Both ends' sequence numbers, and the packets so far."""

    time: int
    """Microseconds since the epoch."""
    packets: list[tuple[int, bytes]]
    seq: dict[str, int]

    def packet(self, side: str, flags: int, payload: bytes = b"") -> None:
        other = "server" if side == "client" else "client"
        src, dst = (CLIENT, SERVER) if side == "client" else (SERVER, CLIENT)
        tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=self.seq[side] % 2**32,
                           ack=self.seq[other] % 2**32 if flags & dpkt.tcp.TH_ACK else 0,
                           flags=flags, win=65535, data=payload)
        tcp.off = 5
        ip = dpkt.ip.IP(src=bytes(map(int, src[0].split("."))),
                        dst=bytes(map(int, dst[0].split("."))), p=dpkt.ip.IP_PROTO_TCP,
                        ttl=64, data=tcp)
        ip.len = len(ip)
        frame = dpkt.ethernet.Ethernet(src=_MAC[side], dst=_MAC[other],
                                       type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.packets.append((self.time, bytes(frame)))
        self.time += _TICK
        self.seq[side] += len(payload) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN)
                                          else 0)

    def send(self, side: str, data: bytes) -> None:
        other = "server" if side == "client" else "client"
        for start in range(0, len(data), SEGMENT):
            self.packet(side, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data[start : start + SEGMENT])
            self.packet(other, dpkt.tcp.TH_ACK)

    def close(self, side: str) -> None:
        self.packet(side, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
        self.packet("server" if side == "client" else "client", dpkt.tcp.TH_ACK)


def _packets(vector: Vector) -> Iterator[tuple[int, bytes]]:
    date = str(vector.provenance.get("date", "1970-01-01"))
    start = datetime.datetime.fromisoformat(date).replace(tzinfo=datetime.UTC).timestamp()
    connection = _Connection(int(start) * 1_000_000, [], dict(_ISN))
    connection.packet("client", dpkt.tcp.TH_SYN)
    connection.packet("server", dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
    connection.packet("client", dpkt.tcp.TH_ACK)
    closed = {"client": False, "server": False}
    for piece in pieces(vector):
        if piece.pause:
            connection.time += round(piece.pause * 1_000_000)
        elif piece.eof:
            if not closed[piece.side]:
                connection.close(piece.side)
                closed[piece.side] = True
        elif piece.data and not closed[piece.side]:
            connection.send(piece.side, piece.data)
    return iter(connection.packets)


def pcapng_bytes(vector: Vector, comment: str = "") -> bytes:
    """The vector as a pcapng file's bytes."""
    from wscompat import __version__  # noqa: PLC0415 (wscompat imports this package)

    approximated = [p.stands_for for p in pieces(vector) if p.stands_for]
    note = (f"wscompat vector {vector.id}: {vector.name}\nsource: {vector.source}\n"
            "A synthetic TCP connection carrying the vector's bytes, written by wscompat "
            "vectors export.")
    if approximated:
        note += ("\nWritten as one answer of several the vector allows: "
                 + "; ".join(approximated) + ".")
    if comment:
        note += "\n" + comment
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", _BOM, 1, 0, -1) + _options(
        _option(_OPT_COMMENT, note.encode("utf-8")),
        _option(_SHB_USERAPPL, f"wscompat {__version__} vectors export".encode()),
    ))]
    out.append(_block(1, struct.pack("<HHI", dpkt.pcap.DLT_EN10MB, 0, _SNAPLEN) + _options(
        _option(_IF_NAME, b"wscompat-vector"))))
    for micro, frame in _packets(vector):
        body = struct.pack("<IIIII", 0, micro >> 32, micro & 0xFFFFFFFF, len(frame), len(frame))
        out.append(_block(6, body + frame + b"\x00" * (-len(frame) % 4)))
    return b"".join(out)
