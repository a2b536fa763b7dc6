"""Properties of the HTTP/2 session over arbitrary input: nothing escapes
``receive_data``, an ended session reads nothing more, and a valid client's exchange
gives the same events and the same answers however its bytes are cut.

Arbitrary input comes three ways: raw bytes, frames of any type, flags and stream with
any payload, and HEADERS frames whose fields are drawn from the ones RFC 8441 uses (so
that requests reach the session's own checks). The session is driven as the I/O layer
drives it: requests decided or answered, what arrives taken and fed to the framer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import SettingsFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wscompat.protocol.connection import ConnectionSettings, Phase
from wscompat.protocol.extensions import CompressionSettings
from wscompat.protocol.framing import HybiFramer, Message, Pong
from wscompat.protocol.handshake import HandshakeSettings
from wscompat.protocol.http2 import (
    PREFACE,
    DataArrived,
    H2Event,
    H2ServerSession,
    H2Settings,
    RequestReceived,
    SessionEnded,
    StreamEnded,
    StreamReset,
    WindowOpened,
)

from ..framing_helpers import client_frame, split

SETTINGS = ConnectionSettings(
    handshake=HandshakeSettings(plain_paths=frozenset({"/healthz"}),
                                compression=CompressionSettings()),
    subprotocols=frozenset({"chat"}),
)
LIMITS = H2Settings(max_streams=8, max_header_list=2048, stream_window=4096, flood_limit=8)
START = PREFACE + SettingsFrame(0).serialize()
"""A client's connection preface and its SETTINGS."""
EVENT_TYPES = (RequestReceived, DataArrived, StreamEnded, StreamReset, WindowOpened,
               SessionEnded)

NAMES = [":method", ":protocol", ":scheme", ":path", ":authority", "sec-websocket-version",
         "sec-websocket-protocol", "sec-websocket-extensions", "origin", "host", "x-a"]
VALUES = ["CONNECT", "GET", "HEAD", "POST", "websocket", "https", "/", "/healthz", "/chat",
          "example.com", "13", "8", "chat, superchat", "permessage-deflate", "a b",
          "https://example.com", ""]
BASE = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
        (":path", "/chat"), (":authority", "example.com"), ("sec-websocket-version", "13")]
EXTRA = ["sec-websocket-protocol", "sec-websocket-extensions", "origin", "x-a"]
def rarely(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any],
           odds: int = 10) -> st.SearchStrategy[Any]:
    """``rare`` once in ``odds`` draws: malformed requests are connection errors in
    ``h2``, so frequent ones would end most inputs at their first request."""
    return st.sampled_from([False] * (odds - 1) + [True]).flatmap(
        lambda is_rare: rare if is_rare else common)


field = rarely(
    st.tuples(st.sampled_from(EXTRA),
              st.sampled_from(VALUES) | st.text(max_size=12) | st.binary(max_size=8)),
    st.tuples(st.sampled_from(NAMES) | st.binary(max_size=6),
              st.sampled_from(VALUES) | st.binary(max_size=8)),
)


def edited(drop: int | None, extra: list[Any], plain: bool) -> list[Any]:
    base: list[Any] = ([(":method", "GET"), (":scheme", "https"), (":path", "/healthz"),
                        (":authority", "example.com")] if plain else list(BASE))
    if drop is not None:
        del base[drop % len(base)]
    return base + extra


edits = st.builds(edited, rarely(st.none(), st.integers(0, 5)), st.lists(field, max_size=3),
                  rarely(st.just(False), st.just(True), 4))
request = rarely(edits, st.lists(field, max_size=9))
ws_bytes = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda op, payload, fin: client_frame(op, payload, fin=fin),
              st.sampled_from([1, 2, 9, 10, 8, 0, 3]), st.binary(max_size=40),
              st.booleans()),
    st.just(client_frame(8, b"\x03\xe8bye")),
)
stream_ids = st.sampled_from([1, 3, 5])
any_stream = st.sampled_from([0, 1, 3, 5, 2, 7, 2**31 - 1])


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags])
            + sid.to_bytes(4, "big") + payload)


