"""Draft detection, the per-family handshake arithmetic, and the handshake state machine."""

from __future__ import annotations

import pytest

from wscompat.drafts import ALL_DRAFTS, Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.handshake import HandshakeSettings, Phase, ServerHandshake, detect
from wscompat.protocol.handshake.hixie76 import answer, key_number
from wscompat.protocol.handshake.hybi import accept_key
from wscompat.protocol.handshake.location import location
from wscompat.protocol.http import Headers, Request

UPGRADE = [("Host", "h"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
KEY = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
K1 = ("Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5")
K2 = ("Sec-WebSocket-Key2", "12998 5 Y3 1  .P00")


def req(*headers: tuple[str, str], method: str = "GET", version: str = "1.1") -> Request:
    return Request(method, "/", version, Headers([*UPGRADE, *headers]))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([KEY, ("Sec-WebSocket-Version", "13")], Draft.RFC6455),
        ([KEY, ("Sec-WebSocket-Version", "8")], Draft.HYBI08),
        ([KEY, ("Sec-WebSocket-Version", "7")], Draft.HYBI07),
        ([KEY, K1, K2, ("Sec-WebSocket-Version", "13")], Draft.RFC6455),
        ([K1, K2], Draft.HIXIE76),
        ([K1, K2, ("Sec-WebSocket-Draft", "0")], Draft.HIXIE76),
        ([], Draft.HIXIE75),
        ([("WebSocket-Protocol", "x")], Draft.HIXIE75),
    ],
)
def test_detection_table(headers: list[tuple[str, str]], expected: Draft) -> None:
    assert detect(req(*headers), ALL_DRAFTS) is expected


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([KEY, ("Sec-WebSocket-Version", "9")], 426),
        ([KEY, ("Sec-WebSocket-Version", "14")], 426),
        ([KEY, ("Sec-WebSocket-Version", "4")], 426),
        ([KEY, ("Sec-WebSocket-Version", "0")], 426),
        ([KEY, ("Sec-WebSocket-Version", "013")], 400),
        ([KEY, ("Sec-WebSocket-Version", "13, 8")], 400),
        ([KEY, ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Version", "13")], 400),
        ([KEY], 400),
        ([K1], 400),
        ([K2], 400),
        ([K1, K2, ("Sec-WebSocket-Draft", "3")], 400),
    ],
)
def test_detection_rejections(headers: list[tuple[str, str]], status: int) -> None:
    with pytest.raises(HandshakeRejected) as info:
        detect(req(*headers), ALL_DRAFTS)
    assert info.value.status == status
    if status == 426:
        assert ("Sec-WebSocket-Version", "13, 8, 7") in info.value.headers
        assert ("Upgrade", "websocket") in info.value.headers


def test_disabled_draft_is_answered_like_an_unknown_one() -> None:
    only_new = frozenset({Draft.RFC6455})
    with pytest.raises(HandshakeRejected) as info:
        detect(req(K1, K2), only_new)
    assert info.value.status == 426
    assert ("Sec-WebSocket-Version", "13") in info.value.headers


def test_method_and_plain_requests() -> None:
    with pytest.raises(HandshakeRejected) as info:
        detect(req(method="POST"), ALL_DRAFTS)
    assert info.value.status == 405
    plain = Request("GET", "/", "1.1", Headers([("Host", "h")]))
    assert detect(plain, ALL_DRAFTS) is None


def test_hixie76_key_arithmetic() -> None:
    assert key_number(K1[1]) == 829309203
    assert key_number(K2[1]) == 259970620
    assert answer(829309203, 259970620, b"^n:ds[4U") == b"8jKS'y:G*Co,Wxa-"
    for bad in ("3e6b26341780", "no digits here", "1 2 5", "99999999999 "):
        with pytest.raises(HandshakeRejected):
            key_number(bad)


def test_hixie76_counts_only_ascii_digits_and_spaces() -> None:
    # An Arabic-Indic digit and a tab are neither digits nor spaces for the draft.
    assert key_number("1\u06632 \t") == 12


