"""The sans-I/O HTTP/2 client session: its GOAWAY filter on every split of the bytes,
and the session against ``h2`` as the server, in memory, for what a trio test cannot
arrange at will (a GOAWAY split between reads, a server's data before its answer)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, PingFrame, SettingsFrame

from wscompat.errors import HandshakeRejected
from wscompat.protocol import http2, http2_client, http2_session
from wscompat.protocol.http2_client import (
    DataArrived,
    GoawayFilter,
    GoingAway,
    H2ClientSession,
    H2ClientStream,
    ResponseReceived,
    SessionEnded,
    StreamReset,
)


def _data(stream_id: int, payload: bytes) -> DataFrame:
    frame = DataFrame(stream_id)
    frame.data = payload
    return frame


def _ping() -> PingFrame:
    frame = PingFrame(0)
    frame.opaque_data = b"12345678"
    return frame


FRAMES: list[Frame] = [
    SettingsFrame(0, settings={4: 65535}),
    _data(1, b"a" * 40),
    GoAwayFrame(0, last_stream_id=3, error_code=0, additional_data=b"bye"),
    _ping(),
    _data(3, b""),
    GoAwayFrame(0, last_stream_id=1, error_code=2),
    _data(5, b"z" * 17),
]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 9, 10, 16, 17, 29, 1000])
def test_filter_takes_out_every_goaway_on_any_split(size: int) -> None:
    wire = b"".join(frame.serialize() for frame in FRAMES)
    kept = b"".join(frame.serialize() for frame in FRAMES
                    if not isinstance(frame, GoAwayFrame))
    out, found = b"", []
    goaway_filter = GoawayFilter()
    for start in range(0, len(wire), size):
        data, goaways = goaway_filter.feed(wire[start:start + size])
        out += data
        found += goaways
    assert out == kept
    assert found == [(3, 0, b"bye"), (1, 2, b"")]


def test_filter_passes_a_chunk_without_goaway_as_it_came() -> None:
    chunk = b"".join(frame.serialize() for frame in FRAMES[:2])
    data, found = GoawayFilter().feed(chunk)
    assert data is chunk and found == []


def test_a_goaway_on_a_stream_goes_to_h2() -> None:
    """Not a valid GOAWAY: h2 judges it (a connection error)."""
    wire = GoAwayFrame(0, last_stream_id=1).serialize()
    odd = wire[:5] + b"\x00\x00\x00\x01" + wire[9:]  # stream 1
    assert GoawayFilter().feed(odd) == (odd, [])


class Server:
    """``h2`` as the server, in memory, with the extended CONNECT enabled."""

    def __init__(self, session: H2ClientSession, *, enable_connect: bool = True) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        if enable_connect:
            self.conn.local_settings = h2.settings.Settings(
                client=False, initial_values={SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        self.conn.initiate_connection()
        self.session = session
        self.events: list[h2.events.Event] = []
        self.exchange()

    def exchange(self, extra: bytes = b"") -> list[object]:
        """Bytes both ways until neither side has any; the client's events."""
        client_events: list[object] = []
        out = self.conn.data_to_send() + extra
        while True:
            if out:
                client_events += self.session.receive_data(out)
            back = self.session.data_to_send()
            if not back:
                return client_events
            self.events += self.conn.receive_data(back)
            out = self.conn.data_to_send()

    def websocket(self) -> tuple[H2ClientStream, list[object]]:
        """A WebSocket the client opens and this server accepts (``:status 200``), and
        the client's events for the answer."""
        stream = self.session.connect("/", "example")
        self.exchange()
        self.conn.send_headers(stream.stream_id, [(":status", "200")])
        return stream, self.exchange()


def test_data_before_the_answer_ends_the_connection() -> None:
    """h2 takes DATA before the response head for a connection error: the session
    ends, with h2's reason, and says GOAWAY PROTOCOL_ERROR."""
    session = H2ClientSession()
    server = Server(session)
    stream = session.connect("/", "example")
    server.exchange()
    server.conn.send_data(stream.stream_id, b"too early")
    events = server.exchange()
    ended = [e for e in events if isinstance(e, SessionEnded)]
    assert [(e.code, e.reason) for e in ended] == [
        (ErrorCodes.PROTOCOL_ERROR, "cannot receive data before headers")]
    assert stream.refusal().status == 0 and session.ended
    terminated = [e for e in server.events if isinstance(e, h2.events.ConnectionTerminated)]
    assert [t.error_code for t in terminated] == [ErrorCodes.PROTOCOL_ERROR]


