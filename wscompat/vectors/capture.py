"""Captured connections turned into vectors, sans-I/O: TCP reassembly and the vector.

``wscompat vectors import`` reads a capture (:mod:`.pcap` for pcap and pcapng files,
:mod:`.har` for a browser's HAR export) into :class:`Exchange` objects: one connection's
bytes both ways, in the order they were seen, with its EOFs. :func:`exchange_vector` makes
each one a vector the way ``wscompat serve --record`` makes a recording (the same
:class:`~wscompat.vectors.recording.Recording` cuts heads and frames), so an imported
vector reads like a recorded one: the client's bytes as ``send`` steps, the server's as
expectations, byte for byte.

:class:`TcpStreams` reassembles TCP from packets as a capture holds them: each
direction's bytes are put in sequence order (retransmissions and overlaps dropped,
segments that arrive early held until the gap fills), and both directions are
interleaved in the order the capture saw them. A gap that never fills (a packet the
capture dropped) ends that direction there, and says so. Sequence numbers are taken
relative to the SYN (or, without one, the first segment seen), so they wrap as TCP's
do. At most :data:`~wscompat.vectors.recording.MAX_BYTES` of each direction is held
(and as much again of early segments), whatever the size of the capture.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wscompat.drafts import Draft
from wscompat.protocol.proxy_header import leading_header_size
from wscompat.vectors.corpus import SCHEMA_NAME
from wscompat.vectors.expect import status_of
from wscompat.vectors.provenance import today, wscompat_tool
from wscompat.vectors.recording import (
    HYBI_HEAD_VARY,
    MAX_BYTES,
    Recording,
    Redaction,
    guess_draft,
    header_value,
    redact,
)

__all__ = ["NO_REDACTION", "CaptureInfo", "Exchange", "TcpStreams", "exchange_vector"]

NO_REDACTION = Redaction(frozenset(), query=False)
"""Imports are byte-exact unless asked to redact (``--redact``)."""
_SEQ = 2**32
_HALF = 2**31
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_REQUEST_START = re.compile(rb"[A-Z]+ \S+ HTTP/")
_ALL_FRAMES = 2**31
"""Frames kept per direction: all of them (the byte cap still applies)."""


@dataclass
class Exchange:
    """One connection's bytes both ways, in the order the capture saw them."""

    client: str
    """Where the client spoke from, ``address:port`` (or a HAR entry's URL)."""
    server: str
    events: list[tuple[str, bytes]] = field(default_factory=list)
    """``("client" | "server", data)``, and ``("client_eof" | "server_eof", b"")``."""
    started: datetime.datetime | None = None
    """When its first packet was captured (UTC)."""
    notes: list[str] = field(default_factory=list)
    """What the capture could not say (lost segments, what a HAR file leaves out)."""

    def data(self, side: str) -> bytes:
        return b"".join(data for kind, data in self.events if kind == side)


@dataclass(frozen=True)
class CaptureInfo:
    """The capture a vector is imported from, for its provenance."""

    file: str
    """The file's name (without its folder: the vector may travel)."""
    format: str
    sha256: str


@dataclass
class _Direction:
    start: int | None = None
    """Sequence number of the first byte (the SYN's plus one)."""
    delivered: int = 0
    """Bytes given to the exchange so far, from ``start``."""
    early: dict[int, bytes] = field(default_factory=dict)
    """Segments past a gap, by relative offset, until it fills."""
    fin_at: int | None = None
    eof_sent: bool = False
    reset: bool = False
    early_bytes: int = 0


@dataclass
class _Stream:
    exchange: Exchange
    client_key: tuple[str, int]
    directions: dict[str, _Direction] = field(
        default_factory=lambda: {"client": _Direction(), "server": _Direction()})