def test_accept_key() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("host", "secure", "expected"),
    [
        ("example.com", False, "ws://example.com/p?q"),
        ("example.com:80", False, "ws://example.com/p?q"),
        ("example.com:443", True, "wss://example.com/p?q"),
        ("example.com:443", False, "ws://example.com:443/p?q"),
        ("Example.COM:8080", False, "ws://Example.COM:8080/p?q"),
        ("[::1]:80", False, "ws://[::1]/p?q"),
        ("[::1]", True, "wss://[::1]/p?q"),
    ],
)
def test_location(host: str, secure: bool, expected: str) -> None:
    request = Request("GET", "/p?q", "1.1", Headers([("Host", host)]))
    assert location(request, secure=secure) == expected


@pytest.mark.parametrize("host", ["[::1", "[::1]x", "h:port", ""])
def test_bad_location_host(host: str) -> None:
    with pytest.raises(HandshakeRejected):
        location(Request("GET", "/", "1.1", Headers([("Host", host)])), secure=False)


HIXIE76 = (
    b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nUpgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nOrigin: http://example.com\r\n\r\n"
)


def phase(hs: ServerHandshake) -> Phase:
    """Read the phase through a call, so the checker does not narrow it across steps."""
    return hs.phase


def test_early_head_then_answer() -> None:
    hs = ServerHandshake()
    hs.receive_data(HIXIE76)
    assert phase(hs) is Phase.DECIDE
    hs.accept()
    assert phase(hs) is Phase.KEY3
    head = hs.data_to_send()
    assert head.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n")
    assert head.endswith(b"\r\n\r\n")
    with pytest.raises(RuntimeError):
        hs.reject(400, "too late: the 101 head is out")
    hs.receive_data(b"^n:ds[4U\x00hi\xff")
    assert phase(hs) is Phase.OPEN
    assert hs.data_to_send() == b"8jKS'y:G*Co,Wxa-"
    assert hs.accepted is not None and hs.accepted.leftover == b"\x00hi\xff"


def test_head_and_answer_in_one_write_when_key3_is_there() -> None:
    hs = ServerHandshake()
    hs.receive_data(HIXIE76 + b"^n:ds[4U")
    hs.accept()
    out = hs.data_to_send()
    assert out.endswith(b"\r\n\r\n8jKS'y:G*Co,Wxa-")


def test_without_early_head_a_late_rejection_is_possible() -> None:
    hs = ServerHandshake(HandshakeSettings(hixie76_early_head=False))
    hs.receive_data(HIXIE76)
    hs.accept()
    assert hs.data_to_send() == b""
    hs.reject(503, "changed our mind")
    assert hs.phase is Phase.CLOSE and hs.data_to_send().startswith(b"HTTP/1.1 503")


def test_accept_refuses_a_subprotocol_that_was_not_offered() -> None:
    hs = ServerHandshake()
    hs.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n\r\n")
    assert hs.offered_subprotocols == ["a", "b", "c"]
    with pytest.raises(ValueError, match="not offered"):
        hs.accept("d")
    hs.accept("c")
    assert b"Sec-WebSocket-Protocol: c\r\n" in hs.data_to_send()


def test_policy_request_is_answered_without_http() -> None:
    hs = ServerHandshake(HandshakeSettings(policy="<cross-domain-policy/>"))
    hs.receive_data(b"<policy-file-request/>\x00")
    assert hs.phase is Phase.CLOSE
    assert hs.data_to_send() == b"<cross-domain-policy/>\x00"


@pytest.mark.parametrize(
    ("data", "phase"), [(b"\x16\x03\x01", Phase.TLS), (b"\x00\x00", Phase.CLOSE)]
)
def test_other_first_bytes(data: bytes, phase: Phase) -> None:
    hs = ServerHandshake()
    hs.receive_data(data)
    assert hs.phase is phase
    assert hs.data_to_send() == b""