def test_bytes_beyond_the_window_wait_for_window_updates() -> None:
    session = H2ClientSession()
    server = Server(session)
    stream, events = server.websocket()
    assert any(isinstance(e, ResponseReceived) for e in events)
    session.send(stream, b"x" * 100000, end=True)
    server.exchange()
    received = sum(len(e.data or b"") for e in server.events
                   if isinstance(e, h2.events.DataReceived))
    assert received == 65535  # the server's initial stream window
    assert session.pending(stream) == 100000 - 65535
    assert not any(isinstance(e, h2.events.StreamEnded) for e in server.events)
    server.conn.acknowledge_received_data(65535, stream.stream_id)
    server.conn.increment_flow_control_window(65535, stream.stream_id)
    server.exchange()
    received = sum(len(e.data or b"") for e in server.events
                   if isinstance(e, h2.events.DataReceived))
    assert received == 100000 and session.pending(stream) == 0
    assert any(isinstance(e, h2.events.StreamEnded) for e in server.events)  # after it all


def test_the_window_goes_back_only_as_bytes_are_taken() -> None:
    session = H2ClientSession()
    server = Server(session)
    stream, _ = server.websocket()
    window = server.conn.local_flow_control_window(stream.stream_id)
    server.conn.send_data(stream.stream_id, b"y" * 16000)
    events = server.exchange()
    assert any(isinstance(e, DataArrived) for e in events)
    assert server.conn.local_flow_control_window(stream.stream_id) == window - 16000
    assert session.take(stream, 65536) == b"y" * 16000
    server.exchange()
    # h2 hands the window back once half of it is used; taking made it possible.
    session.take(stream, 1)
    assert server.conn.local_flow_control_window(stream.stream_id) <= window


def test_a_graceful_goaway_split_between_reads() -> None:
    session = H2ClientSession()
    server = Server(session)
    first, _ = server.websocket()
    second = session.connect("/", "example")  # not answered yet
    server.exchange()
    goaway = GoAwayFrame(0, last_stream_id=first.stream_id, error_code=0,
                         additional_data=b"maintenance").serialize()
    events: list[object] = []
    for byte in range(len(goaway)):
        events += session.receive_data(goaway[byte:byte + 1])
    assert [type(e) for e in events if not isinstance(e, ResponseReceived)] == [
        StreamReset, GoingAway]
    assert second.reset_code == ErrorCodes.REFUSED_STREAM and first.alive
    assert session.going_away == first.stream_id and not session.ended
    with pytest.raises(HandshakeRejected, match="GOAWAY NO_ERROR: maintenance"):
        session.connect("/", "example")
    server.conn.send_data(first.stream_id, b"still here")
    server.exchange()
    assert session.take(first, 100) == b"still here"


def test_a_goaway_with_an_error_ends_every_stream() -> None:
    session = H2ClientSession()
    server = Server(session)
    stream, _ = server.websocket()
    server.conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, b"calm down")
    events = server.exchange()
    ended = [e for e in events if isinstance(e, SessionEnded)]
    assert [(e.code, e.reason) for e in ended] == [
        (ErrorCodes.ENHANCE_YOUR_CALM, "the server sent GOAWAY ENHANCE_YOUR_CALM: calm down")]
    assert session.ended and not stream.alive


def test_settings_without_extended_connect_refuse_every_websocket() -> None:
    session = H2ClientSession()
    Server(session, enable_connect=False)
    assert session.ready
    with pytest.raises(HandshakeRejected, match="RFC 8441"):
        session.connect("/", "example")


def test_both_sides_raise_the_same_stream_events() -> None:
    """The events about a stream's bytes are one set of classes, whichever side raises
    them, importable from either side's module."""
    for name in ("DataArrived", "StreamEnded", "StreamReset", "WindowOpened", "SessionEnded"):
        shared = getattr(http2_session, name)
        assert getattr(http2, name) is shared and getattr(http2_client, name) is shared


def test_an_answer_over_the_header_list_limit_ends_the_connection() -> None:
    """The client's header list limit reaches h2's HPACK decoder, which otherwise keeps
    its own 64 KiB: a 20 KB response header is refused under the default 16 KiB."""
    session = H2ClientSession()
    server = Server(session)
    stream = session.connect("/", "example")
    server.exchange()
    server.conn.send_headers(stream.stream_id, [(":status", "200"), ("x-big", "b" * 20000)])
    events = server.exchange()
    ended = [e for e in events if isinstance(e, SessionEnded)]
    assert len(ended) == 1 and session.ended, events
    assert ended[0].code == ErrorCodes.ENHANCE_YOUR_CALM, ended[0]
    assert stream.refusal().status == 0
    roomy = H2ClientSession(http2_client.H2ClientSettings(max_header_list=32768))
    server = Server(roomy)
    stream = roomy.connect("/", "example")
    server.exchange()
    server.conn.send_headers(stream.stream_id, [(":status", "200"), ("x-big", "b" * 20000)])
    assert not any(isinstance(e, SessionEnded) for e in server.exchange())