class TcpStreams:
    """TCP connections reassembled from packets fed in capture order."""

    def __init__(self) -> None:
        self._streams: dict[frozenset[tuple[str, int]], list[_Stream]] = {}
        self._order: list[_Stream] = []

    def add(self, when: datetime.datetime | None, src: tuple[str, int],
            dst: tuple[str, int], seq: int, *, syn: bool, ack: bool, fin: bool,
            rst: bool, payload: bytes) -> None:
        """One TCP segment from ``src`` to ``dst`` (``(address, port)``)."""
        key = frozenset((src, dst))
        streams = self._streams.setdefault(key, [])
        stream = streams[-1] if streams else None
        if syn and not ack and stream is not None:
            start = stream.directions["client"].start
            if start is not None and (seq + 1) % _SEQ != start:
                stream = None  # a new connection on the same addresses and ports
        if stream is None:
            client = _client_of(src, dst, syn=syn, ack=ack, payload=payload)
            server = dst if client == src else src
            stream = _Stream(Exchange(_address(client), _address(server), started=when), client)
            streams.append(stream)
            self._order.append(stream)
        side = "client" if src == stream.client_key else "server"
        direction = stream.directions[side]
        if direction.reset:
            return
        if syn:
            direction.start = (seq + 1) % _SEQ
            seq = direction.start
        if direction.start is None:
            direction.start = seq
        offset = (seq - direction.start) % _SEQ
        if offset >= _HALF:
            return  # before the start: a retransmission from before the SYN we saw
        if fin:
            direction.fin_at = offset + len(payload)
        if payload:
            self._receive(stream, side, direction, offset, payload)
        if rst:
            direction.reset = True
        self._maybe_eof(stream, side, direction)

    def _receive(self, stream: _Stream, side: str, direction: _Direction, offset: int,
                 payload: bytes) -> None:
        if offset > direction.delivered:
            held = len(direction.early.get(offset, b""))
            if len(payload) > held and direction.early_bytes < MAX_BYTES:
                direction.early[offset] = payload
                direction.early_bytes += len(payload) - held
            return
        self._deliver(stream, side, direction, offset, payload)
        while direction.early:
            ready = [at for at in direction.early if at <= direction.delivered]
            if not ready:
                break
            for at in sorted(ready):
                segment = direction.early.pop(at)
                direction.early_bytes -= len(segment)
                self._deliver(stream, side, direction, at, segment)

    def _deliver(self, stream: _Stream, side: str, direction: _Direction, offset: int,
                 payload: bytes) -> None:
        new = payload[direction.delivered - offset :]
        if not new:
            return
        kept = max(min(len(new), MAX_BYTES - direction.delivered), 0)
        direction.delivered += len(new)
        new = new[:kept]  # the vector keeps MAX_BYTES a side: hold no more than that
        if not new:
            return
        events = stream.exchange.events
        if events and events[-1][0] == side:
            events[-1] = (side, events[-1][1] + new)
        else:
            events.append((side, new))

    def _maybe_eof(self, stream: _Stream, side: str, direction: _Direction) -> None:
        if (direction.fin_at is not None and direction.delivered >= direction.fin_at
                and not direction.eof_sent):
            direction.eof_sent = True
            stream.exchange.events.append((f"{side}_eof", b""))

    def exchanges(self, port: int | None = None) -> list[Exchange]:
        """Every connection whose client sent an HTTP request first (to ``port`` only,
        when given), in the order they began; gaps that never filled noted."""
        found = []
        for stream in self._order:
            exchange = stream.exchange
            if port is not None and not exchange.server.endswith(f":{port}"):
                continue
            skip = leading_header_size(exchange.data("client"))
            if not _REQUEST_START.match(exchange.data("client")[skip : skip + 64]):
                continue
            if skip:
                exchange.notes.append("the PROXY protocol header the proxy sent first is "
                                      "left out, as wscompat serve --record leaves it out")
            for side, direction in stream.directions.items():
                if direction.early:
                    lost = min(direction.early) - direction.delivered
                    exchange.notes.append(
                        f"the capture lost {lost} bytes the {side} sent after its first "
                        f"{direction.delivered}; the {side}'s bytes end there")
            found.append(exchange)
        return found


