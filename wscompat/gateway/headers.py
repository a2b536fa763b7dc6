"""What of the client's request reaches the backend, and what the gateway adds.

The backend gets a fresh RFC 6455 request (its own key, ``Host`` naming the backend)
carrying the client's path and query, its origin as ``Origin`` whatever header its
draft used (hybi-07/08's ``Sec-WebSocket-Origin``, hixie's ``Origin``), its offered
subprotocols, the fields of :attr:`HeaderPolicy.forward` (``Cookie``,
``Authorization`` and ``User-Agent`` by default) and these, added:

``X-Forwarded-For``   the client's address
``X-Forwarded-Proto`` ``https`` when the client came over TLS, else ``http``
``X-Forwarded-Host``  the client's ``Host``
``Forwarded``         the same three as RFC 7239 says them (``for=...;host=...;proto=...``)
``X-WebSocket-Draft`` the client's draft: ``hixie-75``, ``hixie-76``, ``hybi-07``,
                      ``hybi-08``, ``rfc6455``, or ``rfc8441`` over HTTP/2

A client can send ``X-Forwarded-For`` or ``Forwarded`` itself to pose as another
address, so the ones it sends are dropped, unless :attr:`HeaderPolicy.trust_forwarded`
says a proxy of the operator's sits in front (nginx, HAProxy): then the gateway appends
to them as that proxy's next hop. Sans-I/O: the request is data in, fields out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from wscompat.protocol.connection import UpgradeRequest

__all__ = ["DEFAULT_FORWARD", "DRAFT_HEADER", "HeaderPolicy", "backend_headers", "forwarded_node"]

DRAFT_HEADER = "X-WebSocket-Draft"
DEFAULT_FORWARD = ("Cookie", "Authorization", "User-Agent")
MANAGED = frozenset(
    name.lower() for name in (
        "Host", "Upgrade", "Connection", "Origin", "Sec-WebSocket-Origin", "Content-Length",
        "Transfer-Encoding", "Keep-Alive", "TE", "Trailer", "Proxy-Connection",
        "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", DRAFT_HEADER,
    )
)
"""Fields the gateway writes itself, which cannot be forwarded as the client sent them."""
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class HeaderPolicy:
    forward: tuple[str, ...] = DEFAULT_FORWARD
    """Request fields passed to the backend as the client sent them (every value)."""
    trust_forwarded: bool = False
    """Keep and extend the client's X-Forwarded-* and Forwarded fields (set it only
    behind a proxy of your own that sets them); by default they are replaced."""

    def __post_init__(self) -> None:
        for name in self.forward:
            lower = name.lower()
            if lower in MANAGED or lower.startswith(("sec-websocket-", "websocket-")):
                raise ValueError(f"{name} cannot be forwarded: the gateway writes it")
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a header field name")


def backend_headers(
    upgrade: UpgradeRequest, policy: HeaderPolicy, *, secure: bool
) -> list[tuple[str, str]]:
    """The fields to add to the backend's request, besides its own handshake fields."""
    headers = upgrade.headers
    fields: list[tuple[str, str]] = []
    for name in policy.forward:
        fields += [(name, value) for value in headers.get_all(name)]
    client = upgrade.remote[0] if upgrade.remote else None
    proto = "https" if secure else "http"
    host = headers.get("Host")
    node = forwarded_node(client)
    element = f"for={node}" + (f";host={_quoted(host)}" if host else "") + f";proto={proto}"
    xff = client or "unknown"
    if policy.trust_forwarded:
        before = headers.joined("X-Forwarded-For")
        if before:
            xff = f"{before}, {xff}"
        proto = headers.get("X-Forwarded-Proto") or proto
        host = headers.get("X-Forwarded-Host") or host
        earlier = headers.joined("Forwarded")
        if earlier:
            element = f"{earlier}, {element}"
    fields.append(("X-Forwarded-For", xff))
    fields.append(("X-Forwarded-Proto", proto))
    if host:
        fields.append(("X-Forwarded-Host", host))
    fields.append(("Forwarded", element))
    fields.append((DRAFT_HEADER, upgrade.generation))
    return fields


def forwarded_node(address: str | None) -> str:
    """An address as RFC 7239's ``for=`` takes it: IPv6 bracketed and quoted, a name or
    no address as ``unknown``."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return _quoted(address) if address != "unknown" else address
    return f'"[{ip}]"' if ip.version == 6 else str(ip)


def _quoted(value: str) -> str:
    """A token as it is, anything else as a quoted-string."""
    if _TOKEN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
