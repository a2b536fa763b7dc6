"""Properties over arbitrary input: round-trips, and nothing but documented outcomes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.framing import Closed, HixieFramer, HybiFramer, Message
from wscompat.protocol.handshake import Phase, ServerHandshake
from wscompat.protocol.handshake.hixie76 import key_number
from wscompat.protocol.http import HeadParser
from wscompat.protocol.sniff import Kind, sniff

from ..framing_helpers import client_frame, split

messages = st.one_of(st.text(max_size=3000), st.binary(max_size=3000))


def fragment(message: str | bytes, sizes: list[int]) -> bytes:
    payload = message.encode() if isinstance(message, str) else message
    chunks, pos = [], 0
    for size in sizes:
        if pos >= len(payload):
            break
        chunks.append(payload[pos : pos + size])
        pos += size
    chunks.append(payload[pos:])
    first_op = 1 if isinstance(message, str) else 2
    return b"".join(
        client_frame(first_op if i == 0 else 0, chunk, fin=i == len(chunks) - 1)
        for i, chunk in enumerate(chunks)
    )


@given(messages, st.lists(st.integers(1, 500), max_size=8), st.lists(st.integers(0, 10**6)))
@settings(max_examples=150)
def test_hybi_any_message_any_fragmentation_round_trips(
    message: str | bytes, sizes: list[int], cuts: list[int]
) -> None:
    f = HybiFramer(max_message_size=None)
    for piece in split(fragment(message, sizes), cuts):
        f.receive_data(piece)
    assert f.events() == [Message(message)]


@given(st.text(max_size=3000).filter(lambda t: True), st.lists(st.integers(0, 10**6)))
@settings(max_examples=150)
def test_hixie_any_text_any_split_round_trips(text: str, cuts: list[int]) -> None:
    f = HixieFramer(max_message_size=None)
    sender = HixieFramer()
    sender.send_text(text)
    for piece in split(sender.data_to_send(), cuts):
        f.receive_data(piece)
    assert f.events() == [Message(text)]


@given(st.binary(max_size=2000), st.lists(st.integers(0, 10**6)))
@settings(max_examples=300)
def test_hybi_arbitrary_bytes_only_documented_outcomes(data: bytes, cuts: list[int]) -> None:
    f = HybiFramer(max_message_size=4096)
    for piece in split(data, cuts):
        f.receive_data(piece)
    f.receive_eof()
    events = f.events()
    closes = [e for e in events if isinstance(e, Closed)]
    assert len(closes) == 1
    assert closes[0].code in {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1009} or (
        closes[0].by_peer and 1000 <= closes[0].code < 5000
    )


@given(st.sampled_from([Draft.HIXIE75, Draft.HIXIE76]), st.binary(max_size=2000),
       st.lists(st.integers(0, 10**6)))
@settings(max_examples=300)
def test_hixie_arbitrary_bytes_only_documented_outcomes(
    draft: Draft, data: bytes, cuts: list[int]
) -> None:
    f = HixieFramer(draft, max_message_size=512)
    for piece in split(data, cuts):
        f.receive_data(piece)
    f.receive_eof()
    events = f.events()
    assert all(isinstance(e, Message | Closed) for e in events)
    assert [e.code for e in events if isinstance(e, Closed)][-1:] in (
        [1000], [1006], [1007], [1009]
    )


@given(st.binary(max_size=300))
def test_sniffer_is_total_and_stable(data: bytes) -> None:
    kind = sniff(data)
    if kind is not Kind.NEED_MORE:
        assert sniff(data + b"more bytes") is kind


@given(st.binary(max_size=600), st.lists(st.integers(0, 10**6)))
@settings(max_examples=300)
def test_handshake_never_raises_on_arbitrary_input(data: bytes, cuts: list[int]) -> None:
    hs = ServerHandshake()
    for piece in split(data, cuts):
        hs.receive_data(piece)
        if hs.phase is Phase.DECIDE:
            hs.accept(hs.offered_subprotocols[0] if hs.offered_subprotocols else None)
    assert hs.phase in Phase
    hs.data_to_send()


@given(st.binary(max_size=600))
def test_head_parser_raises_only_handshake_rejected(data: bytes) -> None:
    status = None
    try:
        HeadParser(max_size=256).feed(data)
    except HandshakeRejected as exc:
        status = exc.status
    assert status in (None, 400, 431)


NOISE = st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(lambda c: not c.isdigit())


@given(st.integers(1, 12), st.integers(0, 4294967295), st.text(alphabet=NOISE, max_size=12))
def test_hixie76_key_generated_as_clients_do(spaces: int, number: int, noise: str) -> None:
    number -= number % spaces
    part = number // spaces
    digits = str(number)
    key = digits[:1] + noise + digits[1:]
    key = key[0] + " " * spaces + key[1:] if len(key) > 1 else key + " " * spaces + "x"
    assert key_number(key) == part


def _fed_through_one_buffer(f: HixieFramer | HybiFramer, pieces: list[bytes]) -> None:
    """Each piece read into one reused buffer, as the I/O layer's shared read buffer
    is: longer than the piece, 0xFF past it (an end byte a search must not reach), and
    overwritten after each call (a view kept past its read would see the change)."""
    buffer = bytearray(b"\xff" * 4096)
    for piece in pieces:
        buffer[: len(piece)] = piece
        f.receive_into(buffer, len(piece))
        buffer[:] = b"\xee" * len(buffer)
        buffer[len(piece) :] = b"\xff" * (len(buffer) - len(piece))


@given(st.sampled_from([Draft.HIXIE75, Draft.HIXIE76, Draft.RFC6455]),
       st.one_of(st.binary(max_size=2000), messages.map(lambda m: fragment(m, [700])),
                 st.lists(st.text(max_size=600), max_size=4).map(
                     lambda texts: b"".join(b"\x00" + t.encode() + b"\xff" for t in texts))),
       st.lists(st.integers(0, 10**6)))
@settings(max_examples=300)
def test_a_reused_read_buffer_parses_as_bytes_of_its_own(
    draft: Draft, data: bytes, cuts: list[int]
) -> None:
    """receive_into(buffer, count) gives the events and replies receive_data gives."""
    pieces = split(data, cuts)

    def framer() -> HixieFramer | HybiFramer:
        if draft is Draft.RFC6455:
            return HybiFramer(max_message_size=4096)
        return HixieFramer(draft, max_message_size=512)

    by_bytes, by_buffer = framer(), framer()
    for piece in pieces:
        by_bytes.receive_data(piece)
    _fed_through_one_buffer(by_buffer, pieces)
    for f in (by_bytes, by_buffer):
        f.receive_eof()
    assert by_buffer.events() == by_bytes.events()
    assert by_buffer.data_to_send() == by_bytes.data_to_send()