def _address(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client_of(src: tuple[str, int], dst: tuple[str, int], *, syn: bool, ack: bool,
               payload: bytes) -> tuple[str, int]:
    """Which end of a connection first seen in this segment is the client: the one that
    sent the SYN, else the one that sent the request, else the one on the higher
    (ephemeral) port."""
    if syn:
        return dst if ack else src
    if _REQUEST_START.match(payload[:64]):
        return src
    if payload.startswith(b"HTTP/"):
        return dst
    return src if src[1] > dst[1] else dst


def _handshake_ends(client: bytes, server: bytes) -> tuple[Draft, int, int] | None:
    """The draft, and where the client's and the server's handshake bytes end, for an
    exchange the server accepted (101); None otherwise."""
    head = _BLANK_LINE.search(client)
    answer = _BLANK_LINE.search(server)
    if head is None or answer is None or status_of(server[:64]) != 101:
        return None
    draft = guess_draft(client[: head.end()])
    extra = 8 if draft is Draft.HIXIE76 else 0
    answer_extra = 16 if draft is Draft.HIXIE76 else 0
    return draft, head.end() + extra, answer.end() + answer_extra


def _feed(exchange: Exchange) -> Recording:
    """A recording fed with the exchange as the server would have fed it."""
    recording = Recording(_ALL_FRAMES, exchange.started)
    client = exchange.data("client")
    skip = leading_header_size(client)  # a proxy's PROXY protocol header: left out
    ends = _handshake_ends(client[skip:], exchange.data("server"))
    server_seen = 0
    opened = False
    for kind, data in exchange.events:
        if kind == "client":
            if skip:  # the proxy's header, left out
                rest, skip = data[skip:], max(skip - len(data), 0)
                if rest:
                    recording.received(rest)
                continue
            recording.received(data)
        elif kind == "client_eof":
            recording.received_eof()
        elif kind == "server_eof":
            recording.sent_eof()
        elif ends is None or opened:
            recording.sent(data)
        else:
            draft, client_end, server_end = ends
            cut = server_end - server_seen
            recording.sent(data[:cut])
            if cut <= len(data):
                received = len(recording.client.data)
                recording.opened(draft, max(received - client_end, 0))
                opened = True
                if data[cut:]:
                    recording.sent(data[cut:])
        server_seen += len(data) if kind == "server" else 0
    return recording


def exchange_vector(exchange: Exchange, capture: CaptureInfo, *, stream: str,
                    redaction: Redaction = NO_REDACTION,
                    notes: Iterable[str] = ()) -> dict[str, Any] | None:
    """The vector of one captured exchange (``stream``: how the capture names it), or
    None when it is not an HTTP exchange."""
    recording = _feed(exchange)
    if not recording.worth_keeping(plain=True):
        return None
    vector = recording.vector(None, redaction, keep_refused_rest=True)  # as captured
    if vector is None:
        return None
    head = recording.client.data[: recording.head_end or 0]
    agent = header_value(bytes(head), "User-Agent")
    when = (f", captured {exchange.started.strftime('%Y-%m-%d %H:%M UTC')}"
            if exchange.started else "")
    description = [f"Imported by wscompat vectors import from {capture.file} "
                   f"({capture.format}), {stream}{when}."]
    description += [note[:1].upper() + note[1:] + "." for note in (*exchange.notes, *notes)]
    if recording.truncated:
        description.append(f"Only the first {MAX_BYTES} bytes each way were kept.")
    redacted = redact(bytes(head), redaction)[1]
    if redacted:
        description.append(f"{', '.join(redacted)} redacted, as wscompat serve --record "
                           "redacts them.")
    provenance: dict[str, Any] = {
        "kind": "imported",
        "date": today(),
        "tool": wscompat_tool("vectors import"),
        "capture": {"file": capture.file, "format": capture.format, "sha256": capture.sha256,
                    "stream": stream},
    }
    if agent and agent.strip():
        provenance["client"] = {"user_agent": agent}
    return {
        "$schema": f"../{SCHEMA_NAME}",
        "name": vector["name"],
        "draft": vector["draft"],
        "source": f"imported from {capture.file} ({capture.format}, {stream})"
                  + (f", a client that sent User-Agent {agent}" if agent else ""),
        "provenance": provenance,
        "description": " ".join(description),
        "steps": [piece for step in vector["steps"] for piece in _varying_head(step)],
        "end": vector["end"],
    }


def _varying_head(step: dict[str, Any]) -> list[dict[str, Any]]:
    """An exact answer whose head has a ``Date`` or ``Server`` field (a refusal, from a
    server that dates its responses) as a head with those two allowed to vary, then the
    body: replayed later, the date differs."""
    data = step.get("expect")
    if not isinstance(data, str) or not data.startswith("HTTP/"):
        return [step]
    head, blank, body = data.partition("\r\n\r\n")
    names = {line.split(":", 1)[0].strip().lower() for line in head.split("\r\n")[1:]}
    if not blank or not names & {"date", "server"}:
        return [step]
    return [{"expect_head": head + blank, "vary": HYBI_HEAD_VARY},
            *([{"expect": body}] if body else [])]
