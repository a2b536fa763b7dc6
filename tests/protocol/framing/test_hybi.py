from __future__ import annotations

import os

import pytest

from wscompat.drafts import Draft
from wscompat.protocol.framing import Closed, HybiFramer, Message, Pong, State
from wscompat.protocol.framing.masking import mask_key

from ...framing_helpers import client_frame


def feed(framer: HybiFramer, *frames: bytes) -> list[object]:
    for frame in frames:
        framer.receive_data(frame)
    return list(framer.events())


def test_text_binary_and_fragments() -> None:
    f = HybiFramer()
    events = feed(
        f,
        client_frame(1, b"Hello"),
        client_frame(2, b"\x00\xff"),
        client_frame(1, "中".encode()[:1], fin=False),
        client_frame(0, "中".encode()[1:], fin=False),
        client_frame(0, b"!"),
    )
    assert events == [Message("Hello"), Message(b"\x00\xff"), Message("中!")]


def test_send_is_unmasked_and_exact() -> None:
    f = HybiFramer()
    f.send_text("Hello")
    f.send_binary(b"\x01" * 256)
    assert f.data_to_send() == b"\x81\x05Hello" + b"\x82\x7e\x01\x00" + b"\x01" * 256


def test_ping_is_answered_and_pong_reported() -> None:
    f = HybiFramer()
    assert feed(f, client_frame(9, b"p1"), client_frame(10, b"p2")) == [Pong(b"p2")]
    assert f.data_to_send() == b"\x8a\x02p1"


def test_invalid_utf8_fails_at_the_first_bad_fragment() -> None:
    f = HybiFramer()
    events = feed(f, client_frame(1, b"ok", fin=False), client_frame(0, b"\xc0", fin=False))
    assert events == [Closed(1007, "invalid UTF-8: invalid start byte", False)]
    out = f.data_to_send()
    assert out[0] == 0x88 and out[2:4] == b"\x03\xef"
    assert f.eof_wanted and f.state is not State.OPEN