class Client:
    """What a piece of input may depend on: the HPACK encoder, whose state header
    blocks share, and the next stream id a new request takes."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.next_id = 1

    def new_stream(self) -> int:
        sid, self.next_id = self.next_id, self.next_id + 2
        return sid


# Well-formed frames come more often than garbage, so that the input gets past its
# first frame; DATA goes to the streams the requests opened.
Piece = Callable[[Client], bytes]


def constant(data: bytes) -> Piece:
    return lambda _client: data


def request_frame(sid: int | None, fields: list[Any], end: bool) -> Piece:
    return lambda c: frame(1, 0x4 | (0x1 if end else 0),
                           c.new_stream() if sid is None else sid, c.encoder.encode(fields))


ends = rarely(st.just(False), st.just(True), 4)
headers = st.builds(request_frame, st.none() | stream_ids, request, ends)
new_request = st.builds(request_frame, st.none(), request, ends)
data = st.builds(lambda s, d, end, pad: constant(
    frame(0, (0x1 if end else 0) | (0x8 if pad else 0), s,
          (bytes([pad]) + d + bytes(pad)) if pad else d)),
    stream_ids, ws_bytes, ends, st.sampled_from([0, 0, 0, 3]))
control = st.one_of(
    st.builds(lambda p: constant(frame(6, 0, 0, p)), st.binary(min_size=8, max_size=8)),
    st.builds(lambda s, n: constant(frame(8, 0, s, n.to_bytes(4, "big"))),
              st.sampled_from([0, 1, 3]), st.integers(0, 2**31 - 1)),
    st.builds(lambda s, c: constant(frame(3, 0, s, c.to_bytes(4, "big"))),
              stream_ids, st.integers(0, 13)),
    st.builds(lambda s, p: constant(frame(2, 0, s, p)), stream_ids,
              st.binary(min_size=5, max_size=5)),
    st.builds(lambda items: constant(frame(4, 0, 0, b"".join(
        k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in items))),
        st.lists(st.tuples(st.integers(1, 9), st.integers(0, 2**32 - 1)), max_size=3)),
    st.just(constant(frame(4, 0x1, 0, b""))),  # a SETTINGS ACK
    st.builds(lambda c: constant(frame(7, 0, 0, (1).to_bytes(4, "big") + c.to_bytes(4, "big"))),
              st.integers(0, 13)),
)
garbage = st.one_of(
    st.binary(min_size=1, max_size=30).map(constant),
    st.builds(lambda k, f, s, p: constant(frame(k, f, s, p)),
              st.integers(0, 12), st.integers(0, 255), any_stream, st.binary(max_size=30)),
)
pieces = st.sampled_from([headers, data, data, data, data, control, control, garbage]).flatmap(
    lambda kind: kind)


class Driver:
    """The I/O layer's part: decide, answer, read, echo, write, end."""

    def __init__(self, session: H2ServerSession) -> None:
        self.session = session
        self.events: list[H2Event] = []
        self.out = bytearray()
        """What the session wrote, for the client."""

    def handle(self, events: list[H2Event]) -> None:
        session = self.session
        self.events += events
        for event in events:
            assert isinstance(event, EVENT_TYPES)
            if isinstance(event, RequestReceived):
                stream = event.stream
                if stream.phase is Phase.DECIDE:
                    stream.accept(stream.choose_subprotocol(stream.upgrade_request()))
                elif stream.phase is Phase.PLAIN:
                    stream.answer_health(serving=True)
            elif isinstance(event, DataArrived | StreamEnded):
                stream = event.stream
                if stream.framer is None:
                    session.take(stream, 1 << 20)
                    continue
                stream.receive_data(session.take(stream, 1 << 20))
                if stream.ended and not stream.inbox:
                    stream.receive_eof()
                for message in stream.events():
                    if isinstance(message, Message) and stream.phase is Phase.OPEN:
                        if isinstance(message.data, str):
                            stream.send_text(message.data)
                        else:
                            stream.send_binary(message.data)
                out = stream.data_to_send()
                if stream.alive and not stream.end_queued and (out or stream.eof_wanted):
                    session.send(stream, out, end=stream.eof_wanted)
        self.out += session.data_to_send()


def run(reads: list[bytes]) -> Driver:
    """Feed the reads after a client's preface; check what holds for any input."""
    session = H2ServerSession(SETTINGS, LIMITS)
    driver = Driver(session)
    driver.handle(session.receive_data(START, 0.0))
    for i, piece in enumerate(reads):
        was_ended = session.ended
        events = session.receive_data(piece, i * 0.25)
        if was_ended:
            assert events == []
        driver.handle(events)
    ends = [e for e in driver.events if isinstance(e, SessionEnded)]
    assert len(ends) == int(session.ended)
    if ends:
        assert driver.events[-1] is ends[0]
        assert session.receive_data(b"\x00" * 9, 99.0) == []
    return driver


@given(st.binary(max_size=600), st.lists(st.integers(0, 10**6), max_size=6))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_after_the_preface_never_raise(data: bytes, cuts: list[int]) -> None:
    run(split(data, cuts))


