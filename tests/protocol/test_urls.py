"""The one parser of ws:// and wss:// URLs that the client, the tools and the replayer
share."""

from __future__ import annotations

import pytest

from wscompat.protocol.urls import WebSocketURL, parse_ws_url


@pytest.mark.parametrize(("url", "expected"), [
    ("ws://example.com", WebSocketURL("example.com", 80, "/", False)),
    ("wss://example.com/chat?room=1&x", WebSocketURL("example.com", 443, "/chat?room=1&x",
                                                     True)),
    ("ws://127.0.0.1:8080/a/b", WebSocketURL("127.0.0.1", 8080, "/a/b", False)),
    ("wss://[::1]:9443/", WebSocketURL("::1", 9443, "/", True)),
    ("WS://Example.COM/Path", WebSocketURL("example.com", 80, "/Path", False)),
])
def test_urls_taken_apart(url: str, expected: WebSocketURL) -> None:
    assert parse_ws_url(url) == expected


@pytest.mark.parametrize(("url", "says"), [
    ("http://example.com/", "is not a ws:// or wss:// URL"),
    ("ws:///path", "is not a ws:// or wss:// URL"),
    ("example.com:80", "is not a ws:// or wss:// URL"),
    ("ws://example.com:99999/", "is not a URL"),
    ("ws://example.com/#top", "has a fragment"),
])
def test_anything_else_is_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_ws_url(url)
