"""What the backend is told: forwarded fields, X-Forwarded-*, Forwarded and the draft."""

from __future__ import annotations

import pytest

from wscompat import Draft
from wscompat.gateway.headers import HeaderPolicy, backend_headers, forwarded_node
from wscompat.protocol.connection import UpgradeRequest
from wscompat.protocol.http import Headers, Request


def upgrade(*fields: tuple[str, str], remote: tuple[str, int] | None = ("192.0.2.7", 5123),
            draft: Draft = Draft.HYBI08) -> UpgradeRequest:
    request = Request("GET", "/chat", "1.1",
                      Headers([("Host", "gw.example:8080"), *fields]))
    return UpgradeRequest(request, draft, remote, ())


def test_the_default_fields() -> None:
    fields = backend_headers(
        upgrade(("Cookie", "a=1"), ("Cookie", "b=2"), ("User-Agent", "Firefox/7"),
                ("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"),
                ("Accept-Language", "fr")),
        HeaderPolicy(), secure=False)
    assert fields == [
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("User-Agent", "Firefox/7"),
        ("X-Forwarded-For", "192.0.2.7"),  # the client's own claim is dropped
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "gw.example:8080"),
        ("Forwarded", 'for=192.0.2.7;host="gw.example:8080";proto=http'),
        ("X-WebSocket-Draft", "hybi-08"),
    ]


def test_behind_a_trusted_proxy_the_chain_grows() -> None:
    fields = dict(backend_headers(
        upgrade(("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "public.example"), ("Forwarded", "for=198.51.100.1"),
                remote=("10.0.0.2", 40000), draft=Draft.HIXIE76),
        HeaderPolicy(forward=(), trust_forwarded=True), secure=False))
    assert fields == {
        "X-Forwarded-For": "198.51.100.1, 10.0.0.2",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example",
        "Forwarded": 'for=198.51.100.1, for=10.0.0.2;host="gw.example:8080";proto=http',
        "X-WebSocket-Draft": "hixie-76",
    }


def test_tls_and_ipv6() -> None:
    fields = dict(backend_headers(upgrade(remote=("2001:db8::1", 443)), HeaderPolicy(),
                                  secure=True))
    assert fields["X-Forwarded-For"] == "2001:db8::1"
    assert fields["X-Forwarded-Proto"] == "https"
    assert fields["Forwarded"] == 'for="[2001:db8::1]";host="gw.example:8080";proto=https'


@pytest.mark.parametrize(("address", "node"), [
    ("192.0.2.60", "192.0.2.60"), ("::1", '"[::1]"'), (None, "unknown"), ("", "unknown"),
])
def test_forwarded_nodes(address: str | None, node: str) -> None:
    assert forwarded_node(address) == node


@pytest.mark.parametrize("name", ["Host", "origin", "Sec-WebSocket-Key", "Forwarded",
                                  "X-WebSocket-Draft", "Upgrade", "bad name"])
def test_fields_the_gateway_writes_cannot_be_forwarded(name: str) -> None:
    with pytest.raises(ValueError, match=name.split(maxsplit=1)[0]):
        HeaderPolicy(forward=(name,))