@given(st.lists(new_request, min_size=1, max_size=3), st.lists(pieces, max_size=14),
       st.none() | st.lists(st.integers(0, 10**6), max_size=6))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_frames_never_raise(first: list[Piece], then: list[Piece],
                                      cuts: list[int] | None) -> None:
    """Requests first, then anything; each piece a read of its own (so that the driver
    answers between them), or all of them cut anywhere."""
    client = Client()
    reads = [piece(client) for piece in first + then]
    run(reads if cuts is None else split(b"".join(reads), cuts))


# -- a valid exchange, cut anywhere --------------------------------------------------------

REQUEST = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
           (":path", "/chat"), (":authority", "example.com"),
           ("sec-websocket-version", "13"), ("sec-websocket-protocol", "superchat, chat"),
           ("sec-websocket-extensions", "permessage-deflate")]
Record = list[tuple[Any, ...]]


def exchange(cut: Callable[[bytes], list[bytes]]) -> tuple[Record, Record]:
    """A client's conversation, each of its flights fed to the server cut by ``cut``:
    two WebSockets and a health check on one connection, messages both ways, a ping,
    a reset, a close. What the server reported, and what the client saw per stream."""
    session = H2ServerSession(SETTINGS, LIMITS)
    driver = Driver(session)
    client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    seen: dict[int, dict[str, Any]] = {}
    framers = {1: HybiFramer(client=True, max_message_size=None),
               3: HybiFramer(client=True, max_message_size=None)}

    def flight() -> None:
        for piece in cut(client.data_to_send()):
            driver.handle(session.receive_data(piece, 0.0))
        driver.out += session.data_to_send()
        out, driver.out = bytes(driver.out), bytearray()
        for event in client.receive_data(out):
            sid = getattr(event, "stream_id", 0)
            entry = seen.setdefault(sid, {"headers": None, "data": b"", "end": False,
                                          "reset": None})
            if isinstance(event, h2e.ResponseReceived):
                entry["headers"] = event.headers
            elif isinstance(event, h2e.DataReceived):
                entry["data"] += event.data
                client.acknowledge_received_data(event.flow_controlled_length or 0, sid)
            elif isinstance(event, h2e.StreamEnded):
                entry["end"] = True
            elif isinstance(event, h2e.StreamReset):
                entry["reset"] = event.error_code

    def send(sid: int, call: Callable[[HybiFramer], None]) -> None:
        call(framers[sid])
        data = framers[sid].data_to_send()
        while data:
            room = min(client.local_flow_control_window(sid), client.max_outbound_frame_size)
            client.send_data(sid, data[:room])
            data = data[room:]
            flight()

    flight()
    client.send_headers(1, REQUEST)
    client.send_headers(3, REQUEST[:6])
    client.send_headers(5, [(":method", "GET"), (":scheme", "https"), (":path", "/healthz"),
                            (":authority", "example.com")], end_stream=True)
    flight()
    send(1, lambda f: f.send_text("ünïcode " * 300))
    send(3, lambda f: f.send_binary(bytes(range(256)) * 40))
    send(3, lambda f: f.send_ping(b"ping"))
    client.ping(b"conn-png")
    flight()
    client.reset_stream(3, ErrorCodes.CANCEL)
    flight()
    send(1, lambda f: f.send_close(1000, "done"))
    client.end_stream(1)
    flight()
    told = [(type(e).__name__, getattr(getattr(e, "stream", None), "stream_id", None),
             getattr(e, "code", None)) for e in driver.events if not isinstance(e, WindowOpened)]
    answers = [(sid, entry["headers"], entry["data"], entry["end"], entry["reset"])
               for sid, entry in sorted(seen.items()) if sid]
    return told, answers


WHOLE = exchange(lambda data: [data])


def test_the_exchange_is_what_it_should_be() -> None:
    """The reference the property compares with is itself right."""
    told, answers = WHOLE
    assert ("RequestReceived", 1, None) in told and ("StreamReset", 3, 8) in told
    by_stream = {a[0]: a for a in answers}
    assert by_stream[1][1][:3] == [(":status", "200"), ("sec-websocket-protocol", "chat"),
                                   ("sec-websocket-extensions", "permessage-deflate")]
    assert by_stream[1][3] is True  # END_STREAM after the close
    assert by_stream[5][1][0] == (":status", "200") and by_stream[5][2] == b"ok\n"
    framer = HybiFramer(client=True, max_message_size=None)
    framer.receive_data(by_stream[3][2])
    assert framer.events() == [Message(bytes(range(256)) * 40), Pong(b"ping")]
    assert by_stream[3][4] is None and by_stream[3][3] is False  # reset by the client


@given(st.lists(st.integers(0, 10**6), max_size=12))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_any_cut_of_a_valid_exchange_gives_the_same_events_and_answers(
    cuts: list[int],
) -> None:
    assert exchange(lambda data: split(data, cuts)) == WHOLE
