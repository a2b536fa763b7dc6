from __future__ import annotations

import pytest

from wscompat.drafts import Draft
from wscompat.errors import UnsupportedByDraft
from wscompat.protocol.framing import Closed, HixieFramer, Message, State


def test_text_in_any_split() -> None:
    data = b"\x00Hello \xe4\xb8\xad\xff\x00\xff"
    for split in range(len(data) + 1):
        f = HixieFramer()
        f.receive_data(data[:split])
        f.receive_data(data[split:])
        assert f.events() == [Message("Hello 中"), Message("")]


def test_send_text_and_refuse_binary() -> None:
    f = HixieFramer(Draft.HIXIE75)
    f.send_text("中")
    assert f.data_to_send() == b"\x00\xe4\xb8\xad\xff"
    with pytest.raises(UnsupportedByDraft):
        f.send_binary(b"\x00")
    with pytest.raises(UnsupportedByDraft):
        f.send_ping(b"")


def test_base64_binary_fallback() -> None:
    f = HixieFramer(binary="base64")
    f.send_binary(b"\x00\xff")
    assert f.data_to_send() == b"\x00AP8=\xff"


@pytest.mark.parametrize(
    ("length", "encoded"), [(0, b"\x00"), (127, b"\x7f"), (128, b"\x81\x00"), (300, b"\x82\x2c")]
)
def test_length_prefixed_frames_are_skipped(length: int, encoded: bytes) -> None:
    f = HixieFramer()
    f.receive_data(b"\x80" + encoded + b"a" * length + b"\x00ok\xff")
    assert f.events() == [Message("ok")]


def test_hixie76_closing_handshake_from_client() -> None:
    f = HixieFramer()
    f.receive_data(b"\xff\x00\x00ignored\xff")
    assert f.events() == [Closed(1000, "", True)]
    assert f.data_to_send() == b"\xff\x00" and f.eof_wanted


def test_hixie76_closing_handshake_from_server() -> None:
    f = HixieFramer()
    f.send_close(1001, "shutdown")
    assert f.data_to_send() == b"\xff\x00" and f.state is State.CLOSING
    f.receive_data(b"\x00dropped\xff")  # data after our close is discarded
    f.receive_data(b"\xff\x00")
    assert f.events() == [Closed(1001, "shutdown", False)]
    assert f.data_to_send() == b""


def test_hixie75_close_is_tcp_only() -> None:
    f = HixieFramer(Draft.HIXIE75)
    f.send_close()
    assert f.data_to_send() == b"" and f.eof_wanted
    assert f.events() == [Closed(1000, "", False)]


def test_hixie75_ff00_is_not_a_close() -> None:
    f = HixieFramer(Draft.HIXIE75)
    f.receive_data(b"\xff\x00\x00a\xff")
    assert f.events() == [Message("a")] and f.state is State.OPEN


def test_eof() -> None:
    f = HixieFramer(Draft.HIXIE75)
    f.receive_eof()
    assert f.events() == [Closed(1000, "", True)]
    f = HixieFramer(Draft.HIXIE76)
    f.receive_eof()
    assert f.events() == [Closed(1006, "connection lost", True)]
    f = HixieFramer(Draft.HIXIE75)
    f.receive_data(b"\x00half")
    f.receive_eof()
    assert f.events() == [Closed(1006, "connection lost", True)]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x00" + b"a" * 11, 1009),  # no end byte, over the limit
        (b"\x00" + b"a" * 11 + b"\xff", 1009),
        (b"\x80\x8c", 1009),  # declared length 12 * 128 + ... > 10 before any payload
        (b"\x00\xc0", 1007),  # invalid UTF-8 found before the end byte
        (b"\x00\xed\xa0\x80\xff", 1007),  # an encoded surrogate
    ],
)
def test_limits_and_bad_text(data: bytes, code: int) -> None:
    f = HixieFramer(max_message_size=10)
    f.receive_data(data)
    (event,) = f.events()
    assert isinstance(event, Closed) and event.code == code and not event.by_peer
    assert f.eof_wanted and f.data_to_send() == b""


