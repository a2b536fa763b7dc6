"""Frames a gateway relays as they came: what ``whole_frames`` takes from a read, and
what ``pass_frames`` makes of it on the other side (unchanged towards a client, masked
anew towards a server)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate

from wscompat.drafts import Draft
from wscompat.protocol.framing import HixieFramer, HybiFramer, Message

from ...framing_helpers import client_frame, frames_of


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    return client_frame(opcode, payload, fin=fin, rsv=rsv, masked=False)


def backend_leg(max_message_size: int | None = 2**20) -> HybiFramer:
    """A gateway's backend leg: a client framer reading a server's frames."""
    return HybiFramer(client=True, max_message_size=max_message_size)


def test_a_run_of_whole_data_frames_is_taken_up_to_the_first_other_frame() -> None:
    run = server_frame(2, b"a") + server_frame(1, "é".encode()) + server_frame(2, b"x" * 300)
    for rest in (
        server_frame(9, b"ping"),                         # a control frame
        server_frame(1, b"frag", fin=False),              # a fragment
        server_frame(2, b"r", rsv=0x40),                  # a reserved bit
        server_frame(1, b"\xff\xfe"),                     # text that is not UTF-8
        client_frame(2, b"masked"),                       # masked, from a server
        server_frame(2, b"incomplete")[:-1],              # not whole in this read
    ):
        assert backend_leg().whole_frames(run + rest) == (len(run), 3), rest


def test_frames_over_the_size_limit_are_left_to_the_usual_parse() -> None:
    framer = backend_leg(max_message_size=100)
    data = server_frame(2, b"k" * 100) + server_frame(2, b"k" * 101)
    assert framer.whole_frames(data) == (102, 1)
    framer.receive_data(data[102:])
    (first, _, payload), = frames_of(framer.data_to_send())
    assert (first, payload[:2]) == (0x88, (1009).to_bytes(2, "big"))  # failed: too big


def test_nothing_is_taken_while_a_frame_or_message_is_incomplete() -> None:
    framer = backend_leg()
    framer.receive_data(server_frame(2, b"half a frame")[:5])
    assert framer.whole_frames(server_frame(2, b"whole")) == (0, 0)

    framer = backend_leg()
    framer.receive_data(server_frame(1, b"first ", fin=False))
    assert framer.whole_frames(server_frame(2, b"whole")) == (0, 0)


def test_a_framer_with_an_extension_takes_and_passes_nothing() -> None:
    deflate = PerMessageDeflate(False, False, 15, 15)
    framer = HybiFramer(client=True, extensions=[deflate])
    assert framer.whole_frames(server_frame(2, b"plain")) == (0, 0)
    assert HybiFramer(extensions=[deflate]).pass_frames(server_frame(2, b"plain")) is False


def test_towards_a_client_the_frames_leave_unchanged() -> None:
    frames = server_frame(2, b"a") + server_frame(1, b"b")
    client_side = HybiFramer()
    assert client_side.pass_frames(frames) is True
    assert client_side.data_to_send() == frames
    assert client_side.pass_frames(client_frame(2, b"masked")) is False


def test_towards_a_server_each_frame_is_masked_anew() -> None:
    key = b"\x01\x02\x03\x04"
    sent = [(0x81, b"hello"), (0x82, bytes(range(200))), (0x82, b"z" * 70000)]
    frames = b"".join(client_frame(first & 0x0F, payload, key=key) for first, payload in sent)
    assert HybiFramer().whole_frames(frames) == (len(frames), 3)
    backend_side = HybiFramer(client=True)
    assert backend_side.pass_frames(frames) is True
    out = b"".join(backend_side.chunks_to_send())
    relayed = frames_of(out)
    assert [(first, payload) for first, _, payload in relayed] == sent
    assert all(k != key for _, k, _ in relayed)
    assert len({k for _, k, _ in relayed}) == 3
    assert backend_side.pass_frames(server_frame(2, b"unmasked")) is False


def test_a_closing_framer_passes_nothing() -> None:
    client_side = HybiFramer()
    client_side.send_close(1001)
    client_side.data_to_send()
    assert client_side.pass_frames(server_frame(2, b"late")) is False
    assert client_side.data_to_send() == b""


def test_hixie_takes_and_passes_nothing() -> None:
    framer = HixieFramer(Draft.HIXIE76)
    assert framer.whole_frames(b"\x00text\xff") == (0, 0)
    assert framer.pass_frames(b"\x00text\xff") is False


def test_what_is_left_is_parsed_as_usual_after_the_run() -> None:
    framer = backend_leg()
    data = server_frame(2, b"run") + server_frame(9, b"p") + server_frame(2, b"after")
    end, count = framer.whole_frames(data)
    assert (end, count) == (5, 1)
    framer.receive_data(data[end:])
    assert framer.events() == [Message(b"after")]
    (first, _, payload), = frames_of(framer.data_to_send())
    assert (first, payload) == (0x8A, b"p")  # the ping is answered


def framed(framer: HybiFramer, messages: list[str | bytes]) -> bytes:
    """The bytes ``framer`` sends for ``messages``, text as text, bytes as binary."""
    for message in messages:
        if isinstance(message, str):
            framer.send_text(message)
        else:
            framer.send_binary(message)
    return b"".join(framer.chunks_to_send())


messages = st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=300)), max_size=12)


@settings(max_examples=150)
@given(messages, st.integers(min_value=0, max_value=4000))
def test_relayed_both_ways_the_messages_arrive_as_sent(
    sent: list[str | bytes], cut: int
) -> None:
    """A client's frames taken by the gateway's server side and masked anew by its
    backend leg, then the backend's echo taken by the backend leg and passed unchanged
    to the client: each end parses exactly the messages sent, whatever part of the
    read the run covers."""
    client = HybiFramer(client=True)
    wire = framed(client, sent)
    read = wire[: cut % (len(wire) + 1)]
    gateway_front, gateway_back = HybiFramer(), HybiFramer(client=True)
    end, count = gateway_front.whole_frames(read)
    if count:
        assert gateway_back.pass_frames(read[:end])
    gateway_front.receive_data(read[end:] + wire[len(read) :])
    parsed = gateway_front.events()
    assert all(isinstance(event, Message) for event in parsed)
    to_backend = framed(gateway_back, [event.data for event in parsed])  # type: ignore[union-attr]
    backend = HybiFramer()
    backend.receive_data(to_backend)
    assert [e.data for e in backend.events()] == sent  # type: ignore[union-attr]

    echo = framed(backend, sent)
    end, count = gateway_back.whole_frames(echo)
    assert end == len(echo) and count == len(sent)
    assert gateway_front.pass_frames(echo) or not sent
    client.receive_data(b"".join(gateway_front.chunks_to_send()))
    assert [e.data for e in client.events()] == sent  # type: ignore[union-attr]