@pytest.mark.parametrize("pieces", [1, 3, 40])
def test_a_large_gathered_text_frame_is_judged_whole(pieces: int) -> None:
    """A text frame large enough to be gathered across reads takes a path of its own
    (its buffer is freed before decoding): good text is delivered, bad text is 1007."""
    good = ("é" * 50_000).encode()
    bad = good[:-1] + b"\xff"
    for payload, expected in ((good, [Message(good.decode())]), (bad, None)):
        f = HybiFramer()
        frame = client_frame(1, payload)
        step = -(-len(frame) // pieces)
        events = feed(f, *(frame[i : i + step] for i in range(0, len(frame), step)))
        if expected is not None:
            assert events == expected
        else:
            assert len(events) == 1 and isinstance(events[0], Closed)
            assert events[0].code == 1007


def test_incomplete_utf8_at_message_end_is_1007() -> None:
    f = HybiFramer()
    (event,) = feed(f, client_frame(1, "中".encode()[:2]))
    assert isinstance(event, Closed) and event.code == 1007


def test_message_limit_across_fragments_is_1009() -> None:
    f = HybiFramer(max_message_size=10)
    events = feed(f, client_frame(2, b"x" * 6, fin=False), client_frame(0, b"y" * 6))
    assert [e.code for e in events if isinstance(e, Closed)] == [1009]


def test_frame_limit_is_1009() -> None:
    f = HybiFramer(max_message_size=None, max_frame_size=4)
    (event,) = feed(f, client_frame(2, b"x" * 5))
    assert isinstance(event, Closed) and event.code == 1009


def test_peer_close_is_echoed() -> None:
    f = HybiFramer(Draft.HYBI08)
    events = feed(f, client_frame(8, b"\x0f\xa0bye"))
    assert events == [Closed(4000, "bye", True)]
    assert f.data_to_send() == b"\x88\x05\x0f\xa0bye" and f.eof_wanted


def test_empty_close_gives_1005() -> None:
    f = HybiFramer()
    assert feed(f, client_frame(8, b"")) == [Closed(1005, "", True)]
    assert f.data_to_send() == b"\x88\x00"


def test_server_close_waits_for_the_reply() -> None:
    f = HybiFramer()
    f.send_close(1001, "going")
    assert f.data_to_send() == b"\x88\x07\x03\xe9going" and f.state is State.CLOSING
    assert f.events() == []
    assert feed(f, client_frame(8, b"\x03\xe9")) == [Closed(1001, "going", False)]


def test_eof_without_close_is_1006() -> None:
    f = HybiFramer()
    f.receive_eof()
    assert f.events() == [Closed(1006, "connection lost", True)]


def test_abort_sends_the_code_once() -> None:
    f = HybiFramer()
    f.abort(1011, "x" * 300)
    out = f.data_to_send()
    assert out[0] == 0x88 and out[1] == 125  # the reason was cut to fit a control frame
    f.abort(1002, "again")
    assert f.data_to_send() == b""
    assert [e for e in f.events() if isinstance(e, Closed)] == [Closed(1011, "x" * 123, False)]


def test_data_after_close_is_ignored() -> None:
    f = HybiFramer()
    feed(f, client_frame(8, b"\x03\xe8"))
    assert feed(f, client_frame(1, b"late")) == []


@pytest.mark.parametrize(
    "frame",
    [
        client_frame(1, b"x", masked=False),
        client_frame(1, b"x", rsv=0x20),
        client_frame(3, b""),
        client_frame(0xB, b""),
        client_frame(9, b"x" * 126),
        client_frame(9, b"", fin=False),
        client_frame(0, b"x"),
        client_frame(8, b"\x03"),
        client_frame(8, (999).to_bytes(2, "big")),
        client_frame(8, (1004).to_bytes(2, "big")),
        client_frame(8, (1015).to_bytes(2, "big")),
        client_frame(8, (5000).to_bytes(2, "big")),
    ],
)
def test_protocol_errors_are_1002(frame: bytes) -> None:
    f = HybiFramer()
    (event,) = feed(f, frame)
    assert isinstance(event, Closed) and event.code == 1002 and not event.by_peer
    out = f.data_to_send()
    assert out[0] == 0x88 and out[2:4] == (1002).to_bytes(2, "big")
    assert f.eof_wanted


def test_new_message_inside_a_fragmented_one_is_1002() -> None:
    f = HybiFramer()
    events = feed(f, client_frame(1, b"a", fin=False), client_frame(1, b"b"))
    assert [e.code for e in events if isinstance(e, Closed)] == [1002]


def test_huge_64bit_length_is_refused_before_reading() -> None:
    f = HybiFramer(max_message_size=2**20)
    events = feed(f, b"\x82\xff" + (2**63 - 1).to_bytes(8, "big") + b"\x00" * 4)
    assert [e.code for e in events if isinstance(e, Closed)] == [1009]


def test_close_between_fragments_is_echoed() -> None:
    f = HybiFramer()
    events = feed(f, client_frame(1, b"frag", fin=False), client_frame(8, b"\x03\xe8"),
                  client_frame(0, b"ment"))
    assert events == [Closed(1000, "", True)]
    assert f.data_to_send() == b"\x88\x02\x03\xe8"


# -- a large frame over many reads ---------------------------------------------------------

BIG = bytes(range(256)) * 1024  # 256 KiB, past GATHER_FROM


@pytest.mark.parametrize("step", [1000, 65536, 100_000])
def test_a_large_frame_is_gathered_then_joined_once(step: int) -> None:
    data = client_frame(2, BIG) + client_frame(1, b"after") + client_frame(8, b"\x03\xe8")
    f = HybiFramer(max_message_size=None)
    events: list[object] = []
    for i in range(0, len(data), step):
        f.receive_data(data[i : i + step])
        events += f.events()
        if 0 < i < len(BIG) - 65536:
            assert len(f._buf) < 65536 + step  # the rest waits in pieces, not grown
    assert events[:2] == [Message(BIG), Message("after")]
    assert isinstance(events[2], Closed) and events[2].code == 1000


def test_eof_while_a_large_frame_is_gathered_is_an_abrupt_end() -> None:
    data = client_frame(2, BIG)
    f = HybiFramer(max_message_size=None)
    f.receive_data(data[:70_000])
    f.receive_data(data[70_000:140_000])
    f.receive_eof()
    [closed] = f.events()
    assert isinstance(closed, Closed) and closed.code == 1006


def test_a_frame_over_the_limit_is_refused_from_its_header_not_gathered() -> None:
    f = HybiFramer(max_message_size=100_000)
    f.receive_data(client_frame(2, BIG)[:20])
    [closed] = f.events()
    assert isinstance(closed, Closed) and closed.code == 1009
    assert f._missing == 0


def test_chunks_to_send_are_header_and_payload_without_a_join() -> None:
    f = HybiFramer()
    f.send_binary(BIG)
    chunks = f.chunks_to_send()
    assert chunks[1] is BIG and b"".join(chunks) == b"\x82\x7f" + len(BIG).to_bytes(8, "big") + BIG
    assert f.chunks_to_send() == [] and f.data_to_send() == b""


# -- the close answered without websockets' protocol --------------------------------------

CLOSE_PAYLOADS = [
    b"",
    b"\x03\xe8",
    b"\x03\xe8" + "bye 中".encode(),
    b"\x0f\xa0" + b"r" * 123,  # 4000, the longest reason
    b"\x03\xe7",  # 999: not a valid code
    b"\x03\xed",  # 1005 may not be sent
    b"\x03",  # one byte: no room for a code
    b"\x03\xe8\xc3\x28",  # a reason that is not UTF-8
]


def _closing(framer: HybiFramer, payload: bytes) -> list[object]:
    """Everything observable of a close arriving, then data, then EOF."""
    seen: list[object] = []
    framer.receive_data(client_frame(8, payload) + client_frame(1, b"after the close"))
    seen += [framer.events(), framer.data_to_send(), framer.eof_wanted, framer.state]
    try:
        framer.send_text("too late")
    except Exception as exc:
        seen.append((type(exc), str(exc)))
    framer.receive_eof()
    seen += [framer.events(), framer.data_to_send(), framer.state]
    return seen


@pytest.mark.parametrize("payload", CLOSE_PAYLOADS)
def test_the_fast_close_is_indistinguishable_from_the_protocols(payload: bytes) -> None:
    fast = HybiFramer()
    slow = HybiFramer()
    _ = slow._p  # the protocol exists already: the close goes through it
    assert _closing(fast, payload) == _closing(slow, payload)


def test_a_fast_close_echoes_the_payload_and_asks_for_eof() -> None:
    f = HybiFramer()
    f.receive_data(client_frame(8, b"\x03\xe8bye"))
    assert f.events() == [Closed(1000, "bye", True)]
    assert f.data_to_send() == b"\x88\x05\x03\xe8bye"
    assert f.eof_wanted and f.state is State.CLOSING
    assert f._lazy is None  # answered without making the protocol
    f.receive_eof()
    assert (f.state, f.events()) == (State.CLOSED, [])


def test_the_protocol_made_after_a_fast_close_is_in_the_closed_state() -> None:
    f = HybiFramer()
    f.receive_data(client_frame(8, b"\x03\xe8"))
    f.events()
    f.data_to_send()
    f.abort(1011, "late abort")  # needs the protocol: made now, already closing
    assert f.events() == [] and f.data_to_send() == b""
    assert f.state is State.CLOSING


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_client_frames_are_masked_with_a_new_key_each(size: int) -> None:
    # What the client sends is read back by a server framer, which refuses unmasked
    # frames; the header carries the MASK bit and the key, and no key repeats.
    client, server = HybiFramer(client=True, max_message_size=None), HybiFramer(
        max_message_size=None)
    payload = bytes(i % 251 for i in range(size))
    client.send_binary(payload)
    client.send_text("é" * (size // 2))
    wire = client.data_to_send()
    assert wire[1] & 0x80
    server.receive_data(wire)
    assert server.events() == [Message(payload), Message("é" * (size // 2))]
    keys = set()
    for _ in range(3000):  # across a refill of the key pool
        client.send_binary(b"x")
        frame = client.data_to_send()
        assert frame[:2] == b"\x82\x81" and len(frame) == 7
        keys.add(frame[2:6])
    assert len(keys) > 2990  # 32-bit keys: a repeat in 3000 is about one in a thousand


def test_a_forked_child_draws_keys_of_its_own() -> None:
    mask_key()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next keys, to the parent
        os.write(write, b"".join(mask_key() for _ in range(8)))
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    ours = b"".join(mask_key() for _ in range(8))
    assert len(child) == 32 and child != ours
