"""The conformance client's codecs, checked against the documents' own examples in
both directions, and its permessage-deflate negotiation against RFC 7692's rules."""

from __future__ import annotations

import zlib

import pytest

from wscompat.conformance.compression import DATA_SETS, DATA_SIZE, data_set, messages
from wscompat.conformance.wire import (
    TEXT,
    DeflateAgreement,
    Deflater,
    Frame,
    FrameParser,
    HandshakeError,
    HixieFrame,
    HixieParser,
    Inflater,
    ProtocolError,
    Target,
    accept_for,
    agree,
    check_hixie_answer,
    encode_frame,
    hixie76_answer,
    parse_url,
)


def test_rfc6455_examples_both_ways() -> None:
    """RFC 6455 section 5.7: a masked "Hello" from the client, unmasked from the server."""
    masked = bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode_frame(Frame(TEXT, b"Hello"), bytes.fromhex("37fa213d")) == masked
    parser = FrameParser()
    parser.feed(masked[:3])
    assert parser.next() is None  # a partial frame waits
    parser.feed(masked[3:] + bytes.fromhex("810548656c6c6f"))
    first, second = parser.next(), parser.next()
    assert first is not None and (first.masked, first.payload) == (True, b"Hello")
    assert second is not None and (second.masked, second.payload) == (False, b"Hello")
    assert accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    huge = FrameParser()
    huge.feed(b"\x82\x7f" + (2**40).to_bytes(8, "big"))
    with pytest.raises(ProtocolError):
        huge.next()


def test_hixie76_challenge_examples() -> None:
    assert hixie76_answer("4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00",
                          b"^n:ds[4U") == b"8jKS'y:G*Co,Wxa-"
    assert hixie76_answer("18x 6]8vM;54 *(5:  {   U1]8  z [  8",
                          "1_ tx7X d  <  nw  334J702) 7]o}` 0",
                          b"Tm[K T2u") == b"fQJ,fN/4F4!~K~MH"
    assert hixie76_answer("4146546015", "1 2", b"12345678") is None  # no spaces
    assert hixie76_answer("4 @1  46546xW%0l 1 6", "1 2", b"12345678") is None  # inexact
    assert hixie76_answer(f"{2**32 * 2} 1", "1 2", b"12345678") is None  # over 32 bits


def test_hixie_frames() -> None:
    parser = HixieParser(limit=1000)
    parser.feed(b"\x00Hi\xff\x80\x81\x00" + b"x" * 128 + b"\x01s\xff\xff\x00\x00par")
    assert parser.next() == HixieFrame("text", 0, b"Hi")
    assert parser.next() == HixieFrame("length", 0x80, b"x" * 128)
    assert parser.next() == HixieFrame("sentinel", 1, b"s")
    close = parser.next()
    assert close is not None and close.is_close
    assert parser.next() is None and parser.pending == b"\x00par"
    too_long = HixieParser(limit=10)
    too_long.feed(b"\x80\x8f\x7f")
    with pytest.raises(ProtocolError):
        too_long.next()


def test_urls_and_hixie_answers() -> None:
    target = parse_url("ws://127.0.0.1:8080/chat?room=1")
    assert target == Target("127.0.0.1", 8080, "/chat?room=1")
    assert target.location == "ws://127.0.0.1:8080/chat?room=1"
    assert parse_url("ws://example.com").location == "ws://example.com/"
    assert parse_url("ws://[::1]:9000/").host_header == "[::1]:9000"
    for bad in ("wss://example.com/", "http://example.com/", "ws:///x", "ws://h:99999/",
                "ws://h/#frag"):
        with pytest.raises(ValueError):  # noqa: PT011 (each says why in its message)
            parse_url(bad)
    head = (b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
            b"Connection: Upgrade\r\nWebSocket-Origin: http://example.com\r\n"
            b"WebSocket-Location: ws://example.com/demo\r\n\r\n")
    example = Target("example.com", 80, "/demo")
    assert check_hixie_answer("hixie-75", head, example) is None
    assert check_hixie_answer("hixie-75", head.replace(b"Web Socket", b"WebSocket"),
                              example) is not None
    assert "WebSocket-Location" in (check_hixie_answer("hixie-75", head, Target(
        "example.com", 80, "/other")) or "")
    assert check_hixie_answer("hixie-76", head, example) is not None  # no Sec- fields


DEFAULT = "permessage-deflate; client_no_context_takeover; client_max_window_bits"


def test_permessage_deflate_answers() -> None:
    agreed = agree(DEFAULT, "permessage-deflate")
    assert agreed.client_no_context_takeover  # the client keeps to its own hint
    assert agreed.client_max_window_bits == 15
    agreed = agree(f"{DEFAULT}; server_max_window_bits=10",
                   "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8")
    assert (agreed.server_max_window_bits, agreed.client_max_window_bits) == (9, 8)
    bad = [
        ("permessage-deflate", "permessage-deflate; client_max_window_bits=10"),
        (f"{DEFAULT}; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=9"),
        (f"{DEFAULT}; server_no_context_takeover", "permessage-deflate"),
        (DEFAULT, "permessage-deflate; mystery"),
        (DEFAULT, "permessage-deflate; server_no_context_takeover=1"),
        (DEFAULT, "x-webkit-deflate-frame"),
        (DEFAULT, "permessage-deflate, permessage-deflate"),
    ]
    for offer, answer in bad:
        with pytest.raises(HandshakeError):
            agree(offer, answer)
    three = (f"{DEFAULT}; server_no_context_takeover; server_max_window_bits=8, "
             f"{DEFAULT}; server_no_context_takeover, {DEFAULT}")
    assert agree(three, "permessage-deflate").server_no_context_takeover is False


def test_deflate_round_trip_and_the_8_bit_window() -> None:
    message = data_set("json")[:5000]
    taking_over = Deflater(DeflateAgreement())
    inflater = Inflater()
    first, second = taking_over.compress(message), taking_over.compress(message)
    assert len(second) < len(first)  # the second refers back to the first
    assert inflater.inflate(first) == message and inflater.inflate(second) == message
    small = Deflater(DeflateAgreement(client_max_window_bits=8)).compress(message)
    assert small[0] & 0b110 == 0  # a stored block: no reference back at all
    assert zlib.decompressobj(-9).decompress(small + b"\x00\x00\xff\xff") == message
    with pytest.raises(ProtocolError):
        Inflater().inflate(b"\xff\xff\xff")


def test_data_sets_are_fixed_and_texts_are_ascii() -> None:
    for data in DATA_SETS:
        octets = data_set(data.name)
        assert len(octets) == DATA_SIZE
        if not data.binary:
            octets.decode("ascii")
    sent = list(messages("html", DATA_SIZE // 3 + 1, 4))
    assert [len(m) for m in sent] == [DATA_SIZE // 3 + 1] * 4
    twice, size = data_set("html") * 2, len(sent[0])
    assert sent[2] == twice[2 * size : 3 * size]  # wraps round the end
    assert sent[3] == twice[3 * size : 4 * size]
    assert data_set("json")[:20] == b'[{"id": 0, "name": "'