def test_a_length_header_announcing_2_63_bytes_is_cut_off_at_once() -> None:
    f = HixieFramer(max_message_size=2**20)
    f.receive_data(b"\x80" + b"\xff" * 9 + b"\x7f")
    (event,) = f.events()
    assert isinstance(event, Closed) and event.code == 1009


def test_not_a_hixie_draft() -> None:
    with pytest.raises(ValueError, match="not a hixie draft"):
        HixieFramer(Draft.RFC6455)


# -- a frame spread over many reads ------------------------------------------------------

EMOJI_TEXT = "a\U0001f600b中" * 3000


@pytest.mark.parametrize("step", [1, 2, 3, 5, 4096])
def test_a_long_frame_in_many_reads_keeps_characters_cut_between_reads(step: int) -> None:
    data = b"\x00" + EMOJI_TEXT.encode() + b"\xff\x00next\xff\xff\x00"
    f = HixieFramer(max_message_size=None)
    for i in range(0, len(data), step):
        f.receive_data(data[i : i + step])
    events = f.events()
    assert events[:2] == [Message(EMOJI_TEXT), Message("next")]
    assert isinstance(events[2], Closed)
    assert f.data_to_send() == b"\xff\x00"


def test_a_long_frame_leaves_the_buffer_as_it_is_read() -> None:
    f = HixieFramer(max_message_size=None)
    f.receive_data(b"\x00" + b"x" * 100_000)
    f.receive_data(b"y" * 100_000 + b"\xe4\xb8")
    assert len(f._buf) == 0  # what is read is decoded at once, not held
    f.receive_data(b"\xad\xff")
    assert f.events() == [Message("x" * 100_000 + "y" * 100_000 + "中")]


def test_invalid_utf8_fails_in_the_read_it_comes_in_not_at_the_end_byte() -> None:
    f = HixieFramer(max_message_size=None)
    f.receive_data(b"\x00" + b"ok" * 1000)
    assert f.events() == []
    f.receive_data(b"\xc3\x28 and more")  # no end byte yet
    assert f.events() == [Closed(1007, "invalid UTF-8: invalid continuation byte", False)]
    assert f.state is State.CLOSED


@pytest.mark.parametrize("first", [1, 500, 999, 1000])
def test_the_limit_holds_across_reads_and_at_exactly_the_limit(first: int) -> None:
    f = HixieFramer(max_message_size=1000)
    f.receive_data(b"\x00" + b"a" * first)
    f.receive_data(b"a" * (1000 - first) + b"\xff")
    assert f.events() == [Message("a" * 1000)]
    f.receive_data(b"\x00" + b"a" * first)
    f.receive_data(b"a" * (1001 - first))
    [closed] = f.events()
    assert isinstance(closed, Closed) and closed.code == 1009


def test_bad_utf8_before_the_limit_is_1007_even_when_the_read_passes_the_limit() -> None:
    f = HixieFramer(max_message_size=10)
    f.receive_data(b"\x00abc")
    f.receive_data(b"\xc3\x28" + b"z" * 50)
    [closed] = f.events()
    assert isinstance(closed, Closed) and closed.code == 1007


def test_a_discarded_sentinel_frame_spread_over_reads_is_skipped() -> None:
    f = HixieFramer(max_message_size=None)
    f.receive_data(b"\x01" + b"\x80" * 5000)
    f.receive_data(b"\x80" * 5000 + b"\xff\x00after\xff")
    assert f.events() == [Message("after")]


def test_eof_inside_a_frame_spread_over_reads_is_an_abrupt_end() -> None:
    f = HixieFramer(Draft.HIXIE75, max_message_size=None)
    f.receive_data(b"\x00partial")
    f.receive_eof()
    [closed] = f.events()
    assert isinstance(closed, Closed) and closed.code == 1006
