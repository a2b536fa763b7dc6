from __future__ import annotations

import pytest

from wscompat.errors import HandshakeRejected
from wscompat.protocol.http import Headers, HeadParser, error_response, response

HEAD = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Twice: 1\r\nx-twice: 2\r\nKey:  a  b  \r\n\r\n"


def test_head_and_leftover() -> None:
    parser = HeadParser()
    request = parser.feed(HEAD + b"\x00\x01")
    assert request is not None
    assert request.method == "GET" and request.target == "/a?b=1"
    assert request.headers.get_all("X-TWICE") == ["1", "2"]
    assert request.headers.joined("x-twice") == "1, 2"
    assert request.headers.get("key") == "a  b"  # interior spaces kept, edges trimmed
    assert parser.leftover == b"\x00\x01"


def test_head_in_single_bytes() -> None:
    parser = HeadParser()
    results = [parser.feed(HEAD[i : i + 1]) for i in range(len(HEAD))]
    assert all(r is None for r in results[:-1]) and results[-1] is not None
    assert parser.leftover == b""


def test_content_length_body_is_not_consumed() -> None:
    """hixie-76 key3 after a Content-Length: 8 head stays in leftover, raw."""
    parser = HeadParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n12345678")
    assert parser.leftover == b"12345678"


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_head_is_431(chunked: bool) -> None:
    parser = HeadParser(max_size=64)
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100 + b"\r\n\r\n"
    with pytest.raises(HandshakeRejected) as info:
        if chunked:
            for i in range(len(data)):
                parser.feed(data[i : i + 1])
        else:
            parser.feed(data)
    assert info.value.status == 431


def test_too_many_headers_is_431() -> None:
    parser = HeadParser(max_headers=3)
    fields = b"".join(b"X%d: 1\r\n" % i for i in range(4))
    with pytest.raises(HandshakeRejected) as info:
        parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert info.value.status == 431


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", b"GET / HTTP/9\r\n\r\n", b"\x01\x02\r\n\r\n"],
)
def test_malformed_head_is_400(data: bytes) -> None:
    with pytest.raises(HandshakeRejected) as info:
        HeadParser().feed(data)
    assert info.value.status == 400


def test_response_is_written_exactly() -> None:
    assert response(101, [("Upgrade", "WebSocket")], reason="Web Socket Protocol Handshake") == (
        b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\r\n"
    )
    body = error_response(400, "bad key")
    assert body.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert body.endswith(b"Content-Length: 8\r\nConnection: close\r\n\r\nbad key\n")


def test_headers_container() -> None:
    headers = Headers([("A", "x, y"), ("a", "z")])
    assert headers.tokens("a") == ["x", "y", "z"]
    assert "A" in headers and "b" not in headers and len(headers) == 2
    assert headers.count("a") == 2 and headers.get("b", "d") == "d"


COMPACT_CASES = [
    [("Host", "example.com:80"), ("X-Empty", ""), ("X-Colons", "a: b: c"), ("Host", "twice")],
    [("Origin", "http://é.example"), ("Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5")],
    [("X-Made-By-Hand", "line\r\nbreak")],  # never from the parser: kept as it is
    [("Bad:Name", "value")],
    [],
]


@pytest.mark.parametrize("items", COMPACT_CASES)
def test_compacted_headers_read_back_the_same(items: list[tuple[str, str]]) -> None:
    headers = Headers(items)
    assert headers.get("host") == next((v for n, v in items if n == "Host"), None)
    headers.compact()
    assert list(headers) == items
    assert len(headers) == len(items) and headers == Headers(items)
    for name, value in items:
        assert value in headers.get_all(name.upper())


def test_a_parsed_request_compacts_to_one_string() -> None:
    request = HeadParser().feed(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nX-Value: a: b\r\n\r\n"
    )
    assert request is not None
    request.headers.compact()
    assert request.headers._items is None  # held packed while nothing asks
    assert request.headers.get("x-value") == "a: b"
    assert list(request.headers) == [("Host", "h"), ("Upgrade", "websocket"), ("X-Value", "a: b")]


def test_a_long_illegal_request_line_is_quoted_short() -> None:
    line = b"GET /" + b"\x1b[2J" * 4000 + b" HTTP/1.1 extra"
    with pytest.raises(HandshakeRejected) as caught:
        HeadParser().feed(line + b"\r\nHost: h\r\n\r\n")
    reason = caught.value.reason
    assert caught.value.status == 400
    assert len(reason) < 200 and f"({len(line)} bytes)" in reason
    assert "\x1b" not in reason  # escaped, as repr escapes it
